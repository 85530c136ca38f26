"""One write of session data, as the Context's audit trail keeps it (seed 003)."""

from __future__ import annotations

from typing import Any

import attrs

from .._core.records import jsonable

__all__ = ["DataChange"]


@attrs.frozen
class DataChange:
    """One write of session data: ``value`` set under ``key`` at ``at`` by ``source``.

    ``source`` is the ``source=`` given to ``set_data``, else ``"handler"``, the name of the
    task that wrote it, or ``"external"`` for code outside the handler and its tasks;
    ``"parameters"`` for session parameters. ``deleted`` marks the removal by
    ``clear_data``.
    """

    key: str
    value: Any
    at: float
    source: str
    deleted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "key": self.key,
            "value": jsonable(self.value),
            "at": self.at,
            "source": self.source,
            "deleted": self.deleted,
        }
