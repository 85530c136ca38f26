"""Input events as JSON, both ways: what the API accepts and what a worker hands a session."""

from __future__ import annotations

import math
from typing import Any

from .._session.agent_events import CustomEvent, Event, StopEvent, TextEvent, TimeoutEvent
from ._errors import BadInputError

__all__ = ["INPUT_TYPES", "event_from_json", "parse_control", "parse_input"]

#: The ``"type"`` values the API accepts, and the keys each takes besides ``"type"``.
INPUT_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("text", "source"),
    "timeout": ("count", "ms_since_input"),
    "custom": ("name", "data"),
    "stop": (),
}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_input(message: Any) -> dict[str, Any]:
    """Check one input event as received (decoded JSON) and return its normal form.

    Accepted: ``{"type": "text", "text": str, "source"?: str}``, ``{"type": "timeout",
    "count"?: int, "ms_since_input"?: number}``, ``{"type": "custom", "name": str,
    "data"?: object}``, ``{"type": "stop"}``. Anything else raises :class:`BadInputError`
    naming what was given and what is accepted. The session's ``StartEvent`` is sent by the
    server itself when the session starts, so ``"start"`` is refused here.
    """
    if not isinstance(message, dict):
        raise BadInputError(
            f"an input event is a JSON object with a \"type\" ({', '.join(INPUT_TYPES)}), "
            f"got {type(message).__name__}: {_describe(message)}"
        )
    kind = message.get("type")
    if kind == "start":
        raise BadInputError(
            "\"start\" is sent by the server when the session starts; "
            f"accepted input types: {', '.join(INPUT_TYPES)}"
        )
    if not isinstance(kind, str) or kind not in INPUT_TYPES:
        raise BadInputError(
            f"unknown input event type {_describe(kind)}; accepted: {', '.join(INPUT_TYPES)}"
        )
    allowed = INPUT_TYPES[kind]
    extra = sorted(set(message) - {"type", *allowed})
    if extra:
        takes = ", ".join(allowed) if allowed else "nothing else"
        raise BadInputError(f"a {kind!r} event takes {takes}; unexpected: {', '.join(extra)}")
    if kind == "text":
        text, source = message.get("text"), message.get("source", "text")
        if not isinstance(text, str):
            raise BadInputError(f"a 'text' event needs \"text\": a string, got {_describe(text)}")
        if not isinstance(source, str):
            raise BadInputError(f"\"source\" must be a string, got {_describe(source)}")
        return {"type": "text", "text": text, "source": source}
    if kind == "timeout":
        count, ms = message.get("count", 1), message.get("ms_since_input", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadInputError(f"\"count\" must be an int >= 0, got {_describe(count)}")
        if (
            isinstance(ms, bool)
            or not isinstance(ms, int | float)
            or not math.isfinite(ms)
            or ms < 0
        ):
            raise BadInputError(f"\"ms_since_input\" must be a number >= 0, got {_describe(ms)}")
        return {"type": "timeout", "count": count, "ms_since_input": ms}
    if kind == "custom":
        name, data = message.get("name"), message.get("data", {})
        if not isinstance(name, str) or not name:
            raise BadInputError(f"a 'custom' event needs \"name\": a string, got {_describe(name)}")
        if not isinstance(data, dict):
            raise BadInputError(f"\"data\" must be a JSON object, got {_describe(data)}")
        return {"type": "custom", "name": name, "data": data}
    return {"type": "stop"}


def parse_control(message: dict[str, Any]) -> tuple[str, str | None]:
    """Check one WebSocket control frame (decoded JSON with a ``"control"`` key): what the
    ``interrupt`` and ``tasks/{name}/cancel`` routes do, over the session's socket.

    Accepted: ``{"control": "interrupt"}`` -> ``("interrupt", None)``, ``{"control":
    "cancel_task", "name": str}`` -> ``("cancel_task", name)``. Anything else raises
    :class:`BadInputError` naming what was sent and what is accepted.
    """
    accepted = '{"control": "interrupt"} or {"control": "cancel_task", "name": str}'
    kind = message.get("control")
    if kind == "interrupt" and set(message) == {"control"}:
        return "interrupt", None
    if kind == "cancel_task" and set(message) == {"control", "name"}:
        name = message["name"]
        if isinstance(name, str) and name:
            return "cancel_task", name
    raise BadInputError(f"unknown control frame {_describe(message)}; accepted: {accepted}")


def event_from_json(message: dict[str, Any]) -> Event:
    """The agent event for an input in the normal form :func:`parse_input` returns."""
    kind = message["type"]
    if kind == "text":
        return TextEvent(data={"source": message["source"], "text": message["text"]})
    if kind == "timeout":
        return TimeoutEvent(
            data={"count": message["count"], "ms_since_input": message["ms_since_input"]}
        )
    if kind == "custom":
        return CustomEvent(message["name"], dict(message["data"]))
    if kind == "stop":
        return StopEvent()
    raise BadInputError(f"unknown input event type {kind!r}")
