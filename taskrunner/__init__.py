"""taskrunner: supervised background tasks for conversational agents, on trio.

The public API is what this module exports; record classes live in :mod:`taskrunner.events`.
"""

from ._core.errors import (
    DuplicateTaskNameError,
    FlavorError,
    StreamBusyError,
    SupervisorClosedError,
    TaskCancelledError,
    TaskRunnerError,
    TaskTimeoutError,
    WrongContextError,
)
from ._core.handle import TaskHandle, TaskInfo, TaskState
from ._core.supervisor import (
    Flavor,
    Supervisor,
    TaskHandler,
    current_task,
    open_supervisor,
    uninterruptible,
)

__all__ = [
    "DuplicateTaskNameError",
    "Flavor",
    "FlavorError",
    "StreamBusyError",
    "Supervisor",
    "SupervisorClosedError",
    "TaskCancelledError",
    "TaskHandle",
    "TaskHandler",
    "TaskInfo",
    "TaskRunnerError",
    "TaskState",
    "TaskTimeoutError",
    "WrongContextError",
    "current_task",
    "open_supervisor",
    "uninterruptible",
]
