"""Serve agents over HTTP and WebSocket, in one process or spread over workers with Redis.

``python -m taskrunner serve agent.py`` runs it; see the README's "Serving agents". Needs the
``ui`` extra (Starlette, Hypercorn), the ``serve`` extra (coredis) for ``--redis``, and the
``postgres`` extra (psycopg) for ``--checkpoints postgresql://...``.
:func:`create_api` and :class:`RedisBackend` are imported on first use, so importing this
package (as the command line does) needs neither.
"""

from typing import TYPE_CHECKING, Any

from ._backend import Backend, Deliver, new_session_id, worker_name
from ._checkpoint import CHECKPOINT_VERSION, checkpoint_session, restore_session
from ._errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ServeError,
    UnavailableError,
)
from ._inputs import INPUT_TYPES, event_from_json, parse_input
from ._local import LocalBackend
from ._runner import Resume, SessionRunner, lost_tasks

if TYPE_CHECKING:
    from ._app import create_api
    from ._redis import RedisBackend

__all__ = [
    "CHECKPOINT_VERSION",
    "INPUT_TYPES",
    "Backend",
    "BadInputError",
    "ConflictError",
    "Deliver",
    "LocalBackend",
    "NotFoundError",
    "PayloadTooLargeError",
    "RedisBackend",
    "Resume",
    "ServeError",
    "SessionRunner",
    "UnavailableError",
    "checkpoint_session",
    "create_api",
    "event_from_json",
    "lost_tasks",
    "new_session_id",
    "parse_input",
    "restore_session",
    "worker_name",
]


def __getattr__(name: str) -> Any:
    # The two names whose modules need optional extras are imported when first used.
    if name == "create_api":
        from ._app import create_api

        return create_api
    if name == "RedisBackend":
        from ._redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
