"""Running a task: the trio runner, the asyncio runner's hook, and how a task ends.

Every task ends through :meth:`TaskRunning._end` exactly once: its state changes first, then
waiters wake, then its terminal record is emitted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable
from functools import partial
from typing import Any

import trio
from trio.lowlevel import ParkingLot

from ._checks import flavor_misuse
from ._limiter import Limiter
from ._outlet import RecordOutlet
from ._task_context import FlavorRunner, _claimed, _current_task, _run_code
from ._watch import StuckWatch
from .handle import TaskHandle, TaskState
from .records import (
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)

__all__ = ["TaskRunning"]

logger = logging.getLogger("taskrunner")


class TaskRunning(RecordOutlet):
    """Base of :class:`taskrunner.Supervisor`: starting, running and ending tasks."""

    _nursery: trio.Nursery
    _tasks: dict[str, TaskHandle]
    _history: deque[tuple[Any, ...]]
    _watch: StuckWatch | None
    _limiter: Limiter | None
    _pending: int
    _idle_lot: ParkingLot
    _aio: FlavorRunner | None
    _stuck_after: float | None

    def _cancel(self, handle: TaskHandle, reason: str | None, origin: str | None = None) -> bool:
        raise NotImplementedError  # the supervisor's

    def _launch(self, handle: TaskHandle) -> None:
        """Start the trio task of ``handle``, whose scope already carries its deadline."""
        watch = self._watch
        if watch is not None:
            if handle._deadline_set:
                # Set through handle.deadline while pending (math.inf: none): it holds. (Already
                # past: the task ends timed out without running, nothing to watch.)
                deadline = handle._scope.deadline
                if deadline > self._now():
                    watch.deadline(handle, deadline, None)
            elif handle.timeout is not None:
                watch.deadline(handle, handle._scope.deadline, handle.timeout)
        self._nursery.start_soon(self._run, handle, name=handle.name)

    def _start_pending(self, handle: TaskHandle) -> None:
        """Called by the limiter: a slot is free for the pending ``handle``."""
        self._pending -= 1
        now = self._now()
        handle.state = TaskState.RUNNING
        handle.started_at = now
        if handle.timeout is not None and not handle._deadline_set:
            handle._scope.deadline = now + handle.timeout
        self._seq += 1
        self.emit(
            TaskStarted(
                self._seq, now, handle.name, handle.id, handle.interruptible, handle.timeout,
                handle.flavor, session_id=self.session_id, wall=now + self._wall_offset,
            )
        )
        self._launch(handle)

    def _replace(self, old: TaskHandle, caller: TaskHandle | None) -> None:
        """``old`` loses its name to a new task: it is cancelled ("replaced") and, if it is
        still running, goes on under a name that says so until it ends."""
        origin = "handler" if caller is None else f"task:{caller.name}"
        self._cancel(old, "replaced", origin)
        if not old.done:
            del self._tasks[old.name]
            self._tasks[replaced_key(old.name, old.id)] = old

    def _runner(self, handle: TaskHandle) -> FlavorRunner:
        if self._aio is None:
            from .._adapters.aio import AsyncioRunner  # loads trio-asyncio on first use

            self._aio = AsyncioRunner()
        return self._aio

    async def _run(self, handle: TaskHandle) -> None:
        # The one frame a task adds above its own code: a trio coroutine task awaits its body
        # right here (no wrapper coroutine per task). Its locals are kept to the few it needs,
        # since this frame lives as long as the task (twice: trio makes a frame object of it).
        # current_task() finds the handle from this frame (see _task_context), so a trio task
        # binds no context variable; asyncio code, which runs in trio-asyncio's own trio
        # task, finds it through the variable its asyncio task inherits (run_in_asyncio binds
        # the calling task in the asyncio task it makes).
        if handle.flavor != "trio":
            _current_task.set(handle)
        if not self._may_run(handle):
            if handle.state is TaskState.RUNNING:  # cancelled or timed out before it ran
                if handle._is_gen:
                    await handle._body.aclose()
                else:
                    handle._body.close()
                self._end_cancelled(handle)
            return
        result: Any = None  # stays None when the task's own scope catches its cancel
        try:
            with handle._scope:
                if handle.flavor == "trio" and not handle._is_gen:
                    result = await handle._body
                else:
                    result = await self._driver(handle)
        except trio.Cancelled:
            # An enclosing scope was cancelled (the supervisor's nursery): closed.
            self._end(handle, TaskState.CANCELLED, handle.cancel_reason or "closed")
            raise
        except BaseException as exc:
            if self._failed(handle, exc):
                raise  # KeyboardInterrupt / SystemExit: recorded, and the run must end
        else:
            self._returned(handle, result)

    def _driver(self, handle: TaskHandle) -> Awaitable[Any]:
        """What runs the body of an asyncio-flavoured task or a generator task (made here, so
        that _run's frame stays small)."""
        if handle.flavor != "trio":
            return self._runner(handle).run_task(self, handle, handle._body, handle._is_gen)
        return self.drive_generator(
            handle._body, partial(self.offer_output, handle), partial(self.put_output, handle)
        )

    def _may_run(self, handle: TaskHandle) -> bool:
        """Whether the trio task of ``handle`` runs its body: not when the task already ended
        while pending, nor when it was cancelled (or timed out) before it ever ran."""
        if _claimed:
            _claimed.discard(id(handle._body))
        if handle.state is not TaskState.RUNNING:  # cancelled while pending: already ended
            return False
        return handle._cancel_at is None and not handle._scope.cancel_called

    def _failed(self, handle: TaskHandle, exc: BaseException) -> bool:
        """``handle``'s body raised ``exc`` (not trio's Cancelled); True if it must propagate.

        Any exception (GeneratorExit, asyncio's CancelledError raised by the task itself, user
        BaseException subclasses) is this task's failure, nobody else's; KeyboardInterrupt and
        SystemExit are recorded and then end the run.
        """
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self._end(handle, TaskState.FAILED, exc)
            return True
        misuse = flavor_misuse(exc, handle.flavor, f"task {handle.name!r}", "create_task")
        self._end(handle, TaskState.FAILED, exc if misuse is None else misuse)
        return False

    def _returned(self, handle: TaskHandle, result: Any) -> None:
        """``handle``'s body returned ``result`` (None for a generator)."""
        if handle._is_gen and handle._detail is not None:
            result = handle._detail  # a stale output kept for the terminal record
        if handle.cancel_reason is not None or handle._scope.cancel_called:
            self._end_cancelled(handle, result)
        else:
            self._end(handle, TaskState.FINISHED, result)

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
        now = self._now()  # the one clock read of a task's end
        was_pending = handle.state is TaskState.PENDING
        if not was_pending:
            handle._body = None
        handle.state = state
        handle.ended_at = now
        handle._detail = detail
        name = handle.name
        tasks = self._tasks
        if tasks.get(name) is handle:
            del tasks[name]
        else:  # a replaced task, running on under another name
            for key, value in list(tasks.items()):
                if value is handle:
                    del tasks[key]
        if state is TaskState.CANCELLED:
            handle.cancel_reason = detail
        if was_pending:
            self._pending -= 1
            if self._limiter is not None:
                self._limiter._forget(handle)
        if self._watch is not None and handle.timeout is not None:
            self._watch.ended(True, len(tasks))
        if self._history.maxlen:
            # A small tuple (the TaskInfo is made when history is read): no result, no live
            # exception, only a failure's text.
            self._history.append(handle._history_row())
        if handle._done is not None:
            handle._done.set()
        if len(tasks) <= 1 and self._idle_lot:
            self._idle_lot.unpark_all()
        self._seq += 1
        seq = self._seq
        sid = self.session_id
        wall = now + self._wall_offset
        record: Record
        if state is TaskState.FINISHED:
            record = TaskFinished(seq, now, name, handle.id, detail, session_id=sid, wall=wall)
        elif state is TaskState.CANCELLED:
            record = TaskCancelled(
                seq, now, name, handle.id, detail, handle.cancel_origin, result,
                session_id=sid, wall=wall,
            )
        elif state is TaskState.TIMED_OUT:
            record = TaskTimedOut(
                seq, now, name, handle.id, detail, result, session_id=sid, wall=wall
            )
            _log(
                logging.WARNING,
                "task %r timed out and was cancelled; raise its timeout= in create_task "
                "(or pass timeout=None) if it needs longer",
                name,
            )
        else:
            record = TaskFailed(seq, now, name, handle.id, detail, session_id=sid, wall=wall)
            _log(logging.ERROR, "task %r failed", name, exc=detail)
        self.emit(record)
        if not was_pending and self._limiter is not None:
            # Only now may a pending task take the slot: its TaskStarted comes after this
            # terminal record, so the stream never shows more than `limit` tasks running.
            self._limiter._release()

    def _report_stuck(self, handle: TaskHandle, count: int) -> None:
        """Report ``handle`` stuck for the ``count``-th time (the watch counts)."""
        assert handle._cancel_at is not None
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
        now = self._now()
        self.emit(
            TaskStuck(
                self._seq, now, handle.name, handle.id, reason, handle._cancel_at,
                count, session_id=self.session_id, wall=now + self._wall_offset,
            )
        )


_run_code.append(TaskRunning._run.__code__)


def replaced_key(name: str, task_id: int) -> str:
    """The name a replaced task is filed under while it ends (its records keep its name)."""
    return f"{name}~replaced-{task_id}"


def _close_unstarted(body: Any) -> None:
    """Close a task body that never ran, so Python does not warn it was never awaited."""
    _claimed.discard(id(body))
    if type(body).__name__ == "coroutine":
        body.close()
    # An async generator that never started needs no closing.


def _log(level: int, msg: str, *args: Any, exc: BaseException | None = None) -> None:
    """Log without ever raising into the supervisor (a broken ``__str__`` stays the log's
    problem)."""
    try:
        logger.log(level, msg, *args, exc_info=exc)
    except Exception:
        pass


