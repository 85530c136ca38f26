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
from ._redis_base import REDIS_DOWN, Feed, RedisBase

__all__ = ["RedisApi"]

#: Records read from a stream per round trip while a follower catches up.
_PAGE = 1000


def _records_of(entries: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(e.field_values["r"]) for e in entries]


class _Cursor:
    """Where one follower is: the last ``seq`` delivered, each record delivered once."""

    __slots__ = ("_deliver", "last")

    def __init__(self, after: int | None, deliver: Deliver) -> None:
        self.last = after
        self._deliver = deliver

    def follows(self, records: list[dict[str, Any]]) -> bool:
        """Whether ``records`` leave no gap after what was delivered."""
        return self.last is None or not records or records[0]["seq"] <= self.last + 1

    async def deliver(self, records: list[dict[str, Any]]) -> bool:
        """Deliver those not delivered yet, in order; True once ``SessionEnded`` went."""
        for record in records:
            if self.last is not None and record["seq"] <= self.last:
                continue  # already delivered (read from the stream, then seen by the reader)
            await self._deliver(record)
            self.last = record["seq"]
            if record["type"] == "SessionEnded":
                return True
        return False


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
        return _records_of(entries)

    async def _meta(self, session_id: str) -> dict[str, str]:
        meta: dict[str, str] = dict(
            await self._api_call(lambda: self._client.hgetall(self._skey(session_id, "meta")))
        )
        if not meta:
            raise NotFoundError(f"no session {session_id!r}")
        return meta

    @contextmanager
    def _watching(self, session_id: str, after: int | None) -> Iterator[Feed]:
        """Have this worker's record reader watch the session's stream while in the block,
        handing what it reads to the feed yielded (register before reading the stream: the
        reader then has every entry written after that read)."""
        key = self._skey(session_id, "rec")
        feeds = self._feeds.get(key)
        if feeds is None:
            feeds = self._feeds[key] = []

            def notify(entries: list[Any]) -> None:
                for feed in self._feeds.get(key, ()):
                    feed.push(entries)

            self._records.watch(key, "0-0" if after is None else f"0-{after + 1}", notify)
        feed = Feed()
        feeds.append(feed)
        try:
            yield feed
        finally:
            feeds.remove(feed)
            if not feeds:
                del self._feeds[key]
                self._records.unwatch(key)

    async def _await(self, event: trio.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds (the reader restarted first if its
        streams changed); whether it came."""
        await self._api_call(self._records.wake)
        with trio.move_on_after(timeout):
            await event.wait()
        return event.is_set()

    async def records(
        self, session_id: str, after: int | None, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        """See :class:`taskrunner.serve.Backend`."""
        meta = await self._meta(session_id)
        found = await self._read(session_id, after, limit)
        if found or wait <= 0 or meta.get("state") == "ended":
            return found
        with self._watching(session_id, after) as feed:
            found = await self._read(session_id, after, limit)
            if not found:
                await self._await(feed.news, wait)
                found = await self._read(session_id, after, limit)
        return found

    async def follow(self, session_id: str, after: int | None, deliver: Deliver) -> None:
        """See :class:`taskrunner.serve.Backend`.

        Records already stored are read from the stream, a page per round trip; live ones
        come from this worker's record reader (one ``XREAD`` for every stream followed
        here), with no round trip of their own. The stream is read again only after a gap
        (another follower's reader position was ahead, records were trimmed) or an overflow.
        """
        await self._meta(session_id)
        cursor = _Cursor(after, deliver)
        if await self._deliver_stored(session_id, cursor):  # catch up, then follow live
            return
        ended = False
        with self._watching(session_id, cursor.last) as feed:
            while True:
                entries, overflowed = feed.take()
                if entries and not overflowed:
                    found = _records_of(entries)
                    if cursor.follows(found):
                        if await cursor.deliver(found):
                            return
                        continue
                if entries or overflowed:  # a gap before the batch, or entries dropped
                    if await self._deliver_stored(session_id, cursor):
                        return
                elif ended:
                    return
                elif not await self._await(feed.news, 5.0):
                    # Quiet for a while: the owner writes the end after the session's last
                    # records, so once ended, read the stream to its end and stop.
                    ended = (await self._meta(session_id)).get("state") == "ended"
                    if ended and await self._deliver_stored(session_id, cursor):
                        return

    async def _deliver_stored(self, session_id: str, cursor: _Cursor) -> bool:
        """Deliver what the stream holds after the cursor, a page per round trip; True once
        ``SessionEnded`` went."""
        while True:
            found = await self._read(session_id, cursor.last, _PAGE)
            if await cursor.deliver(found):
                return True
            if len(found) < _PAGE:
                return False

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
            ids = list(await self._client.zrange(self._key("sessions"), 0, limit - 1, rev=True))
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
