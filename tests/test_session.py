"""The session runtime: handler, Context, one output stream, interruption, stop."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from helpers import check_stream_invariants, kinds, of_task

import taskrunner
from taskrunner import Context, Session, current_context
from taskrunner.events import (
    CustomEvent,
    HandlerFailed,
    HandlerOutput,
    LogEvent,
    Record,
    SessionEnded,
    SessionStarted,
    StartEvent,
    StopEvent,
    TaskCancelled,
    TaskFinished,
    TaskOutput,
    TextEvent,
    TextToSpeechEvent,
    TimeoutEvent,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def session_with_records(
    handler: Any, **kwargs: Any
) -> AsyncIterator[tuple[Session, list[Record]]]:
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, **kwargs) as session:

            async def read() -> None:
                async for record in session.events():
                    records.append(record)

            nursery.start_soon(read)
            yield session, records


def spoken(records: list[Record]) -> list[str]:
    return [
        r.event.text
        for r in records
        if isinstance(r, HandlerOutput) and isinstance(r.event, TextToSpeechEvent)
    ]


def say(text: str) -> TextEvent:
    return TextEvent(data={"source": "speech", "text": text})


# ---------------------------------------------------------------------------- the seeds


async def test_seed_order_agent_pending_then_completed(autojump_clock: Any) -> None:
    agent = load_example("order_agent")
    async with session_with_records(agent.handler, agent_id="orders") as (session, records):
        await session.send(StartEvent())
        await session.send(say("Place order please"))
        await session.send(say("check status"))
        await session.wait_until_handled()
        assert session.context.has_unfinished_tasks()
        await trio.sleep(6)
        await session.send(say("check status"))
    assert spoken(records) == [
        "Processing your order in the background.",
        "Your order status is: pending",
        "Your order status is: completed",
    ]
    assert kinds(of_task(records, "order_processing")) == ["TaskStarted", "TaskFinished"]
    assert of_task(records, "order_processing")[-1].at == 5
    assert isinstance(records[0], SessionStarted) and records[0].agent_id == "orders"
    assert isinstance(records[-1], SessionEnded)
    check_stream_invariants(records)


async def test_seed_background_task_logs_reach_the_stream_tagged(autojump_clock: Any) -> None:
    agent = load_example("background_agent")
    async with session_with_records(agent.handler) as (session, records):
        await session.send(StartEvent())
        await session.send(say("how is it going?"))
        await session.wait_until_handled()
        await session.context.wait_for_all_tasks()
        await session.send(say("and now?"))
        await session.wait_until_handled()
        await session.context.wait_for_all_tasks()
    outputs = [r for r in records if isinstance(r, TaskOutput)]
    first_task = outputs[0].task
    assert first_task.startswith("background_task-")
    assert [(r.task, r.event) for r in outputs[:2]] == [
        (first_task, LogEvent("Processing background task...")),
        (first_task, LogEvent("Background task done")),
    ]
    assert spoken(records)[1:3] == [
        "The data is still processing.",
        spoken(records)[2],
    ]
    assert spoken(records)[2].startswith("The data is done processing.")
    assert len({r.task for r in outputs}) == 2  # the second task has its own generated name
    check_stream_invariants(records)


# ---------------------------------------------------------------------------- interruption


async def test_text_event_interrupts_even_while_the_handler_is_busy(autojump_clock: Any) -> None:
    async def stale() -> None:
        await asyncio.sleep(100)

    async def handler(event: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(event, StartEvent):
            context.create_task(stale, name="stale", interruptible=True)
            context.create_task(stale, name="kept")
            await asyncio.sleep(10)  # a slow answer: the next TextEvent arrives meanwhile
            yield TextToSpeechEvent(text="slow hello", voice="nova")
        elif isinstance(event, TextEvent):
            yield TextToSpeechEvent(text="heard you", voice="nova")

    async with session_with_records(handler) as (session, records):
        await session.send(StartEvent())
        await trio.sleep(1)
        await session.send(say("hello?"))
        await trio.sleep(0.5)
        stale_end = of_task(records, "stale")[-1]
        assert isinstance(stale_end, TaskCancelled) and stale_end.reason == "interrupted"
        assert stale_end.at == 1  # at send time, not after the slow handler run
        assert session.context.get_data("x") is None
        assert session.supervisor.get_task("kept").state is taskrunner.TaskState.RUNNING  # type: ignore[union-attr]
    assert spoken(records) == ["slow hello", "heard you"]
    kept_end = of_task(records, "kept")[-1]
    assert isinstance(kept_end, TaskCancelled) and kept_end.reason == "closed"


async def test_interrupt_on_is_configurable_and_interrupt_works_any_time(
    autojump_clock: Any,
) -> None:
    async def stale() -> None:
        await asyncio.sleep(100)

    async def handler(event: Any, context: Context) -> None:
        if isinstance(event, StartEvent):
            context.create_task(stale, name="a", interruptible=True)

    async with session_with_records(handler, interrupt_on=(CustomEvent,)) as (session, records):
        await session.send(StartEvent())
        await session.send(say("not an interruption here"))
        await session.wait_until_handled()
        assert session.context.has_unfinished_tasks()
        await session.send(CustomEvent("barge_in", {}))
        await session.wait_until_handled()
        assert not session.context.has_unfinished_tasks()
        session.context.create_task(stale, name="b", interruptible=True)
        await trio.sleep(1)
        assert session.interrupt() == 1
    reasons = {r.task: r.reason for r in records if isinstance(r, TaskCancelled)}
    assert reasons == {"a": "interrupted", "b": "interrupted"}


async def test_uninterruptible_section_in_example_agent(autojump_clock: Any) -> None:
    agent = load_example("interruptible_agent")
    async with session_with_records(agent.handler) as (session, records):
        await session.send(StartEvent())
        await trio.sleep(2.5)
        await session.send(say("I want to pay"))  # interrupts "suggest" after 2 suggestions
        await trio.sleep(1)
        await session.send(say("wait, one more thing"))  # arrives during the charge
        await session.wait_until_handled()
        await session.context.wait_for_all_tasks()
        assert session.context.get_data("charged") is True
    suggestions = [
        r.event.message for r in of_task(records, "suggest") if isinstance(r, TaskOutput)
    ]
    assert suggestions == ["suggesting coffee", "suggesting bagel"]
    charge = of_task(records, "charge_card")
    assert [r.event.message for r in charge if isinstance(r, TaskOutput)] == [
        "preparing payment",
        "card charged",
    ]
    end = charge[-1]
    # Deferred until the protected charge completed (t=2.5+2), then applied: no receipt.
    assert isinstance(end, TaskCancelled) and end.reason == "interrupted" and end.at == 4.5


# ---------------------------------------------------------------------------- context


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
async def test_current_context_in_handler_and_tasks(flavor: str, autojump_clock: Any) -> None:
    seen: list[tuple[str, Any]] = []
    sleep = trio.sleep if flavor == "trio" else asyncio.sleep

    async def helper_deep_in_the_stack() -> Any:
        return current_context()

    async def job() -> None:
        await sleep(1)
        seen.append(("task", await helper_deep_in_the_stack()))

    async def gen() -> AsyncIterator[str]:
        await asyncio.sleep(1)
        seen.append(("gen", current_context()))
        yield "x"

    async def handler(event: Any, context: Context) -> None:
        if not isinstance(event, StartEvent):
            return
        seen.append(("handler", current_context()))
        context.create_task(job, name="job")
        context.create_task(gen, name="gen", flavor="asyncio")

    assert current_context() is None
    async with session_with_records(handler, flavor=flavor) as (session, _):
        await session.send(StartEvent())
        await session.wait_until_handled()
        await session.context.wait_for_all_tasks()
        # Tasks created from outside the handler see the context too.
        session.context.create_task(job, name="outside")
        await session.context.wait_for_all_tasks()
    assert sorted(who for who, _ in seen) == ["gen", "handler", "task", "task"]
    assert all(ctx is session.context for _, ctx in seen)


async def test_data_trail_records_time_and_source(autojump_clock: Any) -> None:
    async def job(context: Context) -> None:
        await asyncio.sleep(2)
        context.set_data("status", "done")

    async def handler(event: Any, context: Context) -> None:
        if isinstance(event, StartEvent):
            context.set_data("status", "started")
            context.create_task(job(context), name="worker")

    async with session_with_records(handler) as (session, _):
        session.context.set_data("status", "configured")
        await session.send(StartEvent())
        await session.wait_until_handled()
        await session.context.wait_for_all_tasks()
    trail = session.context.data_history("status")
    assert [(c.value, c.at, c.source) for c in trail] == [
        ("configured", 0, "external"),
        ("started", 0, "handler"),
        ("done", 2, "worker"),
    ]
    assert session.context.get_data("status") == "done"
    assert session.context.data_history("missing") == []
    assert json.dumps([c.to_dict() for c in trail])


async def test_context_surface_and_snapshot(autojump_clock: Any) -> None:
    async def handler(event: Any, context: Context) -> None:
        context.set_data("user_name", "John")
        context.create_task(asyncio.sleep(5), name="slow")

    async with session_with_records(
        handler,
        session_id="s-1",
        agent_id="agent-7",
        environment="production|a1b2",
        variables={"API_KEY": "k"},
    ) as (session, _):
        ctx = session.context
        assert (ctx.session_id, ctx.agent_id, ctx.environment) == (
            "s-1",
            "agent-7",
            "production|a1b2",
        )
        assert ctx.function_id == handler.__qualname__
        assert ctx.variables.get("API_KEY") == "k"
        await session.send(StartEvent())
        await session.wait_until_handled()
        assert ctx.get_data("user_name") == "John" and ctx.data["user_name"] == "John"
        assert ctx.get_data("nope", "Guest") == "Guest"
        snap = json.loads(json.dumps(ctx.snapshot()))
        assert snap["session_id"] == "s-1" and snap["data"] == {"user_name": "John"}
        assert [(t["name"], t["state"]) for t in snap["tasks"]] == [("slow", "running")]
        assert ctx.cancel_task("slow") is True
        assert await ctx.wait_for_all_tasks() is True
        assert ctx.cancel_all_tasks() == 0 and ctx.cancel_interruptible_tasks() == 0


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
async def test_handler_failure_is_reported_and_the_session_goes_on(
    flavor: str, autojump_clock: Any
) -> None:
    async def handler(event: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(event, TextEvent) and event.data["text"] == "boom":
            yield TextToSpeechEvent(text="about to fail", voice="nova")
            raise ValueError("handler bug")
        yield TextToSpeechEvent(text=f"ok {type(event).__name__}", voice="nova")

    async with session_with_records(handler, flavor=flavor) as (session, records):
        await session.send(say("boom"))
        await session.send(TimeoutEvent(data={"count": 1, "ms_since_input": 1000}))
    assert spoken(records) == ["about to fail", "ok TimeoutEvent", "ok StopEvent"]
    failed = [r for r in records if isinstance(r, HandlerFailed)]
    assert len(failed) == 1 and isinstance(failed[0].error, ValueError)
    data = json.loads(json.dumps(failed[0].to_dict()))
    assert data["source"] == "handler" and data["input"]["data"]["text"] == "boom"
    assert "handler bug" in data["error"]["traceback"]


async def test_trio_handler_calling_asyncio_is_told_to_use_asyncio(autojump_clock: Any) -> None:
    async def handler(event: Any, context: Context) -> None:
        await asyncio.sleep(1)

    async with session_with_records(handler, flavor="trio") as (session, records):
        await session.send(StartEvent())
    failed = [r for r in records if isinstance(r, HandlerFailed)]
    assert isinstance(failed[0].error, taskrunner.FlavorError)
    assert "flavor='asyncio'" in str(failed[0].error)


# ---------------------------------------------------------------------------- stop


async def test_stop_sequence_with_grace(autojump_clock: Any) -> None:
    async def work(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"{seconds}s of work"

    async def handler(event: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(event, StartEvent):
            context.create_task(work(50), name="interruptible", interruptible=True)
            context.create_task(work(2), name="finishes_in_grace")
            context.create_task(work(50), name="too_long")
        if isinstance(event, StopEvent):
            yield TextToSpeechEvent(text="Goodbye!", voice="nova")

    async with session_with_records(handler, stop_grace=3) as (session, records):
        await session.send(StartEvent())
        await session.send(StopEvent())
        with pytest.raises(RuntimeError, match="received a StopEvent"):
            await session.send(say("too late"))
        await session.stop()
        assert trio.current_time() == 3
    assert spoken(records) == ["Goodbye!"]
    ends = {r.task: r for r in records if isinstance(r, (TaskCancelled, TaskFinished))}
    assert isinstance(ends["interruptible"], TaskCancelled) and ends["interruptible"].at == 0
    assert ends["interruptible"].reason == "closed"
    assert isinstance(ends["finishes_in_grace"], TaskFinished)
    assert isinstance(ends["too_long"], TaskCancelled) and ends["too_long"].at == 3
    assert ends["too_long"].reason == "closed"
    assert isinstance(records[-1], SessionEnded) and records[-1].at == 3
    check_stream_invariants(records)


async def test_stop_without_grace_cancels_at_once(autojump_clock: Any) -> None:
    async def handler(event: Any, context: Context) -> None:
        context.create_task(asyncio.sleep(50), name=type(event).__name__)

    async with session_with_records(handler) as (session, records):
        await session.send(StartEvent())
    # Leaving the block sent the StopEvent (handled: it starts one more task) and closed.
    ends = [r for r in records if isinstance(r, TaskCancelled)]
    assert sorted((r.task, r.reason, r.at) for r in ends) == [
        ("StartEvent", "closed", 0),
        ("StopEvent", "closed", 0),
    ]
    assert trio.current_time() == 0


async def test_exception_in_session_block_propagates_and_closes(autojump_clock: Any) -> None:
    async def handler(event: Any, context: Context) -> None:
        context.create_task(asyncio.sleep(50), name="t")
        await asyncio.sleep(100)

    with pytest.raises(ZeroDivisionError):
        async with taskrunner.open_session(handler) as session:
            await session.send(StartEvent())
            await trio.sleep(1)
            1 / 0  # noqa: B018
    records = [r async for r in session.events()]
    assert isinstance(of_task(records, "t")[-1], TaskCancelled)
    assert isinstance(records[-1], SessionEnded)


async def test_trio_example_agent(autojump_clock: Any) -> None:
    agent = load_example("trio_agent")
    async with session_with_records(agent.handler, flavor=agent.FLAVOR) as (session, records):
        await session.send(StartEvent())
        await session.send(say("weather"))
        await trio.sleep(5)
    lookups = [
        r.event.message for r in of_task(records, "lookup weather") if isinstance(r, TaskOutput)
    ]
    assert lookups == ["cache: 'weather' found"]
    beats = [r for r in of_task(records, "heartbeat") if isinstance(r, TaskOutput)]
    assert len(beats) == 2  # at t=2 and t=4
    assert isinstance(of_task(records, "heartbeat")[-1], TaskCancelled)


# ---------------------------------------------------------------------------- bad input


async def test_bad_input_to_sessions() -> None:
    def sync_handler(event: Any, context: Any) -> None:
        pass

    async def one_arg(event: Any) -> None:
        pass

    async def good(event: Any, context: Any) -> None:
        pass

    with pytest.raises(TypeError, match="handler must be"):
        async with taskrunner.open_session(sync_handler):
            pass
    coro = good(None, None)
    with pytest.raises(TypeError, match="coroutine object"):
        async with taskrunner.open_session(coro):  # type: ignore[arg-type]
            pass
    coro.close()
    with pytest.raises(TypeError, match="must accept two arguments"):
        async with taskrunner.open_session(one_arg):
            pass
    with pytest.raises(TypeError, match="interrupt_on must be a tuple of Event classes"):
        async with taskrunner.open_session(good, interrupt_on=[TextEvent]):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="stop_grace must be a number of seconds >= 0"):
        async with taskrunner.open_session(good, stop_grace=-1):
            pass
    with pytest.raises(TypeError, match="session_id must be a str"):
        async with taskrunner.open_session(good, session_id=3):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="flavor"):
        async with taskrunner.open_session(good, flavor="twisted"):  # type: ignore[arg-type]
            pass
    async with taskrunner.open_session(good) as session:
        with pytest.raises(TypeError, match="send\\(\\) takes an input event.*got str"):
            await session.send("hello")  # type: ignore[arg-type]
