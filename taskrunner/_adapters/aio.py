"""Running asyncio-flavoured task code through trio-asyncio, inside a trio supervisor.

Imported only when a supervisor gets its first asyncio-flavoured task: importing trio-asyncio
installs its asyncio loop policy, which slows every plain ``asyncio.run()`` in the process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import outcome
import trio

from .._core._outlet import OfferFn, PutFn
from .._core._task_context import APPENDED, FULL, _current_task, current_task


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
from ._aio_loop import prepare, run_callbacks_in_rounds  # noqa: E402 - after trio-asyncio

if TYPE_CHECKING:
    from .._core.handle import TaskHandle
    from .._core.supervisor import Supervisor

__all__ = ["AsyncioRunner", "asyncio_loop", "run_in_asyncio", "run_trio_from_asyncio"]

logger = logging.getLogger("taskrunner")

# As in the trio stream: an asyncio generator forwarding on the fast path lets the other
# asyncio tasks run every so many events.
_YIELD_EVERY = 64
T = TypeVar("T")


# ---------------------------------------------------------------------------- the loop


class _SharedLoop:
    """The trio-asyncio loop of one trio run, shared by every supervisor of the run.

    It lives in a trio system task from its first use until the trio run ends, so a client
    made in one session (an SDK client with a connection pool) still works in the next one.
    """

    __slots__ = ("failed", "loop", "ready")

    def __init__(self) -> None:
        self.loop: Any = None  # a trio_asyncio.TrioEventLoop once open
        self.ready = trio.Event()
        self.failed: BaseException | None = None

    async def host(self) -> None:
        try:
            async with trio_asyncio.open_loop() as loop:
                prepare(loop)
                run_callbacks_in_rounds(loop)
                self.loop = loop
                self.ready.set()
                await trio.sleep_forever()
        except BaseException as exc:  # a system task must never raise
            rest = exc
            if isinstance(exc, BaseExceptionGroup):
                rest = exc.split(trio.Cancelled)[1]  # type: ignore[assignment]
            if rest is None or isinstance(rest, trio.Cancelled):
                return  # the trio run is ending: the loop closed with it
            self.failed = exc
            logger.error("taskrunner: the shared asyncio loop failed", exc_info=exc)
        finally:
            self.ready.set()


_shared_loop: trio.lowlevel.RunVar[_SharedLoop | None] = trio.lowlevel.RunVar(
    "taskrunner.asyncio_loop", default=None
)


async def asyncio_loop() -> Any:
    """The asyncio loop taskrunner's asyncio code runs on in this trio run (trio code).

    A loop the application opened itself with ``trio_asyncio.open_loop()`` (around the code
    that opens sessions) is adopted; otherwise one loop is opened on first use and lives until
    the trio run ends, shared by every session, so long-lived clients made on it keep working.
    """
    adopted = trio_asyncio.current_loop.get()
    if adopted is not None and not adopted.is_closed():
        prepare(adopted)
        return adopted
    shared = _shared_loop.get()
    if shared is None:
        shared = _SharedLoop()
        _shared_loop.set(shared)
        trio.lowlevel.spawn_system_task(shared.host, name="taskrunner.asyncio-loop")
    if shared.loop is None:
        await shared.ready.wait()
        if shared.loop is None:
            raise RuntimeError("taskrunner's asyncio loop could not open") from shared.failed
    return shared.loop


def _ready_loop() -> Any:
    """The loop :func:`asyncio_loop` would return, when it is open already (else None):
    the per-task path, without a coroutine call."""
    adopted = trio_asyncio.current_loop.get()
    if adopted is not None:
        return None  # an application's loop: asyncio_loop() checks and prepares it
    shared = _shared_loop.get()
    return None if shared is None else shared.loop


async def run_in_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the asyncio function ``fn(*args)`` on taskrunner's asyncio loop and return its
    result (trio code). Use it to make (and close) long-lived asyncio clients shared by every
    session. Cancelling the call cancels the asyncio task."""
    loop = await asyncio_loop()
    # Called from a task, the asyncio code belongs to it (current_task(), set_data's source).
    bind = current_task()
    return cast(T, await _await_asyncio(loop, fn(*args), bind=bind))


def run_trio_from_asyncio(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Any:
    """From asyncio code: an asyncio future resolved by the trio call ``fn(*args)``."""
    loop = asyncio.get_running_loop()
    if not hasattr(loop, "trio_as_future"):
        raise RuntimeError(
            "taskrunner's waits called from asyncio code must run on a trio-asyncio loop "
            "(asyncio-flavoured taskrunner code); this loop is not one"
        )
    return loop.trio_as_future(fn, *args)


# ---------------------------------------------------------------------------- running tasks


class _Escape:
    """KeyboardInterrupt/SystemExit caught inside the asyncio task, re-raised on the trio
    side: asyncio would raise them through the loop, ending it and every session."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@trio.lowlevel.disable_ki_protection  # a supervised task's code: Ctrl-C may land here
async def _guarded(
    coro: Awaitable[Any], bind: TaskHandle | None, wake: Callable[[outcome.Outcome[Any]], None]
) -> Any:
    """Run ``coro``, then ``wake`` the trio side with its outcome from this last step.

    Waiting for asyncio's done callback instead would cost the trio side another pass of
    the loop's queue (every ready callback of every task) before it learns that the task
    ended: a barge-in's ``TaskCancelled`` waited twice as long.
    """
    try:
        if bind is not None:
            _current_task.set(bind)  # in this asyncio task's own context
        result = await coro
    except (KeyboardInterrupt, SystemExit) as exc:
        result = _Escape(exc)
    except BaseException as exc:  # CancelledError included: asyncio gets it back as well
        wake(outcome.Error(exc))
        raise
    wake(outcome.Value(result))
    return result


async def _await_asyncio(
    loop: Any,
    coro: Awaitable[Any],
    keep: tuple[dict[TaskHandle, asyncio.Task[Any]], TaskHandle] | None = None,
    *,
    bind: TaskHandle | None = None,
) -> Any:
    """Run ``coro`` as one asyncio task and wait for it from trio.

    A trio cancel cancels the asyncio task; once it ends with ``CancelledError``, trio's
    ``Cancelled`` is raised. ``keep`` = ``(running, handle)``: ``running[handle]`` holds the
    asyncio task meanwhile, so a stuck task can be cancelled again. ``bind``: the task
    ``current_task()`` names in that code.
    """
    trio_task = trio.lowlevel.current_task()
    woken = False

    def wake(result: outcome.Outcome[Any]) -> None:
        nonlocal woken
        if not woken:
            woken = True
            trio.lowlevel.reschedule(trio_task, result)

    def done(fut: asyncio.Future[Any]) -> None:
        if not woken:  # ended without running _guarded to its end (cancelled before it ran)
            wake(outcome.capture(fut.result))
        elif not fut.cancelled():
            fut.exception()  # the trio side has it: asyncio must not log it as unretrieved

    try:
        task = loop.create_task(_guarded(coro, bind, wake))
    except BaseException:
        if inspect.iscoroutine(coro):
            coro.close()
        raise
    if keep is not None:
        keep[0][keep[1]] = task
    raise_cancel: Callable[[], NoReturn] | None = None
    task.add_done_callback(done)

    def abort(raise_cancel_arg: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        # trio may call this again while the task winds down; asyncio gets one cancel (a
        # second one would land in its cleanup code). The stuck watch re-cancels on purpose.
        nonlocal raise_cancel
        if raise_cancel is None:
            task.cancel()
        raise_cancel = raise_cancel_arg
        return trio.lowlevel.Abort.FAILED  # wait for the asyncio task to end

    try:
        result = await trio.lowlevel.wait_task_rescheduled(abort)
    except BaseException as exc:
        # Cancelled before its first step: asyncio never started the coroutine. Close it, so
        # Python does not warn that it was never awaited. (Only on this path: a task that
        # returned has run its coroutine to the end.)
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED":
            coro.close()
        if isinstance(exc, asyncio.CancelledError) and raise_cancel is not None:
            try:
                raise_cancel()
            finally:
                sys.exc_info()[1].__cause__ = exc  # type: ignore[union-attr]
        raise
    finally:
        if keep is not None:
            del keep[0][keep[1]]
    if isinstance(result, _Escape):
        raise result.exc
    return result


class AsyncioRunner:
    """The asyncio flavour's :class:`taskrunner._core.supervisor.FlavorRunner`."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        # The asyncio task of each running task of the supervisor (only asyncio-flavoured
        # tasks pay for this entry, not every handle).
        self._running: dict[TaskHandle, asyncio.Task[Any]] = {}

    async def run_task(self, sup: Supervisor, handle: TaskHandle, body: Any, is_gen: bool) -> Any:
        """Run ``body`` (an asyncio coroutine or async generator) as one asyncio task.

        Cancellation from trio (cancel, interruption, timeout, close) cancels the asyncio task;
        its ``CancelledError`` becomes trio's ``Cancelled`` again.
        """
        loop = _ready_loop()
        if loop is None:
            loop = await asyncio_loop()
        if is_gen:
            drive = _drive(
                body,
                partial(sup.offer_output, handle),
                partial(sup.put_output, handle),
                partial(loop.trio_as_future, sup.wait_for_room),
            )
            return await _await_asyncio(loop, drive, (self._running, handle))
        return await _await_asyncio(loop, body, (self._running, handle))

    def cancel_again(self, handle: TaskHandle) -> None:
        """Cancel the task's asyncio task once more (its code swallowed the last cancel)."""
        task = self._running.get(handle)
        if task is not None and not task.done():
            task.cancel()


async def run_generator(
    sup: Supervisor, agen: AsyncGenerator[Any, Any], offer: OfferFn, put: PutFn
) -> None:
    """Iterate the asyncio generator ``agen`` as one asyncio task (a session's handler),
    forwarding each value through ``offer`` / ``put`` (see ``Supervisor.record_port``) with
    backpressure (trio code)."""
    loop = await asyncio_loop()
    await _await_asyncio(
        loop, _drive(agen, offer, put, partial(loop.trio_as_future, sup.wait_for_room))
    )


async def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Await the asyncio coroutine ``coro`` as one asyncio task and return its result."""
    loop = await asyncio_loop()
    return cast(T, await _await_asyncio(loop, coro))


async def _drive(
    agen: AsyncGenerator[Any, Any],
    offer: OfferFn,
    put: PutFn,
    wait_for_room: Callable[[], Awaitable[None]],
) -> None:
    """Iterate ``agen`` inside one asyncio task for its whole life, forwarding what it yields
    through ``offer`` / ``put`` (the trio twin is ``Supervisor.drive_generator``).

    One task (rather than one asyncio call per step) keeps ``asyncio.timeout`` blocks and
    context variables valid across the generator's yields.
    """
    count = 0
    try:
        async for value in agen:
            status = offer(value)
            if status == APPENDED:
                count += 1
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            elif status == FULL:
                await put(value, wait_for_room)
            else:  # STALE: the cancel was delivered; stop the generator where it yielded
                break
    finally:
        await agen.aclose()
