"""The supervisor: one trio nursery running named, cancellable, timed tasks."""

from __future__ import annotations

import asyncio
import dis
import heapq
import inspect
import logging
import math
import types
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import trio
from trio.lowlevel import ParkingLot

from .errors import (
    DuplicateTaskNameError,
    FlavorError,
    SupervisorClosedError,
    WrongContextError,
)
from .handle import TaskHandle, TaskInfo, TaskState
from .records import (
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)
from .stream import RecordStream

if TYPE_CHECKING:
    from .._adapters.aio import AsyncioBridge

__all__ = [
    "Flavor",
    "Supervisor",
    "TaskHandler",
    "current_task",
    "open_supervisor",
    "uninterruptible",
]

logger = logging.getLogger("taskrunner")

Flavor: TypeAlias = Literal["trio", "asyncio"]
#: What ``create_task`` accepts: a coroutine or async generator object, or an async function /
#: async generator function that takes no arguments.
TaskHandler: TypeAlias = (
    Coroutine[Any, Any, Any]
    | AsyncGenerator[Any, Any]
    | Callable[[], Coroutine[Any, Any, Any]]
    | Callable[[], AsyncGenerator[Any, Any]]
)
RecordSink: TypeAlias = Callable[[Record], None]

_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_current_task: ContextVar[TaskHandle | None] = ContextVar("taskrunner.current_task", default=None)

_ACCEPTED_HANDLERS = (
    "a coroutine object, an async generator object, "
    "or an async function / async generator function taking no arguments"
)


def current_task() -> TaskHandle | None:
    """Return the handle of the supervised task this code runs in, or None outside any task.

    Works in both flavours (asyncio-flavoured tasks see the handle through context variables).
    """
    return _current_task.get()


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Protect a section of a task from interruption.

    Inside the block, ``cancel_interruptible_tasks()`` does not cancel this task: the
    interruption is remembered and applied when the outermost such block exits (blocks nest),
    so it is deferred, never lost. ``cancel_task``, ``cancel_all_tasks``, the task's timeout
    and closing the supervisor are not deferred.

    Raises ``RuntimeError`` when used outside a supervised task.
    """
    handle = _current_task.get()
    if handle is None:
        raise RuntimeError(
            "uninterruptible() protects a section of a supervised task; "
            "it was used outside any task (call it inside a task's code)"
        )
    handle._shield_depth += 1
    try:
        yield
    finally:
        handle._shield_depth -= 1
        if handle._shield_depth == 0 and handle._pending_interrupt:
            handle._pending_interrupt = False
            handle._sup._cancel(handle, "interrupted")


def _check_timeout(timeout: object, what: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{what} must be a number of seconds (int or float) or None, "
            f"got {type(timeout).__name__}: {timeout!r}"
        )
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(
            f"{what} must be a positive number of seconds or None for no limit, got {timeout!r}"
        )
    if math.isinf(timeout):
        return None  # no limit, as None says
    return float(timeout)


def _check_flavor(flavor: object) -> Flavor:
    if flavor == "trio":
        return "trio"
    if flavor == "asyncio":
        return "asyncio"
    raise ValueError(f"flavor must be 'trio' or 'asyncio', got {flavor!r}")


def _agen_started(agen: types.AsyncGeneratorType[Any, Any]) -> bool:
    getstate = getattr(inspect, "getasyncgenstate", None)
    if getstate is not None:  # Python >= 3.12
        return bool(getstate(agen) != "AGEN_CREATED")
    # Python 3.11: a generator that has not started yet still stands on RETURN_GENERATOR.
    frame = agen.ag_frame
    if frame is None:
        return True
    return bool(agen.ag_code.co_code[frame.f_lasti] != _RETURN_GENERATOR)


_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _takes_no_arguments(fn: types.FunctionType) -> bool:
    """True for an async (generator) function callable with no arguments, as far as its code
    tells; False means "ask inspect" (a decorated function's signature may differ)."""
    code = fn.__code__
    if not code.co_flags & _ASYNC_CODE or "__wrapped__" in fn.__dict__ or (
        "__signature__" in fn.__dict__
    ):
        return False
    if code.co_argcount > len(fn.__defaults__ or ()):
        return False
    return code.co_kwonlyargcount <= len(fn.__kwdefaults__ or ())


def _coerce_handler(handler: object) -> tuple[Any, bool, str]:
    """Return (coroutine or async generator, is_generator, readable base name)."""
    kind = type(handler)
    if kind is types.CoroutineType:
        coro: types.CoroutineType[Any, Any, Any] = handler  # type: ignore[assignment]
        if coro.cr_frame is None:
            raise ValueError(
                f"coroutine {coro.__qualname__} was already awaited or closed; "
                f"pass a fresh coroutine object or the async function itself"
            )
        if coro.cr_running or coro.cr_suspended:
            raise ValueError(
                f"coroutine {coro.__qualname__} has already started running; "
                f"pass a fresh coroutine object or the async function itself"
            )
        return coro, False, coro.cr_code.co_name
    if kind is types.AsyncGeneratorType:
        agen: types.AsyncGeneratorType[Any, Any] = handler  # type: ignore[assignment]
        if agen.ag_frame is None:
            raise ValueError(
                f"async generator {agen.__qualname__} is already exhausted or closed; "
                f"pass a fresh async generator object or the function itself"
            )
        if agen.ag_running or _agen_started(agen):
            raise ValueError(
                f"async generator {agen.__qualname__} has already been started; "
                f"pass a fresh async generator object or the function itself"
            )
        return agen, True, agen.ag_code.co_name
    if kind is types.FunctionType and _takes_no_arguments(handler):  # type: ignore[arg-type]
        # The common case, a plain `async def` taking no arguments, checked from its code
        # object: inspect.signature() would cost more than all the rest of create_task.
        return _coerce_handler(handler())  # type: ignore[operator]
    if callable(handler):
        fn_name = getattr(handler, "__qualname__", None) or repr(handler)
        if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
            try:
                inspect.signature(handler).bind()
            except TypeError:
                raise TypeError(
                    f"async function {fn_name} takes arguments, but create_task calls it with "
                    f"none; pass a coroutine object ({fn_name.rsplit('.', 1)[-1]}(...)) instead"
                ) from None
            except ValueError:  # no signature available (builtins): just try the call
                pass
            return _coerce_handler(handler())
        raise TypeError(
            f"handler must be {_ACCEPTED_HANDLERS}; got the synchronous callable {fn_name}"
        )
    if inspect.isawaitable(handler):
        raise TypeError(
            f"handler must be {_ACCEPTED_HANDLERS}; got the awaitable "
            f"{type(handler).__name__} (wrap it: async def job(): return await it)"
        )
    text = repr(handler)
    if len(text) > 80:
        text = text[:77] + "..."
    raise TypeError(f"handler must be {_ACCEPTED_HANDLERS}; got {type(handler).__name__}: {text}")


def flavor_misuse(exc: BaseException, flavor: str, who: str, call: str) -> FlavorError | None:
    """A :class:`FlavorError` explaining ``exc`` if it is what trio or asyncio raise when code
    of the other flavour runs in ``flavor`` code, else None.

    ``who`` names the code (``"task 'x'"``), ``call`` the call that sets its flavour.
    """
    msg = str(exc)
    if flavor == "trio" and (
        (isinstance(exc, TypeError) and "unrecognized yield message" in msg)
        or (isinstance(exc, RuntimeError) and "no running event loop" in msg)
    ):
        other = "asyncio"
    elif flavor == "asyncio" and isinstance(exc, RuntimeError) and "got bad yield" in msg:
        other = "trio"
    else:
        return None
    err = FlavorError(
        f"{who} is {flavor}-flavoured but called {other} code ({msg}); "
        f"run it with {call}(..., flavor={other!r})"
    )
    err.__cause__ = exc
    return err


class _RecordIterator:
    """``async for`` over a supervisor's stream; ends after close once drained."""

    __slots__ = ("_stream",)

    def __init__(self, stream: RecordStream[Record]) -> None:
        self._stream = stream

    def __aiter__(self) -> _RecordIterator:
        return self

    async def __anext__(self) -> Record:
        try:
            return await self._stream.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class Supervisor:
    """Runs named background tasks in one trio nursery. Made by :func:`open_supervisor`.

    All methods but :meth:`wait_for_all_tasks` are synchronous and must be called from the
    trio run (thread) that opened the supervisor; asyncio-flavoured code running through
    trio-asyncio in that run may call them too.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        flavor: Flavor,
        max_buffer: int,
        history: int,
        stuck_after: float | None,
        on_record: RecordSink | None,
    ) -> None:
        self._nursery = nursery
        self._flavor: Flavor = flavor
        self._stream: RecordStream[Record] = RecordStream(max_buffer)
        self._tasks: dict[str, TaskHandle] = {}
        self._history: deque[TaskHandle] = deque(maxlen=history)
        self._next_id = 0
        self._seq = 0
        self._closing = False
        self._token = trio.lowlevel.current_trio_token()
        self._idle_lot = ParkingLot()
        self._stuck_after = stuck_after
        # Deadlines are kept here, not on the tasks' cancel scopes: a heap push costs less
        # than trio's deadline registration, and a timeout then goes through _cancel like any
        # other cancellation, so the stuck-task watch covers it too. One "clock" task per
        # supervisor sleeps until the next deadline or stuck check.
        self._deadlines: list[tuple[float, int, TaskHandle]] = []
        self._stale_deadlines = 0
        self._cancelling: deque[TaskHandle] = deque()
        self._clock_lot = ParkingLot()
        self._clock_scope: trio.CancelScope | None = None
        self._clock_wait: trio.CancelScope | None = None
        self._aio: AsyncioBridge | None = None
        self._on_record = on_record
        self._jobs = 0
        self._before_close: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<Supervisor {state} tasks={len(self._tasks)} flavor={self._flavor}>"

    # ------------------------------------------------------------------ records

    def emit(self, record: Record) -> None:
        """Append ``record`` to the stream without waiting (used by the session runtime).

        ``record.seq`` must come from :meth:`next_seq` just before, so the stream stays ordered.
        """
        self._stream.put_nowait(record)
        if self._on_record is not None:
            self._on_record(record)

    def next_seq(self) -> int:
        """Reserve the next sequence number of this stream (for records made outside the core)."""
        self._seq += 1
        return self._seq

    async def emit_with_backpressure(self, make: Callable[[int, float], Record]) -> None:
        """Append the record ``make(seq, now)``, first waiting while the stream is full.

        If cancelled while waiting, the record is still appended, then ``Cancelled`` propagates.
        """
        stream = self._stream
        if not stream.has_room():
            try:
                await stream.wait_for_room()
            finally:
                self._seq += 1
                self.emit(make(self._seq, trio.current_time()))
            return
        self._seq += 1
        self.emit(make(self._seq, trio.current_time()))
        await stream.after_put()

    def _output(self, handle: TaskHandle, event: Any) -> None:
        handle.outputs += 1
        self._seq += 1
        self.emit(TaskOutput(self._seq, trio.current_time(), handle.name, handle.id, event))

    async def _forward(self, handle: TaskHandle, event: Any) -> None:
        """Forward one output of a trio-flavoured generator task (hot path)."""
        stream = self._stream
        if stream.has_room():
            self._output(handle, event)
            await stream.after_put()
            return
        try:
            await stream.wait_for_room()
        finally:
            # Appended even when cancelled while waiting: a yielded output is never dropped.
            self._output(handle, event)

    def events(self) -> AsyncIterator[Record]:
        """Iterate over the supervisor's records, in order.

        One reader at a time: a second task waiting on it raises ``StreamBusyError``. The
        iteration ends once the supervisor has closed and every record has been read; it can
        go on after the ``async with`` block has exited.

        When nobody reads: start and end records are kept in memory (they never block), and an
        async-generator task blocks on its output once ``max_buffer`` records are waiting, until
        someone reads or the task is cancelled (its pending output is still appended).
        """
        return _RecordIterator(self._stream)

    # ------------------------------------------------------------------ creating tasks

    def _check_caller(self, what: str) -> None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            raise WrongContextError(
                f"{what} must be called from the trio run that opened the supervisor; "
                f"it was called outside any trio run (another thread?)"
            ) from None
        if token is not self._token:
            raise WrongContextError(
                f"{what} must be called from the trio run that opened the supervisor; "
                f"it was called from a different trio run"
            )

    def create_task(
        self,
        handler: TaskHandler,
        name: str | None = None,
        interruptible: bool = False,
        timeout: float | None = 30,
        *,
        flavor: Flavor | None = None,
    ) -> TaskHandle:
        """Start ``handler`` as a background task and return its :class:`TaskHandle`.

        ``handler`` is a coroutine object, an async generator object (each value it yields is
        forwarded as a ``TaskOutput`` record), or an async function / async generator function
        taking no arguments. ``name`` defaults to a readable name never used again in this
        supervisor; a name held by an unfinished task raises ``ValueError``. ``timeout`` is in
        seconds (None: no limit); past it the task is cancelled and ends as timed out.
        ``interruptible`` tasks are cancelled by :meth:`cancel_interruptible_tasks`.
        ``flavor`` (default: the supervisor's) says whether the code is trio or asyncio code.

        Synchronous: the ``TaskStarted`` record is issued before it returns, so even a task
        cancelled before it ever ran has a start and an end.
        """
        if self._closing:
            raise SupervisorClosedError(
                f"create_task({name!r}): the supervisor is closed and accepts no new tasks"
            )
        self._check_caller("create_task")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}: {name!r}")
        if name is not None:
            if not name:
                raise ValueError("name must be a non-empty string or None, got ''")
            if name in self._tasks:
                raise DuplicateTaskNameError(
                    f"a task named {name!r} is still running; names must be unique among "
                    f"unfinished tasks (pick another name, or name=None for a generated one)"
                )
        if timeout is not None:
            timeout = _check_timeout(timeout, "timeout")
        if not isinstance(interruptible, bool):
            raise TypeError(
                f"interruptible must be True or False, got {type(interruptible).__name__}: "
                f"{interruptible!r}"
            )
        flavor = self._flavor if flavor is None else _check_flavor(flavor)
        body, is_gen, base = _coerce_handler(handler)

        self._next_id += 1
        task_id = self._next_id
        if name is None:
            name = f"{base}-{task_id}"
            while name in self._tasks:  # a user took this name explicitly
                name = f"{name}'"
        now = trio.current_time()
        handle = TaskHandle(
            self, name, task_id, interruptible, timeout, flavor, now, trio.CancelScope()
        )
        handle._body = body
        self._tasks[name] = handle
        if timeout is not None:
            deadline = handle._deadline = now + timeout
            heapq.heappush(self._deadlines, (deadline, task_id, handle))
            self._wake_clock(deadline)
        self._seq += 1
        self.emit(TaskStarted(self._seq, now, name, task_id, interruptible, timeout, flavor))
        if flavor == "trio":
            if is_gen:
                body = self._drive_trio_generator(handle, body)
            self._nursery.start_soon(self._run, handle, body, name=name)
        else:
            coro = None if is_gen else body
            body = self.asyncio_bridge().run(self, handle, body, is_gen)
            self._nursery.start_soon(self._run_asyncio, handle, body, coro, name=name)
        return handle

    async def _drive_trio_generator(
        self, handle: TaskHandle, agen: AsyncGenerator[Any, Any]
    ) -> None:
        try:
            async for event in agen:
                await self._forward(handle, event)
        finally:
            await agen.aclose()

    async def _run_asyncio(
        self,
        handle: TaskHandle,
        body: Coroutine[Any, Any, Any],
        coro: types.CoroutineType[Any, Any, Any] | None,
    ) -> None:
        try:
            await self._run(handle, body)
        finally:
            # An asyncio coroutine that never got to run (cancelled first) is closed, so that
            # Python does not warn that it was never awaited.
            if coro is not None and coro.cr_frame is not None and not coro.cr_suspended:
                coro.close()

    async def _run(self, handle: TaskHandle, body: Coroutine[Any, Any, Any]) -> None:
        _current_task.set(handle)
        scope = handle._scope
        if handle._cancel_at is not None:
            # Cancelled before it ever ran: it does not start at all.
            body.close()
            if handle.cancel_reason is None:
                self._end(handle, TaskState.TIMED_OUT, handle.timeout)
            else:
                self._end(handle, TaskState.CANCELLED, handle.cancel_reason)
            return
        try:
            with scope:
                result = await body
        except Exception as exc:
            misuse = flavor_misuse(exc, handle.flavor, f"task {handle.name!r}", "create_task")
            if misuse is not None:
                exc = misuse
            self._end(handle, TaskState.FAILED, exc)
            return
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                # asyncio code cancelled itself (trio did not ask): a failure of the task.
                self._end(handle, TaskState.FAILED, exc)
                return
            # Cancelled by an enclosing scope, KeyboardInterrupt, SystemExit: record, re-raise.
            if isinstance(exc, trio.Cancelled):
                self._end(handle, TaskState.CANCELLED, handle.cancel_reason or "closed")
            else:
                self._end(handle, TaskState.FAILED, exc)
            raise
        if scope.cancelled_caught:
            if handle.cancel_reason is None:
                self._end(handle, TaskState.TIMED_OUT, handle.timeout)
            else:
                self._end(handle, TaskState.CANCELLED, handle.cancel_reason)
        else:
            self._end(handle, TaskState.FINISHED, result)

    def _end(self, handle: TaskHandle, state: TaskState, detail: Any) -> None:
        """Record that ``handle`` ended; ``detail`` is the result, error, reason or timeout."""
        now = trio.current_time()
        handle.state = state
        handle.ended_at = now
        handle._body = None
        if handle.timeout is not None:
            self._stale_deadlines += 1
        # The outcome (and its TaskCancelledError...) is made when someone asks: most never do.
        handle._detail = detail
        name = handle.name
        if self._tasks.get(name) is handle:
            del self._tasks[name]
        self._history.append(handle)
        self._seq += 1
        record: Record
        if state is TaskState.FINISHED:
            record = TaskFinished(self._seq, now, name, handle.id, detail)
        elif state is TaskState.CANCELLED:
            handle.cancel_reason = detail
            record = TaskCancelled(self._seq, now, name, handle.id, detail)
        elif state is TaskState.TIMED_OUT:
            record = TaskTimedOut(self._seq, now, name, handle.id, detail)
            logger.warning(
                "task %r timed out after %g s and was cancelled; raise its timeout= in "
                "create_task (or pass timeout=None) if it needs longer",
                name,
                detail,
            )
        else:
            record = TaskFailed(self._seq, now, name, handle.id, detail)
            logger.error("task %r failed", name, exc_info=detail)
        self.emit(record)
        if handle._done is not None:
            handle._done.set()
        if self._idle_lot and len(self._tasks) <= 1:
            self._idle_lot.unpark_all()

    # ------------------------------------------------------------------ cancelling

    def _cancel(self, handle: TaskHandle, reason: str | None) -> bool:
        """Cancel ``handle`` for ``reason`` (None: its timeout); False if it had ended.

        The first cancellation decides how the task is reported; later ones change nothing.
        """
        if handle.state is not TaskState.RUNNING:
            return False
        if handle._cancel_at is None:
            now = trio.current_time()
            # A deadline that already passed is a timeout, even if the clock task has not
            # got to it yet when something else asks to cancel.
            if reason is not None and now < handle._deadline:
                handle.cancel_reason = reason
            handle._scope.cancel()
            handle._cancel_at = now
            if self._stuck_after is not None:
                self._cancelling.append(handle)
                self._wake_clock(now + self._stuck_after)
        return True

    def _caller(self) -> TaskHandle | None:
        handle = _current_task.get()
        if handle is not None and handle._sup is self and handle.state is TaskState.RUNNING:
            return handle
        return None

    def cancel_task(self, name: str) -> bool:
        """Cancel the unfinished task called ``name`` (reason ``"cancel_task"``).

        Returns False when no unfinished task has that name. Never deferred.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}: {name!r}")
        handle = self._tasks.get(name)
        if handle is None:
            return False
        return self._cancel(handle, "cancel_task")

    def cancel_interruptible_tasks(self) -> int:
        """Cancel every unfinished interruptible task (reason ``"interrupted"``).

        A task inside :func:`uninterruptible` is cancelled when its outermost such block exits.
        The calling task (if the call comes from a task) is left alone. Returns how many tasks
        were cancelled or had the interruption deferred.
        """
        me = self._caller()
        count = 0
        for handle in list(self._tasks.values()):
            if handle.interruptible and handle is not me:
                if handle._shield_depth:
                    handle._pending_interrupt = True
                    count += 1
                elif self._cancel(handle, "interrupted"):
                    count += 1
        return count

    def cancel_all_tasks(self) -> int:
        """Cancel every unfinished task but the calling one (reason ``"cancel_all"``).

        Never deferred. Returns how many tasks were cancelled.
        """
        me = self._caller()
        count = 0
        for handle in list(self._tasks.values()):
            if handle is not me and self._cancel(handle, "cancel_all"):
                count += 1
        return count

    def has_unfinished_tasks(self) -> bool:
        """True while any task (the calling one included) has not ended."""
        return bool(self._tasks)

    async def wait_for_all_tasks(self, timeout: float | None = None) -> bool:
        """Wait until no task is unfinished; True then, False if ``timeout`` passed first.

        Tasks started while waiting are waited for too. Called from a task, it waits for every
        other task. Cancelling the waiter affects no task.
        """
        timeout = _check_timeout(timeout, "timeout")
        own = 1 if self._caller() is not None else 0
        if len(self._tasks) <= own:
            await trio.lowlevel.checkpoint()
            return True
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while len(self._tasks) > own:
                await self._idle_lot.park()
            return True
        return False

    # ------------------------------------------------------------------ inspecting

    def get_task(self, name: str) -> TaskHandle | None:
        """The unfinished task called ``name``, else the latest finished one kept, else None."""
        handle = self._tasks.get(name)
        if handle is not None:
            return handle
        for old in reversed(self._history):
            if old.name == name:
                return old
        return None

    def snapshot(self) -> tuple[TaskInfo, ...]:
        """Frozen pictures of the kept finished tasks (oldest first), then the running ones."""
        return tuple(h.info() for h in self._history) + tuple(
            h.info() for h in self._tasks.values()
        )

    @property
    def closed(self) -> bool:
        """True once the supervisor has started closing; ``create_task`` then raises."""
        return self._closing

    # ------------------------------------------------------------------ stuck tasks

    def _wake_clock(self, when: float) -> None:
        """Make sure the clock task wakes up by ``when``."""
        if self._clock_scope is None:
            self._clock_scope = trio.CancelScope()
            self._nursery.start_soon(self._clock, name="taskrunner.clock")
        elif self._clock_wait is not None and when < self._clock_wait.deadline:
            self._clock_wait.deadline = when

    async def _clock(self) -> None:
        """Time out tasks at their deadlines, and report tasks stuck after a cancel."""
        assert self._clock_scope is not None
        heap = self._deadlines
        stuck = self._cancelling
        grace = math.inf if self._stuck_after is None else self._stuck_after
        with self._clock_scope:
            while True:
                now = trio.current_time()
                if self._stale_deadlines > 64 and self._stale_deadlines * 2 > len(heap):
                    # Ended tasks' entries are dropped lazily; rebuild once they dominate.
                    heap[:] = [e for e in heap if e[2].state is TaskState.RUNNING]
                    heapq.heapify(heap)
                    self._stale_deadlines = 0
                while heap and heap[0][0] <= now:
                    handle = heapq.heappop(heap)[2]
                    if handle.state is TaskState.RUNNING:
                        self._cancel(handle, None)
                    else:
                        self._stale_deadlines -= 1
                while stuck and (
                    stuck[0].state is not TaskState.RUNNING
                    or stuck[0]._cancel_at + grace <= now  # type: ignore[operator]
                ):
                    handle = stuck.popleft()
                    if handle.state is TaskState.RUNNING:
                        self._report_stuck(handle)
                wake = min(
                    heap[0][0] if heap else math.inf,
                    stuck[0]._cancel_at + grace if stuck else math.inf,  # type: ignore[operator]
                )
                with trio.CancelScope(deadline=wake) as self._clock_wait:
                    await self._clock_lot.park()
                self._clock_wait = None

    def _report_stuck(self, handle: TaskHandle) -> None:
        assert handle._cancel_at is not None
        reason = handle.cancel_reason or "timed_out"
        logger.warning(
            "task %r was cancelled (%s) %g s ago and is still running: its code ignores "
            "cancellation (a swallowed CancelledError, or a shielded section that never ends)",
            handle.name,
            reason,
            self._stuck_after,
        )
        self._seq += 1
        self.emit(
            TaskStuck(
                self._seq,
                trio.current_time(),
                handle.name,
                handle.id,
                reason,
                handle._cancel_at,
            )
        )

    # ------------------------------------------------------------------ runtime hooks

    def asyncio_bridge(self) -> AsyncioBridge:
        """The trio-asyncio loop this supervisor uses (opened on first use; one per trio run,
        shared by the supervisors that need it), for the session runtime."""
        if self._aio is None:
            from .._adapters.aio import AsyncioBridge  # loads trio-asyncio on first use

            self._aio = AsyncioBridge()
        return self._aio

    def start_job(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``fn()`` in the supervisor's nursery as runtime machinery, not as a task.

        The supervisor's close waits for jobs as for tasks (before it shuts its asyncio loop),
        but jobs have no records and are not cancelled by closing: their owner ends them.
        """
        self._jobs += 1
        self._nursery.start_soon(self._run_job, fn, name=name)

    async def _run_job(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await fn()
        finally:
            self._jobs -= 1
            if self._idle_lot:
                self._idle_lot.unpark_all()

    def cancel_where(self, predicate: Callable[[TaskHandle], bool], reason: str) -> int:
        """Cancel the unfinished tasks ``predicate`` selects, with ``reason``; never deferred."""
        count = 0
        for handle in list(self._tasks.values()):
            if predicate(handle) and self._cancel(handle, reason):
                count += 1
        return count

    def call_before_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once every task and job has ended, just before the stream closes."""
        self._before_close.append(fn)

    # ------------------------------------------------------------------ closing

    async def _aclose(self) -> None:
        self._closing = True
        for handle in list(self._tasks.values()):
            self._cancel(handle, "closed")
        while self._tasks or self._jobs:
            await self._idle_lot.park()
        if self._clock_scope is not None:
            self._clock_scope.cancel()
        if self._aio is not None:
            await self._aio.aclose()


@asynccontextmanager
async def open_supervisor(
    *,
    flavor: Flavor = "trio",
    max_buffer: int = 1024,
    history: int = 1000,
    stuck_after: float | None = 10.0,
    on_record: RecordSink | None = None,
) -> AsyncIterator[Supervisor]:
    """Open a :class:`Supervisor` (one trio nursery) for the duration of the block.

    ``flavor`` is the default flavour of its tasks; ``max_buffer`` how many records may wait
    for the reader before generator tasks block; ``history`` how many finished tasks are kept
    for :meth:`Supervisor.snapshot`; ``stuck_after`` the grace time (seconds, None to disable)
    before a task that ignores its cancellation is reported by a ``TaskStuck`` record;
    ``on_record`` a synchronous callback given every record as it is appended (it must not
    block; a debugger hub or recorder).

    Leaving the block cancels every unfinished task (reason ``"closed"``) and returns once each
    has ended and its last records are in the stream. An exception raised in the block
    propagates unchanged after that.
    """
    flavor = _check_flavor(flavor)
    if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
        raise ValueError(f"max_buffer must be a positive int, got {max_buffer!r}")
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ValueError(f"history must be an int >= 0, got {history!r}")
    stuck_after = _check_timeout(stuck_after, "stuck_after")
    body_error: Exception | None = None
    sup: Supervisor | None = None
    try:
        async with trio.open_nursery() as nursery:
            sup = Supervisor(
                nursery,
                flavor=flavor,
                max_buffer=max_buffer,
                history=history,
                stuck_after=stuck_after,
                on_record=on_record,
            )
            try:
                yield sup
            except Exception as exc:
                # Kept aside so that the nursery does not wrap it in an ExceptionGroup.
                body_error = exc
            finally:
                await sup._aclose()
    finally:
        if sup is not None:
            sup._closing = True
            if sup._aio is not None:
                sup._aio.close()  # also when closing was cut short by a cancellation
            try:
                for fn in sup._before_close:
                    fn()
            finally:
                sup._stream.close()
    if body_error is not None:
        raise body_error
