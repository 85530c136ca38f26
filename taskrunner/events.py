"""Agent events (what a handler receives and yields) and the records of the output stream."""

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
from ._session._abtests import TestConcluded
from ._session.agent_events import (
    AudioEvent,
    CustomEvent,
    Event,
    LogEvent,
    SilenceEvent,
    StartEvent,
    StopEvent,
    TextEvent,
    TextToSpeechEvent,
    TimeoutEvent,
)
from ._session.records import HandlerFailed, HandlerOutput, SessionEnded, SessionStarted

__all__ = [
    "TERMINAL_RECORDS",
    "AudioEvent",
    "CustomEvent",
    "Event",
    "HandlerFailed",
    "HandlerOutput",
    "LogEvent",
    "Record",
    "SessionEnded",
    "SessionStarted",
    "SilenceEvent",
    "StartEvent",
    "StopEvent",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskOutput",
    "TaskRecord",
    "TaskStarted",
    "TaskStuck",
    "TaskTimedOut",
    "TestConcluded",
    "TextEvent",
    "TextToSpeechEvent",
    "TimeoutEvent",
]
