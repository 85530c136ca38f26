"""Awaitables of the public API that work from trio code and from asyncio code alike.

taskrunner's waits are trio code. Called from asyncio-flavoured code (a default session's
handler or task, running through trio-asyncio), :func:`flavored` hands the wait to the trio
side and returns an asyncio future instead, so ``await`` means the same in both flavours.
The core only detects the flavour (sniffio's thread-local, which trio-asyncio sets inside its
asyncio tasks); the crossing itself lives in the asyncio adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import sniffio

__all__ = ["flavored", "in_asyncio"]

T = TypeVar("T")


def in_asyncio() -> bool:
    """True when the caller is asyncio code (an asyncio task), False in trio code."""
    return sniffio.thread_local.name == "asyncio"


def flavored(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Awaitable[T]:
    """``fn(*args)`` (a trio coroutine) for trio callers; for asyncio callers, an asyncio
    future resolved by running it on the trio side. Cancelling the asyncio await cancels the
    trio call."""
    if sniffio.thread_local.name == "asyncio":
        from .._adapters.aio import run_trio_from_asyncio

        return cast(Awaitable[T], run_trio_from_asyncio(fn, *args))
    return fn(*args)
