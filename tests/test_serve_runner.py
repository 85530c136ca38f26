"""The session runner a served worker runs, in process: inputs, records with one numbering,
checkpoints, and going on from a checkpoint after the owner was lost (both flavours)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from serve_agent import handler as asyncio_handler
from serve_agent import trio_handler

from taskrunner.serve import (
    BadInputError,
    Resume,
    SessionRunner,
    checkpoint_session,
    event_from_json,
    lost_tasks,
    parse_input,
)

HANDLERS = {"asyncio": asyncio_handler, "trio": trio_handler}


@pytest.fixture(params=["asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Box:
    """Collects what a runner publishes and saves; wakes waiters on each record."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.saved: list[dict[str, Any]] = []
        self.news = trio.Event()

    def publish(self, record: dict[str, Any]) -> None:
        json.dumps(record)  # JSON-safe, as a backend needs
        self.records.append(record)
        self.news.set()
        self.news = trio.Event()

    def save(self, state: dict[str, Any]) -> None:
        self.saved.append(json.loads(json.dumps(state)))
        self.news.set()
        self.news = trio.Event()

    async def until(self, check: Any) -> None:
        while not check():
            await self.news.wait()


def runner(flavor: str, box: Box, resume: Resume | None = None, owner: str = "w1") -> SessionRunner:
    return SessionRunner(
        HANDLERS[flavor],
        session_id="s1",
        agent_id="a",
        environment="env",
        parameters={"name": "Ann"},
        flavor=flavor,  # type: ignore[arg-type]
        stop_grace=0.0,
        owner=owner,
        publish=box.publish,
        save=box.save,
        resume=resume,
    )


def text(value: str) -> dict[str, Any]:
    return {"k": "input", "event": parse_input({"type": "text", "text": value})}


async def test_takeover_goes_on_from_the_checkpoint(flavor: str, autojump_clock: Any) -> None:
    first = Box()
    one = runner(flavor, first)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        one.deliver("i0", {"k": "start"})
        one.deliver("i1", text("hi"))
        # the text was handled (its state saved) and its task is running
        await first.until(
            lambda: any(s["input_id"] == "i1" for s in first.saved)
            and any(r["type"] == "TaskOutput" for r in first.records)
        )
        one.abort()  # as if the worker died: nothing more is published
        published = len(first.records)
        await trio.sleep(1)
    assert len(first.records) == published
    state = first.saved[-1]
    assert state["session"]["data"] == {"name": "Ann", "turns": 1}
    assert state["running"] == [[1, "work-1"]]
    assert [r["seq"] for r in first.records] == list(range(published))

    lost, top = lost_tasks(state, [r for r in first.records if r["seq"] > state["seq"]])
    assert lost == ((1, "work-1"),) and top == 1
    second = Box()
    resume = Resume(state, seq_base=published, task_base=top, lost=lost, previous_owner="w1")
    two = runner(flavor, second, resume, owner="w2")
    async with trio.open_nursery() as nursery:
        await nursery.start(two.run)
        two.deliver("i2", text("again"))
        two.deliver("i3", {"k": "input", "event": {"type": "stop"}})
    kinds = [(r["type"], r.get("task"), r.get("reason")) for r in second.records]
    assert kinds[:2] == [
        ("TaskCancelled", "work-1", "worker_lost"),
        ("SessionResumed", None, None),
    ]
    assert second.records[1]["previous_owner"] == "w1" and second.records[1]["owner"] == "w2"
    assert "SessionStarted" not in {k for k, _, _ in kinds}
    said = [r["event"]["text"] for r in second.records if r["type"] == "HandlerOutput"]
    assert said == ["turn 2: again"]  # the data came back: the counter goes on
    started = [r for r in second.records if r["type"] == "TaskStarted"]
    assert [(r["task"], r["task_id"]) for r in started] == [("work-2", 2)]
    assert [r["seq"] for r in second.records] == list(
        range(published, published + len(second.records))
    )
    assert kinds[-1][0] == "SessionEnded"


async def test_hand_over_leaves_without_a_stop(flavor: str, autojump_clock: Any) -> None:
    box = Box()
    one = runner(flavor, box)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        one.deliver("i0", {"k": "start"})
        one.deliver("i1", text("hi"))
        await box.until(lambda: any(s["input_id"] == "i1" for s in box.saved))
        one.hand_over()
        one.deliver("i2", text("too late"))  # not taken: the next owner reads it
    kinds = [(r["type"], r.get("reason")) for r in box.records]
    assert ("TaskCancelled", "closed") in kinds
    assert kinds[-1] == ("SessionHandedOver", None)
    assert "SessionEnded" not in {k for k, _ in kinds}
    assert not any("too late" in json.dumps(r) for r in box.records)


async def test_interrupt_and_cancel_act_at_once(flavor: str, autojump_clock: Any) -> None:
    box = Box()
    one = runner(flavor, box)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        one.deliver("i0", {"k": "start"})
        one.deliver("i1", text("a"))
        await box.until(lambda: one.has_task("work-1"))
        one.deliver("", {"k": "interrupt"})
        await box.until(lambda: any(r["type"] == "TaskCancelled" for r in box.records))
        one.deliver("i2", text("b"))
        await box.until(lambda: one.has_task("work-2"))
        one.deliver("", {"k": "cancel", "name": "work-2"})
        one.deliver("", {"k": "cancel", "name": "nothing"})
        one.deliver("i3", {"k": "input", "event": {"type": "stop"}})
    cancelled = [(r["task"], r["reason"]) for r in box.records if r["type"] == "TaskCancelled"]
    assert cancelled == [("work-1", "interrupted"), ("work-2", "cancel_task")]


def test_parse_input_names_what_it_refuses() -> None:
    assert parse_input({"type": "text", "text": "x"}) == {
        "type": "text",
        "text": "x",
        "source": "text",
    }
    assert event_from_json(parse_input({"type": "timeout"})).data == {
        "count": 1,
        "ms_since_input": 0,
    }
    for bad, message in [
        ("x", "got str: 'x'"),
        ({"type": 1}, "unknown input event type 1"),
        ({"type": "timeout", "count": True}, "\"count\" must be an int"),
        ({"type": "timeout", "ms_since_input": float("inf")}, "ms_since_input"),
        ({"type": "custom"}, "\"name\": a string"),
        ({"type": "custom", "name": "n", "data": []}, "\"data\" must be a JSON object"),
        ({"type": "text", "text": "x", "source": 3}, "\"source\" must be a string"),
        ({"type": "stop", "why": 1}, "takes nothing else; unexpected: why"),
    ]:
        with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
            parse_input(bad)


async def test_checkpoint_refuses_another_session(autojump_clock: Any) -> None:
    box = Box()
    one = runner("trio", box)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        assert one._session is not None
        picture = checkpoint_session(one._session, parameters={"p": 1})
        assert picture["parameters"] == {"p": 1} and picture["session_id"] == "s1"
        one.abort()
    other = {**picture, "session_id": "s2"}
    resume = Resume({"session": other, "input_id": "x", "seq": 0}, 5, 0, (), "w1")
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(runner("trio", Box(), resume).run)
    assert [str(e) for e in leaves(info.value)] == [
        "checkpoint of session 's2' cannot restore session 's1'"
    ]


def leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in leaves(exc)]
    return [group]
