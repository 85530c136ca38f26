"""The session's own records on its output stream."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .._core.records import Record

__all__ = ["HandlerFailed", "HandlerOutput", "InputReceived", "SessionEnded", "SessionStarted"]


@attrs.frozen
class SessionStarted(Record):
    """The session opened; always the first record of its stream (``session_id`` is every
    record's)."""

    agent_id: str
    environment: str


@attrs.frozen
class SessionEnded(Record):
    """The session closed: every task has ended. Always the last record of its stream."""


@attrs.frozen
class InputReceived(Record):
    """The session accepted the input ``event`` (a user turn, a timeout, the stop...).

    Issued when ``send`` has queued it, before any interruption it causes, so every user turn
    shows in the stream even when the handler answers nothing."""

    event: Any


@attrs.frozen
class HandlerOutput(Record):
    """The handler yielded ``event`` while answering the input event ``input``."""

    event: Any
    input: Any

    source: ClassVar[str] = "handler"


@attrs.frozen
class HandlerFailed(Record):
    """The handler raised ``error`` while answering ``input``; the session goes on."""

    error: BaseException
    input: Any

    source: ClassVar[str] = "handler"
