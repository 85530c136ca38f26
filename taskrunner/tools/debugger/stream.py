"""Server-sent events of one session for the debugger page."""

from __future__ import annotations

from collections.abc import Callable

import trio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from taskrunner.tools.hub import Hub, HubItem, Record, Subscription

from .encoding import COMMON_HEADERS, json_dumps

__all__ = ["EventStream"]


class EventStream(Response):
    """Server-sent events for one session: kept records after ``after``, then live ones.

    Written as a plain ASGI response rather than a ``StreamingResponse`` over
    an async generator so that the hub subscription is released
    deterministically (``with``) when the client goes away or the server
    stops, instead of whenever the generator is garbage-collected.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: Hub,
        session_id: str,
        after: int | None,
        heartbeat: float,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._on_close = on_close
        self._hub = hub
        self._session_id = session_id
        self._after = after
        self._heartbeat = heartbeat
        self.status_code = 200
        self.background = None
        self.body = b""
        self.init_headers({**COMMON_HEADERS, "X-Accel-Buffering": "no"})
        # init_headers set content-length: 0 for the empty body; a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()

    async def _serve(self, receive: Receive, send: Send) -> None:
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
