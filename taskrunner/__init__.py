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
from ._session._abtests import TestConcluded
from ._session._memory import MemoryProvider, StoreMemory
from ._session._notify import Notifier, SMTPNotifier
from ._session._vocabulary import MissingExtraError, Vocabulary
from ._session.context import (
    Context,
    DataChange,
    current_context,
    current_phase,
    current_session,
)
from ._session.session import AgentHandler, Session, open_session
from ._store import (
    CheckpointNotFoundError,
    MemoryHit,
    PostgresStore,
    SessionResult,
    SQLiteStore,
    Store,
    StoreError,
    Variable,
    open_store,
)

__all__ = [
    "AgentHandler",
    "CheckpointNotFoundError",
    "Context",
    "DataChange",
    "DuplicateTaskNameError",
    "Flavor",
    "FlavorError",
    "GcTuning",
    "Lifecycle",
    "Limiter",
    "MemoryHit",
    "MemoryProvider",
    "MissingExtraError",
    "Notifier",
    "PostgresStore",
    "SMTPNotifier",
    "SQLiteStore",
    "Session",
    "SessionClosedError",
    "SessionResult",
    "Store",
    "StoreError",
    "StoreMemory",
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
    "TestConcluded",
    "Variable",
    "Vocabulary",
    "WrongContextError",
    "asyncio_loop",
    "current_context",
    "current_phase",
    "current_session",
    "current_task",
    "open_session",
    "open_store",
    "open_supervisor",
    "run_in_asyncio",
    "tune_gc",
    "uninterruptible",
]
