"""The supervisor: one trio nursery running named, cancellable, timed tasks."""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, Literal, Protocol, TypeAlias

import trio
from trio.lowlevel import ParkingLot

from ._checks import (
    Flavor,
    check_count,
    check_flavor,
    check_timeout,
    coerce_handler,
    flavor_misuse,
    safe_repr,
)
from ._flavored import flavored
from ._limiter import Limiter
from ._watch import StuckWatch
from .errors import (
    DuplicateTaskNameError,
    SupervisorClosedError,
    TaskLimitError,
    WrongContextError,
)
from .handle import TaskHandle, TaskInfo, TaskState
from .records import (
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskQueued,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)
from .stream import RecordStream

__all__ = [
    "Flavor",
    "FlavorRunner",
    "Lifecycle",
    "Supervisor",
    "TaskHandler",
    "current_task",
    "open_supervisor",
    "uninterruptible",
]

logger = logging.getLogger("taskrunner")

#: What ``create_task`` accepts: a coroutine or async generator object, or an async function /
#: async generator function that takes no arguments.
TaskHandler: TypeAlias = (
    Coroutine[Any, Any, Any]
    | AsyncGenerator[Any, Any]
    | Callable[[], Coroutine[Any, Any, Any]]
    | Callable[[], AsyncGenerator[Any, Any]]
)
RecordSink: TypeAlias = Callable[[Record], None]
OnDuplicate: TypeAlias = Literal["error", "replace"]

_current_task: ContextVar[TaskHandle | None] = ContextVar("taskrunner.current_task", default=None)
# Coroutine objects handed to create_task that have not started yet (by id): the same object
# must not become two tasks.
_claimed: set[int] = set()

#: What :meth:`Supervisor.offer` says about an output.
APPENDED, FULL, STALE = 0, 1, 2


class Lifecycle(enum.Enum):
    """A supervisor's (or session's) state: ``OPEN`` takes work; ``STOPPING`` finishes the
    stop sequence (no interruptible task may start; non-interruptible tasks may still start
    non-interruptible ones, covered by the grace time); ``CLOSED`` refuses everything."""

    OPEN = "open"
    STOPPING = "stopping"
    CLOSED = "closed"


class FlavorRunner(Protocol):
    """Runs the body of a task of one flavour inside the task's trio task.

    The trio runner is the supervisor itself; the asyncio runner lives in
    ``taskrunner._adapters.aio``. A runner forwards generator outputs only through
    :meth:`Supervisor.offer` / :meth:`Supervisor.put_output`.
    """

    async def run_task(self, sup: Supervisor, handle: TaskHandle, body: Any, is_gen: bool) -> Any:
        """Run ``body`` to its end and return its result (None for a generator)."""

    def cancel_again(self, handle: TaskHandle) -> None:
        """Deliver the task's cancellation once more (its code swallowed the last one)."""


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
            handle._sup._cancel(handle, "interrupted", handle.cancel_origin)


class _RecordIterator:
    """``async for`` over a supervisor's stream; ends after close once drained.

    Iterating claims the stream: another iterator raises ``StreamBusyError`` at its first
    ``__anext__``, before it takes any record, until this one is exhausted or collected.
    """

    __slots__ = ("__weakref__", "_stream")

    def __init__(self, stream: RecordStream[Record]) -> None:
        self._stream = stream

    def __aiter__(self) -> _RecordIterator:
        return self

    def __anext__(self) -> Awaitable[Record]:
        self._stream.claim(self)
        return flavored(self._next)

    async def _next(self) -> Record:
        try:
            return await self._stream.get()
        except trio.EndOfChannel:
            self._stream.release(self)
            raise StopAsyncIteration from None


class Supervisor:
    """Runs named background tasks in one trio nursery. Made by :func:`open_supervisor`.

    All methods must be called from the trio run (thread) that opened the supervisor
    (``WrongContextError`` otherwise); asyncio-flavoured code running through taskrunner in
    that run may call them too, and its awaits (:meth:`wait_for_all_tasks`, ``events()``,
    ``handle.wait()``) work from asyncio code as from trio code.
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
        default_timeout: float | None,
        limiter: Limiter | None,
        pending_limit: int | None,
        on_duplicate: OnDuplicate,
        session_id: str | None,
    ) -> None:
        self._nursery = nursery
        self._flavor: Flavor = flavor
        self._stream: RecordStream[Record] = RecordStream(max_buffer)
        self._tasks: dict[str, TaskHandle] = {}
        self._history: deque[TaskInfo] = deque(maxlen=history)
        self._next_id = 0
        self._seq = 0
        self.state = Lifecycle.OPEN
        self._token = trio.lowlevel.current_trio_token()
        self._idle_lot = ParkingLot()
        self._stuck_after = stuck_after
        self._watch: StuckWatch | None = None
        if stuck_after is not None:
            self._watch = StuckWatch(nursery, stuck_after, self._lookup, self._report_stuck)
        self._aio: FlavorRunner | None = None
        self._on_record = on_record
        self._default_timeout = default_timeout
        self._limiter = limiter
        self._pending = 0
        self._pending_limit = pending_limit
        self._on_duplicate: OnDuplicate = on_duplicate
        self.session_id = session_id
        self._wall_offset = time.time() - trio.current_time()
        self._jobs = 0
        self._before_close: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self.state.value} tasks={len(self._tasks)} flavor={self._flavor}"
            f"{'' if self.session_id is None else f' session={self.session_id!r}'}>"
        )

    # ------------------------------------------------------------------ records

    def emit(self, record: Record) -> None:
        """Append ``record`` to the stream without waiting, then call ``on_record``.

        ``record.seq`` must come from :meth:`next_seq` just before, so the stream stays ordered.
        A failing ``on_record`` is logged and changes nothing else.
        """
        self._stream.put_nowait(record)
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                logger.exception("on_record callback failed on %s", type(record).__name__)

    def next_seq(self) -> int:
        """Reserve the next sequence number of this stream (for records made outside the core)."""
        self._seq += 1
        return self._seq

    def stamp(self, at: float) -> dict[str, Any]:
        """The keyword arguments every record of this stream carries: session id, wall time."""
        return {"session_id": self.session_id, "wall": at + self._wall_offset}

    def offer(self, make: Callable[[int, float], Record]) -> bool:
        """Append ``make(seq, now)`` if the stream has room (True); False when it is full.

        With :meth:`put`, the one implementation of "forward an output with backpressure":
        a writer that got False awaits :meth:`put` (from asyncio through the adapter).
        """
        if not self._stream.has_room():
            return False
        self._seq += 1
        self.emit(make(self._seq, trio.current_time()))
        return True

    async def put(
        self,
        make: Callable[[int, float], Record],
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Wait while the stream is full, then append ``make(seq, now)``.

        If cancelled while waiting, the record is still appended, then the cancellation
        propagates: an output that was yielded is never dropped. ``wait_for_room`` is how the
        caller's flavour waits for :meth:`wait_for_room` (default: trio's own); this coroutine
        runs in the flavour of whoever awaits it.
        """
        try:
            await (self._stream.wait_for_room() if wait_for_room is None else wait_for_room())
        finally:
            self._seq += 1
            self.emit(make(self._seq, trio.current_time()))

    async def wait_for_room(self) -> None:
        """Wait (trio code) until the stream has room for an output."""
        await self._stream.wait_for_room()

    async def after_output(self) -> None:
        """The trio checkpoint after a fast-path output (a real one every so many outputs)."""
        await self._stream.after_put()

    def _output_maker(self, handle: TaskHandle, event: Any) -> Callable[[int, float], Record]:
        def make(seq: int, at: float) -> Record:
            handle.outputs += 1
            return TaskOutput(seq, at, handle.name, handle.id, event, **self.stamp(at))

        return make

    def offer_output(self, handle: TaskHandle, event: Any) -> int:
        """Forward one output of a generator task without waiting: ``APPENDED``, ``FULL``
        (then await :meth:`put_output`), or ``STALE``: the task's cancel or timeout was
        delivered before it yielded this, so the value is kept for the terminal record (never
        forwarded as stale speech) and the generator must stop there."""
        if handle._cancel_at is not None or handle._scope.cancel_called:
            handle._detail = event
            return STALE
        if not self._stream.has_room():
            return FULL
        handle.outputs += 1
        self._seq += 1
        at = trio.current_time()
        self.emit(TaskOutput(self._seq, at, handle.name, handle.id, event, **self.stamp(at)))
        return APPENDED

    def put_output(
        self,
        handle: TaskHandle,
        event: Any,
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
    ) -> Coroutine[Any, Any, None]:
        """The waiting half of :meth:`offer_output`; see :meth:`put`."""
        return self.put(self._output_maker(handle, event), wait_for_room)

    def events(self) -> AsyncIterator[Record]:
        """Iterate over the supervisor's records, in order (from trio or asyncio code).

        One reader at a time: a second iterator raises ``StreamBusyError`` at once, before
        taking any record. The iteration ends once the supervisor has closed and every record
        has been read; it can go on after the ``async with`` block has exited.

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

    def _refuse(self, handler: object, error: Exception) -> Exception:
        # A coroutine we refuse is closed, so Python does not warn it was never awaited
        # (unless another task already claimed it: then it is not ours to close).
        if type(handler).__name__ == "coroutine" and id(handler) not in _claimed:
            try:
                handler.close()  # type: ignore[attr-defined]
            except Exception:
                pass
        return error

    def create_task(
        self,
        handler: TaskHandler,
        name: str | None = None,
        interruptible: bool = False,
        timeout: float | Literal["default"] | None = "default",
        *,
        flavor: Flavor | None = None,
        on_duplicate: OnDuplicate | None = None,
    ) -> TaskHandle:
        """Start ``handler`` as a background task and return its :class:`TaskHandle`.

        ``handler`` is a coroutine object, an async generator object (each value it yields is
        forwarded as a ``TaskOutput`` record), or an async function / async generator function
        taking no arguments. ``name`` defaults to a readable name never used again in this
        supervisor. A name held by an unfinished task raises ``DuplicateTaskNameError`` with
        ``on_duplicate="error"`` (the supervisor's default), or with ``"replace"`` cancels
        that task (reason ``"replaced"``) and gives the name to the new one. ``timeout`` is in
        seconds (None or ``math.inf``: no limit; omitted: the supervisor's ``default_timeout``);
        past it the task is cancelled and ends as timed out. ``interruptible`` tasks are
        cancelled by :meth:`cancel_interruptible_tasks`. ``flavor`` (default: the supervisor's)
        says whether the code is trio or asyncio code.

        Synchronous: the ``TaskStarted`` record (``TaskQueued`` when the ``limit`` is reached)
        is issued before it returns, so even a task cancelled before it ever ran has a start
        and an end. A coroutine refused here is closed.
        """
        if self.state is not Lifecycle.OPEN and (
            self.state is Lifecycle.CLOSED or interruptible
        ):
            why = (
                "is closed and accepts no new tasks"
                if self.state is Lifecycle.CLOSED
                else "is stopping: only non-interruptible tasks may still be started"
            )
            raise self._refuse(
                handler, SupervisorClosedError(f"create_task({name!r}): the supervisor {why}")
            )
        try:
            self._check_caller("create_task")
            if name is not None:
                if not isinstance(name, str):
                    raise TypeError(
                        f"name must be a str or None, got {type(name).__name__}: {name!r:.80}"
                    )
                if not name:
                    raise ValueError("name must be a non-empty string or None, got ''")
            if timeout == "default":
                timeout = self._default_timeout
            elif timeout is not None:
                timeout = check_timeout(timeout, "timeout")
            if not isinstance(interruptible, bool):
                raise TypeError(
                    f"interruptible must be True or False, got {type(interruptible).__name__}: "
                    f"{interruptible!r:.80}"
                )
            flavor = self._flavor if flavor is None else check_flavor(flavor)
            policy = self._on_duplicate if on_duplicate is None else _check_dup(on_duplicate)
            old = self._tasks.get(name) if name is not None else None
            if old is not None and policy == "error":
                raise DuplicateTaskNameError(
                    f"a task named {name!r} is still {old.state.value}; names must be unique "
                    f"among unfinished tasks (pick another name, name=None for a generated "
                    f"one, or on_duplicate='replace')"
                )
            limiter = self._limiter
            queued = limiter is not None and not limiter._try_acquire()
            if queued and self._pending_limit is not None and (
                self._pending >= self._pending_limit
            ):
                assert limiter is not None
                raise TaskLimitError(
                    f"create_task({name!r}): {limiter.running} tasks are running (limit="
                    f"{limiter.limit}) and {self._pending} wait (pending_limit="
                    f"{self._pending_limit}); wait for some to end or raise the limits"
                )
        except Exception as exc:
            raise self._refuse(handler, exc) from None
        try:
            body, is_gen, base = coerce_handler(handler)
            if id(body) in _claimed:
                raise ValueError(
                    f"{safe_repr(body, 80)} was already given to create_task and has not "
                    f"started yet; one coroutine object makes one task"
                )
        except BaseException:
            if not queued and limiter is not None:
                limiter._running -= 1  # give back the slot taken above
            raise
        if old is not None:
            self._replace(old, self._caller())

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
        handle._is_gen = is_gen
        if type(body).__name__ == "coroutine":
            _claimed.add(id(body))
        self._tasks[name] = handle
        self._seq += 1
        if queued:
            assert limiter is not None
            handle.state = TaskState.PENDING
            self._pending += 1
            limiter._enqueue(handle)
            self.emit(
                TaskQueued(
                    self._seq, now, name, task_id, interruptible, timeout, flavor,
                    limiter.limit, **self.stamp(now),
                )
            )
            return handle
        self.emit(
            TaskStarted(
                self._seq, now, name, task_id, interruptible, timeout, flavor, **self.stamp(now)
            )
        )
        self._launch(handle, now)
        return handle

    def _launch(self, handle: TaskHandle, now: float) -> None:
        if handle.timeout is not None and handle._scope.deadline == math.inf:
            deadline = now + handle.timeout
            handle._scope.deadline = deadline
            if self._watch is not None:
                self._watch.deadline(handle, deadline, handle.timeout)
        self._nursery.start_soon(self._run, handle, name=handle.name)

    def _start_pending(self, handle: TaskHandle) -> None:
        """Called by the limiter: a slot is free for the pending ``handle``."""
        self._pending -= 1
        now = trio.current_time()
        handle.state = TaskState.RUNNING
        handle.started_at = now
        self._seq += 1
        self.emit(
            TaskStarted(
                self._seq, now, handle.name, handle.id, handle.interruptible, handle.timeout,
                handle.flavor, **self.stamp(now),
            )
        )
        self._launch(handle, now)

    def _replace(self, old: TaskHandle, caller: TaskHandle | None) -> None:
        """``old`` loses its name to a new task: it is cancelled ("replaced") and, if it is
        still running, goes on under a name that says so until it ends."""
        origin = "handler" if caller is None else f"task:{caller.name}"
        self._cancel(old, "replaced", origin)
        if not old.done:
            del self._tasks[old.name]
            renamed = f"{old.name}~replaced-{old.id}"
            self._tasks[renamed] = old

    def _runner(self, handle: TaskHandle) -> FlavorRunner | None:
        if handle.flavor == "trio":
            return None
        if self._aio is None:
            from .._adapters.aio import AsyncioRunner  # loads trio-asyncio on first use

            self._aio = AsyncioRunner()
        return self._aio

    async def _run_trio(self, handle: TaskHandle, body: Any, is_gen: bool) -> Any:
        if not is_gen:
            return await body
        stream = self._stream
        try:
            async for event in body:
                status = self.offer_output(handle, event)
                if status == APPENDED:
                    await stream.after_put()
                elif status == FULL:
                    await self.put(self._output_maker(handle, event))
                else:  # STALE: stop the generator where it yielded
                    break
        finally:
            await body.aclose()
        return None

    async def _run(self, handle: TaskHandle) -> None:
        _current_task.set(handle)
        body, is_gen = handle._body, handle._is_gen
        handle._body = None
        _claimed.discard(id(body))
        if handle.done:  # cancelled while pending: already ended
            return
        if handle._cancel_at is not None or handle._scope.cancel_called:
            # Cancelled (or timed out) before it ever ran: it does not start at all.
            if is_gen:
                await body.aclose()
            else:
                body.close()
            self._end_cancelled(handle)
            return
        escalate: BaseException | None = None
        result: Any = None
        try:
            with handle._scope:
                runner = self._runner(handle)
                if runner is None:
                    result = await self._run_trio(handle, body, is_gen)
                else:
                    result = await runner.run_task(self, handle, body, is_gen)
        except trio.Cancelled:
            # An enclosing scope was cancelled (the supervisor's nursery): closed.
            self._end(handle, TaskState.CANCELLED, handle.cancel_reason or "closed")
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            escalate = exc
            self._end(handle, TaskState.FAILED, exc)
        except BaseException as exc:
            # Any other exception (GeneratorExit, asyncio's CancelledError raised by the task
            # itself, user BaseException subclasses) is this task's failure, nobody else's.
            misuse = flavor_misuse(exc, handle.flavor, f"task {handle.name!r}", "create_task")
            self._end(handle, TaskState.FAILED, exc if misuse is None else misuse)
        else:
            if is_gen and handle._detail is not None:
                result = handle._detail  # a stale output kept for the terminal record
            if handle.cancel_reason is not None or handle._scope.cancel_called:
                self._end_cancelled(handle, result)
            else:
                self._end(handle, TaskState.FINISHED, result)
        if escalate is not None:
            raise escalate

    def _end_cancelled(self, handle: TaskHandle, result: Any = None) -> None:
        if handle.cancel_reason is None and handle.state is not TaskState.PENDING:
            self._end(handle, TaskState.TIMED_OUT, handle.timeout, result)
        else:
            self._end(handle, TaskState.CANCELLED, handle.cancel_reason or "closed", result)

    def _end(self, handle: TaskHandle, state: TaskState, detail: Any, result: Any = None) -> None:
        """Record that ``handle`` ended; ``detail`` is the result, error, reason or timeout.

        The state changes first, then the waiters are woken, then the record is emitted (and
        ``on_record`` called), so a failing callback cannot leave a task half-ended.
        """
        now = trio.current_time()
        was_pending = handle.state is TaskState.PENDING
        handle.state = state
        handle.ended_at = now
        name = handle.name
        tasks = self._tasks
        if tasks.get(name) is handle:
            del tasks[name]
        else:  # a replaced task, running on under another name
            for key, value in list(tasks.items()):
                if value is handle:
                    del tasks[key]
        if state is TaskState.FINISHED:
            handle._detail = detail
        elif state is TaskState.FAILED:
            handle._detail = detail
        else:
            handle._detail = detail
            if state is TaskState.CANCELLED:
                handle.cancel_reason = detail
        if was_pending:
            self._pending -= 1
            if self._limiter is not None:
                self._limiter._forget(handle)
        elif self._limiter is not None:
            self._limiter._release()
        if self._watch is not None:
            self._watch.ended(handle.timeout is not None, len(tasks))
        if self._history.maxlen:
            self._history.append(handle.info())
        if handle._done is not None:
            handle._done.set()
        if self._idle_lot and len(tasks) <= 1:
            self._idle_lot.unpark_all()
        self._seq += 1
        stamp = self.stamp(now)
        record: Record
        if state is TaskState.FINISHED:
            record = TaskFinished(self._seq, now, name, handle.id, detail, **stamp)
        elif state is TaskState.CANCELLED:
            record = TaskCancelled(
                self._seq, now, name, handle.id, detail, handle.cancel_origin, result, **stamp
            )
        elif state is TaskState.TIMED_OUT:
            record = TaskTimedOut(self._seq, now, name, handle.id, detail, result, **stamp)
            _log(
                logging.WARNING,
                "task %r timed out and was cancelled; raise its timeout= in create_task "
                "(or pass timeout=None) if it needs longer",
                name,
            )
        else:
            record = TaskFailed(self._seq, now, name, handle.id, detail, **stamp)
            _log(logging.ERROR, "task %r failed", name, exc=detail)
        self.emit(record)

    # ------------------------------------------------------------------ cancelling

    def _cancel(self, handle: TaskHandle, reason: str | None, origin: str | None = None) -> bool:
        """Cancel ``handle`` for ``reason`` (None: its timeout); False if it had ended.

        The first cancellation decides how the task is reported; later ones change nothing.
        """
        if handle.state is TaskState.PENDING:
            handle.cancel_reason = reason or "closed"
            handle.cancel_origin = origin
            self._end(handle, TaskState.CANCELLED, handle.cancel_reason)
            return True
        if handle.state is not TaskState.RUNNING:
            return False
        if handle._cancel_at is None:
            now = trio.current_time()
            deadline = handle._scope.deadline
            if now >= deadline:
                # The deadline already passed: it is a timeout (even if trio has not delivered
                # it yet), cancelled at its deadline and watched as such.
                handle._cancel_at = deadline
                handle._scope.cancel()
                return True
            if reason is not None:
                handle.cancel_reason = reason
                handle.cancel_origin = origin
            handle._scope.cancel()
            handle._cancel_at = now
            if self._watch is not None:
                self._watch.cancelled(handle, now)
        return True

    def _cancel_by_call(self, handle: TaskHandle, reason: str, origin: str | None) -> bool:
        self._check_caller("cancel")
        if origin is None:
            me = self._caller()
            origin = "handler" if me is None else f"task:{me.name}"
        return self._cancel(handle, reason, origin)

    def _set_deadline(self, handle: TaskHandle, deadline: float) -> None:
        self._check_caller("deadline")
        if handle.done:
            raise ValueError(f"task {handle.name!r} has ended; its deadline cannot change")
        handle._scope.deadline = deadline
        if self._watch is not None and handle.state is TaskState.RUNNING:
            self._watch.deadline(handle, deadline, None)

    def _caller(self) -> TaskHandle | None:
        handle = _current_task.get()
        if handle is not None and handle._sup is self and handle.state is TaskState.RUNNING:
            return handle
        return None

    def cancel_task(self, name: str, *, origin: str | None = None) -> bool:
        """Cancel the unfinished task called ``name`` (reason ``"cancel_task"``).

        Returns False when no unfinished task has that name. Never deferred. ``origin`` says
        who asked (default: ``"handler"``, or ``"task:NAME"`` when called from a task).
        """
        self._check_caller("cancel_task")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}: {name!r:.80}")
        handle = self._tasks.get(name)
        if handle is None:
            return False
        return self._cancel_by_call(handle, "cancel_task", origin)

    def cancel_interruptible_tasks(self, *, origin: str | None = None) -> int:
        """Cancel every unfinished interruptible task (reason ``"interrupted"``).

        A task inside :func:`uninterruptible` is cancelled when its outermost such block exits.
        The calling task (if the call comes from a task) is left alone. Returns how many tasks
        were cancelled or had the interruption deferred.
        """
        self._check_caller("cancel_interruptible_tasks")
        me = self._caller()
        count = 0
        for handle in list(self._tasks.values()):
            if handle.interruptible and handle is not me:
                if handle._shield_depth and handle.state is TaskState.RUNNING:
                    handle._pending_interrupt = True
                    if handle.cancel_origin is None:
                        handle.cancel_origin = origin
                    count += 1
                elif self._cancel(handle, "interrupted", origin):
                    count += 1
        return count

    def cancel_all_tasks(self, *, origin: str | None = None) -> int:
        """Cancel every unfinished task but the calling one (reason ``"cancel_all"``).

        Never deferred. Returns how many tasks were cancelled.
        """
        self._check_caller("cancel_all_tasks")
        me = self._caller()
        if origin is None:
            origin = "handler" if me is None else f"task:{me.name}"
        count = 0
        for handle in list(self._tasks.values()):
            if handle is not me and self._cancel(handle, "cancel_all", origin):
                count += 1
        return count

    def has_unfinished_tasks(self) -> bool:
        """True while any task (the calling one included) is pending or running."""
        self._check_caller("has_unfinished_tasks")
        return bool(self._tasks)

    def wait_for_all_tasks(self, timeout: float | None = None) -> Awaitable[bool]:
        """Wait until no task is unfinished; True then, False if ``timeout`` passed first.

        Works from trio and from asyncio code. Tasks started while waiting are waited for
        too. Called from a task, it waits for every other task. Cancelling the waiter affects
        no task.
        """
        self._check_caller("wait_for_all_tasks")
        limit = check_timeout(timeout, "timeout")
        own = 1 if self._caller() is not None else 0
        return flavored(self._wait_for_all, limit, own)

    async def _wait_for_all(self, timeout: float | None, own: int) -> bool:
        if len(self._tasks) <= own:
            await trio.lowlevel.checkpoint()
            return True
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while len(self._tasks) > own:
                await self._idle_lot.park()
            return True
        return False

    # ------------------------------------------------------------------ inspecting

    def _lookup(self, name: str, task_id: int) -> TaskHandle | None:
        handle = self._tasks.get(name)
        if handle is not None and handle.id == task_id:
            return handle
        return None

    def get_task(self, name: str) -> TaskHandle | TaskInfo | None:
        """The unfinished task called ``name`` (its handle), else the :class:`TaskInfo` of the
        latest finished one kept in the history, else None."""
        self._check_caller("get_task")
        handle = self._tasks.get(name)
        if handle is not None:
            return handle
        for old in reversed(self._history):
            if old.name == name:
                return old
        return None

    def snapshot(self) -> tuple[TaskInfo, ...]:
        """Frozen pictures of the kept finished tasks (oldest first), then the unfinished ones.

        History keeps at most ``history`` finished tasks, as text (a failure's type, message
        and traceback), never their results or live exceptions."""
        self._check_caller("snapshot")
        return tuple(self._history) + tuple(h.info() for h in self._tasks.values())

    @property
    def closed(self) -> bool:
        """True once the supervisor is stopping or closed (it refuses some or all tasks)."""
        return self.state is not Lifecycle.OPEN

    # ------------------------------------------------------------------ stuck tasks

    def _report_stuck(self, handle: TaskHandle) -> None:
        assert handle._cancel_at is not None
        handle._stuck_count += 1
        reason = handle.cancel_reason or "timed_out"
        _log(
            logging.WARNING,
            "task %r was cancelled (%s) %g s ago and is still running: its code ignores "
            "cancellation (a swallowed CancelledError, or a shielded section that never ends)",
            handle.name,
            reason,
            trio.current_time() - handle._cancel_at,
        )
        if self._aio is not None and handle.flavor == "asyncio":
            self._aio.cancel_again(handle)
        self._seq += 1
        now = trio.current_time()
        self.emit(
            TaskStuck(
                self._seq, now, handle.name, handle.id, reason, handle._cancel_at,
                handle._stuck_count, **self.stamp(now),
            )
        )

    # ------------------------------------------------------------------ runtime hooks

    def start_job(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``fn()`` in the supervisor's nursery as runtime machinery, not as a task.

        The supervisor's close waits for jobs as for tasks, but jobs have no records and are
        not cancelled by closing: their owner ends them.
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

    def cancel_where(
        self, predicate: Callable[[TaskHandle], bool], reason: str, origin: str | None = None
    ) -> int:
        """Cancel the unfinished tasks ``predicate`` selects, with ``reason``; never deferred."""
        count = 0
        for handle in list(self._tasks.values()):
            if predicate(handle) and self._cancel(handle, reason, origin):
                count += 1
        return count

    def begin_stop(self) -> None:
        """Enter ``STOPPING``: interruptible tasks may no longer be created."""
        if self.state is Lifecycle.OPEN:
            self.state = Lifecycle.STOPPING

    def close_to_new_tasks(self) -> None:
        """Enter ``CLOSED``: no task may be created any more."""
        self.state = Lifecycle.CLOSED

    def call_before_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once every task and job has ended, just before the stream closes."""
        self._before_close.append(fn)

    async def _aclose(self) -> None:
        self.state = Lifecycle.CLOSED
        for handle in list(self._tasks.values()):
            self._cancel(handle, "closed", "close")
        while self._tasks or self._jobs:
            await self._idle_lot.park()
        if self._watch is not None:
            self._watch.close()


def _log(level: int, msg: str, *args: Any, exc: BaseException | None = None) -> None:
    """Log without ever raising into the supervisor (a broken ``__str__`` stays the log's
    problem)."""
    try:
        logger.log(level, msg, *args, exc_info=exc)
    except Exception:
        pass


def _check_dup(value: object) -> OnDuplicate:
    if value == "error":
        return "error"
    if value == "replace":
        return "replace"
    raise ValueError(f"on_duplicate must be 'error' or 'replace', got {value!r:.80}")


def _find_escape(exc: BaseException) -> BaseException | None:
    """The first KeyboardInterrupt or SystemExit inside ``exc`` (an exception group)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_escape(inner)
            if found is not None:
                return found
    return None


@asynccontextmanager
async def open_supervisor(
    *,
    flavor: Flavor = "trio",
    max_buffer: int = 1024,
    history: int = 1000,
    stuck_after: float | None = 10.0,
    on_record: RecordSink | None = None,
    default_timeout: float | None = 30,
    limit: int | Limiter | None = None,
    pending_limit: int | None = None,
    on_duplicate: OnDuplicate = "error",
    session_id: str | None = None,
) -> AsyncIterator[Supervisor]:
    """Open a :class:`Supervisor` (one trio nursery) for the duration of the block.

    ``flavor`` is the default flavour of its tasks; ``max_buffer`` how many records may wait
    for the reader before generator tasks block; ``history`` how many finished tasks are kept
    (as frozen :class:`TaskInfo`) for :meth:`Supervisor.snapshot`; ``stuck_after`` the grace
    time (seconds, None to disable) before a task that ignores its cancellation is reported by
    a ``TaskStuck`` record (and again every ``stuck_after`` seconds); ``on_record`` a
    synchronous callback given every record as it is appended (it must not block; its
    failures are logged and ignored); ``default_timeout`` the timeout of tasks created without
    ``timeout=``; ``limit`` (an int or a shared :class:`Limiter`) caps running tasks, the
    excess waiting in ``PENDING``, at most ``pending_limit`` of them (``TaskLimitError``
    beyond); ``on_duplicate`` what a duplicate name does (see ``create_task``);
    ``session_id`` is carried by every record.

    Leaving the block cancels every unfinished task (reason ``"closed"``) and returns once each
    has ended and its last records are in the stream. An exception raised in the block
    propagates unchanged after that; ``KeyboardInterrupt`` and ``SystemExit`` (from the block
    or a task) leave it unwrapped.
    """
    flavor = check_flavor(flavor)
    check_count(max_buffer, "max_buffer")
    check_count(history, "history", 0)
    stuck_after = check_timeout(stuck_after, "stuck_after")
    default_timeout = check_timeout(default_timeout, "default_timeout")
    limiter: Limiter | None
    if limit is None or isinstance(limit, Limiter):
        limiter = limit
    else:
        limiter = Limiter(check_count(limit, "limit"))
    if pending_limit is not None:
        check_count(pending_limit, "pending_limit", 0)
    on_duplicate = _check_dup(on_duplicate)
    if session_id is not None and not isinstance(session_id, str):
        raise TypeError(f"session_id must be a str or None, got {type(session_id).__name__}")
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
                default_timeout=default_timeout,
                limiter=limiter,
                pending_limit=pending_limit,
                on_duplicate=on_duplicate,
                session_id=session_id,
            )
            try:
                yield sup
            except Exception as exc:
                # Kept aside so that the nursery does not wrap it in an ExceptionGroup.
                body_error = exc
            finally:
                await sup._aclose()
    except BaseExceptionGroup as group:
        escape = _find_escape(group)
        if escape is not None:
            raise escape from None
        raise
    finally:
        if sup is not None:
            sup.state = Lifecycle.CLOSED
            try:
                for fn in sup._before_close:
                    try:
                        fn()
                    except Exception:
                        logger.exception("taskrunner: a close callback failed")
            finally:
                sup._stream.close()
    if body_error is not None:
        raise body_error
