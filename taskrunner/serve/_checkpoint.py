"""What a worker saves of a session after every handled input, and how it restores it.

:func:`checkpoint_session` returns a JSON-safe dict: the session's identity, parameters,
data and conversation, and under ``"core"`` the core's own ``context.checkpoint()`` (data
trail, cache, tests, outcomes...). A worker that takes the session over opens it with
``open_session(restore=checkpoint["core"])``; with a core that has no ``restore=``,
:func:`restore_session` puts the data and conversation back instead.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._core.records import jsonable
from .._session.session import Session, open_session

__all__ = ["CHECKPOINT_VERSION", "checkpoint_session", "core_restore", "restore_session"]

#: Bumped when the layout changes; :func:`restore_session` refuses other versions.
CHECKPOINT_VERSION = 1


def checkpoint_session(session: Session, *, parameters: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe picture of what a session needs to go on elsewhere.

    Keys: ``version``, ``session_id``, ``agent_id``, ``environment``, ``parameters`` (as
    given at start), ``data`` (the session data, through ``jsonable``: values JSON cannot hold
    come back as their ``repr``), ``conversation`` (the completion messages when the
    context keeps them, else an empty list), and ``core``: ``context.checkpoint()`` when the
    context has it. Running tasks are not in it: they cannot move
    between processes, and the taker reports them ended (``"worker_lost"``).
    """
    context = session.context
    getter = getattr(context, "get_completion_messages", None)
    conversation = jsonable(getter()) if callable(getter) else []
    out = {
        "version": CHECKPOINT_VERSION,
        "session_id": context.session_id,
        "agent_id": context.agent_id,
        "environment": context.environment,
        "parameters": jsonable(parameters),
        "data": jsonable(context.data),
        "conversation": conversation,
    }
    core = getattr(context, "checkpoint", None)
    if callable(core):
        # The core's own checkpoint (data trail, cache, tests...), for open_session(restore=).
        out["core"] = core()
    return out


def core_restore() -> bool:
    """Whether ``open_session`` takes ``restore=`` and ``parameters=`` (the core's own
    checkpoints); then a resumed session is opened with ``restore=checkpoint["core"]``."""
    return {"restore", "parameters"} <= set(inspect.signature(open_session).parameters)


def restore_session(session: Session, checkpoint: dict[str, Any]) -> None:
    """Put a :func:`checkpoint_session` picture back into a session opened with the same id.

    Raises ``ValueError`` for a checkpoint of another version or another session.
    """
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint version {checkpoint.get('version')!r} is not supported "
            f"(this taskrunner reads version {CHECKPOINT_VERSION})"
        )
    context = session.context
    if checkpoint.get("session_id") != context.session_id:
        raise ValueError(
            f"checkpoint of session {checkpoint.get('session_id')!r} cannot restore "
            f"session {context.session_id!r}"
        )
    context.data.update(checkpoint.get("data") or {})
    setter = getattr(context, "set_completion_messages", None)
    if callable(setter) and checkpoint.get("conversation"):
        setter(list(checkpoint["conversation"]))
