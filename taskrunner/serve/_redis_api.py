"""The API half of a Redis worker: sessions started, inputs queued and records read through
Redis, whichever worker runs the session."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio
from coredis.tokens import PureToken

from ._backend import Deliver, new_session_id
from ._errors import ConflictError, NotFoundError, UnavailableError
from ._redis_base import REDIS_DOWN, RedisBase

__all__ = ["RedisApi"]


class RedisApi(RedisBase):
    """The :class:`taskrunner.serve.Backend` methods of a Redis worker."""

    # ------------------------------------------------------------------ API

    async def start_session(self, environment: str, parameters: dict[str, Any]) -> str:
        """See :class:`taskrunner.serve.Backend`."""
        if self._draining:
            raise UnavailableError("this worker is shutting down and takes no new sessions")
        session_id = new_session_id()
        now = time.time()

        async def write() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._skey(session_id, "meta"),
                    {
                        "agent_id": self.agent_id,
                        "environment": environment,
                        "parameters": json.dumps(parameters),
                        "state": "running",
                        "owner": "",
                        "created": repr(now),
                    },
                )
                pipe.xadd(self._skey(session_id, "in"), {"m": json.dumps({"k": "start"})})
                pipe.zadd(self._key("sessions"), {session_id: now})
                pipe.sadd(self._key("live"), [session_id])
                pipe.xadd(self._key("new"), {"sid": session_id, "why": "new"})

        await self._api_call(write)
        return session_id

    async def _input(self, session_id: str, message: dict[str, Any], stops: bool) -> str:
        keys = [self._skey(session_id, "meta"), self._skey(session_id, "in")]
        args = [json.dumps(message), "1" if stops else "0"]
        ok, detail = await self._api_call(lambda: self._script("INPUT")(keys, args))
        if int(ok):
            return str(detail)
        if detail == "missing":
            raise NotFoundError(f"no session {session_id!r}")
        raise ConflictError(f"session {session_id!r} has {detail}: it takes no input")

    async def send_input(self, session_id: str, event: dict[str, Any]) -> str:
        """See :class:`taskrunner.serve.Backend`."""
        message = {"k": "input", "event": event}
        return await self._input(session_id, message, event["type"] == "stop")

    async def interrupt(self, session_id: str) -> None:
        """See :class:`taskrunner.serve.Backend`."""
        await self._input(session_id, {"k": "interrupt"}, False)

    async def cancel_task(self, session_id: str, name: str) -> None:
        """See :class:`taskrunner.serve.Backend`. The owner may be another worker, so an
        unknown task name is accepted here and changes nothing there."""
        await self._input(session_id, {"k": "cancel", "name": name}, False)

    async def _read(self, session_id: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        start = "-" if after is None else f"(0-{after + 1}"
        entries = await self._api_call(
            lambda: self._client.xrange(self._skey(session_id, "rec"), start, "+", count=limit)
        )
        return [json.loads(e.field_values["r"]) for e in entries]

    async def _meta(self, session_id: str) -> dict[str, str]:
        meta: dict[str, str] = dict(
            await self._api_call(lambda: self._client.hgetall(self._skey(session_id, "meta")))
        )
        if not meta:
            raise NotFoundError(f"no session {session_id!r}")
        return meta

    @contextmanager
    def _watching(self, session_id: str, after: int | None) -> Iterator[str]:
        """Have this worker's record reader watch the session's stream while in the block;
        :meth:`_news` then gives an event set when entries arrive."""
        key = self._skey(session_id, "rec")
        if key not in self._records.positions:

            def notify(entries: list[Any]) -> None:
                event = self._record_events.pop(key, None)
                if event is not None:
                    event.set()

            self._records.watch(key, "0-0" if after is None else f"0-{after + 1}", notify)
        self._followers[key] = self._followers.get(key, 0) + 1
        try:
            yield key
        finally:
            self._followers[key] -= 1
            if not self._followers[key]:
                del self._followers[key]
                self._records.unwatch(key)
                self._record_events.pop(key, None)

    def _news(self, key: str) -> trio.Event:
        event = self._record_events.get(key)
        if event is None:
            event = self._record_events[key] = trio.Event()
        return event

    async def _await(self, event: trio.Event, timeout: float) -> None:
        await self._api_call(self._records.wake)
        with trio.move_on_after(timeout):
            await event.wait()

    async def records(
        self, session_id: str, after: int | None, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        """See :class:`taskrunner.serve.Backend`."""
        meta = await self._meta(session_id)
        found = await self._read(session_id, after, limit)
        if found or wait <= 0 or meta.get("state") == "ended":
            return found
        with self._watching(session_id, after) as key:
            news = self._news(key)
            found = await self._read(session_id, after, limit)
            if not found:
                await self._await(news, wait)
                found = await self._read(session_id, after, limit)
        return found

    async def follow(self, session_id: str, after: int | None, deliver: Deliver) -> None:
        """See :class:`taskrunner.serve.Backend`."""
        await self._meta(session_id)
        last = after
        ended = False
        with self._watching(session_id, after) as key:
            while True:
                news = self._news(key)
                found = await self._read(session_id, last, 1000)
                for record in found:
                    await deliver(record)
                    last = record["seq"]
                    if record["type"] == "SessionEnded":
                        return
                if not found:
                    if ended:
                        return
                    # The owner writes the end after the session's last records, which may
                    # have come since the read above: once ended, read again to the end.
                    ended = (await self._meta(session_id)).get("state") == "ended"
                    if not ended:
                        await self._await(news, 5.0)

    def _info(self, session_id: str, meta: dict[str, str]) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "agent_id": meta.get("agent_id"),
            "environment": meta.get("environment"),
            "state": meta.get("state"),
            "owner": meta.get("owner") or None,
            "created": float(meta.get("created", "nan")),
        }

    async def session_info(self, session_id: str) -> dict[str, Any]:
        """See :class:`taskrunner.serve.Backend`."""
        return self._info(session_id, await self._meta(session_id))

    async def sessions(self, limit: int) -> list[dict[str, Any]]:
        """See :class:`taskrunner.serve.Backend`."""

        async def read() -> list[dict[str, Any]]:
            ids = list(
                await self._client.zrange(self._key("sessions"), 0, limit - 1, rev=True)
            )
            async with self._client.pipeline(transaction=False) as pipe:
                metas = [pipe.hgetall(self._skey(s, "meta")) for s in ids]
            out = []
            for sid, meta in zip(ids, metas, strict=True):
                found = dict(await meta)
                if found:
                    out.append(self._info(sid, found))
            return out

        return await self._api_call(read)

    async def health(self) -> dict[str, Any]:
        """See :class:`taskrunner.serve.Backend`; ``workers`` lists the workers whose
        heartbeat is younger than the lease."""
        down = self._down_since
        workers: list[str] = []
        if down is None:
            try:
                workers = list(
                    await self._client.zrange(
                        self._key("workers"),
                        time.time() - self._lease,
                        "+inf",
                        sortby=PureToken.BYSCORE,
                    )
                )
            except REDIS_DOWN:
                pass
        return {
            "workers": sorted(workers),
            "worker": self.worker_id,
            "backend": "redis",
            "sessions": len(self._runners),
            "draining": self._draining,
            "redis": "ok" if down is None else f"unreachable for {time.monotonic() - down:.1f} s",
            "claiming": not self._draining and not self._cut_off,
            "checkpoints": "redis" if self._checkpoints is None else self._checkpoints.describe(),
            "queued_writes": len(self._queue) + len(self._after) + self._after_busy,
            "lease": self._lease if math.isfinite(self._lease) else None,
        }
