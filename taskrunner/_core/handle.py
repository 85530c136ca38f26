"""TaskHandle: the caller's view of one supervised task."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import attrs
import outcome
import trio

from ._checks import check_timeout
from ._flavored import flavored
from .errors import TaskCancelledError, TaskTimeoutError
from .records import error_to_dict

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["TaskHandle", "TaskInfo", "TaskState"]


class TaskState(enum.Enum):
    """Where a task is in its life. Every state but ``PENDING`` and ``RUNNING`` is final."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@attrs.frozen
class TaskInfo:
    """A frozen picture of one task, as returned by ``Supervisor.snapshot()``."""

    name: str
    id: int
    state: TaskState
    flavor: str
    interruptible: bool
    timeout: float | None
    started_at: float
    ended_at: float | None
    outputs: int
    cancel_reason: str | None
    cancel_origin: str | None = None
    #: for a failed task: its error's ``type``, ``message`` and formatted ``traceback`` (text,
    #: not the live exception: history keeps no frames or locals alive).
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, with the state as its string value."""
        d = attrs.asdict(self)
        d["state"] = self.state.value
        return d


class TaskHandle:
    """A task created by :meth:`Supervisor.create_task`.

    Attributes are read-only for callers: ``name``, ``id`` (unique for the supervisor's life,
    while a name can be used again once its task has ended), ``state``, ``flavor``,
    ``interruptible``, ``timeout``, ``started_at`` and ``ended_at`` (trio clock; ``ended_at``
    is None while running; for a task that waited in ``PENDING``, ``started_at`` is when it
    started), ``outputs`` (events yielded so far), ``cancel_reason`` and ``cancel_origin``;
    ``deadline`` is readable and settable.
    """

    __slots__ = (
        "_body",
        "_cancel_at",
        "_deadline_set",
        "_detail",
        "_done",
        "_is_gen",
        "_pending_interrupt",
        "_scope",
        "_shield_depth",
        "_sup",
        "cancel_origin",
        "cancel_reason",
        "ended_at",
        "flavor",
        "id",
        "interruptible",
        "name",
        "outputs",
        "started_at",
        "state",
        "timeout",
    )

    def __init__(
        self,
        sup: Supervisor,
        name: str,
        id: int,
        interruptible: bool,
        timeout: float | None,
        flavor: str,
        started_at: float,
        scope: trio.CancelScope,
    ) -> None:
        self._sup = sup
        self.name = name
        self.id = id
        self.interruptible = interruptible
        self.timeout = timeout
        self.flavor = flavor
        self.started_at = started_at
        self.ended_at: float | None = None
        self.state = TaskState.RUNNING
        self.outputs = 0
        self.cancel_reason: str | None = None
        self.cancel_origin: str | None = None
        self._scope = scope
        self._detail: Any = None
        self._done: trio.Event | None = None
        self._shield_depth = 0
        self._pending_interrupt = False
        self._cancel_at: float | None = None
        self._deadline_set = False  # set through .deadline (kept when a pending task starts)
        self._body: Any = None
        self._is_gen = False

    def __repr__(self) -> str:
        return (
            f"<TaskHandle {self.name!r} id={self.id} {self.state.value}"
            f"{' interruptible' if self.interruptible else ''} flavor={self.flavor}>"
        )

    @property
    def done(self) -> bool:
        """True once the task has ended, whatever the way."""
        return self.state is not TaskState.RUNNING and self.state is not TaskState.PENDING

    @property
    def deadline(self) -> float:
        """The trio-clock time at which the task times out (``math.inf``: never).

        Settable while the task is pending or running: a later or earlier deadline moves its
        timeout (``math.inf`` removes it). The deadline is the task's own cancel scope's, so
        ``trio.current_effective_deadline()`` inside the task sees it. For a pending task it is
        fixed when it starts (``timeout`` seconds after), unless set here before. Once the
        task has been cancelled or has timed out, setting it changes nothing (its end is
        decided; the deadline keeps the value that applied).
        """
        return float(self._scope.deadline)

    @deadline.setter
    def deadline(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise TypeError(
                f"deadline must be a trio-clock time (float; math.inf for none), got "
                f"{type(value).__name__}: {value!r:.80}"
            )
        self._sup._set_deadline(self, float(value))

    def cancel(self, *, origin: str | None = None) -> bool:
        """Cancel the task (reason ``"cancel_task"``); False if it had already ended.

        Synchronous: the task's ``finally`` blocks run at its next checkpoint, and its terminal
        record follows; a pending task never runs. Never deferred by
        :func:`taskrunner.uninterruptible`. ``origin`` says who asked (kept on the record).
        """
        return self._sup._cancel_by_call(self, "cancel_task", origin)

    def wait(self, timeout: float | None = None) -> Awaitable[outcome.Outcome[Any]]:
        """Wait until the task has ended and return its outcome; works from trio and asyncio.

        ``outcome.Value(result)`` when it finished; ``outcome.Error(exc)`` carrying the task's
        exception when it failed, :class:`TaskCancelledError` when it was cancelled and
        :class:`TaskTimeoutError` when it timed out. Every call returns a fresh outcome (each
        can be unwrapped). With ``timeout`` (seconds), raises the builtin ``TimeoutError`` when
        the *wait* runs out first; the task goes on. Cancelling the waiter does not affect the
        task.
        """
        limit = check_timeout(timeout, "timeout")
        return flavored(self._wait, limit)

    async def _wait(self, timeout: float | None) -> outcome.Outcome[Any]:
        if not self.done:
            if self._done is None:
                self._done = trio.Event()
            if timeout is None:
                await self._done.wait()
            else:
                with trio.move_on_after(timeout):
                    await self._done.wait()
                if not self.done:
                    raise TimeoutError(
                        f"task {self.name!r} was still {self.state.value} after waiting "
                        f"{timeout:g} s"
                    )
        else:
            await trio.lowlevel.checkpoint()
        return self._make_outcome()

    def _make_outcome(self) -> outcome.Outcome[Any]:
        """A new outcome of the ended task, from its state and detail."""
        state, detail = self.state, self._detail
        if state is TaskState.FINISHED:
            return outcome.Value(detail)
        if state is TaskState.CANCELLED:
            return outcome.Error(TaskCancelledError(self.name, detail))
        if state is TaskState.TIMED_OUT:
            return outcome.Error(TaskTimeoutError(self.name, detail))
        return outcome.Error(detail)

    def _history_row(self) -> tuple[Any, ...]:
        """The fields of :meth:`info`, as a tuple in :class:`TaskInfo`'s order (what history
        keeps: cheap to make at every end; a failure is kept as text only)."""
        error = None
        if self.state is TaskState.FAILED and isinstance(self._detail, BaseException):
            error = error_to_dict(self._detail)
        return (
            self.name,
            self.id,
            self.state,
            self.flavor,
            self.interruptible,
            self.timeout,
            self.started_at,
            self.ended_at,
            self.outputs,
            self.cancel_reason,
            self.cancel_origin,
            error,
        )

    def info(self) -> TaskInfo:
        """Return a frozen :class:`TaskInfo` picture of the task now."""
        return TaskInfo(*self._history_row())
