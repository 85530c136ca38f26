"""The agent events of the seeds: what a handler receives and what it yields."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "AudioEvent",
    "CustomEvent",
    "Event",
    "LogEvent",
    "SilenceEvent",
    "StartEvent",
    "StopEvent",
    "TextEvent",
    "TextToSpeechEvent",
    "TimeoutEvent",
]


@attrs.frozen
class Event:
    """Base class of every agent event, input or output."""


@attrs.frozen
class StartEvent(Event):
    """Input: the session begins. ``data`` carries the session's start parameters."""

    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class TextEvent(Event):
    """Input: the user said or typed something: ``data = {"source": ..., "text": ...}``."""

    data: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_text(cls, text: str, source: str = "text") -> TextEvent:
        """A ``TextEvent`` with ``data={"source": source, "text": text}``."""
        return cls(data={"source": source, "text": text})


@attrs.frozen
class TimeoutEvent(Event):
    """Input: the user has been silent: ``data = {"count": ..., "ms_since_input": ...}``."""

    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class StopEvent(Event):
    """Input: the session ends. After it is handled the session closes."""

    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class TextToSpeechEvent(Event):
    """Output: speak ``text`` with ``voice``."""

    text: str
    voice: str
    cache: bool = True
    interruptable: bool = True


@attrs.frozen
class AudioEvent(Event):
    """Output: play the audio file at ``path``."""

    path: str


@attrs.frozen
class SilenceEvent(Event):
    """Output: stay silent for ``duration`` milliseconds."""

    duration: int


@attrs.frozen
class LogEvent(Event):
    """Output: a log line for the debugger, ``LogEvent("...")``."""

    message: str


@attrs.frozen
class CustomEvent(Event):
    """Input or output: an application event ``name`` carrying ``data``."""

    name: str
    data: dict[str, Any] = attrs.field(factory=dict)
