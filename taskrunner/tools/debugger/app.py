"""Starlette application of the debugger web view.

Every ``/api/...`` request (and ``/metrics``) must carry ``Authorization: Bearer TOKEN``;
the page and its static files carry no data and need none.  On loopback the page has the
token embedded; on another address it is not, and the person opens the printed address
with ``#token=...`` (a URL fragment, never sent to the server or written to its logs).

Routes (all JSON unless said otherwise):

``GET /``
    The page (HTML), with the read-only flag (and on loopback the token) embedded.
``GET /static/...``
    The page's script and style sheet (package data, no build step).
``GET /api/status``
    ``{"agent": watchdog status or null, "recording": progress or null, "feed": ...}``:
    whether the agent's thread is blocked now, how far a recording has been read.
``GET /api/sessions``
    ``{"sessions": [session_info...], "read_only": bool, "now": float|null}``.
``GET /api/sessions/{id}/records?after=SEQ``
    ``{"session", "tasks", "records", "read_only", "now"}``: the kept records with
    ``seq > SEQ`` (recordings: the first page), and the task table.
``GET /api/sessions/{id}/page?start=N&count=M&task=KEY&kinds=A,B``
    ``{"total", "start", "records"}``: a page of the records matching the filter.
``GET /api/sessions/{id}/tasks``
    ``{"tasks": [...]}``: the task table alone.
``GET /api/sessions/{id}/tasks/{name}/stack``
    ``{"stack": [frames] | null}``: where a running task waits now (live sessions).
``GET /api/sessions/{id}/download``
    The session's records as a JSON-lines recording (``debug FILE`` opens it).
``GET /api/sessions/{id}/stream?after=SEQ``
    Server-sent events: kept records after SEQ, then live ones (``event: record``), and
    ``event: missed`` when this connection fell behind.  At most ``max_stream_clients``
    streams at once (503 past that).
``POST /api/sessions/{id}/tasks/{name}/cancel``
    ``{"cancelled": bool}``; the cancel's origin is ``"debugger"``.  202 with
    ``{"queued": true}`` when the agent's thread is blocked.
``POST /api/sessions/{id}/interrupt``
    ``{"cancelled": int}`` (or 202 as above).
``GET /metrics``
    Prometheus text format, only when created with ``metrics=True``.
"""

from __future__ import annotations

import hmac
import html
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from taskrunner.tools.feed import AgentBusyError, _accepts_origin
from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import encode_line

from .encoding import COMMON_HEADERS, json_dumps
from .stream import EventStream

__all__ = [
    "DEFAULT_MAX_STREAM_CLIENTS",
    "STATIC_DIR",
    "TOKEN_HEADER",
    "create_app",
    "json_dumps",
]

logger = logging.getLogger(__name__)

#: Where the page's files live (package data).
STATIC_DIR = Path(__file__).parent / "static"

#: The header every API request carries: ``Authorization: Bearer TOKEN``.
TOKEN_HEADER = "Authorization"

#: The header an action's token may also come in when ``require_token=False``.
LEGACY_TOKEN_HEADER = "X-Taskrunner-Token"

#: Event streams served at once unless told otherwise.
DEFAULT_MAX_STREAM_CLIENTS = 16

_MAX_PAGE = 2000

# The page only loads its own script and style: even if some record text did
# end up parsed as HTML, an inline script or handler would not run.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _StaticFiles(StaticFiles):
    """The page's script and style, always revalidated.

    ``no-cache`` (with the ETag StaticFiles sets) makes the browser ask again
    each time, so a page opened after upgrading taskrunner never runs a
    cached older script against the newer API.
    """

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(
        json_dumps(value),
        status_code=status_code,
        media_type="application/json",
        headers=COMMON_HEADERS,
    )


def _error(status_code: int, message: str) -> Response:
    return _json({"error": message}, status_code)


def _now(read_only: bool) -> float | None:
    if read_only:
        return None
    try:
        return trio.current_time()
    except RuntimeError:  # served outside trio (not the normal case)
        return None


def _parse_int(text: str | None, default: int | None = None) -> int | None:
    """Parse an integer query value; ``ValueError`` if malformed."""
    if text is None or text == "":
        return default
    return int(text)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _download_lines(source: Any, session_id: str) -> Iterator[bytes]:
    lines = getattr(source, "lines", None)
    if lines is not None:
        yield from lines(session_id)
        return
    for record in source.records(session_id):
        yield encode_line(session_id, record).encode()


def create_app(
    source: Any,
    *,
    token: str,
    read_only: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    heartbeat: float = 15.0,
    embed_token: bool = True,
    status: Callable[[], dict[str, Any] | None] | None = None,
    feed: Any = None,
    metrics: bool = False,
    max_stream_clients: int = DEFAULT_MAX_STREAM_CLIENTS,
    require_token: bool = True,
) -> Starlette:
    """Build the debugger's Starlette app over ``source``.

    ``source`` is a :class:`~taskrunner.tools.hub.Hub` (live sessions) or a
    :class:`~taskrunner.tools.recording_index.RecordingIndex` (a recording; pass
    ``read_only=True``).  Every API request needs ``Authorization: Bearer <token>``; with
    ``embed_token`` (loopback) the page carries it, otherwise the person supplies it.  With
    ``read_only`` the actions answer 403 and the page hides their buttons.
    ``allowed_hosts`` restricts the ``Host`` header (against DNS rebinding on loopback);
    ``None`` accepts any.  ``heartbeat`` is the seconds between keep-alive comments on quiet
    streams.  ``status()`` gives the agent's watchdog status for ``/api/status`` (called in
    the server's thread), ``feed`` the hand-off (its backlog is shown), ``metrics`` turns
    ``/metrics`` on, ``max_stream_clients`` bounds the open event streams.
    ``require_token=False`` is for an app mounted behind another check of every request
    (``taskrunner serve``'s API key): reads then need no token, and actions take it as
    ``Authorization: Bearer`` or in the ``X-Taskrunner-Token`` header.
    """
    if not token:
        raise ValueError("token must be a non-empty string")
    if max_stream_clients < 1:
        raise ValueError(f"max_stream_clients must be at least 1, got {max_stream_clients!r}")
    page_template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page_template.replace(
        "__TASKRUNNER_TOKEN__", html.escape(token, quote=True) if embed_token else ""
    ).replace("__TASKRUNNER_READ_ONLY__", "1" if read_only else "0")
    expected = f"Bearer {token}".encode()
    streams = 0
    render_metrics: Callable[[], bytes] | None = None
    if metrics:
        from .metrics import metrics_text

        render_metrics = metrics_text(source, status=status, feed=feed)

    def authorized(request: Request, *, action: bool = False) -> bool:
        if not require_token and not action:
            return True
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return True
        if require_token:
            return False
        legacy = request.headers.get(LEGACY_TOKEN_HEADER, "").encode()
        return hmac.compare_digest(legacy, token.encode())

    def session_of(request: Request, *, action: bool = False) -> str | Response:
        if not authorized(request, action=action):
            return _error(401, "missing or wrong token (Authorization: Bearer ...)")
        session_id: str = request.path_params["session_id"]
        if session_id not in source:
            return _error(404, "no such session")
        return session_id

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={**COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP})

    async def api_status(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong token (Authorization: Bearer ...)")
        progress = getattr(source, "progress", None)
        feed_info = None
        if feed is not None:
            feed_info = {"pending": feed.pending(), "dropped": feed.dropped}
        return _json(
            {
                "agent": status() if status is not None else None,
                "recording": progress() if progress is not None else None,
                "feed": feed_info,
                "read_only": read_only,
                "now": _now(read_only),
            }
        )

    async def list_sessions(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong token (Authorization: Bearer ...)")
        return _json(
            {"sessions": source.sessions(), "read_only": read_only, "now": _now(read_only)}
        )

    async def session_records(request: Request) -> Response:
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        try:
            after = _parse_int(request.query_params.get("after"))
        except ValueError:
            return _error(400, "after must be an integer")
        return _json(
            {
                "session": source.session_info(session_id),
                "tasks": source.tasks(session_id),
                "records": source.records(session_id, after=after),
                "read_only": read_only,
                "now": _now(read_only),
            }
        )

    async def session_page(request: Request) -> Response:
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        query = request.query_params
        try:
            start = _parse_int(query.get("start"), 0) or 0
            count = _parse_int(query.get("count"), 200) or 0
        except ValueError:
            return _error(400, "start and count must be integers")
        if start < 0 or not 0 <= count <= _MAX_PAGE:
            return _error(400, f"start must be >= 0 and count between 0 and {_MAX_PAGE}")
        kinds_text = query.get("kinds")
        kinds = frozenset(k for k in kinds_text.split(",") if k) if kinds_text else None
        task = query.get("task") or None
        page_of = partial(source.page, session_id, start=start, count=count, task=task, kinds=kinds)
        if isinstance(source, Hub):
            result = page_of()  # the hub belongs to this thread's trio run
        else:  # a recording: reading the file may take a moment
            result = await trio.to_thread.run_sync(page_of)
        result["session"] = source.session_info(session_id)
        return _json(result)

    async def session_tasks(request: Request) -> Response:
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        return _json({"tasks": source.tasks(session_id), "now": _now(read_only)})

    async def task_stack(request: Request) -> Response:
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        control = source.control(session_id)
        reader = getattr(control, "task_stack", None)
        if reader is None:
            return _error(409, "no live session to read stacks from")
        try:
            stack = reader(request.path_params["name"])
        except Exception:
            logger.exception("reading the stack of %r failed", request.path_params["name"])
            return _error(500, "could not read the stack; see the server log")
        return _json({"stack": stack})

    async def download(request: Request) -> Response:
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session_id)
        return StreamingResponse(
            _download_lines(source, session_id),
            media_type="application/x-ndjson",
            headers={
                **COMMON_HEADERS,
                "Content-Disposition": f'attachment; filename="{safe}.jsonl"',
            },
        )

    def stream_closed() -> None:
        nonlocal streams
        streams -= 1

    async def session_stream(request: Request) -> Response:
        nonlocal streams
        session_id = session_of(request)
        if isinstance(session_id, Response):
            return session_id
        if read_only or not isinstance(source, Hub):
            return _error(409, "a recording has no live stream; page through it")
        try:
            # The browser's reconnect says where it stopped.
            after = _parse_int(
                request.headers.get("last-event-id") or request.query_params.get("after")
            )
        except ValueError:
            return _error(400, "after must be an integer")
        if streams >= max_stream_clients:
            return _error(503, f"too many open streams (at most {max_stream_clients})")
        streams += 1
        return EventStream(source, session_id, after, heartbeat, on_close=stream_closed)

    def control_of(request: Request) -> Any:
        """The session's control for an action, or the error response that refuses it."""
        session_id = session_of(request, action=True)
        if isinstance(session_id, Response):
            return session_id
        if read_only:
            return _error(403, "read-only: this is a recording")
        control = source.control(session_id)
        if control is None:
            return _error(409, "session has ended")
        return control

    async def act(request: Request, what: str, call: Callable[[Any], Any]) -> Response:
        control = control_of(request)
        if isinstance(control, Response):
            return control
        try:
            return _json(await _maybe_await(call(control)))
        except AgentBusyError as exc:
            return _json({"queued": True, "error": str(exc)}, 202)
        except Exception:
            logger.exception("%s failed in session %s", what, request.path_params["session_id"])
            return _error(500, f"{what} failed; see the server log")

    def _cancel(control: Any, name: str) -> Any:
        if _accepts_origin(control.cancel_task):
            result = control.cancel_task(name, origin="debugger")
        else:  # a control from before cancel origins
            result = control.cancel_task(name)

        async def answer() -> dict[str, bool]:
            return {"cancelled": bool(await _maybe_await(result))}

        return answer()

    async def cancel_task(request: Request) -> Response:
        name = request.path_params["name"]
        return await act(request, "cancel", lambda control: _cancel(control, name))

    async def interrupt(request: Request) -> Response:
        async def call(control: Any) -> dict[str, int]:
            return {"cancelled": int(await _maybe_await(control.interrupt()))}

        return await act(request, "interrupt", call)

    async def metrics_route(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "missing or wrong token (Authorization: Bearer ...)")
        assert render_metrics is not None
        from .metrics import CONTENT_TYPE_LATEST

        return Response(
            render_metrics(), headers={**COMMON_HEADERS, "Content-Type": CONTENT_TYPE_LATEST}
        )

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/status", api_status, methods=["GET"]),
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{session_id}/records", session_records, methods=["GET"]),
        Route("/api/sessions/{session_id}/page", session_page, methods=["GET"]),
        Route("/api/sessions/{session_id}/tasks", session_tasks, methods=["GET"]),
        Route("/api/sessions/{session_id}/download", download, methods=["GET"]),
        Route("/api/sessions/{session_id}/stream", session_stream, methods=["GET"]),
        # {name:path}: task names may contain "/" (sent percent-encoded).
        Route("/api/sessions/{session_id}/tasks/{name:path}/stack", task_stack, methods=["GET"]),
        Route("/api/sessions/{session_id}/tasks/{name:path}/cancel", cancel_task, methods=["POST"]),
        Route("/api/sessions/{session_id}/interrupt", interrupt, methods=["POST"]),
        Mount("/static", app=_StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if render_metrics is not None:
        routes.insert(1, Route("/metrics", metrics_route, methods=["GET"]))
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware)
