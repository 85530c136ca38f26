"""Serve the debugger app with Hypercorn's trio worker."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

from taskrunner.tools.debugger.app import DEFAULT_MAX_STREAM_CLIENTS, create_app

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "ExposureError",
    "is_loopback",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

#: The environment variable the CLI reads the debugger's token from.
TOKEN_ENV = "TASKRUNNER_TOKEN"

# Host header values accepted when bound to loopback (TrustedHostMiddleware
# compares them without the port).  Anything else is a DNS-rebinding attempt
# or a proxy we were not told about.
_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str) -> list[str] | None:
    if not is_loopback(host):
        return None
    bare = host.strip("[]").lower()
    # The bound address itself too (say 127.0.0.2), as the Host header shows it.
    return [*_LOOPBACK_HOSTS, f"[{bare}]" if ":" in bare else bare]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def _bind(host: str, port: int) -> str:
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


class ExposureError(ValueError):
    """Serving on a non-loopback address was asked for without a token."""


async def serve(
    hub: Any,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    read_only: bool = False,
    status: Callable[[], dict[str, Any] | None] | None = None,
    feed: Any = None,
    metrics: bool = False,
    max_stream_clients: int = DEFAULT_MAX_STREAM_CLIENTS,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the debugger page for ``hub`` until cancelled.

    Binds ``host:port`` (``port=0`` picks a free port), then reports the base
    URL (e.g. ``"http://127.0.0.1:8765/"``) with ``task_status.started(url)``
    so the caller can print it::

        url = await nursery.start(partial(serve, hub, port=args.port))
        print(f"debugger: {url}")

    ``hub`` is a :class:`~taskrunner.tools.hub.Hub` or, with ``read_only``, a
    :class:`~taskrunner.tools.recording_index.RecordingIndex`.  Every API request needs
    ``Authorization: Bearer <token>``.  On loopback the token is random unless given and
    the page has it embedded; requests whose ``Host`` is not a loopback name are refused
    (DNS rebinding).  Any other address needs an explicit ``token`` (else
    :class:`ExposureError`), which the page does not embed: the person opens
    ``URL#token=...``.  ``status``, ``feed``, ``metrics`` and ``max_stream_clients`` are
    as for :func:`~taskrunner.tools.debugger.app.create_app`.  If the address cannot be
    bound (port in use), the :class:`OSError` is raised before anything is reported.
    Cancelling the surrounding scope stops the server at once, closing open streams.
    """
    loopback = is_loopback(host)
    if not loopback and not token:
        raise ExposureError(
            f"serving on {host} (not loopback) needs a token: pass --token or set "
            f"{TOKEN_ENV}, and keep it secret"
        )
    app = create_app(
        hub,
        token=token or secrets.token_urlsafe(32),
        read_only=read_only,
        allowed_hosts=_allowed_hosts(host),
        embed_token=loopback,
        status=status,
        feed=feed,
        metrics=metrics,
        max_stream_clients=max_stream_clients,
    )
    config = Config()
    config.bind = [_bind(host, port)]
    # Log through our own logger: Hypercorn's default handler would print
    # "Running on ..." over the terminal renderer; warnings and errors still
    # reach stderr through logging's last-resort handler.
    config.errorlog = logging.getLogger("taskrunner.debugger.hypercorn")
    config.accesslog = None
    # Event streams never finish on their own; don't wait long for them.
    config.graceful_timeout = 0.5
    # Starlette's ASGI types are looser than Hypercorn's TypedDicts; the app
    # is a plain ASGI 3 app, so the cast is only for the type checker.
    asgi_app = cast(ASGIFramework, app)
    started = False
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(partial(hypercorn_serve, asgi_app, config))
            url = binds[0].rstrip("/") + "/"
            logger.info("debugger serving on %s", url)
            started = True
            task_status.started(url)
    except BaseExceptionGroup as group:
        # Hypercorn's nested nurseries (and ours) wrap a bind failure ("address
        # already in use") in exception groups; callers want the plain OSError
        # to print a clear message.
        leaves = _leaves(group)
        if not started and len(leaves) == 1 and isinstance(leaves[0], OSError):
            raise leaves[0] from None
        raise
