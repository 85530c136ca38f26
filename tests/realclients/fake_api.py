"""A slow local HTTP server for the real-client tests: run as a script, prints ``PORT <n>``.

aiohttp's own server in a subprocess, so that nothing of it shares the test process's loops.
Every endpoint streams ``n`` pieces ``delay`` seconds apart, so a client can be cut off
mid-stream:

* ``GET /stream?n=&delay=``: chunked plain text, one line ``chunk <i>`` per piece;
* ``POST /v1/chat/completions``: OpenAI's wire format. With ``"stream": true``, server-sent
  events ``data: {chat.completion.chunk}`` whose ``delta.content`` is ``"<i> "``, then
  ``data: [DONE]``; ``max_tokens`` is ``n`` and the ``x-fake-delay`` header ``delay``;
* ``POST /v1/messages``: Anthropic's Messages API streaming events (``message_start``,
  ``content_block_start``, ``content_block_delta`` with ``text_delta`` ``"<i> "``, ...,
  ``message_stop``), ``n`` and ``delay`` as above;
* ``GET /streams/<tag>``: how the stream a client tagged ``tag`` (query ``tag=`` or header
  ``x-fake-tag``) went: ``{"state": "active" | "done" | "aborted", "sent": <frames sent>}``;
  "aborted" means the client closed the connection before the last piece.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

_streams: dict[str, dict[str, Any]] = {}


async def _pieces(
    request: web.Request, n: int, delay: float, content_type: str, frames: Any
) -> web.StreamResponse:
    tag = request.query.get("tag") or request.headers.get("x-fake-tag")
    state: dict[str, Any] = {"state": "active", "sent": 0}
    if tag:
        _streams[tag] = state
    response = web.StreamResponse(headers={"Content-Type": content_type})
    try:
        await response.prepare(request)
        for frame in frames:
            if frame is None:
                await asyncio.sleep(delay)
                continue
            await response.write(frame)
            state["sent"] += 1
        await response.write_eof()
        state["state"] = "done"
    except (ConnectionError, asyncio.CancelledError):
        state["state"] = "aborted"  # the client went away mid-stream, as these tests do
    finally:
        if state["state"] == "active":
            state["state"] = "aborted"
    return response


async def stream(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "5"))
    delay = float(request.query.get("delay", "0.05"))

    def frames() -> Any:
        for i in range(n):
            if i:
                yield None
            yield f"chunk {i}\n".encode()

    return await _pieces(request, n, delay, "text/plain", frames())


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 5)
    delay = float(request.headers.get("x-fake-delay", "0.05"))
    model = body.get("model", "fake")
    created = int(time.time())
    if not body.get("stream"):
        text = "".join(f"{i} " for i in range(n))
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        return _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def frames() -> Any:
        yield chunk({"role": "assistant", "content": ""}, None)
        for i in range(n):
            yield None
            yield chunk({"content": f"{i} "}, None)
        yield chunk({}, "stop")
        yield _sse("[DONE]")

    return await _pieces(request, n, delay, "text/event-stream", frames())


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    n = int(body.get("max_tokens", 5))
    delay = float(request.headers.get("x-fake-delay", "0.05"))
    model = body.get("model", "fake")
    usage = {"input_tokens": 1, "output_tokens": 0}

    def frames() -> Any:
        yield _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
            "message_start",
        )
        yield _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )
        for i in range(n):
            yield None
            yield _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"{i} "},
                },
                "content_block_delta",
            )
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
            "message_delta",
        )
        yield _sse({"type": "message_stop"}, "message_stop")

    if not body.get("stream"):
        return web.json_response({"type": "error"}, status=400)
    return await _pieces(request, n, delay, "text/event-stream", frames())


async def stream_state(request: web.Request) -> web.Response:
    state = _streams.get(request.match_info["tag"])
    if state is None:
        return web.json_response({"state": "unknown", "sent": 0}, status=404)
    return web.json_response(state)


async def main() -> None:
    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/streams/{tag}", stream_state)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    try:
        # Ends when the test run closes our stdin (or the parent dies).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
