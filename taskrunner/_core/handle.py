"""TaskHandle: the caller's view of one supervised task."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any

import attrs
import outcome
import trio

from .errors import TaskCancelledError, TaskTimeoutError

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["TaskHandle", "TaskInfo", "TaskState"]


class TaskState(enum.Enum):
    """Where a task is in its life. Every state but ``RUNNING`` is final."""

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
    is None while running), ``outputs`` (events yielded so far), ``cancel_reason``.
    """

    __slots__ = (
        "_body",
        "_cancel_at",
        "_deadline",
        "_detail",
        "_done",
        "_outcome",
        "_pending_interrupt",
        "_scope",
        "_shield_depth",
        "_stuck_reported",
        "_sup",
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
        self._scope = scope
        self._outcome: outcome.Outcome[Any] | None = None
        self._detail: Any = None
        self._done: trio.Event | None = None
        self._shield_depth = 0
        self._pending_interrupt = False
        self._cancel_at: float | None = None
        self._deadline = math.inf
        self._stuck_reported = False
        # The task's own coroutine or async generator while it runs (for debugging tools:
        # its current stack); dropped when it ends.
        self._body: Any = None

    def __repr__(self) -> str:
        return (
            f"<TaskHandle {self.name!r} id={self.id} {self.state.value}"
            f"{' interruptible' if self.interruptible else ''} flavor={self.flavor}>"
        )

    @property
    def done(self) -> bool:
        """True once the task has ended, whatever the way."""
        return self.state is not TaskState.RUNNING

    def cancel(self) -> bool:
        """Cancel the task (reason ``"cancel_task"``); False if it had already ended.

        Synchronous: the task's ``finally`` blocks run at its next checkpoint, and its terminal
        record follows. Never deferred by :func:`taskrunner.uninterruptible`.
        """
        return self._sup._cancel(self, "cancel_task")

    async def wait(self) -> outcome.Outcome[Any]:
        """Wait until the task has ended and return its outcome.

        ``outcome.Value(result)`` when it finished; ``outcome.Error(exc)`` carrying the task's
        exception when it failed, :class:`TaskCancelledError` when it was cancelled and
        :class:`TaskTimeoutError` when it timed out. Cancelling the waiter does not affect the
        task.
        """
        if self.state is TaskState.RUNNING:
            if self._done is None:
                self._done = trio.Event()
            await self._done.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._make_outcome()

    def _make_outcome(self) -> outcome.Outcome[Any]:
        """The outcome of the ended task, made on first use from its state and detail."""
        if self._outcome is None:
            state, detail = self.state, self._detail
            if state is TaskState.FINISHED:
                self._outcome = outcome.Value(detail)
            elif state is TaskState.CANCELLED:
                self._outcome = outcome.Error(TaskCancelledError(self.name, detail))
            elif state is TaskState.TIMED_OUT:
                self._outcome = outcome.Error(TaskTimeoutError(self.name, detail))
            else:
                self._outcome = outcome.Error(detail)
            self._detail = None
        return self._outcome

    def info(self) -> TaskInfo:
        """Return a frozen :class:`TaskInfo` picture of the task now."""
        return TaskInfo(
            name=self.name,
            id=self.id,
            state=self.state,
            flavor=self.flavor,
            interruptible=self.interruptible,
            timeout=self.timeout,
            started_at=self.started_at,
            ended_at=self.ended_at,
            outputs=self.outputs,
            cancel_reason=self.cancel_reason,
        )
