"""Public entry points to the asyncio loop taskrunner runs asyncio code on.

Thin wrappers so that ``import taskrunner`` does not import trio-asyncio: it is loaded when
one of these is first called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["asyncio_loop", "run_in_asyncio"]

T = TypeVar("T")


async def asyncio_loop() -> Any:
    """The asyncio loop of this trio run that taskrunner's asyncio-flavoured code runs on
    (trio code). A loop the application opened with ``trio_asyncio.open_loop()`` around its
    sessions is adopted; otherwise one opens on first use and lives until the trio run ends,
    shared by every session, so long-lived asyncio clients made on it keep working."""
    from ._adapters.aio import asyncio_loop as get

    return await get()


async def run_in_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the asyncio function ``fn(*args)`` on :func:`asyncio_loop` and return its result
    (trio code). Use it to make and close long-lived asyncio clients (an SDK client with its
    connection pool) shared by every session. Cancelling the call cancels the asyncio task."""
    from ._adapters.aio import run_in_asyncio as run

    return await run(fn, *args)
