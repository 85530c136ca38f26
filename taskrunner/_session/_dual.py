"""Awaitables that work from trio code and from asyncio-flavoured code (trio-asyncio)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import sniffio

__all__ = ["dual"]

T = TypeVar("T")


def dual(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Awaitable[T]:
    """``fn(*args)`` (a trio coroutine) awaitable from the calling flavour: as is from trio,
    as an asyncio future of trio-asyncio's loop from asyncio code running on it."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "trio"
    if library == "asyncio":
        import asyncio

        # The running loop is trio-asyncio's: it runs trio code as an asyncio future.
        loop: Any = asyncio.get_running_loop()
        result: Awaitable[T] = loop.trio_as_future(fn, *args)
        return result
    return fn(*args)
