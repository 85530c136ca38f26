"""The debugger page of any worker shows the sessions other workers run: their records are
mirrored from Redis into this worker's hub."""

from __future__ import annotations

import json
import logging
import math
from functools import partial
from typing import Any

import trio

from ._errors import ServeError
from ._redis_api import RedisApi
from ._redis_base import REDIS_DOWN, Tail, seq_of

__all__ = ["Mirror", "RemoteControl"]

logger = logging.getLogger("taskrunner.serve")


class RemoteControl:
    """The debugger's Cancel and Interrupt buttons for a session another worker runs: the
    action goes through the session's input stream, so the answer cannot say how many tasks
    it hit (``cancel_task`` says True: asked; ``interrupt`` says 0)."""

    def __init__(self, backend: RedisApi, session_id: str, nursery: trio.Nursery) -> None:
        self._backend = backend
        self._session_id = session_id
        self._nursery = nursery

    def cancel_task(self, name: str) -> bool:
        """Ask the owner to cancel the task ``name``."""
        self._nursery.start_soon(self._send, {"k": "cancel", "name": name})
        return True

    def interrupt(self) -> int:
        """Ask the owner to interrupt the session."""
        self._nursery.start_soon(self._send, {"k": "interrupt"})
        return 0

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._backend._input(self._session_id, message, False)
        except (ServeError, *REDIS_DOWN) as exc:  # type: ignore[misc]
            logger.warning("debugger action on %s not sent: %s", self._session_id, exc)


class Mirror:
    """Feeds the hub with the records of the ``limit`` most recently started sessions that
    this worker does not run (checked every second), through one blocking read. A session
    this worker claims is fed by its runner instead; one it gives up is mirrored from the
    hub's last record on.

    It mirrors only while the debugger page is in use: a page is subscribed to the hub, or a
    debugger request came within ``IDLE_S`` (:meth:`used`). Otherwise it reads nothing: with
    2 workers, mirroring every record of the other worker was 12-18 % of their serving CPU
    and 40 % of the ``XREAD``s. When the page is used again it catches up from
    the hub's last record of each session, so what the page shows has no gap.
    """

    #: Seconds after the last debugger request that the mirror goes on without a subscriber.
    IDLE_S = 60.0

    def __init__(self, backend: RedisApi, limit: int) -> None:
        self._backend = backend
        self._limit = limit
        self._tail = Tail(backend, "mirror")
        self._last: dict[str, int] = {}
        self._used_at = -math.inf
        self._wanted = trio.Event()

    def used(self) -> None:
        """The debugger page was used (a request): mirror for the next ``IDLE_S`` seconds."""
        self._used_at = trio.current_time()
        self._wanted.set()

    def in_use(self) -> bool:
        """Whether the page is in use (subscribed, or requested within ``IDLE_S``)."""
        recent = trio.current_time() - self._used_at < self.IDLE_S
        return recent or self._backend.hub.subscriber_count() > 0

    async def run(self) -> None:
        """Mirror until cancelled."""
        if self._limit <= 0:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tail.run)
            while True:
                if not self.in_use():
                    self._pause()
                    with trio.move_on_after(1.0):  # a subscriber alone is seen within 1 s
                        await self._wanted.wait()
                    self._wanted = trio.Event()
                    continue
                try:
                    await self._refresh(nursery)
                except REDIS_DOWN:
                    pass  # the other loops report the outage
                except Exception:
                    # the page is a view: a fault here must not stop the worker's sessions
                    logger.exception("debugger mirror failed; trying again")
                await trio.sleep(1.0)

    def _pause(self) -> None:
        """Stop reading; :meth:`_refresh` starts again from the hub's last records."""
        for key in list(self._tail.positions):
            self._tail.unwatch(key)
        self._last.clear()

    async def _refresh(self, nursery: trio.Nursery) -> None:
        backend = self._backend
        hub = backend.hub
        client = backend._client
        recent = list(
            await client.zrange(backend._key("sessions"), 0, self._limit - 1, rev=True)
        )
        for session_id in list(self._last):
            if session_id not in recent and backend._skey(session_id, "rec") not in (
                self._tail.positions
            ):
                del self._last[session_id]  # neither recent nor live: its records stay in the hub
        for session_id in recent:
            if session_id in self._last or session_id in backend._runners:
                continue
            key = backend._skey(session_id, "rec")
            known = hub.session_info(session_id)["last_seq"] if session_id in hub else None
            self._last[session_id] = -1 if known is None else int(known)
            start = "-" if known is None else f"(0-{int(known) + 1}"
            entries = await client.xrange(key, start, "+", count=backend._max_records)
            state = await client.hget(backend._skey(session_id, "meta"), "state")
            if session_id in backend._runners:
                self._last.pop(session_id, None)  # claimed here meanwhile: its runner publishes
                continue
            if state in ("running", "stopping"):
                hub.register(session_id, RemoteControl(backend, session_id, nursery))
            self._feed(session_id, list(entries))
            if state in ("running", "stopping") and session_id in self._last:
                after = entries[-1].identifier if entries else f"0-{self._last[session_id] + 1}"
                self._tail.watch(key, after, partial(self._feed, session_id))
        await self._tail.wake()

    def _feed(self, session_id: str, entries: list[Any]) -> None:
        backend = self._backend
        if session_id in backend._runners:
            # ours now: the runner publishes; mirror again from its last record once it goes
            self._last.pop(session_id, None)
            self._tail.unwatch(backend._skey(session_id, "rec"))
            return
        for entry in entries:
            seq = seq_of(entry.identifier)
            if seq <= self._last.get(session_id, -1):
                continue
            self._last[session_id] = seq
            record = json.loads(entry.field_values["r"])
            backend.hub.publish(session_id, record)
            if record.get("type") == "SessionEnded":
                backend.hub.unregister_control(session_id)
                self._tail.unwatch(backend._skey(session_id, "rec"))
