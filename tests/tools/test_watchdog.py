"""The watchdog, task stacks and creation sites, and the thread hand-off, on real sessions.

Blocking the trio thread needs real time: these tests block it for a few hundred ms.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import pytest
import trio

import taskrunner
from taskrunner.events import Record, TaskCancelled, TextEvent
from taskrunner.tools.debugger import DebuggerThread
from taskrunner.tools.feed import AgentFeed
from taskrunner.tools.stacks import task_stack
from taskrunner.tools.watchdog import LoopBlocked, LoopWatchdog, open_watchdog

TOKEN = "watchdog-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["trio", "asyncio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def blocking_handler(flavor: str, seconds: float, where: str) -> Any:
    """A handler that starts a task blocking the thread (or blocks itself) on "go"."""

    if flavor == "trio":

        async def pause() -> None:
            await trio.sleep(0.05)

    else:

        async def pause() -> None:
            await asyncio.sleep(0.05)

    async def sleeper() -> None:
        await pause()
        time.sleep(seconds)  # noqa: ASYNC251 -- the mistake the watchdog reports

    async def handler(event: Any, context: Any) -> Any:
        if isinstance(event, TextEvent):
            if where == "task":
                context.create_task(sleeper(), name="sync_sleeper")
            else:
                time.sleep(seconds)  # noqa: ASYNC251
        if False:
            yield

    return handler


async def collect(session: Any, records: list[Record]) -> None:
    async for record in session.events():
        records.append(record)


async def test_a_blocking_task_is_named_with_its_stack(
    flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    records: list[Record] = []
    seen_blocked: list[dict[str, Any]] = []
    reports: list[tuple[LoopBlocked, str | None]] = []
    caplog.set_level(logging.WARNING, logger="taskrunner.watchdog")
    async with open_watchdog(0.1, on_report=lambda r, s: reports.append((r, s))) as watchdog:

        def poll() -> None:  # another thread sees the block while it lasts
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                status = watchdog.status()
                if status["blocked"]:
                    seen_blocked.append(status)
                    return
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(
                blocking_handler(flavor, 0.4, "task"), session_id="s-block", flavor=flavor
            ) as session:
                watchdog.watch(session.supervisor, "s-block")
                nursery.start_soon(collect, session, records)
                poller.start()
                await session.send(TextEvent.from_text("go"))
                await session.wait_until_handled()
                await session.supervisor.wait_for_all_tasks()
                await trio.sleep(0.1)  # the heartbeat reports the block
        await trio.to_thread.run_sync(poller.join)
    (blocked,) = [r for r in records if isinstance(r, LoopBlocked)]
    assert blocked.task == "sync_sleeper" and blocked.handler is False
    assert 0.3 <= blocked.duration < 3
    assert blocked.stack[-1]["code"].startswith("time.sleep(seconds)")
    assert blocked.stack[-1]["function"].endswith("sleeper")
    assert blocked.to_dict()["task"] == "sync_sleeper"
    assert reports == [(blocked, "s-block")]
    (status,) = seen_blocked
    assert status["owner"] == "task 'sync_sleeper' of session s-block"
    assert status["session_id"] == "s-block" and status["stack"][-1]["line"] > 0
    (warning,) = [
        r
        for r in caplog.records
        if r.name == "taskrunner.watchdog" and r.levelno == logging.WARNING
    ]
    assert "task 'sync_sleeper' of session s-block is blocking it" in warning.getMessage()
    assert "time.sleep(seconds)" in warning.getMessage()
    final = watchdog.status()
    assert final["blocked"] is False and final["blocks"] == 1
    assert final["last_block"]["task"] == "sync_sleeper"


async def test_a_blocking_handler_is_named(flavor: str) -> None:
    records: list[Record] = []
    async with open_watchdog(0.1) as watchdog:
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(
                blocking_handler(flavor, 0.3, "handler"), flavor=flavor
            ) as session:
                watchdog.watch(session)
                nursery.start_soon(collect, session, records)
                await session.send(TextEvent.from_text("go"))
                await session.wait_until_handled()
                await trio.sleep(0.1)
    (blocked,) = [r for r in records if isinstance(r, LoopBlocked)]
    assert blocked.handler is True and blocked.task is None
    assert blocked.stack[-1]["code"].startswith("time.sleep(seconds)")


async def test_nothing_is_reported_when_nothing_blocks() -> None:
    reports: list[Any] = []
    async with open_watchdog(0.1, on_report=lambda r, s: reports.append(r)) as watchdog:
        async with taskrunner.open_supervisor() as sup:
            for i in range(50):
                sup.create_task(_nap(0.01 * (i % 5)), name=f"idle-{i}")
            await trio.sleep(0.4)
    assert reports == [] and watchdog.status()["blocks"] == 0


async def _nap(seconds: float) -> None:
    await trio.sleep(seconds)


async def test_a_scheduler_busy_with_many_short_tasks_is_not_a_block() -> None:
    # 6,000 tasks each computing ~0.1 ms between checkpoints: every round of the scheduler
    # takes longer than the threshold (0.3 s here, so that the machine's own preemptions
    # are far shorter than the half threshold a task must be seen running), yet no task
    # runs long without a checkpoint.
    async def short_steps() -> None:
        for _ in range(5):
            end = time.perf_counter() + 0.0001
            while time.perf_counter() < end:
                pass
            await trio.lowlevel.checkpoint()

    reports: list[Any] = []
    async with open_watchdog(0.3, on_report=lambda r, s: reports.append(r)) as watchdog:
        async with taskrunner.open_supervisor() as sup:
            for i in range(6000):
                sup.create_task(short_steps, name=f"short-{i}", timeout=None)
                if i % 200 == 0:
                    await trio.lowlevel.checkpoint()
            await sup.wait_for_all_tasks()
        await trio.sleep(0.1)
    assert reports == [] and watchdog.status()["blocks"] == 0, [
        (r.task, r.duration, r.stack[-3:]) for r in reports
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (float("inf"), ValueError),
        (-1, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_block_threshold_is_checked(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="block_threshold"):
        LoopWatchdog(value)


# ---- stacks and creation sites ----------------------------------------------------


async def test_stack_of_a_waiting_task_in_both_flavours(flavor: str) -> None:
    if flavor == "trio":

        async def deep_wait() -> None:
            await trio.sleep(100)

    else:

        async def deep_wait() -> None:
            await asyncio.sleep(100)

    async def outer() -> None:
        await deep_wait()

    async def gen() -> Any:
        yield "first"
        await deep_wait()

    async with taskrunner.open_supervisor(flavor=flavor) as sup:  # type: ignore[arg-type]
        waiting = sup.create_task(outer(), name="waiting")
        generator = sup.create_task(gen(), name="generator")
        reader_records: list[Record] = []

        async def read() -> None:
            async for record in sup.events():
                reader_records.append(record)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(0.05)
            for handle in (waiting, generator):
                stack = task_stack(handle)
                assert stack is not None
                functions = [frame["function"] for frame in stack]
                assert any(f.endswith("deep_wait") for f in functions), functions
                mine = [frame for frame in stack if frame["function"].endswith("deep_wait")]
                assert "sleep(100)" in mine[0]["code"]
            assert [f["function"].split(".")[-1] for f in task_stack(waiting) or []][:2] == [
                "outer",
                "deep_wait",
            ]
            sup.cancel_all_tasks()
            await sup.wait_for_all_tasks()
            assert task_stack(waiting) is None  # ended: no stack, nothing kept
            nursery.cancel_scope.cancel()


async def test_feed_records_where_each_task_was_created(flavor: str) -> None:
    async def job() -> None:
        await trio.sleep(0) if flavor == "trio" else await asyncio.sleep(0)

    async def handler(event: Any, context: Any) -> Any:
        if isinstance(event, TextEvent):
            context.create_task(job(), name="made_here")  # creation site
        if False:
            yield

    feed = AgentFeed()
    with DebuggerThread(feed=feed, port=0, token=TOKEN) as server:
        async with taskrunner.open_session(
            handler, session_id="s-site", flavor=flavor, hub=feed
        ) as s:
            await s.send(TextEvent.from_text("go"))
            await s.wait_until_handled()
        async with httpx.AsyncClient(base_url=server.url or "", headers=AUTH) as client:
            for _ in range(100):
                tasks = (await client.get("/api/sessions/s-site/tasks")).json()["tasks"]
                if tasks and tasks[0]["state"] != "running":
                    break
                await trio.sleep(0.02)
    (row,) = tasks
    assert (
        row["created"][-1]["code"]
        == 'context.create_task(job(), name="made_here")  # creation site'
    )
    assert row["created"][-1]["function"].endswith("handler")


# ---- the hand-off: server in its own thread ---------------------------------------


async def test_page_answers_while_the_agent_is_blocked_and_cancel_waits_for_it(flavor: str) -> None:
    records: list[Record] = []

    if flavor == "trio":

        async def listener() -> None:
            await trio.sleep(100)

    else:

        async def listener() -> None:
            await asyncio.sleep(100)

    async def handler(event: Any, context: Any) -> Any:
        if isinstance(event, TextEvent):
            context.create_task(listener(), name="listener", timeout=None)
        if False:
            yield

    answers: dict[str, Any] = {}

    def while_blocked(url: str) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                status = client.get("/api/status").json()
                if status["agent"] and status["agent"]["blocked"]:
                    answers["status"] = status["agent"]
                    break
                time.sleep(0.02)
            answers["cancel"] = client.post("/api/sessions/s-hand/tasks/listener/cancel")

    async with open_watchdog(0.1) as watchdog:
        feed = AgentFeed(watchdog=watchdog, answer_within=0.2)
        with DebuggerThread(feed=feed, port=0, token=TOKEN, status=watchdog.status) as server:
            async with trio.open_nursery() as nursery:
                async with taskrunner.open_session(
                    handler, session_id="s-hand", flavor=flavor, hub=feed
                ) as session:
                    nursery.start_soon(collect, session, records)
                    await session.send(TextEvent.from_text("go"))
                    await session.wait_until_handled()
                    helper = threading.Thread(target=while_blocked, args=(server.url,))
                    helper.start()
                    # The agent's thread blocks; the helper gets its answers meanwhile.
                    deadline = time.monotonic() + 5
                    while "cancel" not in answers and time.monotonic() < deadline:
                        time.sleep(0.01)  # noqa: ASYNC251 -- the agent's thread blocks
                    await trio.sleep(0.05)  # unblocked: the queued cancel runs now
                    await session.supervisor.wait_for_all_tasks()
                    helper.join()
    assert answers["status"]["blocked"] is True
    cancel = answers["cancel"]
    assert cancel.status_code == 202 and cancel.json()["queued"] is True
    (ended,) = [r for r in records if isinstance(r, TaskCancelled)]
    assert ended.task == "listener" and ended.reason == "cancel_task"


async def test_a_cancel_from_the_page_says_it_came_from_the_debugger() -> None:
    records: list[Record] = []

    async def listener() -> None:
        await trio.sleep(100)

    async def handler(event: Any, context: Any) -> Any:
        if isinstance(event, TextEvent):
            context.create_task(listener(), name="listener", timeout=None)
        if False:
            yield

    feed = AgentFeed()
    with DebuggerThread(feed=feed, port=0, token=TOKEN) as server:
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(
                handler, session_id="s-o", flavor="trio", hub=feed
            ) as s:
                nursery.start_soon(collect, s, records)
                await s.send(TextEvent.from_text("go"))
                await s.wait_until_handled()
                async with httpx.AsyncClient(base_url=server.url or "", headers=AUTH) as client:
                    await trio.sleep(0.1)
                    answer = await client.post("/api/sessions/s-o/tasks/listener/cancel")
                assert answer.json() == {"cancelled": True}
    (ended,) = [r for r in records if isinstance(r, TaskCancelled)]
    assert ended.origin == "debugger"
