"""Running asyncio-flavoured task code through trio-asyncio, inside a trio supervisor.

Imported only when a supervisor gets its first asyncio-flavoured task: importing trio-asyncio
installs its asyncio loop policy, which slows every plain ``asyncio.run()`` in the process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import trio


def _import_trio_asyncio() -> Any:
    """Import trio-asyncio, and point modules imported before it at its asyncio functions.

    trio-asyncio replaces ``asyncio.get_running_loop`` and friends when it is imported. A
    module that did ``from asyncio import get_running_loop`` earlier (anyio's asyncio backend,
    used by httpx, is one) keeps the original, which does not see trio-asyncio's loop and
    raises "no running event loop". Since taskrunner imports trio-asyncio lazily, such
    modules are common: their references are updated once, here.
    """
    names = ("get_running_loop", "_get_running_loop", "get_event_loop", "current_task")
    before = {name: getattr(asyncio, name) for name in names}
    import trio_asyncio

    replaced = {
        id(old): getattr(asyncio, name)
        for name, old in before.items()
        if getattr(asyncio, name) is not old
    }
    if replaced:
        for modname, module in list(sys.modules.items()):
            if modname.partition(".")[0] in ("asyncio", "_asyncio", "trio_asyncio"):
                continue
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for name in names:
                value = namespace.get(name)
                if value is not None and id(value) in replaced and value is before[name]:
                    namespace[name] = replaced[id(value)]
    return trio_asyncio


trio_asyncio = _import_trio_asyncio()

if TYPE_CHECKING:
    from .._core.handle import TaskHandle
    from .._core.supervisor import Supervisor

__all__ = ["AsyncioBridge"]

# As in the trio stream: an asyncio generator forwarding on the fast path lets the other
# asyncio tasks run every so many events.
_YIELD_EVERY = 64


class AsyncioBridge:
    """One trio-asyncio loop, opened in the supervisor's nursery and kept until it closes."""

    __slots__ = ("_ready", "_stop", "loop")

    def __init__(self, nursery: trio.Nursery) -> None:
        self.loop: Any = None  # a trio_asyncio.TrioEventLoop once open
        self._ready = trio.Event()
        self._stop = trio.Event()
        nursery.start_soon(self._host, name="taskrunner.asyncio-loop")

    async def _host(self) -> None:
        async with trio_asyncio.open_loop() as loop:
            self.loop = loop
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        """Let the loop close; called once every task of the supervisor has ended."""
        self._stop.set()

    async def run(self, sup: Supervisor, handle: TaskHandle, body: Any, is_gen: bool) -> Any:
        """Run ``body`` (an asyncio coroutine or async generator) as one asyncio task.

        Cancellation from trio (cancel, interruption, timeout, close) cancels the asyncio task;
        trio-asyncio turns its ``CancelledError`` back into trio's ``Cancelled``.
        """
        if is_gen:
            return await self.run_generator(sup, body, partial(sup._output, handle))
        return await self.run_coroutine(body)

    async def run_generator(
        self, sup: Supervisor, agen: AsyncGenerator[Any, Any], output: Callable[[Any], None]
    ) -> None:
        """Iterate ``agen`` as one asyncio task, calling ``output(event)`` for each value."""
        if self.loop is None:
            await self._ready.wait()
        await trio_asyncio.aio_as_trio(_drive(sup, agen, output), loop=self.loop)

    async def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await the asyncio coroutine ``coro`` as one asyncio task and return its result."""
        if self.loop is None:
            await self._ready.wait()
        return await trio_asyncio.aio_as_trio(coro, loop=self.loop)


async def _drive(
    sup: Supervisor, agen: AsyncGenerator[Any, Any], output: Callable[[Any], None]
) -> None:
    """Iterate ``agen`` inside one asyncio task for its whole life, forwarding what it yields.

    One task (rather than one asyncio call per step) keeps ``asyncio.timeout`` blocks and
    context variables valid across the generator's yields.
    """
    stream = sup._stream
    count = 0
    try:
        async for event in agen:
            if stream.has_room():
                output(event)
                count += 1
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                continue
            try:
                await trio_asyncio.trio_as_aio(stream.wait_for_room)()
            finally:
                # Appended even when cancelled while waiting: a yielded output is never dropped.
                output(event)
    finally:
        await agen.aclose()
