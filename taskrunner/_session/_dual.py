"""Awaitables that work from trio code and from asyncio-flavoured code (trio-asyncio)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import sniffio

__all__ = ["dual"]

T = TypeVar("T")


def dual(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Awaitable[T]:
    """``fn(*args)`` (a trio coroutine) awaitable from the calling flavour: as is from trio,
    through ``trio_asyncio.trio_as_aio`` from asyncio code running on trio-asyncio's loop."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "trio"
    if library == "asyncio":
        import trio_asyncio

        result: Awaitable[T] = trio_asyncio.trio_as_aio(fn)(*args)
        return result
    return fn(*args)
