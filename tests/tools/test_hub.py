"""Tests of taskrunner.tools.hub: history, task table, subscribers, sinks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from taskrunner.tools.hub import Hub, HubItem, SessionControl, Subscription
from tools import FakeControl, RecordFactory


def take_ready(subscription: Subscription) -> list[HubItem]:
    """Items a subscription can give without blocking, in order."""
    items: list[HubItem] = []
    while True:
        try:
            items.append(subscription.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def seqs(items: list[HubItem]) -> list[Any]:
    return [
        item["record"]["seq"] if item["type"] == "Record" else ("missed", item["count"])
        for item in items
    ]


def test_history_and_after() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    records = [f.session_started(), f.handler_output("hi"), f.handler_output("there")]
    for record in records:
        hub.publish("s1", record)
    assert hub.session_ids() == ["s1"]
    assert "s1" in hub and "nope" not in hub
    assert hub.records("s1") == records
    assert hub.records("s1", after=1) == records[1:]
    assert hub.records("s1", after=3) == []
    assert hub.records("s1", after=0) == records
    with pytest.raises(KeyError):
        hub.records("nope")


def test_history_limit_keeps_last_records() -> None:
    hub = Hub(history_limit=3)
    f = RecordFactory("s1")
    hub.publish("s1", f.session_started())
    for i in range(6):
        hub.publish("s1", f.handler_output(f"line {i}"))
    kept = hub.records("s1")
    assert [r["seq"] for r in kept] == [5, 6, 7]
    info = hub.session_info("s1")
    assert info["published"] == 7
    assert info["kept"] == 3
    assert info["dropped"] == 4
    assert info["first_seq"] == 5
    assert info["last_seq"] == 7
    # The session summary survives the eviction of SessionStarted.
    assert info["agent_id"] == "agent-7"
    assert info["environment"] == "test"


def test_session_info_and_controls() -> None:
    hub = Hub()
    control = FakeControl()
    hub.register("s1", control)
    assert isinstance(control, SessionControl)
    f = RecordFactory("s1", start=10.0)
    hub.publish("s1", f.session_started())
    info = hub.session_info("s1")
    assert info["live"] is True and info["ended"] is False
    assert info["started_at"] == 10.0
    assert hub.control("s1") is control
    hub.publish("s1", f.session_ended(at=12.5))
    hub.unregister_control("s1")
    info = hub.session_info("s1")
    assert info["live"] is False and info["ended"] is True and info["ended_at"] == 12.5
    assert hub.control("s1") is None
    assert len(hub.records("s1")) == 2  # history stays viewable
    assert hub.control("unknown") is None
    hub.unregister_control("unknown")  # no error
    assert [s["session_id"] for s in hub.sessions()] == ["s1"]


def test_publish_to_unregistered_session_registers_it() -> None:
    hub = Hub()
    hub.publish("late", RecordFactory("late").session_started())
    assert hub.session_ids() == ["late"]
    assert hub.session_info("late")["live"] is False


def test_task_table_states() -> None:
    hub = Hub()
    f = RecordFactory("s1", start=0.0)
    hub.publish("s1", f.session_started(at=0.0))
    hub.publish("s1", f.task_started("ok", interruptible=False, timeout=5.0, at=1.0))
    hub.publish("s1", f.task_output("ok", "Processing...", at=1.5))
    hub.publish("s1", f.task_output("ok", "still going", at=1.7))
    hub.publish("s1", f.task_finished("ok", {"temp": 21}, at=2.0))
    hub.publish("s1", f.task_started("bad", at=1.1))
    hub.publish("s1", f.task_failed("bad", "boom", at=3.0))
    hub.publish("s1", f.task_started("slow", timeout=2.0, at=1.2))
    hub.publish("s1", f.task_stuck("slow", "no checkpoint for 1s", since=1.3, at=2.3))
    hub.publish("s1", f.task_timed_out("slow", 2.0, at=3.2))
    hub.publish("s1", f.task_started("poll", at=1.3))
    hub.publish("s1", f.task_stuck("poll", "blocked", since=1.4, at=2.4))
    hub.publish("s1", f.task_started("gone", at=1.4))
    hub.publish("s1", f.task_cancelled("gone", "interrupted", at=4.0))
    rows = {row["name"]: row for row in hub.tasks("s1")}
    assert list(rows) == ["ok", "bad", "slow", "poll", "gone"]
    assert rows["ok"]["state"] == "finished"
    assert rows["ok"]["events"] == 2
    assert rows["ok"]["interruptible"] is False
    assert rows["ok"]["timeout"] == 5.0
    assert rows["ok"]["started_at"] == 1.0 and rows["ok"]["ended_at"] == 2.0
    assert rows["ok"]["detail"] == '{"temp": 21}'
    assert rows["bad"]["state"] == "failed" and rows["bad"]["detail"] == "ValueError: boom"
    assert rows["slow"]["state"] == "timed_out" and rows["slow"]["stuck"] is None
    assert rows["poll"]["state"] == "running" and rows["poll"]["stuck"] == "blocked"
    assert rows["gone"]["state"] == "cancelled" and rows["gone"]["detail"] == "interrupted"
    info = hub.session_info("s1")
    assert info["tasks"] == 5 and info["running"] == 1


def test_task_names_can_be_reused() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    hub.publish("s1", f.task_started("fetch"))
    hub.publish("s1", f.task_finished("fetch"))
    hub.publish("s1", f.task_started("fetch"))
    rows = hub.tasks("s1")
    assert rows[0]["detail"] is None  # no result: nothing to preview
    assert [(row["name"], row["task_id"], row["state"]) for row in rows] == [
        ("fetch", 1, "finished"),
        ("fetch", 2, "running"),
    ]


def test_task_table_is_bounded() -> None:
    hub = Hub(history_limit=3)
    f = RecordFactory("s1")
    hub.publish("s1", f.task_started("running-1"))
    for i in range(4):
        hub.publish("s1", f.task_started(f"t{i}"))
        hub.publish("s1", f.task_finished(f"t{i}"))
    names = [row["name"] for row in hub.tasks("s1")]
    # Finished tasks go first; the running one is kept.
    assert names == ["running-1", "t2", "t3"]


def test_task_output_without_start_creates_row() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    hub.publish("s1", f.task_output("orphan", "hello", at=7.0))
    (row,) = hub.tasks("s1")
    assert row["name"] == "orphan" and row["state"] == "running" and row["started_at"] == 7.0


async def test_subscriber_gets_records_published_after_subscribing() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    g = RecordFactory("s2")
    hub.publish("s1", f.session_started())
    with hub.subscribe("s1") as only_s1, hub.subscribe() as everything:
        hub.publish("s1", f.handler_output("a"))
        hub.publish("s2", g.session_started())
        hub.publish("s1", f.handler_output("b"))
        items = take_ready(only_s1)
        assert [(i["session"], i["record"]["seq"]) for i in items if i["type"] == "Record"] == [
            ("s1", 2),
            ("s1", 3),
        ]
        items = take_ready(everything)
        assert [(i["session"], i["record"]["seq"]) for i in items if i["type"] == "Record"] == [
            ("s1", 2),
            ("s2", 1),
            ("s1", 3),
        ]
        assert hub.subscriber_count() == 2
    assert hub.subscriber_count() == 0


async def test_waiting_subscriber_wakes_on_publish(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    f = RecordFactory("s1")
    received: list[HubItem] = []

    async def consume(subscription: Subscription) -> None:
        async for item in subscription:
            received.append(item)
            if len(received) == 2:
                return

    with hub.subscribe("s1") as subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume, subscription)
            await trio.sleep(5)
            assert received == []
            hub.publish("s1", f.handler_output("one"))
            await trio.sleep(1)
            assert len(received) == 1
            hub.publish("s1", f.handler_output("two"))
    assert seqs(received) == [1, 2]


async def test_slow_subscriber_misses_records_and_is_told() -> None:
    hub = Hub(buffer_size=3)
    f = RecordFactory("s1")
    with hub.subscribe("s1") as subscription:
        for i in range(10):
            hub.publish("s1", f.handler_output(str(i)))  # never blocks
        assert subscription.pending() == 3
        assert subscription.missed_total == 7
        items = take_ready(subscription)
        assert seqs(items) == [1, 2, 3, ("missed", 7)]
        missed = items[-1]
        assert missed["type"] == "Missed"
        assert missed["session"] == "s1"
        assert (missed["first_seq"], missed["last_seq"]) == (4, 10)
        # The missed records can be reloaded from the history.
        assert [r["seq"] for r in hub.records("s1", after=3)] == list(range(4, 11))
        hub.publish("s1", f.handler_output("after"))
        assert seqs(take_ready(subscription)) == [11]


async def test_missed_notice_keeps_its_place_in_order() -> None:
    hub = Hub(buffer_size=2)
    f = RecordFactory("s1")
    with hub.subscribe("s1") as subscription:
        for i in range(5):
            hub.publish("s1", f.handler_output(str(i)))  # 1, 2 kept; 3..5 missed
        first = await subscription.__anext__()
        assert seqs([first]) == [1]
        hub.publish("s1", f.handler_output("6"))  # room again: notice, then 6 is missed
        hub.publish("s1", f.handler_output("7"))  # still full
        items = take_ready(subscription)
        assert seqs(items) == [2, ("missed", 3), ("missed", 2)]
        assert (items[2]["first_seq"], items[2]["last_seq"]) == (6, 7)  # type: ignore[typeddict-item]


async def test_missed_counts_per_session_for_global_subscriber() -> None:
    hub = Hub(buffer_size=1)
    f, g = RecordFactory("s1"), RecordFactory("s2")
    with hub.subscribe() as subscription:
        hub.publish("s1", f.handler_output("kept"))
        hub.publish("s1", f.handler_output("x"))
        hub.publish("s2", g.handler_output("y"))
        hub.publish("s2", g.handler_output("z"))
        items = take_ready(subscription)
        assert [(i["type"], i["session"]) for i in items] == [
            ("Record", "s1"),
            ("Missed", "s1"),
            ("Missed", "s2"),
        ]
        assert [i["count"] for i in items if i["type"] == "Missed"] == [1, 2]


def test_publish_with_full_subscribers_is_cheap_and_never_raises() -> None:
    hub = Hub(buffer_size=1)
    f = RecordFactory("s1")
    subscriptions = [hub.subscribe("s1") for _ in range(20)]
    for i in range(2000):
        hub.publish("s1", f.handler_output(str(i)))
    assert all(s.missed_total == 1999 for s in subscriptions)
    assert all(s.pending() == 1 for s in subscriptions)


def test_sinks_see_every_record_and_failing_sink_is_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(buffer_size=1)
    f = RecordFactory("s1")
    seen: list[tuple[str, int]] = []

    def good(session_id: str, record: dict[str, Any]) -> None:
        seen.append((session_id, record["seq"]))

    def bad(session_id: str, record: dict[str, Any]) -> None:
        raise OSError("disk full")

    hub.add_sink(bad)
    hub.add_sink(good)
    with caplog.at_level(logging.ERROR, logger="taskrunner.tools.hub"):
        for i in range(5):
            hub.publish("s1", f.handler_output(str(i)))
    assert seen == [("s1", i) for i in range(1, 6)]
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
    hub.remove_sink(good)
    hub.remove_sink(good)  # no error
    hub.publish("s1", f.handler_output("x"))
    assert len(seen) == 5


async def test_close_ends_subscriptions_after_draining() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    subscription = hub.subscribe("s1")
    hub.publish("s1", f.handler_output("last"))
    hub.close()
    items = [item async for item in subscription]
    assert seqs(items) == [1]
    late = hub.subscribe("s1")
    assert [item async for item in late] == []
    hub.publish("s1", f.handler_output("still recorded"))
    assert len(hub.records("s1")) == 2


async def test_closing_a_subscription_stops_a_waiting_consumer(
    autojump_clock: trio.abc.Clock,
) -> None:
    hub = Hub()
    subscription = hub.subscribe("s1")
    done = trio.Event()

    async def consume() -> None:
        async for _ in subscription:
            pass
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.sleep(1)
        subscription.close()
        subscription.close()  # idempotent
    assert done.is_set()
    assert hub.subscriber_count() == 0


async def test_waiting_consumer_can_be_cancelled(autojump_clock: trio.abc.Clock) -> None:
    hub = Hub()
    with hub.subscribe("s1") as subscription:
        with trio.move_on_after(3) as scope:
            await subscription.__anext__()
        assert scope.cancelled_caught


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        Hub(history_limit=0)
    with pytest.raises(ValueError):
        Hub().subscribe(buffer_size=0)
    assert Hub(history_limit=None).history_limit is None  # unlimited history is allowed


def test_queued_tasks_are_pending_until_they_start() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    queued = f.task_started("later", at=1.0)
    queued.update(type="TaskQueued", limit=2)
    hub.publish("s1", queued)
    (row,) = hub.tasks("s1")
    assert row["state"] == "pending" and row["started_at"] == 1.0
    assert hub.session_info("s1")["pending"] == 1
    started = {**queued, "type": "TaskStarted", "seq": queued["seq"] + 1, "at": 3.0}
    del started["limit"]
    hub.publish("s1", started)
    (row,) = hub.tasks("s1")
    assert row["state"] == "running" and row["started_at"] == 3.0
    assert hub.session_info("s1")["pending"] == 0


def test_ended_sessions_are_forgotten_past_ended_limit() -> None:
    hub = Hub(ended_limit=2)
    for i in range(4):
        sid = f"s{i}"
        hub.register(sid, control=None)
        hub.publish(sid, {"type": "SessionStarted", "seq": 1, "at": 0.0, "source": "session"})
        hub.unregister_control(sid)
    assert hub.session_ids() == ["s2", "s3"]
    live = Hub(ended_limit=0)
    live.register("running")
    live.publish("running", {"type": "SessionStarted", "seq": 1, "at": 0.0, "source": "session"})
    assert live.session_ids() == ["running"]  # a session that has not ended stays
