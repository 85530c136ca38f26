"""Following a session's records over Redis (``RedisBackend.follow``, behind the WebSocket
and the events API): stored records from the stream, live ones from the worker's record
reader, every record once and in order, whatever the follower's pace.

The records are written straight into a session's streams on a real redis-server, as an
owner's writer does, so the follower's paths are driven exactly: catching up over several
pages, live batches, two followers of one session, and a slow follower whose feed overflows;
and the debugger's mirror of other workers' sessions, which reads only while the page is used.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from test_serve import _until

from taskrunner.serve import RedisBackend, new_session_id
from taskrunner.serve._redis_base import Feed
from taskrunner.serve._redis_mirror import Mirror
from taskrunner.tools.hub import Hub


async def _idle(event: Any, context: Any) -> None:
    return None


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(
        _idle, agent_id="a", hub=Hub(), redis_url=redis_url, prefix=f"t{uuid.uuid4().hex[:8]}"
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        yield backend
        nursery.cancel_scope.cancel()


async def _session(backend: RedisBackend) -> str:
    """A session nobody runs (no worker claims it): only its meta and record stream."""
    sid = new_session_id()
    await backend._client.hset(backend._skey(sid, "meta"), {"state": "running", "owner": ""})
    return sid


async def _write(backend: RedisBackend, sid: str, seqs: range, *, end: bool = False) -> None:
    """Append records ``seqs`` (entry ids ``0-(seq+1)``, as the owner's writer does)."""
    async with backend._client.pipeline(transaction=False) as pipe:
        for seq in seqs:
            last = end and seq == seqs[-1]
            record = {"type": "SessionEnded" if last else "HandlerOutput", "seq": seq}
            pipe.xadd(
                backend._skey(sid, "rec"), {"r": json.dumps(record)}, identifier=f"0-{seq + 1}"
            )


class _Follower:
    def __init__(self, backend: RedisBackend, sid: str, after: int | None) -> None:
        self.backend, self.sid, self.after = backend, sid, after
        self.seqs: list[int] = []
        self.done = trio.Event()
        self.slow_until = -1  # deliveries of seqs below this wait (a slow client)
        self.release = trio.Event()
        self.stalled = False

    async def deliver(self, record: dict[str, Any]) -> None:
        if record["seq"] < self.slow_until:
            self.stalled = True
            await self.release.wait()
        self.seqs.append(record["seq"])

    async def run(self) -> None:
        await self.backend.follow(self.sid, self.after, self.deliver)
        self.done.set()


async def test_a_follower_catches_up_over_pages_then_gets_live_batches_once_in_order(
    backend: RedisBackend,
) -> None:
    sid = await _session(backend)
    await _write(backend, sid, range(2_500))  # more than two pages stored before it follows
    follower = _Follower(backend, sid, None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        await _until("caught up", lambda: len(follower.seqs) == 2_500)
        for start in range(2_500, 2_800, 50):  # live batches
            await _write(backend, sid, range(start, start + 50))
        await _write(backend, sid, range(2_800, 2_801), end=True)
        with trio.fail_after(10):
            await follower.done.wait()
    assert follower.seqs == list(range(2_801))
    assert not backend._feeds  # nothing left watched once it ended


async def test_two_followers_of_one_session_each_get_their_records_once(
    backend: RedisBackend,
) -> None:
    sid = await _session(backend)
    await _write(backend, sid, range(100))
    early, late = _Follower(backend, sid, None), _Follower(backend, sid, 149)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(early.run)
        await _until("early caught up", lambda: len(early.seqs) == 100)
        await _write(backend, sid, range(100, 200))
        await _until("early got the live ones", lambda: len(early.seqs) == 200)
        # The late one joins after 149 and its client stalls while it catches up from the
        # stream; meanwhile the worker's reader, already reading for the early one, goes on:
        # when the late one follows live, the reader is past records it has not had.
        late.slow_until = 200
        nursery.start_soon(late.run)
        await _until("late stalled", lambda: late.stalled)
        await _write(backend, sid, range(200, 250))
        await _until("early got them", lambda: len(early.seqs) == 250)
        late.release.set()
        await _until("late caught up", lambda: len(late.seqs) == 50)
        await _write(backend, sid, range(250, 301), end=True)
        with trio.fail_after(10):
            await early.done.wait()
            await late.done.wait()
    assert early.seqs == list(range(301))
    assert late.seqs == list(range(150, 301))


async def test_a_slow_follower_whose_feed_overflows_still_gets_every_record(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Feed, "LIMIT", 100)
    overflows = []
    take = Feed.take

    def counting_take(self: Feed) -> tuple[list[Any], bool]:
        entries, overflowed = take(self)
        overflows.append(overflowed)
        return entries, overflowed

    monkeypatch.setattr(Feed, "take", counting_take)
    sid = await _session(backend)
    follower = _Follower(backend, sid, None)
    follower.slow_until = 1  # its client stalls on the first record
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        await _until("following live", lambda: backend._feeds)
        await _write(backend, sid, range(1))
        await _until("stalled", lambda: not follower.release.is_set() and follower.stalled)
        for start in range(1, 1_001, 100):  # 1,000 records while it stalls: past the limit
            await _write(backend, sid, range(start, start + 100))
        await _until(
            "all read by the worker",
            lambda: backend._records.positions[backend._skey(sid, "rec")] == "0-1001",
        )
        assert all(f.overflowed for f in backend._feeds[backend._skey(sid, "rec")])
        follower.release.set()
        # with nothing new written, it reads what it missed from the stream
        await _until("caught up after the overflow", lambda: len(follower.seqs) == 1_001)
        await _write(backend, sid, range(1_001, 1_002), end=True)
        with trio.fail_after(10):
            await follower.done.wait()
    assert follower.seqs == list(range(1_002))
    assert True in overflows  # it did overflow, and read the stream instead


async def test_the_debugger_mirror_reads_only_while_the_page_is_used(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's session reaches this worker's debugger hub only while the page is
    in use; after a pause it catches up from the hub's last record: no gap, no repeat."""
    monkeypatch.setattr(Mirror, "IDLE_S", 1.0)
    sid = await _session(backend)  # as if another worker ran it
    await backend._client.zadd(backend._key("sessions"), {sid: time.time()})
    await _write(backend, sid, range(10))
    hub = backend.hub

    def last() -> int | None:
        return hub.session_info(sid)["last_seq"] if sid in hub else None

    await trio.sleep(2.5)  # real time: the mirror's refresh comes round twice
    assert last() is None  # nobody uses the page: nothing read
    backend.debugger_used()
    await _until("mirrored", lambda: last() == 9)
    await _write(backend, sid, range(10, 20))
    await _until("followed live", lambda: last() == 19)
    mirror = backend._mirrorer()
    await _until("paused once idle", lambda: not mirror._tail.positions)
    await _write(backend, sid, range(20, 30))
    await trio.sleep(1.5)
    assert last() == 19  # not read while nobody uses the page
    backend.debugger_used()
    await _until("caught up", lambda: last() == 29)
    assert [r["seq"] for r in hub.records(sid)] == list(range(30))


async def test_entries_the_reader_hands_over_again_are_not_delivered_twice(
    backend: RedisBackend,
) -> None:
    """The worker's reader can be behind a follower (it read for another follower, and this
    one caught up from the stream further): what it hands over again is skipped."""
    sid = await _session(backend)
    await _write(backend, sid, range(50))
    follower = _Follower(backend, sid, None)
    key = backend._skey(sid, "rec")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        await _until(
            "caught up and following", lambda: len(follower.seqs) == 50 and key in backend._feeds
        )
        backend._records.watch(key, "0-21", backend._records.handlers[key])  # behind: 20 on
        await backend._records.wake()
        await _until("read again", lambda: backend._records.positions[key] == "0-50")
        await _write(backend, sid, range(50, 61), end=True)
        with trio.fail_after(10):
            await follower.done.wait()
    assert follower.seqs == list(range(61))


async def test_a_free_redis_connection_is_taken_without_a_scheduling_round(
    backend: RedisBackend,
) -> None:
    """coredis takes each connection from its pool's stack under a lock held across a
    scheduling round, so every Redis call of a worker waited its turn, one per round (in a
    worker with 72 busy sessions: waits up to 193 ms, an interruption's ``INPUT`` call 62 ms
    at p50). A free connection is now taken at once, and the calls still all answer."""
    await backend._client.ping()  # a connection made, used and back on the stack
    stack = backend._client.connection_pool._available_connections
    with trio.testing.assert_no_checkpoints():
        connection = await stack.get()
    assert connection is not None
    stack.put_nowait(connection)
    key = backend._key("probe")
    await backend._client.set(key, "v")
    answers: list[Any] = []

    async def call() -> None:
        answers.append(await backend._client.get(key))

    async with trio.open_nursery() as calls:
        for _ in range(100):
            calls.start_soon(call)
    assert answers == ["v"] * 100
