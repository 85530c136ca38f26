"""taskrunner's exception hierarchy.

Every exception taskrunner raises on its own account derives from :class:`TaskRunnerError`.
Errors about a wrong call also derive from the builtin a caller would expect (``TypeError``,
``ValueError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class TaskRunnerError(Exception):
    """Base class of every exception raised by taskrunner itself."""


class SupervisorClosedError(TaskRunnerError, RuntimeError):
    """The supervisor (or session) is closing or closed and accepts no new work."""


class WrongContextError(TaskRunnerError, RuntimeError):
    """A call was made outside the trio run (or thread) that owns the supervisor."""


class DuplicateTaskNameError(TaskRunnerError, ValueError):
    """``create_task`` was given the name of a task that has not finished yet."""


class TaskLimitError(TaskRunnerError, RuntimeError):
    """``create_task`` found both the running-task ``limit`` and the ``pending_limit`` full."""


class StreamBusyError(TaskRunnerError, RuntimeError):
    """A second reader tried to read a stream that already has one."""


class FlavorError(TaskRunnerError, RuntimeError):
    """A trio-flavoured task called asyncio code; it needs ``flavor="asyncio"``."""


class TaskCancelledError(TaskRunnerError):
    """The outcome of a task that was cancelled before it finished.

    ``reason`` is one of ``"cancel_task"``, ``"interrupted"``, ``"cancel_all"``, ``"closed"``,
    ``"replaced"``.
    """

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(f"task {task!r} was cancelled ({reason})")
        self.task = task
        self.reason = reason


class TaskTimeoutError(TaskRunnerError):
    """The outcome of a task that ran past its ``timeout`` and was cancelled."""

    def __init__(self, task: str, timeout: float | None) -> None:
        after = "its deadline" if timeout is None else f"{timeout:g} s"
        super().__init__(
            f"task {task!r} timed out after {after} "
            f"(raise its timeout= in create_task, or pass timeout=None for no limit)"
        )
        self.task = task
        self.timeout = timeout


class SessionClosedError(TaskRunnerError, RuntimeError):
    """The session has received its ``StopEvent`` (or closed) and takes no more input."""
