"""The supervisor: one trio nursery running named, cancellable, timed tasks."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from threading import get_ident as _get_ident
from typing import Any, Literal, TypeAlias

import trio
from trio.lowlevel import ParkingLot

from ._checks import (
    Flavor,
    check_count,
    check_flavor,
    check_timeout,
    coerce_handler,
    safe_repr,
)
from ._flavored import flavored
from ._limiter import Limiter
from ._outlet import RecordSink
from ._running import TaskRunning, _close_unstarted, replaced_key
from ._task_context import (
    APPENDED,
    FULL,
    STALE,
    FlavorRunner,
    Lifecycle,
    _claimed,
    current_task,
    uninterruptible,
)
from ._watch import StuckWatch
from .errors import (
    DuplicateTaskNameError,
    SupervisorClosedError,
    TaskLimitError,
    WrongContextError,
)
from .handle import TaskHandle, TaskInfo, TaskState
from .records import Record, TaskQueued, TaskStarted
from .stream import RecordStream

__all__ = [
    "APPENDED",
    "FULL",
    "STALE",
    "Flavor",
    "FlavorRunner",
    "Lifecycle",
    "RecordSink",
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
OnDuplicate: TypeAlias = Literal["error", "replace"]



class Supervisor(TaskRunning):
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
        # finished tasks as TaskInfo field tuples (see TaskHandle._history_row)
        self._history: deque[tuple[Any, ...]] = deque(maxlen=history)
        self._next_id = 0
        self._seq = 0
        self.state = Lifecycle.OPEN
        self._token = trio.lowlevel.current_trio_token()
        self._thread = _get_ident()
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
        # The run's clock, read directly: trio.current_time() is three Python calls deep, and
        # it is read at every start, output and end.
        self._now: Callable[[], float] = trio.lowlevel.current_clock().current_time
        self._wall_offset = time.time() - self._now()
        self._jobs = 0
        self._before_close: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self.state.value} tasks={len(self._tasks)} flavor={self._flavor}"
            f"{'' if self.session_id is None else f' session={self.session_id!r}'}>"
        )

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
            if _get_ident() != self._thread:
                # Not the opening run's thread: the exact WrongContextError. (While the
                # supervisor is open, its thread runs no other trio run, so the same thread
                # means the same run: the token check is only needed for other threads.)
                self._check_caller("create_task")
            if name is not None:
                if type(name) is not str:
                    if not isinstance(name, str):
                        raise TypeError(
                            f"name must be a str or None, got {type(name).__name__}: "
                            f"{name!r:.80}"
                        )
                if not name:
                    raise ValueError("name must be a non-empty string or None, got ''")
            if timeout == "default":
                timeout = self._default_timeout
            elif timeout is not None:
                timeout = check_timeout(timeout, "timeout")
            if interruptible is not False and interruptible is not True:
                raise TypeError(
                    f"interruptible must be True or False, got {type(interruptible).__name__}: "
                    f"{interruptible!r:.80}"
                )
            flavor = self._flavor if flavor is None else check_flavor(flavor)
            old = None
            if name is not None:
                old = self._tasks.get(name)
                if old is not None and (
                    self._on_duplicate if on_duplicate is None else _check_dup(on_duplicate)
                ) == "error":
                    raise DuplicateTaskNameError(
                        f"a task named {name!r} is still {old.state.value}; names must be "
                        f"unique among unfinished tasks (pick another name, name=None for a "
                        f"generated one, or on_duplicate='replace')"
                    )
            if on_duplicate is not None and old is None:
                _check_dup(on_duplicate)
            limiter = self._limiter
            queued = False
            if limiter is not None:
                queued = not limiter._try_acquire()
                if queued and self._pending_limit is not None and (
                    # a pending task this one replaces gives its place in the queue up first
                    self._pending - (old is not None and old.state is TaskState.PENDING)
                    >= self._pending_limit
                ):
                    raise TaskLimitError(
                        f"create_task({name!r}): {limiter.running} tasks are running (limit="
                        f"{limiter.limit}) and {self._pending} wait (pending_limit="
                        f"{self._pending_limit}); wait for some to end or raise the limits"
                    )
        except Exception as exc:
            raise self._refuse(handler, exc) from None
        try:
            body, is_gen, base = coerce_handler(handler)
            # Only an object the caller passed can be given twice (one made here by calling
            # the function is nobody else's).
            given = body is handler and not is_gen
            if given and id(body) in _claimed:
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
        now = self._now()  # the one clock read of a task's start
        # The deadline goes into the scope as it is made (setting it later costs more); a
        # pending task gets it when it starts.
        scope = (
            trio.CancelScope(deadline=now + timeout)
            if timeout is not None and not queued
            else trio.CancelScope()
        )
        handle = TaskHandle(self, name, task_id, interruptible, timeout, flavor, now, scope)
        handle._body = body
        handle._is_gen = is_gen
        if given:
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
                self._seq, now, name, task_id, interruptible, timeout, flavor,
                session_id=self.session_id, wall=now + self._wall_offset,
            )
        )
        self._launch(handle)
        return handle

    # ------------------------------------------------------------------ cancelling

    def _cancel(
        self,
        handle: TaskHandle,
        reason: str | None,
        origin: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Cancel ``handle`` for ``reason`` (None: its timeout); False if it had ended.

        The first cancellation decides how the task is reported; later ones change nothing.
        A caller cancelling many tasks passes one clock reading ``now`` for all of them.
        """
        if handle.state is TaskState.PENDING:
            handle.cancel_reason = reason or "closed"
            handle.cancel_origin = origin
            body, handle._body = handle._body, None
            _close_unstarted(body)
            self._end(handle, TaskState.CANCELLED, handle.cancel_reason)
            return True
        if handle.state is not TaskState.RUNNING:
            return False
        if handle._cancel_at is None:
            if now is None:
                now = self._now()
            scope = handle._scope
            deadline = scope.deadline
            if now >= deadline:
                # The deadline already passed: it is a timeout (even if trio has not delivered
                # it yet), cancelled at its deadline and watched as such.
                handle._cancel_at = deadline
                scope.cancel()
                return True
            if reason is not None:
                handle.cancel_reason = reason
                handle.cancel_origin = origin
            scope.cancel()
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
        scope = handle._scope
        if handle.state is TaskState.RUNNING and scope.cancel_called:
            # Already cancelled or timed out: its end is decided and the deadline no longer
            # applies (moving it would hide a timeout from the stuck watch, or let a later
            # cancel relabel the timeout).
            return
        scope.deadline = deadline
        handle._deadline_set = True
        if self._watch is not None and handle.state is TaskState.RUNNING:
            self._watch.deadline(handle, deadline, None)

    def _caller(self) -> TaskHandle | None:
        handle = current_task()
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
        if origin is None:
            origin = "handler" if me is None else f"task:{me.name}"
        count = 0
        now = self._now()
        for handle in list(self._tasks.values()):
            if handle.interruptible and handle is not me:
                if handle._shield_depth and handle.state is TaskState.RUNNING:
                    handle._pending_interrupt = True
                    if handle.cancel_origin is None:
                        handle.cancel_origin = origin
                    count += 1
                elif self._cancel(handle, "interrupted", origin, now):
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
        now = self._now()
        for handle in list(self._tasks.values()):
            if handle is not me and self._cancel(handle, "cancel_all", origin, now):
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
        # A replaced task still ending is filed under another name.
        handle = self._tasks.get(replaced_key(name, task_id))
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
        for row in reversed(self._history):
            if row[0] == name:
                return TaskInfo(*row)
        return None

    def snapshot(self) -> tuple[TaskInfo, ...]:
        """Frozen pictures of the kept finished tasks (oldest first), then the unfinished ones.

        History keeps at most ``history`` finished tasks, as text (a failure's type, message
        and traceback), never their results or live exceptions."""
        self._check_caller("snapshot")
        return tuple(TaskInfo(*row) for row in self._history) + tuple(
            h.info() for h in self._tasks.values()
        )

    @property
    def closed(self) -> bool:
        """True once the supervisor is stopping or closed (it refuses some or all tasks)."""
        return self.state is not Lifecycle.OPEN

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
        now = self._now()
        for handle in list(self._tasks.values()):
            self._cancel(handle, "closed", "close", now)
        while self._tasks or self._jobs:
            await self._idle_lot.park()
        if self._watch is not None:
            self._watch.close()


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

