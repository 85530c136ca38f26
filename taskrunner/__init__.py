"""taskrunner: supervised background tasks for conversational agents, on trio.

The public API is what this module exports; record classes live in :mod:`taskrunner.events`.
"""

from ._core.errors import (
    DuplicateTaskNameError,
    FlavorError,
    SessionClosedError,
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
from ._session._vocabulary import MissingExtraError, Vocabulary
from ._session.context import Context, DataChange, current_context
from ._session.session import AgentHandler, Session, open_session

__all__ = [
    "AgentHandler",
    "Context",
    "DataChange",
    "DuplicateTaskNameError",
    "Flavor",
    "FlavorError",
    "MissingExtraError",
    "Session",
    "SessionClosedError",
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
    "Vocabulary",
    "WrongContextError",
    "current_context",
    "current_task",
    "open_session",
    "open_supervisor",
    "uninterruptible",
]
