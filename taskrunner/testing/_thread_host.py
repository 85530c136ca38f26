"""A session under test in a trio run of its own thread, for callers outside trio (asyncio
tests: VoiceRun's are ``@pytest.mark.asyncio``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import trio

from ._agent import Agent

__all__ = ["ThreadHost", "in_trio"]

T = TypeVar("T")
logger = logging.getLogger("taskrunner")


def in_trio() -> bool:
    """True when called from trio code; False from asyncio code, also from asyncio code that
    trio-asyncio runs on trio (its loop for ``asyncio.run`` once it is imported)."""
    if asyncio._get_running_loop() is not None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


class ThreadHost:
    """Runs ``run_agent(...)`` in a new thread's trio run on a mock clock.

    The clock stands still between calls and jumps ahead during them: what the session does
    is the same on every run and takes no real time. :meth:`call` runs one trio-side
    coroutine function there and hands its result (or exception) back to the asyncio caller.
    The thread is a daemon; :meth:`request_close` (also what a garbage-collected runner
    triggers) ends the session and the thread.
    """

    def __init__(self, cm: AbstractAsyncContextManager[Agent], data: dict[str, Any]) -> None:
        import trio.testing  # imports pytest: only when a runner is used from asyncio

        self._cm = cm
        self._data = data
        self._clock = trio.testing.MockClock(autojump_threshold=math.inf)
        self._ready: concurrent.futures.Future[Agent] = concurrent.futures.Future()
        self._close: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.thread = threading.Thread(
            target=self._main, name="taskrunner.testing.TestRunner", daemon=True
        )

    async def start(self) -> Agent:
        """Start the thread and return the :class:`Agent` once the session is open (or raise
        what opening it raised)."""
        self.thread.start()
        return await asyncio.wrap_future(self._ready)

    def _main(self) -> None:
        try:
            trio.run(self._serve, clock=self._clock)
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                logger.error("TestRunner: the session's trio run failed", exc_info=exc)

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._close = trio.Event()
        async with self._cm as agent:
            for key, value in self._data.items():
                agent.context.set_data(key, value)
            self._ready.set_result(agent)
            await self._close.wait()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``await fn()`` in the host's trio run, the clock jumping ahead meanwhile."""
        token = self._token
        assert token is not None

        async def timed() -> T:
            self._clock.autojump_threshold = 0
            try:
                return await fn()
            finally:
                self._clock.autojump_threshold = math.inf

        def blocking() -> T:
            return trio.from_thread.run(timed, trio_token=token)

        return await asyncio.get_running_loop().run_in_executor(None, blocking)

    def request_close(self) -> None:
        """Ask the host to end the session (tasks ended as ``open_session`` does) and its
        thread; returns at once, from any thread. Nothing happens if it has already ended."""
        token, close, clock = self._token, self._close, self._clock
        if token is None or close is None:
            return

        def begin() -> None:
            clock.autojump_threshold = 0  # the stop sequence runs on the jumping clock
            close.set()

        try:
            token.run_sync_soon(begin)
        except trio.RunFinishedError:
            pass

    async def aclose(self) -> None:
        """:meth:`request_close`, then wait (without blocking the event loop) for the thread."""
        self.request_close()
        if self.thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self.thread.join)
