"""taskrunner: supervised background tasks for conversational agents, on trio.

The public API is what this module exports; record classes live in :mod:`taskrunner.events`.
"""

from ._core._limiter import Limiter
from ._core.errors import (
    DuplicateTaskNameError,
    FlavorError,
    SessionClosedError,
    StreamBusyError,
    SupervisorClosedError,
    TaskCancelledError,
    TaskLimitError,
    TaskRunnerError,
    TaskTimeoutError,
    WrongContextError,
)
from ._core.handle import TaskHandle, TaskInfo, TaskState
from ._core.supervisor import (
    Flavor,
    Lifecycle,
    Supervisor,
    TaskHandler,
    current_task,
    open_supervisor,
    uninterruptible,
)
from ._gc import GcTuning, tune_gc
from ._runtime import asyncio_loop, run_in_asyncio
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
    "GcTuning",
    "Lifecycle",
    "Limiter",
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
    "TaskLimitError",
    "TaskRunnerError",
    "TaskState",
    "TaskTimeoutError",
    "Vocabulary",
    "WrongContextError",
    "asyncio_loop",
    "current_context",
    "current_task",
    "open_session",
    "open_supervisor",
    "run_in_asyncio",
    "tune_gc",
    "uninterruptible",
]
