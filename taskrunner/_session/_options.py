"""Checking the Context options of ``open_session`` before anything starts."""

from __future__ import annotations

import math
from typing import Any

import attrs

from .._store._open import resolve_store
from .._store._protocol import Store
from ._memory import MemoryProvider
from ._notify import Notifier

__all__ = ["SessionOptions", "check_session_options"]


@attrs.frozen
class SessionOptions:
    """The checked options."""

    store: Store
    parameters: dict[str, Any]
    input_timeout: float | None
    writable_keys: frozenset[str] | None
    restore: dict[str, Any] | str | None
    memory: MemoryProvider | None
    notifier: Notifier | None


def check_session_options(
    *,
    store: Any,
    parameters: Any,
    input_timeout: Any,
    writable_keys: Any,
    restore: Any,
    memory: Any,
    notifier: Any,
) -> SessionOptions:
    """Refuse bad values with a ``TypeError``/``ValueError`` naming what is accepted."""
    resolved = resolve_store(store)
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        raise TypeError(
            f"parameters must be a dict with str keys (put into the session data before the "
            f"StartEvent), got {parameters!r:.80}"
        )
    if input_timeout is not None:
        if (
            isinstance(input_timeout, bool)
            or not isinstance(input_timeout, (int, float))
            or not math.isfinite(input_timeout)
            or input_timeout <= 0
        ):
            raise ValueError(
                f"input_timeout must be a number of seconds > 0, or None, got {input_timeout!r}"
            )
        input_timeout = float(input_timeout)
    keys: frozenset[str] | None = None
    if writable_keys is not None:
        if isinstance(writable_keys, str) or not all(isinstance(k, str) for k in writable_keys):
            raise TypeError(
                f"writable_keys must be a collection of str keys (e.g. ['status']), "
                f"got {writable_keys!r:.80}"
            )
        keys = frozenset(writable_keys)
    if restore is not None and not isinstance(restore, (dict, str)):
        raise TypeError(
            f"restore must be a dict from Context.checkpoint() or a session id (str), "
            f"got {type(restore).__name__}"
        )
    if memory is not None and not isinstance(memory, MemoryProvider):
        raise TypeError(
            f"memory must be a MemoryProvider (async search/add/delete), got {memory!r:.80}"
        )
    if notifier is not None and not isinstance(notifier, Notifier):
        raise TypeError(
            f"notifier must be a Notifier (async notify(addresses, subject, body)), "
            f"e.g. taskrunner.SMTPNotifier, got {notifier!r:.80}"
        )
    return SessionOptions(
        resolved, dict(parameters), input_timeout, keys, restore, memory, notifier
    )
