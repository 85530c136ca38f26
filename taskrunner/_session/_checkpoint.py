"""Checkpoints of a session (seed 003): ``context.checkpoint()`` and ``restore=``."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .._core.records import jsonable
from ._abtests import Assignment
from ._data import DataChange

if TYPE_CHECKING:
    from .context import Context

__all__ = ["CHECKPOINT_VERSION", "apply_checkpoint", "make_checkpoint"]

#: The form ``make_checkpoint`` writes and ``apply_checkpoint`` reads.
CHECKPOINT_VERSION = 1


def make_checkpoint(ctx: Context[Any]) -> dict[str, Any]:
    """See :meth:`taskrunner.Context.checkpoint`."""
    out = {
        "version": CHECKPOINT_VERSION,
        "session_id": ctx.session_id,
        "agent_id": ctx.agent_id,
        "environment": ctx.environment,
        "wall": time.time(),
        "data": jsonable(ctx.data),
        "trail": {k: [c.to_dict() for c in t] for k, t in ctx._trail.items()},
        "completion_messages": ctx._conversation.get(),
        "cache": jsonable(ctx._cache.items),
        "tests": {
            n: {"option": a.option, "counted": a.counted, "definition": a.definition}
            for n, a in ctx.testing.assignments.items()
        },
        "outcomes": ctx.testing.outcomes.to_dict(),
        "testing_metadata": jsonable(ctx.testing.metadata),
        "variables": {k: v for k, v in ctx.variables.items() if k not in ctx._masked},
    }
    redacted: dict[str, Any] = ctx._redact(out)
    return redacted


def apply_checkpoint(ctx: Context[Any], cp: Any) -> None:
    """Load ``cp`` (from :func:`make_checkpoint`) into a new session's ``ctx``; a bad one is
    a ``TypeError``/``ValueError`` (and the session does not open)."""
    if not isinstance(cp, dict):
        raise TypeError(
            f"restore= takes a dict from Context.checkpoint() or a session id, "
            f"got {type(cp).__name__}"
        )
    if cp.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"restore=: checkpoint version {cp.get('version')!r} is not supported "
            f"(this taskrunner reads version {CHECKPOINT_VERSION})"
        )
    try:
        for key, value in cp["data"].items():
            ctx.data[key] = value
        for key, changes in cp["trail"].items():
            trail = ctx._trail[key] = deque(maxlen=ctx._history_per_key)
            for c in changes:
                trail.append(
                    DataChange(key, c["value"], c["at"], c["source"], c.get("deleted", False))
                )
        ctx._conversation.set(cp["completion_messages"])
        ctx._cache.items = dict(cp["cache"])
        # Under another session id, a restored draw must not count a second time: its slot
        # was the original session's.
        same_session = cp["session_id"] == ctx.session_id
        for name, a in cp["tests"].items():
            ctx.testing.assignments[name] = Assignment(
                a["option"], bool(a["counted"]) and same_session, a["definition"]
            )
        ctx.testing.outcomes.restore(cp["outcomes"])
        ctx.testing.metadata.update(cp["testing_metadata"])
    except (KeyError, AttributeError, TypeError) as exc:
        raise ValueError(
            f"restore=: not a checkpoint from Context.checkpoint(): {exc!r}"
        ) from None
