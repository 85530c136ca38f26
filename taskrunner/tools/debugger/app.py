"""Starlette application of the debugger web view.

Routes (all JSON unless said otherwise):

``GET /``
    The page (HTML), with the action token and read-only flag embedded.
``GET /static/...``
    The page's script and style sheet (package data, no build step).
``GET /api/sessions``
    ``{"sessions": [session_info...], "read_only": bool, "now": float|null}``.
``GET /api/sessions/{id}/records?after=SEQ``
    ``{"session": session_info, "tasks": [task rows...], "records": [...],
    "read_only": bool, "now": float|null}``; ``records`` are the kept records
    with ``seq > SEQ`` (all kept records without ``after``) and ``tasks`` is
    the task table as of the last of them.
``GET /api/sessions/{id}/stream?after=SEQ``
    Server-sent events: first the kept records with ``seq > SEQ`` (or after
    the ``Last-Event-ID`` the browser sends when it reconnects), then live
    records as ``event: record`` (``id:`` is the record's seq) and
    ``event: missed`` when this connection fell behind and dropped records;
    the page then reloads them with the records route.
``POST /api/sessions/{id}/tasks/{name}/cancel``
    ``{"cancelled": bool}``; needs header ``X-Taskrunner-Token``.
``POST /api/sessions/{id}/interrupt``
    ``{"cancelled": int}``; needs header ``X-Taskrunner-Token``.

``now`` is the trio clock of the serving process (the clock of the records'
``at``) so the page can tick the elapsed time of running tasks; it is ``null``
in read-only mode, where the records come from another process.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from taskrunner.tools.hub import Hub, HubItem, Record, SessionControl, Subscription

__all__ = ["STATIC_DIR", "TOKEN_HEADER", "create_app", "json_dumps"]

logger = logging.getLogger(__name__)

#: Where the page's files live (package data).
STATIC_DIR = Path(__file__).parent / "static"

#: Header carrying the action token on POST requests.
TOKEN_HEADER = "X-Taskrunner-Token"

# Every page and API answer: no sniffing, no framing, no referrer leaks.
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

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


def _json_safe(value: Any) -> Any:
    """Replace what JSON.parse cannot read (NaN, infinities) by strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def json_dumps(value: Any) -> str:
    """JSON text a browser can parse, whatever a record holds."""
    try:
        return json.dumps(value, default=repr, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # Rare (a non-finite float): pay for the sanitising walk only then.
        return json.dumps(_json_safe(value), default=repr, separators=(",", ":"))


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(
        json_dumps(value),
        status_code=status_code,
        media_type="application/json",
        headers=_COMMON_HEADERS,
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


def _parse_seq(text: str | None) -> int | None:
    """Parse an ``after``/``Last-Event-ID`` value; ``ValueError`` if malformed."""
    if text is None or text == "":
        return None
    return int(text)


class _EventStream(Response):
    """Server-sent events for one session: kept records after ``after``, then live ones.

    Written as a plain ASGI response rather than a ``StreamingResponse`` over
    an async generator so that the hub subscription is released
    deterministically (``with``) when the client goes away or the server
    stops, instead of whenever the generator is garbage-collected.
    """

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, session_id: str, after: int | None, heartbeat: float) -> None:
        self._hub = hub
        self._session_id = session_id
        self._after = after
        self._heartbeat = heartbeat
        self.status_code = 200
        self.background = None
        self.body = b""
        self.init_headers({**_COMMON_HEADERS, "X-Accel-Buffering": "no"})
        # init_headers set content-length: 0 for the empty body; a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Subscribe before replaying the history so nothing published in
        # between is lost; duplicates are skipped by seq below.
        with self._hub.subscribe(self._session_id) as subscription:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            disconnected = False
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    while True:
                        message: Message = await receive()
                        if message["type"] == "http.disconnect":
                            disconnected = True
                            nursery.cancel_scope.cancel()
                            return

                nursery.start_soon(watch_disconnect)
                # Tell the browser how long to wait before reconnecting, and
                # flush headers through any buffering proxy at once.
                await self._send(send, "retry: 2000\n\n")
                last_seq = self._after
                for record in self._hub.records(self._session_id, after=self._after):
                    await self._send(send, self._record_event(record))
                    last_seq = self._seq(record, last_seq)
                await self._pump(send, subscription, last_seq)
                nursery.cancel_scope.cancel()
            if not disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send, subscription: Subscription, last_seq: int | None) -> None:
        while True:
            item: HubItem | None = None
            # Heartbeats let a dead connection be noticed (the write fails)
            # even when the session is quiet.
            with trio.move_on_after(self._heartbeat):
                try:
                    item = await subscription.__anext__()
                except StopAsyncIteration:
                    return
            if item is None:
                await self._send(send, ": keepalive\n\n")
                continue
            if item["type"] == "Missed":
                await self._send(send, f"event: missed\ndata: {json_dumps(item)}\n\n")
                continue
            record: Record = item["record"]
            seq = record.get("seq")
            if isinstance(seq, int) and last_seq is not None and seq <= last_seq:
                continue  # already sent from the history
            await self._send(send, self._record_event(record))
            last_seq = self._seq(record, last_seq)

    @staticmethod
    def _seq(record: Record, last_seq: int | None) -> int | None:
        seq = record.get("seq")
        return seq if isinstance(seq, int) else last_seq

    @staticmethod
    def _record_event(record: Record) -> str:
        seq = record.get("seq")
        # json_dumps never emits raw newlines, so one data: line suffices.
        event_id = f"id: {seq}\n" if isinstance(seq, int) else ""
        return f"event: record\n{event_id}data: {json_dumps(record)}\n\n"

    @staticmethod
    async def _send(send: Send, text: str) -> None:
        await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


def create_app(
    hub: Hub,
    *,
    token: str,
    read_only: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    heartbeat: float = 15.0,
) -> Starlette:
    """Build the debugger's Starlette app over ``hub``.

    ``token`` must be sent in the ``X-Taskrunner-Token`` header of Cancel and
    Interrupt requests (the page gets it embedded in its HTML).  With
    ``read_only`` (a loaded recording) those actions answer 403 and the page
    hides their buttons.  ``allowed_hosts`` restricts the ``Host`` header
    (protection against DNS rebinding for a server on loopback); ``None``
    accepts any.  ``heartbeat`` is the seconds between keep-alive comments on
    quiet event streams.
    """
    if not token:
        raise ValueError("token must be a non-empty string")
    page_template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page_template.replace("__TASKRUNNER_TOKEN__", html.escape(token, quote=True)).replace(
        "__TASKRUNNER_READ_ONLY__", "1" if read_only else "0"
    )
    expected_token = token.encode()

    def check_action(request: Request) -> Response | None:
        """Return an error response unless the request may act on the session."""
        if read_only:
            return _error(403, "read-only: this is a recording")
        given = request.headers.get(TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(given, expected_token):
            return _error(403, "missing or wrong token")
        return None

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP})

    async def list_sessions(request: Request) -> Response:
        return _json({"sessions": hub.sessions(), "read_only": read_only, "now": _now(read_only)})

    async def session_records(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        if session_id not in hub:
            return _error(404, "no such session")
        try:
            after = _parse_seq(request.query_params.get("after"))
        except ValueError:
            return _error(400, "after must be an integer")
        return _json(
            {
                "session": hub.session_info(session_id),
                "tasks": hub.tasks(session_id),
                "records": hub.records(session_id, after=after),
                "read_only": read_only,
                "now": _now(read_only),
            }
        )

    async def session_stream(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        if session_id not in hub:
            return _error(404, "no such session")
        try:
            # The browser's automatic reconnect says where it stopped.
            after = _parse_seq(
                request.headers.get("last-event-id") or request.query_params.get("after")
            )
        except ValueError:
            return _error(400, "after must be an integer")
        return _EventStream(hub, session_id, after, heartbeat)

    def control_of(request: Request) -> SessionControl | Response:
        """The session's control for an action, or the error response that refuses it."""
        denied = check_action(request)
        if denied is not None:
            return denied
        session_id = request.path_params["session_id"]
        if session_id not in hub:
            return _error(404, "no such session")
        control = hub.control(session_id)
        if control is None:
            return _error(409, "session has ended")
        return control

    async def cancel_task(request: Request) -> Response:
        control = control_of(request)
        if isinstance(control, Response):
            return control
        session_id = request.path_params["session_id"]
        name = request.path_params["name"]
        try:
            cancelled = control.cancel_task(name)
        except Exception:
            logger.exception("cancel_task(%r) failed in session %s", name, session_id)
            return _error(500, "cancel failed; see the server log")
        return _json({"cancelled": bool(cancelled)})

    async def interrupt(request: Request) -> Response:
        control = control_of(request)
        if isinstance(control, Response):
            return control
        session_id = request.path_params["session_id"]
        try:
            cancelled = control.interrupt()
        except Exception:
            logger.exception("interrupt failed in session %s", session_id)
            return _error(500, "interrupt failed; see the server log")
        return _json({"cancelled": int(cancelled)})

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{session_id}/records", session_records, methods=["GET"]),
        Route("/api/sessions/{session_id}/stream", session_stream, methods=["GET"]),
        # {name:path}: task names may contain "/" (sent percent-encoded).
        Route("/api/sessions/{session_id}/tasks/{name:path}/cancel", cancel_task, methods=["POST"]),
        Route("/api/sessions/{session_id}/interrupt", interrupt, methods=["POST"]),
        Mount("/static", app=_StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware)
