"""The HTTP and WebSocket API (Starlette), with the debugger page mounted beside it.

Routes (JSON; errors are ``{"error": "..."}`` with the status that fits):

``POST /v1/agents/{agent_id}/sessions/start``  ``{"environment"?: str, "parameters"?: {...}}``
    -> ``201 {"session_id": ...}``
``POST /v1/sessions/{id}/input``  an input event -> ``202 {"input_id": ...}``
``GET /v1/sessions/{id}/events?after=SEQ&limit=N&wait=S``
    -> ``{"session_id", "records": [...], "last_seq"}``; ``wait`` long-polls up to S seconds
``GET /v1/sessions`` -> ``{"sessions": [...]}``; ``GET /v1/sessions/{id}`` -> one of them
``WS /v1/sessions/{id}/ws?after=SEQ``  input events in, records out, live; the control
    frames ``{"control": "interrupt"}`` and ``{"control": "cancel_task", "name": NAME}`` do
    what the two routes below do
``POST /v1/sessions/{id}/interrupt``, ``POST /v1/sessions/{id}/tasks/{name}/cancel`` -> 202
``GET /v1/health`` -> this worker
``/debugger/``: the debugger page over this worker's sessions
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qs

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ._backend import Backend
from ._errors import BadInputError, PayloadTooLargeError, ServeError
from ._inputs import parse_control, parse_input

__all__ = ["API_KEY_COOKIE", "create_api", "json_dumps"]

logger = logging.getLogger("taskrunner.serve")

#: Cookie that carries the API key for the debugger page in a browser.
API_KEY_COOKIE = "taskrunner_api_key"

_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_MAX_WAIT = 30.0
_MAX_LIMIT = 10_000


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """Compact JSON; values JSON cannot hold become their ``repr`` (``NaN`` too)."""
    try:
        return json.dumps(value, default=repr, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(value), default=repr, separators=(",", ":"))


def _json(value: Any, status: int = 200) -> Response:
    return Response(json_dumps(value), status, headers=_HEADERS, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(body: bytes) -> Any:
    if not body.strip():
        raise BadInputError("the body is empty; expected a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"malformed JSON: {exc}") from None


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes; this server takes {limit} at most")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"body over {limit} bytes; this server takes that at most")
    return _decode(bytes(body))


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> Any:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInputError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise BadInputError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _wait_param(request: Request) -> float:
    text = request.query_params.get("wait")
    if text is None or text == "":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"wait must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= _MAX_WAIT):
        raise BadInputError(f"wait must be between 0 and {_MAX_WAIT:g} seconds, got {text!r}")
    return value


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServeError as exc:
            return _error(exc.status, str(exc))

    run.__name__ = endpoint.__name__
    return run


class _KeyCheck:
    """ASGI middleware: every request needs ``Authorization: Bearer KEY``.

    The debugger page (under ``/debugger``) also takes the key from a cookie, which
    ``/debugger/?key=KEY`` sets, since a browser cannot add the header to a page load.
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    def _given(self, scope: Scope) -> tuple[bytes, bytes]:
        header, cookie = b"", b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                header = value[7:].strip()
            elif name == b"cookie":
                for part in value.split(b";"):
                    k, _, v = part.strip().partition(b"=")
                    if k == API_KEY_COOKIE.encode():
                        cookie = v
        return header, cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header, cookie = self._given(scope)
        ok = hmac.compare_digest(header, self.key)
        path: str = scope.get("path", "")
        debugger = path == "/debugger" or path.startswith("/debugger/")
        if not ok and debugger:
            ok = hmac.compare_digest(cookie, self.key)
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("key") or [""])[0].encode()
            if not ok and scope["type"] == "http" and hmac.compare_digest(given, self.key):
                response: Response = RedirectResponse("/debugger/", 303)
                response.set_cookie(
                    API_KEY_COOKIE, self.key.decode(), httponly=True, samesite="strict"
                )
                await response(scope, receive, send)
                return
        if ok:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            response = _error(401, "missing or wrong API key: send Authorization: Bearer KEY")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)


def create_api(
    backend: Backend,
    *,
    api_key: str | None,
    debugger: ASGIApp | None = None,
    max_body: int = 64 * 1024,
) -> ASGIApp:
    """Build the API over ``backend``; see the module docstring for the routes.

    ``api_key``: when given, every route needs ``Authorization: Bearer KEY`` (401 otherwise;
    a WebSocket is closed with code 1008). ``debugger``: an ASGI app mounted at
    ``/debugger``. ``max_body``: the largest request body accepted (413 past it).
    """

    async def start(request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        if agent_id != backend.agent_id:
            return _error(404, f"no agent {agent_id!r}; this server runs {backend.agent_id!r}")
        body = await _read_json(request, max_body)
        if not isinstance(body, dict):
            raise BadInputError(f"the body must be a JSON object, got {type(body).__name__}")
        extra = sorted(set(body) - {"environment", "parameters"})
        if extra:
            raise BadInputError(
                f"unexpected keys {', '.join(extra)}; accepted: environment, parameters"
            )
        environment = body.get("environment", "")
        parameters = body.get("parameters", {})
        if not isinstance(environment, str):
            raise BadInputError(f"environment must be a string, got {environment!r:.80}")
        if not isinstance(parameters, dict):
            raise BadInputError(f"parameters must be a JSON object, got {parameters!r:.80}")
        session_id = await backend.start_session(environment, parameters)
        return _json({"session_id": session_id}, 201)

    async def send_input(request: Request) -> Response:
        event = parse_input(await _read_json(request, max_body))
        input_id = await backend.send_input(request.path_params["session_id"], event)
        return _json({"input_id": input_id}, 202)

    async def events(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        after = _int_param(request, "after", None, -1, 2**62)
        limit = _int_param(request, "limit", 1000, 1, _MAX_LIMIT)
        wait = _wait_param(request)
        records = await backend.records(session_id, after, limit, wait)
        last = records[-1]["seq"] if records else after
        return _json({"session_id": session_id, "records": records, "last_seq": last})

    async def list_sessions(request: Request) -> Response:
        limit = _int_param(request, "limit", 1000, 1, _MAX_LIMIT)
        return _json({"sessions": await backend.sessions(limit)})

    async def one_session(request: Request) -> Response:
        return _json(await backend.session_info(request.path_params["session_id"]))

    async def interrupt(request: Request) -> Response:
        await backend.interrupt(request.path_params["session_id"])
        return _json({"accepted": True}, 202)

    async def cancel(request: Request) -> Response:
        session_id, name = request.path_params["session_id"], request.path_params["name"]
        await backend.cancel_task(session_id, name)
        return _json({"accepted": True}, 202)

    async def health(request: Request) -> Response:
        gc_state = {"thresholds": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}
        return _json({**await backend.health(), "gc": gc_state})

    async def websocket(ws: WebSocket) -> None:
        session_id = ws.path_params["session_id"]
        try:
            after = _int_param(cast(Request, ws), "after", None, -1, 2**62)
            await backend.session_info(session_id)
        except ServeError as exc:
            await ws.accept()
            await ws.send_text(json_dumps({"error": str(exc)}))
            await ws.close(4000 + exc.status)
            return
        await ws.accept()

        async def inputs() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                data = message.get("bytes") or (message.get("text") or "").encode()
                try:
                    if len(data) > max_body:
                        raise PayloadTooLargeError(f"message over {max_body} bytes")
                    frame = _decode(data)
                    if isinstance(frame, dict) and "control" in frame:
                        kind, name = parse_control(frame)
                        if kind == "interrupt":
                            await backend.interrupt(session_id)
                        else:
                            await backend.cancel_task(session_id, cast(str, name))
                    else:
                        await backend.send_input(session_id, parse_input(frame))
                except ServeError as exc:
                    await ws.send_text(json_dumps({"error": str(exc), "status": exc.status}))

        async def deliver(record: dict[str, Any]) -> None:
            await ws.send_text(json_dumps(record))

        gone = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(inputs)
                await backend.follow(session_id, after, deliver)
                nursery.cancel_scope.cancel()
        except* WebSocketDisconnect:
            gone = True
        if not gone and ws.application_state == WebSocketState.CONNECTED:
            await ws.close(1000)

    async def not_found(request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, f"{detail}: {request.method} {request.url.path}")

    routes: list[Any] = [
        Route("/v1/agents/{agent_id}/sessions/start", _guarded(start), methods=["POST"]),
        Route("/v1/sessions", _guarded(list_sessions), methods=["GET"]),
        Route("/v1/sessions/{session_id}", _guarded(one_session), methods=["GET"]),
        Route("/v1/sessions/{session_id}/input", _guarded(send_input), methods=["POST"]),
        Route("/v1/sessions/{session_id}/events", _guarded(events), methods=["GET"]),
        Route("/v1/sessions/{session_id}/interrupt", _guarded(interrupt), methods=["POST"]),
        Route(
            "/v1/sessions/{session_id}/tasks/{name:path}/cancel",
            _guarded(cancel),
            methods=["POST"],
        ),
        Route("/v1/health", _guarded(health), methods=["GET"]),
        WebSocketRoute("/v1/sessions/{session_id}/ws", websocket),
    ]
    if debugger is not None:
        routes.append(Mount("/debugger", app=debugger))
    app: ASGIApp = Starlette(
        routes=routes, exception_handlers={404: not_found, 405: not_found}
    )
    if api_key:
        app = _KeyCheck(app, api_key)
    return app
