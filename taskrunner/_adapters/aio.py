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


class _SharedLoop:
    """The trio-asyncio loop of one trio run, shared by the supervisors that need one.

    It lives in a trio system task, so that it outlives any one supervisor: it opens when the
    first asyncio-flavoured code of the run needs it and closes when the last supervisor
    using it has closed. (A loop per supervisor would cost every session a socket pair and
    ~100 KB; thousands of sessions run out of file descriptors.)
    """

    __slots__ = ("closed", "loop", "ready", "stop", "users")

    def __init__(self) -> None:
        self.loop: Any = None  # a trio_asyncio.TrioEventLoop once open
        self.ready = trio.Event()
        self.stop = trio.Event()
        self.closed = trio.Event()
        self.users = 0

    async def host(self) -> None:
        try:
            async with trio_asyncio.open_loop() as loop:
                self.loop = loop
                self.ready.set()
                await self.stop.wait()
        finally:
            self.closed.set()


_shared_loop: trio.lowlevel.RunVar[_SharedLoop | None] = trio.lowlevel.RunVar(
    "taskrunner.asyncio_loop", default=None
)


class AsyncioBridge:
    """A supervisor's use of its trio run's shared trio-asyncio loop; :meth:`close` ends it."""

    __slots__ = ("_closed", "_shared")

    def __init__(self) -> None:
        shared = _shared_loop.get()
        if shared is None:
            shared = _SharedLoop()
            _shared_loop.set(shared)
            trio.lowlevel.spawn_system_task(shared.host, name="taskrunner.asyncio-loop")
        shared.users += 1
        self._shared = shared
        self._closed = False

    @property
    def loop(self) -> Any:
        """The trio-asyncio loop, or None until it has opened."""
        return self._shared.loop

    async def aclose(self) -> None:
        """Release the loop, once every task of the supervisor has ended; the last user
        waits until the loop has closed, so nothing of it outlives the supervisor."""
        self.close()
        shared = self._shared
        if shared.users == 0:
            await shared.closed.wait()

    def close(self) -> None:
        """Release the loop without waiting (idempotent)."""
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        shared.users -= 1
        if shared.users == 0:
            shared.stop.set()
            _shared_loop.set(None)  # the next user in this run opens a new loop

    async def _wait_ready(self) -> Any:
        shared = self._shared
        if shared.loop is None:
            await shared.ready.wait()
        return shared.loop

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
        loop = await self._wait_ready()
        await loop.run_aio_coroutine(_drive(sup, agen, output))

    async def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await the asyncio coroutine ``coro`` as one asyncio task and return its result."""
        loop = await self._wait_ready()
        return await loop.run_aio_coroutine(coro)


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
