"""Sessions spread over worker processes (on any number of machines) through Redis Streams.

Keys, under a prefix (``taskrunner`` by default):

``P:new``            stream of sessions to claim, read by the consumer group ``workers``
``P:sessions``       sorted set of every session id by start time (the listing)
``P:live``           set of the sessions not ended (scanned for orphans)
``P:workers``        sorted set of worker ids by last heartbeat
``P:s:ID:meta``      hash: agent_id, environment, parameters, state, owner, created
``P:s:ID:in``        stream of the session's inputs (the first is its start)
``P:s:ID:rec``       stream of its records, entry id ``0-(seq+1)``, bounded by ``max_records``
``P:s:ID:ckpt``      its last checkpoint (JSON), saved after every handled input (unless
                     ``checkpoints`` names PostgreSQL: then they are kept there, see
                     ``_store_checkpoints.py``, fenced by an epoch instead of the lease)
``P:s:ID:lease``     the owning worker's id, expiring after ``lease`` seconds unless renewed
``P:w:WORKER:wake``  a small stream that wakes the worker's blocking reads

A worker claims a session (``SET lease NX``) when it reads it from ``P:new`` or finds it in
``P:live`` without a lease (its owner died, or it was handed over), and goes on from the
checkpoint: the inputs after the checkpoint's are handled again, the tasks its previous
owner left running are reported ended (``TaskCancelled``, reason ``"worker_lost"``), and
records keep their one numbering. Every write for an owned session is a Lua script that
first checks the lease, so a worker that lost a session (cut off from Redis past its lease)
cannot write over the new owner's.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any

import coredis.exceptions
import trio
from coredis.tokens import PureToken

from ._redis_api import RedisApi
from ._redis_base import BLOCK_MS, GROUP, REDIS_DOWN, seq_of
from ._redis_mirror import Mirror
from ._runner import Resume, SessionRunner, lost_tasks

__all__ = ["RedisBackend"]

logger = logging.getLogger("taskrunner.serve")


class RedisBackend(RedisApi):
    """A worker sharing sessions with others through Redis; see the module docstring.

    ``lease``: seconds a claim lasts without renewal (renewed every third of it); a dead
    worker's sessions are taken over within about that time. ``max_records``: records kept
    per session stream (approximately: Redis trims in whole nodes, never below). Use
    :meth:`run` in a nursery; :meth:`drain` (SIGTERM) stops claiming, hands the sessions to
    other live workers after their current input (or stops them when there is none), and
    returns once all is written. ``mirror``: how many of the most recent sessions other
    workers run this worker's debugger page shows too (0: only its own). ``checkpoints``:
    None keeps the checkpoints in Redis; a ``postgresql://`` URL keeps them in that database
    (every worker of the deployment must be given the same one).
    """

    # ------------------------------------------------------------------ running

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then claim and run sessions until :meth:`drain` finishes.

        Waits (retrying) until Redis, and PostgreSQL when it holds the checkpoints, answer
        before ``task_status.started()``. Cancelling it
        stops everything at once, as a crash would: the sessions stay claimed until their
        leases expire, and then another worker takes them over.
        """
        async with self._client:
            await self._retrying("setup", self._setup)
            if self._checkpoints is not None:
                await self._checkpoints.connect()
            try:
                await self._serve(task_status)
            finally:
                if self._checkpoints is not None:
                    with trio.CancelScope(shield=True):
                        await self._checkpoints.aclose()

    _mirror_reader: Mirror | None = None

    def _mirrorer(self) -> Mirror:
        if self._mirror_reader is None:
            self._mirror_reader = Mirror(self, self._mirror)
        return self._mirror_reader

    def debugger_used(self) -> None:
        """See :class:`taskrunner.serve.Backend`: the page shows other workers' recent
        sessions too, mirrored from Redis while it is in use (:class:`Mirror`)."""
        self._mirrorer().used()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._inputs.run)
            nursery.start_soon(self._records.run)
            nursery.start_soon(self._flusher)
            if self._checkpoints is not None:
                nursery.start_soon(self._checkpointer)
            nursery.start_soon(self._renewer)
            nursery.start_soon(self._claimer)
            nursery.start_soon(self._orphan_scanner)
            nursery.start_soon(self._mirrorer().run)
            task_status.started()
            await trio.sleep_forever()

    async def _setup(self) -> None:
        try:
            await self._client.xgroup_create(self._key("new"), GROUP, "$", mkstream=True)
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass  # another worker made it
        await self._load_scripts()
        await self._heartbeat()

    async def _heartbeat(self) -> None:
        await self._client.zadd(self._key("workers"), {self.worker_id: time.time()})

    async def drain(self) -> None:
        """See the class docstring."""
        self._draining = True
        now = time.time()
        others = [
            w
            for w in await self._retrying(
                "drain",
                lambda: self._client.zrange(
                    self._key("workers"), now - self._lease, "+inf", sortby=PureToken.BYSCORE
                ),
            )
            if w != self.worker_id
        ]
        for runner in list(self._runners.values()):
            if others:
                runner.hand_over()
            elif runner.state == "running":
                runner.deliver("", {"k": "input", "event": {"type": "stop"}})
        for runner in list(self._runners.values()):
            await runner.ended.wait()
        while self._queue:
            self._flushed = trio.Event()
            self._queue_wakeup.set()
            await self._flushed.wait()
        while self._after or self._after_busy:  # the checkpoints in PostgreSQL
            self._after_idle = trio.Event()
            self._after_wakeup.set()
            await self._after_idle.wait()
        async def leave() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrem(self._key("workers"), [self.worker_id])
                # its pending entries (if any) are sessions in the live set: scanned anyway
                pipe.xgroup_delconsumer(self._key("new"), GROUP, self.worker_id)
                pipe.delete([self._inputs.wake_key, self._records.wake_key])

        await self._retrying("drain", leave)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ claiming

    async def _claimer(self) -> None:
        """Read new (and handed-over) sessions from the consumer group and claim them."""
        new = self._key("new")
        while not self._draining:
            room = self._max_sessions - len(self._runners)
            if room <= 0 or self._cut_off:
                await trio.sleep(0.2)
                continue
            result = await self._retrying(
                "claimer",
                partial(
                    self._client.xreadgroup,
                    GROUP,
                    self.worker_id,
                    {new: ">"},
                    count=min(room, 20),
                    block=BLOCK_MS,
                ),
            )
            for entries in (result or {}).values():
                for entry in entries:
                    if not self._draining:
                        await self._claim(entry.field_values["sid"])
                    await self._retrying(
                        "claimer", partial(self._client.xack, new, GROUP, [entry.identifier])
                    )

    async def _orphan_scanner(self) -> None:
        """Every third of the lease, claim the live sessions that nobody holds."""
        while True:
            await trio.sleep(self._lease / 3)
            if self._draining or self._cut_off:
                continue
            try:
                live = list(await self._client.smembers(self._key("live")))
                orphans: list[str] = []
                for start in range(0, len(live), 500):
                    chunk = [s for s in live[start : start + 500] if s not in self._runners]
                    async with self._client.pipeline(transaction=False) as pipe:
                        found = [pipe.exists([self._skey(s, "lease")]) for s in chunk]
                    for sid, exists in zip(chunk, found, strict=True):
                        if not await exists:
                            orphans.append(sid)
            except REDIS_DOWN:
                continue  # the reader loops report the outage
            for sid in orphans:
                if self._draining or len(self._runners) >= self._max_sessions:
                    break
                await self._claim(sid)

    async def _claim(self, session_id: str) -> None:
        """Take the session if nobody holds it, and go on from its checkpoint."""
        if session_id in self._runners:
            return
        client = self._client
        lease_key = self._skey(session_id, "lease")
        got = await self._retrying(
            "claim",
            lambda: client.set(
                lease_key, self.worker_id, condition=PureToken.NX, px=int(self._lease * 1000)
            ),
        )
        if not got:
            return

        async def load() -> tuple[dict[str, str], str | None, Any, Any]:
            async with client.pipeline(transaction=False) as pipe:
                meta = pipe.hgetall(self._skey(session_id, "meta"))
                ckpt = pipe.get(self._skey(session_id, "ckpt"))
                last = pipe.xrevrange(self._skey(session_id, "rec"), "+", "-", count=1)
            return dict(await meta), await ckpt, await last, None

        meta, ckpt, last, _ = await self._retrying("claim", load)
        if not meta or meta.get("state") == "ended":
            await self._retrying("claim", lambda: client.delete([lease_key]))
            return
        epoch = 0
        if self._checkpoints is None:
            state = json.loads(ckpt) if ckpt else None
        else:
            # The checkpoint is in PostgreSQL: claim it there (a new epoch fences the
            # previous owner's writes), then make sure the lease survived the wait. (If it
            # did not, the epoch bumped here gets the worker that took the lease refused at
            # its next save: it gives the session up, which is claimed again after a lease.)
            epoch, state = await self._checkpoints.claim(session_id)
            renew = [self.worker_id, int(self._lease * 1000)]
            gone = await self._retrying("claim", lambda: self._script("RENEW")([lease_key], renew))
            if gone:
                logger.warning("worker %s: lost %s while claiming", self.worker_id, session_id)
                return
        last_seq = seq_of(last[0].identifier) if last else -1
        resume: Resume | None = None
        if last_seq >= 0:
            since = -1 if state is None else int(state["seq"])
            after = await self._retrying(
                "claim",
                lambda: client.xrange(self._skey(session_id, "rec"), f"(0-{since + 1}", "+"),
            )
            records = [json.loads(e.field_values["r"]) for e in after]
            lost, top = lost_tasks(state, records)
            resume = Resume(
                state=state,
                seq_base=last_seq + 1,
                task_base=top,
                lost=lost,
                previous_owner=meta.get("owner") or None,
            )
        await self._retrying(
            "claim",
            lambda: client.hset(self._skey(session_id, "meta"), {"owner": self.worker_id}),
        )
        runner = SessionRunner(
            self._handler,
            session_id=session_id,
            agent_id=meta.get("agent_id", self.agent_id),
            environment=meta.get("environment", ""),
            parameters=json.loads(meta.get("parameters", "{}")),
            flavor=self._flavor,
            stop_grace=self._stop_grace,
            owner=self.worker_id,
            publish=lambda record: self._enqueue("rec", session_id, record),
            save=lambda saved: self._enqueue("ckpt", session_id, (epoch, saved)),
            resume=resume,
        )
        self._runners[session_id] = runner
        self._epochs[session_id] = epoch
        self.hub.register(session_id, runner)
        assert self._nursery is not None
        try:
            await self._nursery.start(self._host, runner)
        except Exception:
            # e.g. a checkpoint this version cannot restore: end the session rather than
            # have every worker claim it again and again
            # (the host has queued its end)
            logger.exception("worker %s: session %s cannot go on", self.worker_id, session_id)
            return
        after_input = "0-0" if state is None else str(state["input_id"])

        def deliver(entries: list[Any]) -> None:
            for entry in entries:
                runner.deliver(entry.identifier, json.loads(entry.field_values["m"]))

        self._inputs.watch(self._skey(session_id, "in"), after_input, deliver)
        await self._retrying("claim", self._inputs.wake)
        if resume is not None:
            logger.info(
                "worker %s took over session %s from %s (%d task(s) lost)",
                self.worker_id,
                session_id,
                resume.previous_owner,
                len(resume.lost),
            )

    async def _host(self, runner: SessionRunner, task_status: trio.TaskStatus[None]) -> None:
        session_id = runner.session_id
        try:
            await runner.run(task_status)
        finally:
            self._inputs.unwatch(self._skey(session_id, "in"))
            self.hub.unregister_control(session_id)
            self._runners.pop(session_id, None)
            epoch = self._epochs.pop(session_id, 0)
            if runner.state == "ended" and not runner._aborted:
                self._enqueue("release" if runner._handing_over else "end", session_id, epoch)

    # ------------------------------------------------------------------ writing

    def _enqueue(self, kind: str, session_id: str, value: Any) -> None:
        if kind == "rec":
            self.hub.publish(session_id, value)
        self._queue.append((kind, session_id, value))
        self._queue_wakeup.set()

    async def _flusher(self) -> None:
        """Write queued records, checkpoints and ends in order, batched per round trip."""
        while True:
            if not self._queue:
                self._flushed.set()
                self._queue_wakeup = trio.Event()
                await self._queue_wakeup.wait()
                continue
            batch = [self._queue[i] for i in range(min(len(self._queue), 500))]
            if self._checkpoints is None:
                await self._retrying("publisher", partial(self._write, batch))
            else:
                await self._records_then_store(batch)
            for _ in range(len(batch)):
                self._queue.popleft()

    async def _records_then_store(self, batch: list[tuple[str, str, Any]]) -> None:
        """With checkpoints in PostgreSQL: write the batch's records (Redis), then hand its
        checkpoints, ends and hand-overs, in order, to :meth:`_checkpointer`. So a
        checkpoint is never ahead of its records, and records go on while PostgreSQL is
        down (only each session's last checkpoint waits, with its end or hand-over)."""
        records = [item for item in batch if item[0] == "rec"]
        refused = await self._retrying("publisher", partial(self._write, records))
        self._after += [i for i in batch if i[0] != "rec" and i[1] not in refused]
        self._after_wakeup.set()

    async def _checkpointer(self) -> None:
        """Save the checkpoints and ends in PostgreSQL (fenced by the claim's epoch; retried
        while it is down), then write the ends and hand-overs to Redis: a session is handed
        over only once its last checkpoint is saved."""
        assert self._checkpoints is not None
        while True:
            if not self._after:
                self._after_idle.set()
                self._after_wakeup = trio.Event()
                await self._after_wakeup.wait()
                continue
            items, self._after = self._after, []
            self._after_busy = len(items)
            saves: dict[str, tuple[int, dict[str, Any]]] = {}
            ends: dict[str, int] = {}
            for kind, session_id, value in items:
                if kind == "ckpt":
                    saves[session_id] = value  # the last one supersedes the others
                elif kind == "end":
                    ends[session_id] = value
            for session_id in await self._checkpoints.write(saves, ends):
                self._lost(session_id, "checkpoint refused: another worker claimed the session")
            rest = [item for item in items if item[0] in ("end", "release")]
            await self._retrying("publisher", partial(self._write, rest))
            self._after_busy = 0

    async def _write(self, batch: list[tuple[str, str, Any]]) -> set[str]:
        """Write a batch to Redis; returns the sessions whose lease was not ours."""
        if not batch:
            return set()
        # Group consecutive records of a session into one script call; keep every
        # session's own order (checkpoints after the records before them).
        calls: list[tuple[str, str, list[Any]]] = []
        for kind, session_id, value in batch:
            if kind == "rec" and calls and calls[-1][:2] == ("rec", session_id):
                calls[-1][2].append(value)
            else:
                calls.append((kind, session_id, [value]))
        try:
            done = await self._send(calls)
        except coredis.exceptions.NoScriptError:
            # Redis lost its scripts (restarted): none of the batch ran, as the script cache
            # is the server's. Load them and send the batch again (once).
            await self._load_scripts()
            done = await self._send(calls)
        refused: set[str] = set()
        for (kind, session_id, _), result in zip(calls, done, strict=True):
            if not result:
                refused.add(session_id)
                self._lost(session_id, f"{kind} refused: the lease is not ours")
        return refused

    async def _send(self, calls: list[tuple[str, str, list[Any]]]) -> list[Any]:
        """One pipeline of script calls; their results in order."""
        results = []
        async with self._client.pipeline(transaction=False) as pipe:
            for kind, session_id, values in calls:
                lease = self._skey(session_id, "lease")
                if kind == "rec":
                    args: list[Any] = [self.worker_id, self._max_records]
                    for record in values:
                        args += [record["seq"], json.dumps(record, default=repr)]
                    keys = [lease, self._skey(session_id, "rec")]
                    results.append(self._queue_script(pipe, "PUBLISH", keys, args))
                elif kind == "ckpt":
                    keys = [lease, self._skey(session_id, "ckpt")]
                    args = [self.worker_id, json.dumps(values[0][1], default=repr)]
                    results.append(self._queue_script(pipe, "SAVE", keys, args))
                elif kind == "end":
                    keys = [
                        lease,
                        self._skey(session_id, "meta"),
                        self._key("live"),
                        self._key("sessions"),
                        *(self._skey(session_id, w) for w in ("meta", "in", "rec", "ckpt")),
                    ]
                    args = [self.worker_id, session_id, self._retention, time.time()]
                    results.append(self._queue_script(pipe, "END", keys, args))
                else:  # release
                    keys = [lease, self._skey(session_id, "meta"), self._key("new")]
                    args = [self.worker_id, session_id]
                    results.append(self._queue_script(pipe, "RELEASE", keys, args))
        return [await result for result in results]

    def _lost(self, session_id: str, why: str) -> None:
        runner = self._runners.get(session_id)
        if runner is not None:
            logger.warning("worker %s: session %s lost (%s)", self.worker_id, session_id, why)
            runner.abort()

    async def _renewer(self) -> None:
        """Renew the leases every third of the lease; abort the sessions whose lease is gone,
        and all of them once renewals have failed for a whole lease."""
        while True:
            await trio.sleep(self._lease / 3)
            ids = list(self._runners)
            try:
                with trio.fail_after(self._lease / 3):
                    await self._heartbeat()
                    lost: list[int] = []
                    for start in range(0, len(ids), 1000):
                        chunk = ids[start : start + 1000]
                        keys = [self._skey(s, "lease") for s in chunk]
                        found = await self._script("RENEW")(
                            keys, [self.worker_id, int(self._lease * 1000)]
                        )
                        lost += [start + int(i) - 1 for i in found]
            except (*REDIS_DOWN, trio.TooSlowError) as exc:  # type: ignore[misc]
                if time.monotonic() - self._last_renewal >= self._lease:
                    for sid in list(self._runners):
                        self._lost(sid, f"leases not renewed for {self._lease:g} s: {exc}")
                continue
            self._last_renewal = time.monotonic()
            for index in lost:
                self._lost(ids[index], "its lease was taken")

