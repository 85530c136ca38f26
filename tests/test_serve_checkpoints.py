"""``serve --checkpoints postgresql://...``: Redis workers keeping the checkpoints in PostgreSQL.

A real redis-server and a real PostgreSQL (the ``redis_url`` and ``postgres_dsn`` fixtures):
a worker killed with SIGKILL is taken over from the checkpoint in PostgreSQL; a stale
owner's checkpoint writes are refused; a PostgreSQL outage is retried and reported; bad
values of the option are refused by the command line. Real processes, so real short waits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import coredis
import psycopg
import pytest
import trio
from test_serve import (
    AGENT,
    _client,
    _contiguous,
    _records,
    _said,
    _start,
    _until,
    _wait_record,
    serve,
)

from taskrunner._store._fenced import read_session_checkpoint
from taskrunner.serve import new_session_id
from taskrunner.serve._store_checkpoints import StoreCheckpoints
from taskrunner.tools.hub import Hub

MEMORY_AGENT = str(Path(__file__).with_name("serve_memory_agent.py"))


def _row(dsn: str, session_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT epoch, owner, body, ended FROM tr_serve_checkpoints WHERE session_id = %s",
            (session_id,),
        ).fetchone()
    return None if found is None else tuple(found)


async def _row_where(dsn: str, session_id: str, check: Any) -> tuple[Any, ...]:
    with trio.fail_after(10):
        while True:
            row = await trio.to_thread.run_sync(_row, dsn, session_id)
            if row is not None and check(row):
                return row
            await trio.sleep(0.05)


async def _redis_checkpoint_keys(redis_url: str, prefix: str) -> list[str]:
    client: Any = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        return sorted(await client.keys(f"{prefix}:s:*:ckpt"))


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_sigkill_takeover_goes_on_from_the_checkpoint_in_postgresql(
    tmp_path: Path, redis_url: str, postgres_dsn: str, flavor: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    handler = "handler" if flavor == "asyncio" else "trio_handler"
    args = ["--workers", "2", "--redis", redis_url, "--prefix", prefix, "--lease", "2",
            "--checkpoints", postgres_dsn, "--agent-id", "serve_agent",
            "--handler", handler, "--flavor", flavor]  # fmt: skip
    async with serve(tmp_path, *args, workers_up=2, agent=MEMORY_AGENT) as server:
        async with _client(server, None) as client:
            health = (await client.get("/v1/health")).json()
            assert re.fullmatch(r"postgres(ql)?://.*: ok", health["checkpoints"])
            sid = await _start(client, parameters={"name": "Di"})
            await client.post(f"/v1/sessions/{sid}/input", json={"type": "text", "text": "one"})
            await _wait_record(client, sid, lambda r: r["type"] == "TaskOutput")
            # the checkpoint after "one" is in PostgreSQL, under the first claim's epoch
            owner = (await client.get(f"/v1/sessions/{sid}")).json()["owner"]
            epoch, row_owner, body, ended = await _row_where(
                postgres_dsn,
                sid,
                lambda row: row[2] and json.loads(row[2])["session"]["data"].get("turns") == 1,
            )
            assert (epoch, row_owner, ended) == (1, owner, None)
            saved = json.loads(body)
            assert saved["session"]["conversation"] == [{"role": "user", "content": "one"}]
            assert saved["running"] == [[saved["max_task_id"], "work-1"]]
            assert await _redis_checkpoint_keys(redis_url, prefix) == []
            published = await _records(client, sid)
            os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)
        async with _client(server, None) as client:
            resumed = await _wait_record(client, sid, lambda r: r["type"] == "SessionResumed")
            assert resumed["previous_owner"] == owner and resumed["owner"] != owner
            assert resumed["from_input"] == saved["input_id"]  # not from the start
            epoch, row_owner, _, _ = await trio.to_thread.run_sync(_row, postgres_dsn, sid)
            assert (epoch, row_owner) == (2, resumed["owner"])
            records = await _records(client, sid)
            assert records[: len(published)] == published  # nothing published was lost
            _contiguous(records)
            lost = [r for r in records if r["type"] == "TaskCancelled"]
            assert [(r["task"], r["reason"]) for r in lost] == [("work-1", "worker_lost")]
            # "one" was not handled again: the new owner went on from the checkpoint
            assert sum(_said("turn 1: one")(r) for r in records) == 1
            # the data (the counter) and the conversation came back from PostgreSQL
            await client.post(f"/v1/sessions/{sid}/input", json={"type": "text", "text": "two"})
            await _wait_record(client, sid, _said("turn 2: one / two"))
            await client.post(f"/v1/sessions/{sid}/input", json={"type": "stop"})
            await _wait_record(client, sid, lambda r: r["type"] == "SessionEnded")
            _contiguous(await _records(client, sid))
            row = await _row_where(postgres_dsn, sid, lambda row: row[3] is not None)
            assert json.loads(row[2])["session"]["data"]["turns"] == 2
            assert await _redis_checkpoint_keys(redis_url, prefix) == []


async def test_sigterm_hands_sessions_over_with_checkpoints_in_postgresql(
    tmp_path: Path, redis_url: str, postgres_dsn: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    args = ["--workers", "2", "--redis", redis_url, "--prefix", prefix,
            "--checkpoints", postgres_dsn, "--agent-id", "serve_agent"]  # fmt: skip
    async with serve(tmp_path, *args, workers_up=2, agent=MEMORY_AGENT) as server:
        async with _client(server, None) as client:
            sid = await _start(client, parameters={"name": "Fi"})
            await client.post(f"/v1/sessions/{sid}/input", json={"type": "text", "text": "one"})
            await _wait_record(client, sid, lambda r: r["type"] == "TaskOutput")
            owner = (await client.get(f"/v1/sessions/{sid}")).json()["owner"]
            os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGTERM)
            await _until("the worker to drain", lambda: f"worker {owner} drained" in server.text())
        async with _client(server, None) as client:
            resumed = await _wait_record(client, sid, lambda r: r["type"] == "SessionResumed")
            assert resumed["previous_owner"] == owner
            records = await _records(client, sid)
            kinds = [(r["type"], r.get("reason")) for r in records]
            assert ("TaskCancelled", "closed") in kinds
            assert ("TaskCancelled", "worker_lost") not in kinds
            _contiguous(records)
            await client.post(f"/v1/sessions/{sid}/input", json={"type": "text", "text": "two"})
            await _wait_record(client, sid, _said("turn 2: one / two"))
            assert sum(_said("turn 1: one")(r) for r in records) == 1
            epoch, row_owner, _, _ = await trio.to_thread.run_sync(_row, postgres_dsn, sid)
            assert (epoch, row_owner) == (2, resumed["owner"])
            assert await _redis_checkpoint_keys(redis_url, prefix) == []


async def test_a_stale_owners_checkpoint_writes_are_refused(postgres_dsn: str) -> None:
    sid = new_session_id()
    a = StoreCheckpoints(postgres_dsn, worker_id="host-a:1", retention=3600)
    b = StoreCheckpoints(postgres_dsn, worker_id="host-b:2", retention=3600)
    try:
        epoch_a, state = await a.claim(sid)
        assert (epoch_a, state) == (1, None)
        assert await a.write({sid: (epoch_a, {"turns": 1})}, {}) == set()
        # A is cut off past its lease; B claims the session and reads A's last checkpoint
        epoch_b, state = await b.claim(sid)
        assert (epoch_b, state) == (2, {"turns": 1})
        assert await b.write({sid: (epoch_b, {"turns": 2})}, {}) == set()
        # A, still running, saves and ends: both refused, B's checkpoint stays
        assert await a.write({sid: (epoch_a, {"turns": "stale"})}, {sid: epoch_a}) == {sid}
        row = await read_session_checkpoint(a.store, sid)
        assert row is not None
        assert row[:2] == (2, "host-b:2") and json.loads(row[2] or "") == {"turns": 2}
        assert row[3] is None  # not ended by the stale owner
        # the owner ends it
        assert await b.write({}, {sid: epoch_b}) == set()
        row = await read_session_checkpoint(b.store, sid)
        assert row is not None and row[3] is not None
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_worker_whose_checkpoint_is_refused_gives_the_session_up(
    redis_url: str, postgres_dsn: str
) -> None:
    from serve_memory_agent import handler

    from taskrunner.serve import RedisBackend

    backend = RedisBackend(
        handler,
        agent_id="serve_agent",
        hub=Hub(),
        redis_url=redis_url,
        prefix=f"t{uuid.uuid4().hex[:8]}",
        checkpoints=postgres_dsn,
    )
    other = StoreCheckpoints(postgres_dsn, worker_id="elsewhere:1", retention=3600)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run)
            sid = await backend.start_session("", {"name": "Al"})
            await _row_where(postgres_dsn, sid, lambda row: row[2] is not None)
            assert sid in backend._runners
            # another worker claims the session in PostgreSQL (as after this worker was
            # cut off past its lease); the next checkpoint of this one is refused there
            await other.claim(sid)
            await backend.send_input(sid, {"type": "text", "text": "one", "source": "text"})
            await _until("the session given up", lambda: sid not in backend._runners)
            epoch, owner, body, ended = await trio.to_thread.run_sync(_row, postgres_dsn, sid)
            assert (epoch, owner, ended) == (2, "elsewhere:1", None)
            assert "turns" not in json.loads(body)["session"]["data"]  # the start's, kept
            nursery.cancel_scope.cancel()
    finally:
        await other.aclose()


class _Proxy:
    """A TCP proxy on 127.0.0.1 to a server, which :meth:`cut` makes unreachable (open
    connections dropped, new ones closed at once) until :meth:`restore`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.up = True
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    server = await trio.open_tcp_stream(*self.target)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)

    @staticmethod
    async def _pump(a: trio.SocketStream, b: trio.SocketStream, done: trio.CancelScope) -> None:
        try:
            async for chunk in a:
                await b.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()

    def cut(self) -> None:
        self.up = False
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self.up = True


async def test_a_postgresql_outage_is_retried_and_reported(
    redis_url: str, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from serve_memory_agent import handler

    from taskrunner.serve import RedisBackend

    parts = urlsplit(postgres_dsn)
    proxy = _Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    caplog.set_level(logging.WARNING, logger="taskrunner.serve")
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        user = f"{parts.username}@" if parts.username else ""
        dsn = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
        backend = RedisBackend(
            handler,
            agent_id="serve_agent",
            hub=Hub(),
            redis_url=redis_url,
            prefix=f"t{uuid.uuid4().hex[:8]}",
            checkpoints=dsn,
        )
        await nursery.start(backend.run)
        sid = await backend.start_session("", {"name": "Bo"})
        await _row_where(postgres_dsn, sid, lambda row: row[2] is not None)
        proxy.cut()
        await backend.send_input(sid, {"type": "text", "text": "one", "source": "text"})
        await _until("the outage reported", lambda: "checkpoints unreachable" in caplog.text)
        # the records go on reaching Redis meanwhile; the checkpoint waits
        with trio.fail_after(10):
            while True:
                records = await backend.records(sid, None, 1000, 0)
                if any(_said("turn 1: one")(r) for r in records):
                    break
                await trio.sleep(0.05)
        health = await backend.health()
        assert re.fullmatch(r"postgres(ql)?://.*: unreachable for [\d.]+ s", health["checkpoints"])
        assert health["claiming"] is False and health["queued_writes"] > 0
        assert sid in backend._runners  # the session and the worker go on
        proxy.restore()
        await _until("the recovery reported", lambda: "reachable again" in caplog.text)
        row = await _row_where(
            postgres_dsn, sid, lambda row: json.loads(row[2])["session"]["data"].get("turns") == 1
        )
        assert row[:2] == (1, backend.worker_id)  # written by the same claim, nothing lost
        health = await backend.health()
        assert health["checkpoints"].endswith(": ok") and health["claiming"] is True
        await backend.send_input(sid, {"type": "stop"})
        await _row_where(postgres_dsn, sid, lambda row: row[3] is not None)
        assert sid not in backend._runners
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redis", "redis://127.0.0.1:1/0", "--checkpoints", "sqlite:///c.db"],
         "--checkpoints takes 'redis' (the default) or a PostgreSQL URL "
         "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, got 'sqlite:///c.db'"),
        (["--redis", "redis://127.0.0.1:1/0", "--checkpoints", "postgresql://"],
         "got 'postgresql://'"),
        (["--redis", "redis://127.0.0.1:1/0", "--checkpoints", "Redis"], "got 'Redis'"),
        # a password is not echoed
        (["--redis", "redis://127.0.0.1:1/0", "--checkpoints", "pgsql://me:secret@db/x"],
         "got 'pgsql://me:***@db/x'"),
        (["--checkpoints", "postgresql://me@db/x"],
         "--checkpoints postgresql://... needs --redis URL"),
    ],
)  # fmt: skip
def test_serve_command_line_refuses_bad_checkpoints(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskrunner.tools.cli import main

    # --stop-grace -1 is refused right after --checkpoints is checked: an accepted value
    # fails the test there instead of starting a server
    with pytest.raises(SystemExit, match=re.escape(message)) as raised:
        main(["serve", AGENT, *args, "--stop-grace", "-1"])
    assert "secret" not in str(raised.value)
    assert "\n" not in str(raised.value)  # one line
    assert capsys.readouterr().out == ""  # refused before anything was started

