"""``python -m taskrunner loadtest --follow ws``: the load generator following each session
on its WebSocket (inputs sent on it too), against real server processes on 127.0.0.1 (one
process, and ``--workers 2`` over a real redis-server, where a socket often lands on the
worker that does not run the session). Real processes and sockets, so real (short) waits.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import trio
from test_serve import KEY, _client, serve

from taskrunner.serve._loadtest import (
    LoadSpec,
    _SessionFailed,
    _SocketFollower,
    run_load,
)

CHAT = str(Path(__file__).parent.parent / "examples" / "chat_agent.py")


async def _start(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/agents/chat_agent/sessions/start", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def _spec(url: str, **changes: object) -> LoadSpec:
    base = {"url": url, "agent_id": "chat_agent", "sessions": 4, "rate": 20.0, "turns": 3,
            "think": 0.2, "interrupt_every": 1, "api_key": KEY, "timeout": 10.0}  # fmt: skip
    return LoadSpec(**{**base, **changes})  # type: ignore[arg-type]


async def test_ws_follow_against_two_workers_over_redis(tmp_path: Path, redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    args = ["--api-key", KEY, "--workers", "2", "--redis", redis_url, "--prefix", prefix]
    async with serve(tmp_path, *args, workers_up=2, agent=CHAT) as server:
        report = (await run_load(_spec(server.url, follow="ws"))).to_dict()
        async with _client(server) as client:
            listing = (await client.get("/v1/sessions")).json()["sessions"]
    assert report["errors"] == {}, report["errors"]
    assert report["lost_records"] == 0 and report["completed"] == 4
    # every turn timed its first output, and every turn ended with an interruption
    assert report["first_output_ms"]["n"] == 12 and report["interruption_ms"]["n"] == 12
    # both split at the record's time (the worker's clock: same machine)
    assert report["to_output_ms"]["n"] == 12 and report["interruption_to_record_ms"]["n"] == 12
    assert report["interruption_to_client_ms"]["p50"] is not None
    assert report["first_output_ms"]["p50"] > 0 and report["interruption_ms"]["p99"] > 0
    # ... split at the output record's time: both parts of every turn, each within the whole
    # (the worker and the load generator share this machine's clock)
    for part in ("to_output_ms", "to_client_ms"):
        assert report[part]["n"] == 12
        assert 0 <= report[part]["p50"] <= report["first_output_ms"]["p99"], report
    assert len(listing) == 4 and {s["state"] for s in listing} == {"ended"}
    # per session at least: the greeting, 3 answers, 3 interruptions, the goodbye, the end
    assert report["records"] >= 4 * 9


async def test_ws_follower_sees_what_is_stored_and_reports_refused_input(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, "--api-key", KEY, agent=CHAT) as server:
        spec = _spec(server.url)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            sid = await _start(client)
            follower = _SocketFollower(client, sid, spec)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    await nursery.start(follower.run)
                    await follower.send({"type": "text", "text": "one"})
                    await follower.wait_for(
                        lambda r: r["type"] == "HandlerOutput"
                        and r["event"].get("text") == "You said: one",
                        0, 5, "output",
                    )  # fmt: skip
                    await follower.send({"type": "stop"})
                    await follower.wait_for(
                        lambda r: r["type"] == "SessionEnded", 0, 5, "SessionEnded"
                    )
            stored = (await client.get(f"/v1/sessions/{sid}/events")).json()["records"]
            assert follower.records == stored
            assert [r["seq"] for r in stored] == list(range(len(stored)))

            # an input the server refuses comes back as an error frame: the session fails
            sid = await _start(client)
            follower = _SocketFollower(client, sid, spec)
            refused = pytest.RaisesGroup(pytest.RaisesExc(_SessionFailed, match="^ws input 400$"))
            with trio.fail_after(10), refused:
                async with trio.open_nursery() as nursery:
                    await nursery.start(follower.run)
                    await follower.send({"type": "shout"})
                    await follower.wait_for(lambda r: False, 0, 5, "nothing")


async def test_loadtest_ws_reports_a_refused_key_as_errors(tmp_path: Path) -> None:
    async with serve(tmp_path, "--api-key", KEY, agent=CHAT) as server:
        result = await trio.run_process(
            [sys.executable, "-m", "taskrunner", "loadtest", server.url, "--agent-id",
             "chat_agent", "--sessions", "2", "--rate", "20", "--turns", "1", "--api-key",
             "wrong", "--json", "--follow", "ws"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["completed"] == 0 and report["errors"] == {"start 401": 2}


def test_follow_mode_is_checked() -> None:
    with pytest.raises(ValueError, match=r"LoadSpec.follow takes 'ws' or 'poll', got 'sse'"):
        LoadSpec(url="http://127.0.0.1:1/", agent_id="a", follow="sse")


def test_loadtest_command_line_refuses_an_unknown_follow_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from taskrunner.tools.cli import main

    with pytest.raises(SystemExit):
        main(["loadtest", "http://127.0.0.1:1/", "--agent-id", "a", "--follow", "sse"])
    assert "invalid choice: 'sse'" in capsys.readouterr().err
