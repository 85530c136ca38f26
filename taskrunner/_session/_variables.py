"""Variables from the store's org and environment scopes, and the redaction of masked ones."""

from __future__ import annotations

from typing import Any

import attrs

from .._store._protocol import Variable

__all__ = ["MASK", "Redactor", "check_variable_name", "merge_variables"]

#: What a masked value is replaced with outside the handler.
MASK = "********"


def check_variable_name(name: Any) -> str:
    """A variable name: a non-empty str without whitespace."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"a variable name is a non-empty str without spaces, got {name!r}")
    return name


def merge_variables(
    stored: list[Variable], given: dict[str, str]
) -> tuple[dict[str, str], frozenset[str]]:
    """The session's variables (org, then environment, then ``given`` win) and the names of
    the masked ones."""
    merged: dict[str, str] = {}
    masked: set[str] = set()
    for scope in ("org", "environment"):
        for v in stored:
            if v.scope == scope:
                merged[v.name] = v.value
                if v.masked:
                    masked.add(v.name)
                else:
                    masked.discard(v.name)
    for name, value in given.items():
        merged[name] = value
        masked.discard(name)
    return merged, frozenset(masked)


@attrs.frozen
class Redactor:
    """Replaces every occurrence of the masked values in strings with :data:`MASK`."""

    secrets: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, s: str) -> str:
        """``s`` with the secrets masked."""
        for secret in self.secrets:
            if secret in s:
                s = s.replace(secret, MASK)
        return s

    def __call__(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with the secrets masked in every str inside dicts, lists, tuples and
        attrs instances (new objects; ``value`` is not changed)."""
        if not self.secrets or _depth > 20:
            return value
        d = _depth + 1
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(k, d): self(v, d) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, d) for v in value]
        if isinstance(value, tuple):
            return tuple(self(v, d) for v in value)
        if attrs.has(type(value)):
            changes = {}
            for f in attrs.fields(type(value)):
                if not f.init:
                    continue
                old = getattr(value, f.name)
                new = self(old, d)
                if new is not old:
                    changes[f.alias or f.name] = new
            return attrs.evolve(value, **changes) if changes else value
        return value


def redactor(variables: dict[str, str], masked: frozenset[str]) -> Redactor:
    """The redactor of the masked values among ``variables`` (longest first)."""
    secrets = sorted({variables[n] for n in masked if variables.get(n)}, key=len, reverse=True)
    return Redactor(tuple(secrets))
