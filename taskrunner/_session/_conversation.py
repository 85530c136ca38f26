"""Completion messages and the session cache (seed 000), kept as JSON-safe copies."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

__all__ = ["Cache", "Conversation"]

_PRIMITIVES = (str, int, float, bool, type(None))


def _json_copy(value: Any, what: str) -> Any:
    """A deep copy of ``value`` that ``json.dumps`` accepts, or a TypeError naming ``what``."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON data (dict, list, str, number, bool, None): {exc}"
        ) from None
    return json.loads(text)


class Conversation:
    """The conversation history for LLM completions, as a list of dicts in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    @staticmethod
    def to_message(message: Any) -> dict[str, Any]:
        """A dict, or an object whose ``serialize()`` returns one; stored as a copy."""
        if isinstance(message, dict):
            data = message
        elif callable(getattr(message, "serialize", None)):
            data = message.serialize()
            if not isinstance(data, dict):
                raise TypeError(
                    f"{type(message).__name__}.serialize() must return a dict, "
                    f"got {type(data).__name__}"
                )
        else:
            raise TypeError(
                f"a completion message is a dict or an object with serialize() -> dict "
                f"(UserMessage, AssistantMessage...), got {type(message).__name__}: "
                f"{message!r:.80}"
            )
        copied: dict[str, Any] = _json_copy(data, "a completion message")
        return copied

    def get(self) -> list[dict[str, Any]]:
        """A copy of the history."""
        return copy.deepcopy(self.messages)

    def add(self, message: Any) -> None:
        """Append one message."""
        self.messages.append(self.to_message(message))

    def set(self, messages: Any) -> None:
        """Replace the history; every message is checked before anything changes."""
        if not isinstance(messages, (list, tuple)):
            raise TypeError(
                f"set_completion_messages takes a list of messages, got "
                f"{type(messages).__name__}"
            )
        converted = []
        for i, m in enumerate(messages):
            try:
                converted.append(self.to_message(m))
            except TypeError as exc:
                raise TypeError(f"message {i}: {exc}") from None
        self.messages = converted


def _check_cachable(value: Any) -> bool:
    """True for a cachable entity (``to_cache()`` and classmethod ``from_cache``)."""
    return callable(getattr(value, "to_cache", None)) and callable(
        getattr(type(value), "from_cache", None)
    )


class Cache:
    """The session cache: primitives, dicts, and cachable entities stored as their dict."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        """Store ``value``: a str, int, float, bool, None, a dict of JSON data, or an object
        with ``to_cache() -> dict`` whose class has ``from_cache(dict)``."""
        if not isinstance(key, str):
            raise TypeError(f"cache keys are str, got {type(key).__name__}: {key!r}")
        if isinstance(value, _PRIMITIVES):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"cache_set({key!r}): {value!r} is not a finite float")
            stored: Any = value
        elif isinstance(value, dict):
            stored = _json_copy(value, f"cache_set({key!r}) value")
        elif _check_cachable(value):
            data = value.to_cache()
            if not isinstance(data, dict):
                raise TypeError(
                    f"cache_set({key!r}): {type(value).__name__}.to_cache() must return a "
                    f"dict, got {type(data).__name__}"
                )
            stored = _json_copy(data, f"{type(value).__name__}.to_cache()")
        else:
            raise TypeError(
                f"cache_set({key!r}): the cache holds str, int, float, bool, None, dicts and "
                f"cachable entities (to_cache() and classmethod from_cache()); got "
                f"{type(value).__name__}: {value!r:.80}"
            )
        self.items[key] = stored

    def get(self, key: str, entity_type: type | None = None) -> Any:
        """The value under ``key`` (None if missing); with ``entity_type``, a stored dict is
        revived by ``entity_type.from_cache(dict)``."""
        if not isinstance(key, str):
            raise TypeError(f"cache keys are str, got {type(key).__name__}: {key!r}")
        if key not in self.items:
            return None
        value = self.items[key]
        if entity_type is None:
            return copy.deepcopy(value)
        revive = getattr(entity_type, "from_cache", None)
        if not callable(revive):
            raise TypeError(
                f"cache_get({key!r}, entity_type={entity_type!r}): entity_type needs a "
                f"classmethod from_cache(dict)"
            )
        if not isinstance(value, dict):
            raise TypeError(
                f"cache_get({key!r}, entity_type={getattr(entity_type, '__name__', entity_type)})"
                f": the cached value is a {type(value).__name__}, not an entity's dict"
            )
        return revive(copy.deepcopy(value))
