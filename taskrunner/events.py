"""The records on a supervisor's stream (and, with sessions, the agent events)."""

from ._core.records import (
    TERMINAL_RECORDS,
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskRecord,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)

__all__ = [
    "TERMINAL_RECORDS",
    "Record",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskOutput",
    "TaskRecord",
    "TaskStarted",
    "TaskStuck",
    "TaskTimedOut",
]
