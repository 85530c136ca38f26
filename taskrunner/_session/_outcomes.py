"""Outcomes: the per-session metrics that feed the A/B tests' statistics (seed 000)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["OUTCOME_TYPES", "Outcome", "Outcomes"]

#: The four outcome types, their Python type and default value.
OUTCOME_TYPES: dict[str, tuple[type, Any]] = {
    "boolean": (bool, False),
    "integer": (int, 0),
    "float": (float, 0.0),
    "string": (str, ""),
}


@attrs.define
class Outcome:
    """One outcome of a session: its ``type`` (a key of :data:`OUTCOME_TYPES`), its
    description and current ``value``."""

    name: str
    type: str
    description: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"type": self.type, "description": self.description, "value": self.value}


def _coerce(name: str, type_: str, value: Any) -> Any:
    """``value`` as outcome ``name`` of ``type_`` stores it, or a TypeError."""
    if type_ == "boolean":
        ok = isinstance(value, bool)
    elif type_ == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_ == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise TypeError(
            f"outcome {name!r} is of type {type_!r} ({OUTCOME_TYPES[type_][0].__name__}); "
            f"got {type(value).__name__}: {value!r:.80}"
        )
    return value


def _infer_type(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise TypeError(
        f"outcome {name!r}: an outcome value is a bool, int, float or str, "
        f"got {type(value).__name__}: {value!r:.80}"
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"an outcome name is a non-empty str, got {name!r}")
    return name


class Outcomes:
    """The session's outcomes, as ``context.add_outcome`` and friends use them."""

    def __init__(self) -> None:
        self.items: dict[str, Outcome] = {}

    def _get(self, name: str) -> Outcome:
        _check_name(name)
        try:
            return self.items[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.items) or "none yet"
            raise KeyError(
                f"no outcome {name!r} in this session (add it with add_outcome(name, type); "
                f"outcomes: {known})"
            ) from None

    @staticmethod
    def validate(name: Any, type: Any, description: Any = "") -> tuple[str, str, str]:
        """Check ``add_outcome``'s arguments; returns them."""
        _check_name(name)
        if type not in OUTCOME_TYPES:
            raise ValueError(
                f"outcome {name!r}: type must be one of {', '.join(map(repr, OUTCOME_TYPES))}, "
                f"got {type!r}"
            )
        if not isinstance(description, str):
            raise TypeError(
                f"outcome {name!r}: description is a str, got {description.__class__.__name__}"
            )
        return name, type, description

    def add(self, name: str, type: str, description: str = "") -> None:
        """Define an outcome with its type's default; adding it again with the same type
        keeps its value, with another type is a ValueError."""
        name, type, description = self.validate(name, type, description)
        old = self.items.get(name)
        if old is not None:
            if old.type != type:
                raise ValueError(
                    f"outcome {name!r} already exists with type {old.type!r}; "
                    f"cannot add it again as {type!r}"
                )
            if description:
                old.description = description
            return
        self.items[name] = Outcome(name, type, description, OUTCOME_TYPES[type][1])

    def add_many(self, outcomes: Any) -> None:
        """``add_outcomes([{"name", "type", "description"?}, ...])``: all or none."""
        if not isinstance(outcomes, (list, tuple)):
            raise TypeError(
                f"add_outcomes takes a list of dicts {{'name', 'type', 'description'}}, "
                f"got {type(outcomes).__name__}"
            )
        checked = []
        for i, spec in enumerate(outcomes):
            if not isinstance(spec, dict):
                raise TypeError(f"add_outcomes: item {i} is not a dict: {spec!r:.80}")
            extra = set(spec) - {"name", "type", "description"}
            if extra or "name" not in spec or "type" not in spec:
                raise ValueError(
                    f"add_outcomes: item {i} must have keys 'name', 'type' and optionally "
                    f"'description', got {sorted(spec)}"
                )
            checked.append(self.validate(spec["name"], spec["type"], spec.get("description", "")))
        for name, type_, _ in checked:
            old = self.items.get(name)
            if old is not None and old.type != type_:
                raise ValueError(
                    f"outcome {name!r} already exists with type {old.type!r}; "
                    f"cannot add it again as {type_!r}"
                )
        for args in checked:
            self.add(*args)

    def get(self, name: str, default: Any = None) -> Any:
        """The outcome's value, or ``default`` if the session has no such outcome."""
        _check_name(name)
        item = self.items.get(name)
        return default if item is None else item.value

    def set(self, name: str, value: Any) -> Any:
        """Set the value; returns the previous one. An outcome not added yet is added with
        the type of ``value`` (as seed 001's example does)."""
        _check_name(name)
        item = self.items.get(name)
        if item is None:
            type_ = _infer_type(name, value)
            self.items[name] = Outcome(name, type_, "", value)
            return OUTCOME_TYPES[type_][1]
        value = _coerce(name, item.type, value)
        previous, item.value = item.value, value
        return previous

    def trigger(self, name: str) -> Any:
        """Boolean: set True; integer: add 1. Returns the previous value."""
        item = self._get(name)
        if item.type == "boolean":
            previous, item.value = item.value, True
        elif item.type == "integer":
            previous = item.value
            item.value = previous + 1
        else:
            raise TypeError(
                f"trigger_outcome works on boolean and integer outcomes; {name!r} is "
                f"{item.type!r} (use set_outcome)"
            )
        return previous

    def reset(self, name: str) -> Any:
        """Back to the type's default; returns the previous value."""
        item = self._get(name)
        previous, item.value = item.value, OUTCOME_TYPES[item.type][1]
        return previous

    def to_dict(self) -> dict[str, Any]:
        """Every outcome as ``{name: {"type", "description", "value"}}``."""
        return {name: o.to_dict() for name, o in self.items.items()}

    def restore(self, saved: dict[str, Any]) -> None:
        """Load :meth:`to_dict`'s form (checked)."""
        for name, o in saved.items():
            self.add(name, o["type"], o.get("description", ""))
            self.items[name].value = _coerce(name, o["type"], o["value"])
