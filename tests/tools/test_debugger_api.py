"""The debugger's newer routes: status, paging, task table, stacks, download, /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from taskrunner.tools.debugger import create_app
from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import encode_line
from taskrunner.tools.recording_index import RecordingIndex
from tools import FakeControl, RecordFactory

TOKEN = "api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH
    )


def busy_hub() -> tuple[Hub, RecordFactory]:
    hub = Hub()
    f = RecordFactory("s1")
    hub.register("s1", FakeControl({"a"}))
    hub.publish("s1", f.session_started())
    hub.publish("s1", f.task_started("a"))
    hub.publish("s1", f.task_started("b"))
    for i in range(10):
        hub.publish("s1", f.task_output("a" if i % 2 else "b", f"line {i}"))
    hub.publish("s1", f.task_failed("b", "broken"))
    hub.publish("s1", {**f.task_cancelled("a", "interrupted"), "origin": "input:TextEvent"})
    hub.publish("s1", {**f.task_started("c"), "type": "TaskQueued", "limit": 2})
    blocked = {"type": "LoopBlocked", "seq": f.seq + 1, "at": 1.0, "source": "session"}
    hub.publish("s1", {**blocked, "task": "a", "task_id": 1, "duration": 0.25, "stack": []})
    return hub, f


async def test_page_filters_by_task_and_kind() -> None:
    hub, _ = busy_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        everything = (await client.get("/api/sessions/s1/page", params={"count": 5})).json()
        second = (await client.get("/api/sessions/s1/page", params={"start": 5, "count": 5})).json()
        a_only = (await client.get("/api/sessions/s1/page", params={"task": "id:1"})).json()
        kinds = (
            await client.get("/api/sessions/s1/page", params={"kinds": "TaskFailed,TaskCancelled"})
        ).json()
        bad = await client.get("/api/sessions/s1/page", params={"count": "many"})
        huge = await client.get("/api/sessions/s1/page", params={"count": 100000})
    assert everything["total"] == 17 and [r["seq"] for r in everything["records"]] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert [r["seq"] for r in second["records"]] == [6, 7, 8, 9, 10]
    assert {r["task"] for r in a_only["records"]} == {"a"} and a_only["total"] == 8
    assert [r["type"] for r in kinds["records"]] == ["TaskFailed", "TaskCancelled"]
    assert bad.status_code == 400 and huge.status_code == 400
    assert everything["session"]["kinds"]["TaskOutput"] == 10


async def test_task_table_carries_reason_origin_and_blocked_time() -> None:
    hub, _ = busy_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        tasks = {t["name"]: t for t in (await client.get("/api/sessions/s1/tasks")).json()["tasks"]}
    assert tasks["a"]["state"] == "cancelled" and tasks["a"]["reason"] == "interrupted"
    assert tasks["a"]["origin"] == "input:TextEvent"
    assert tasks["a"]["detail"] == "interrupted by input:TextEvent"
    assert tasks["a"]["blocked"] == 0.25
    assert tasks["b"]["state"] == "failed" and tasks["c"]["state"] == "pending"


async def test_status_and_stack_routes() -> None:
    hub, _ = busy_hub()
    status = {"blocked": True, "owner": "task 'a'", "blocks": 1, "blocked_seconds": 0.0}
    app = create_app(hub, token=TOKEN, status=lambda: status)
    async with client_for(app) as client:
        answer = (await client.get("/api/status")).json()
        no_stack = await client.get("/api/sessions/s1/tasks/a/stack")
    assert answer["agent"] == status and answer["recording"] is None
    assert no_stack.status_code == 409  # a fake control has no stacks to read


async def test_download_is_a_recording_of_the_session(tmp_path: Path) -> None:
    hub, _ = busy_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        answer = await client.get("/api/sessions/s1/download")
    assert answer.headers["content-disposition"] == 'attachment; filename="s1.jsonl"'
    lines = answer.text.splitlines()
    assert [json.loads(line)["record"] for line in lines] == hub.records("s1")
    path = tmp_path / "saved.jsonl"
    path.write_text(answer.text)
    index = RecordingIndex(path)
    index.scan()
    assert index.tasks("s1") == hub.tasks("s1")


async def test_recording_index_behind_the_app(tmp_path: Path) -> None:
    f = RecordFactory("r")
    path = tmp_path / "r.jsonl"
    path.write_text(
        "".join(encode_line("r", rec) for rec in [f.session_started(), f.task_started("x"),
                                                   f.task_finished("x", 42), f.session_ended()])
    )  # fmt: skip
    index = RecordingIndex(path)
    app = create_app(index, token=TOKEN, read_only=True)
    async with client_for(app) as client:
        before = (await client.get("/api/status")).json()["recording"]
        await trio.to_thread.run_sync(index.scan)
        after = (await client.get("/api/status")).json()["recording"]
        sessions = (await client.get("/api/sessions")).json()["sessions"]
        page = (await client.get("/api/sessions/r/page", params={"start": 1, "count": 2})).json()
        stream = await client.get("/api/sessions/r/stream")
        download = await client.get("/api/sessions/r/download")
    assert before["loading"] is True and before["records"] == 0
    assert after == {**after, "loading": False, "records": 4, "error": None}
    assert sessions[0]["kept"] == 4 and sessions[0]["live"] is False
    assert [r["type"] for r in page["records"]] == ["TaskStarted", "TaskFinished"]
    assert stream.status_code == 409
    assert download.text == path.read_text()


async def test_metrics_in_prometheus_text_behind_the_token() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    hub, _ = busy_hub()
    status = {"blocked": False, "blocks": 2, "blocked_seconds": 0.5}
    app = create_app(hub, token=TOKEN, metrics=True, status=lambda: status)
    async with client_for(app) as client:
        answer = await client.get("/metrics")
        anonymous = await client.get("/metrics", headers={"Authorization": ""})
    off = create_app(hub, token=TOKEN)
    async with client_for(off) as client:
        missing = await client.get("/metrics")
    assert anonymous.status_code == 401 and missing.status_code == 404
    assert answer.headers["content-type"].startswith("text/plain")
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert values[("taskrunner_tasks_started_total", ())] == 2
    assert values[("taskrunner_tasks_ended_total", (("state", "failed"),))] == 1
    assert values[("taskrunner_tasks_ended_total", (("state", "cancelled"),))] == 1
    assert values[("taskrunner_tasks_running", ())] == 0
    assert values[("taskrunner_tasks_pending", ())] == 1
    assert values[("taskrunner_sessions", ())] == 1
    assert values[("taskrunner_records_total", ())] == 17
    assert values[("taskrunner_loop_blocks_total", ())] == 2
    assert values[("taskrunner_loop_blocked_seconds_total", ())] == 0.5


async def test_behind_another_check_reads_are_open_and_actions_still_need_the_token() -> None:
    hub, _ = busy_hub()
    control = FakeControl({"x"})
    hub.register("s1", control)
    app = create_app(hub, token=TOKEN, require_token=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        read = await client.get("/api/sessions")
        denied = await client.post("/api/sessions/s1/tasks/x/cancel")
        legacy = await client.post(
            "/api/sessions/s1/tasks/x/cancel", headers={"X-Taskrunner-Token": TOKEN}
        )
        bearer = await client.post("/api/sessions/s1/interrupt", headers=AUTH)
    assert read.status_code == 200
    assert denied.status_code == 401 and control.cancel_calls == ["x"]
    assert legacy.json() == {"cancelled": True} and bearer.status_code == 200
