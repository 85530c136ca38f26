"""A/B test definitions: checking ``add_test``'s arguments, and the ``TestConcluded`` record."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs

from .._core.records import Record

__all__ = ["STOP_KEYS", "TestConcluded", "capped", "fallback", "validate_test"]

STOP_KEYS = ("max_iterations", "max_confidence", "target_outcome", "stop_on", "default", "notify")



@attrs.frozen
class TestConcluded(Record):
    """An A/B test concluded: every later session gets ``winner``.

    ``reason``: ``"max_iterations"``, ``"max_confidence"`` or both joined by ``+``;
    ``confidence`` (0-100, None if not computed) and ``sessions`` (counted sessions) as
    measured then; ``notified`` the addresses told, ``notify_error`` why telling failed.
    Issued once per test, on the stream of the session that concluded it.
    """

    test: str
    agent_id: str
    reason: str
    winner: str | None
    confidence: float | None
    sessions: int
    notified: tuple[str, ...]
    notify_error: str | None

    source: ClassVar[str] = "session"
    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_test(name: Any, options: Any, description: Any, stop: Any) -> dict[str, Any]:
    """Check ``add_test``'s arguments; returns the test's definition (JSON-safe)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a test name is a non-empty str, got {name!r}")
    if not isinstance(options, dict):
        raise TypeError(
            f"test {name!r}: options is a dict of option -> weight, e.g. "
            f"{{'Hello': 0.5, 'Hi': 0.5}}, got {type(options).__name__}: {options!r:.80}"
        )
    if not options:
        raise ValueError(f"test {name!r}: options is empty; give at least one option")
    weights: dict[str, float] = {}
    for option, weight in options.items():
        if not isinstance(option, str):
            raise TypeError(f"test {name!r}: options are str, got {option!r}")
        if not _number(weight) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(
                f"test {name!r}: option {option!r} has weight {weight!r}; weights are "
                f"numbers > 0 (they need not sum to 1)"
            )
        weights[option] = float(weight)
    if not isinstance(description, str):
        raise TypeError(f"test {name!r}: description is a str, got {description!r:.80}")
    if stop is None:
        stop = {}
    if not isinstance(stop, dict):
        raise TypeError(f"test {name!r}: stop is a dict of stop conditions, got {stop!r:.80}")
    unknown = sorted(set(stop) - set(STOP_KEYS))
    if unknown:
        raise ValueError(
            f"test {name!r}: unknown stop condition(s) {unknown}; accepted: {list(STOP_KEYS)}"
        )
    out: dict[str, Any] = {}
    if "max_iterations" in stop:
        v = stop["max_iterations"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"test {name!r}: max_iterations is an int >= 1, got {v!r}")
        out["max_iterations"] = v
    if "max_confidence" in stop:
        v = stop["max_confidence"]
        if not _number(v) or not 0 < v <= 100:
            raise ValueError(f"test {name!r}: max_confidence is a number in (0, 100], got {v!r}")
        if not isinstance(stop.get("target_outcome"), str) or not stop["target_outcome"]:
            raise ValueError(
                f"test {name!r}: max_confidence needs target_outcome, the name of the outcome "
                f"the options are compared on; got {stop.get('target_outcome')!r}"
            )
        out["max_confidence"] = float(v)
    if "target_outcome" in stop:
        v = stop["target_outcome"]
        if not isinstance(v, str) or not v:
            raise ValueError(f"test {name!r}: target_outcome is an outcome name, got {v!r}")
        out["target_outcome"] = v
    stop_on = stop.get("stop_on", 1)
    if stop_on not in (1, 2) or isinstance(stop_on, bool):
        raise ValueError(
            f"test {name!r}: stop_on is 1 (any condition ends the test) or 2 (both), "
            f"got {stop_on!r}"
        )
    out["stop_on"] = stop_on
    if "default" in stop:
        v = stop["default"]
        if v not in weights:
            raise ValueError(
                f"test {name!r}: default {v!r} is not one of the options {list(weights)}"
            )
        out["default"] = v
    if "notify" in stop:
        v = stop["notify"]
        if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(
            isinstance(a, str) and "@" in a for a in v
        ):
            raise ValueError(
                f"test {name!r}: notify is a list of email addresses, got {v!r:.80}"
            )
        out["notify"] = list(v)
    return {"options": weights, "description": description, "stop": out}


def capped(definition: dict[str, Any]) -> int | None:
    """The slot limit of a test whose ``max_iterations`` caps its assignments, else None.

    With ``stop_on=2`` and ``max_confidence``, ``max_iterations`` is a minimum sample size
    that must be reached together with the confidence, so it caps nothing.
    """
    stop = definition["stop"]
    limit: int | None = stop.get("max_iterations")
    if limit is None or (stop["stop_on"] == 2 and "max_confidence" in stop):
        return None
    return limit


def fallback(definition: dict[str, Any]) -> str:
    """What a session gets when it draws no option: ``default``, else the heaviest option."""
    default: str | None = definition["stop"].get("default")
    if default is not None:
        return default
    options: dict[str, float] = definition["options"]
    return max(options, key=lambda o: options[o])
