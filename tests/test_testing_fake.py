"""taskrunner.testing.fake_context: unit tests of a task function without a session."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from taskrunner.events import LogEvent
from taskrunner.testing import FakeContext, fake_context, run_asyncio


async def process_order(context: Any) -> AsyncIterator[Any]:
    """A task function as agents write them: reads variables, writes data, starts a task."""
    yield LogEvent(f"ordering with key {context.variables['API_KEY']}")
    await trio.sleep(5)
    context.set_data("order_status", "completed")
    context.create_task(notify(context), name="notify", interruptible=True, timeout=5)
    yield LogEvent("done")


async def notify(context: Any) -> str:
    await trio.sleep(1)
    context.set_data("notified", True)
    return "sent"


async def test_a_task_function_alone(autojump_clock: Any) -> None:
    ctx = fake_context(variables={"API_KEY": "k1"}, data={"order_status": "pending"})
    outputs = [event async for event in process_order(ctx)]
    assert outputs == [LogEvent("ordering with key k1"), LogEvent("done")]
    assert ctx.get_data("order_status") == "completed"
    assert [(c.value, c.at, c.source) for c in ctx.data_history("order_status")] == [
        ("completed", 5.0, "test")
    ]
    # The task it asked for is recorded, not started...
    (task,) = ctx.created
    assert (task.name, task.interruptible, task.timeout, task.state) == (
        "notify", True, 5, "pending"
    )
    assert ctx.has_unfinished_tasks() and ctx.get_data("notified") is None
    # ...until the test runs it.
    assert await ctx.wait_for_all_tasks() is True
    assert task.state == "finished" and task.result == "sent"
    assert ctx.get_data("notified") is True and not ctx.has_unfinished_tasks()
    with pytest.raises(RuntimeError, match="fake task 'notify' is finished; it runs only once"):
        await task.run()
    snap = ctx.snapshot()
    json.dumps(snap)
    assert snap["tasks"] == [
        {"name": "notify", "state": "finished", "interruptible": True, "timeout": 5}
    ]


async def test_running_cancelling_and_failures(autojump_clock: Any) -> None:
    ctx = fake_context()
    assert (ctx.session_id, ctx.agent_id, ctx.environment, ctx.function_id) == (
        "test-session", "test-agent", "test", "handler"
    )

    async def boom() -> None:
        raise ValueError("no")

    async def gen() -> AsyncIterator[int]:
        yield 1
        yield 2

    failing = ctx.create_task(boom)
    generator = ctx.create_task(gen(), name="gen")
    dropped = ctx.create_task(notify(ctx), name="dropped", interruptible=True)
    kept = ctx.create_task(notify(ctx), name="kept")
    assert failing.name == "boom-1"
    assert ctx.cancel_interruptible_tasks() == 1 and dropped.state == "cancelled"
    assert ctx.cancel_task("dropped") is False and ctx.cancel_task("nope") is False
    with pytest.raises(ValueError, match="no"):
        await failing.run()
    assert failing.state == "failed" and isinstance(failing.error, ValueError)
    assert await generator.run() == [1, 2]
    assert ctx.cancel_all_tasks() == 1 and kept.state == "cancelled"
    assert set(ctx.tasks) == {"boom-1", "gen", "dropped", "kept"}


def test_dropped_tasks_leave_no_never_awaited_warning() -> None:
    async def work() -> None:
        await asyncio.sleep(0)

    async def stream() -> AsyncIterator[int]:
        yield 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctx = fake_context()
        ctx.create_task(work(), name="a")
        ctx.create_task(stream(), name="b")
        ctx.cancel_task("a")
        ctx.close()
        del ctx
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_an_asyncio_task_function_under_asyncio() -> None:
    async def fetch(context: Any) -> str:
        await asyncio.sleep(0)
        context.set_data("fetched", context.variables["URL"])
        return "ok"

    ctx = fake_context(variables={"URL": "http://127.0.0.1/x"})
    task = ctx.create_task(fetch(ctx), name="fetch")
    asyncio.run(ctx.wait_for_all_tasks())
    assert task.result == "ok" and ctx.get_data("fetched") == "http://127.0.0.1/x"
    assert [c.source for c in ctx.data_history("fetched")] == ["test"]


def test_bad_input() -> None:
    with pytest.raises(TypeError, match=r"fake_context\(\) got unknown field\(s\) flavour, "
                       r"userdata; accepted: session_id, agent_id, environment, function_id, "
                       r"variables, data"):
        fake_context(flavour="trio", userdata=1)
    with pytest.raises(TypeError, match="variables must be a dict, got list"):
        fake_context(variables=[])
    with pytest.raises(TypeError, match="agent_id must be a str, got int"):
        fake_context(agent_id=3)
    ctx = fake_context()
    assert isinstance(ctx, FakeContext)
    with pytest.raises(TypeError, match="create_task takes a coroutine.*got int"):
        ctx.create_task(3)
    with pytest.raises(TypeError, match="data keys are str, got int"):
        ctx.set_data(1, "x")  # type: ignore[arg-type]


async def test_asyncio_task_code_from_a_trio_test(autojump_clock: Any) -> None:
    # The seeds' order task (asyncio.sleep(5)) alone, in five virtual seconds.
    order_agent = load_fixture("order_agent")
    ctx = fake_context()
    start = trio.current_time()
    assert await run_asyncio(order_agent.process_order(ctx)) is None
    assert trio.current_time() - start == 5
    assert ctx.get_data("order_status") == "completed"
    # An asyncio generator task: its outputs, as a list.
    background_agent = load_fixture("background_agent")
    outputs = await run_asyncio(background_agent.background_task(ctx))
    assert [e.data["message"] for e in outputs] == [
        "Processing background task...", "Background task done"
    ]
    assert ctx.get_data("task_completed") is True
    # Through the fake context's tasks.
    task = ctx.create_task(order_agent.process_order(ctx), name="again")
    await ctx.wait_for_all_tasks(asyncio=True)
    assert task.state == "finished"
    with pytest.raises(TypeError, match=r"run_asyncio\(\) takes a coroutine or an async "
                       r"generator \(call the function\), got function"):
        await run_asyncio(order_agent.process_order)


def load_fixture(name: str) -> Any:
    path = Path(__file__).resolve().parent / "fixtures" / "voicerun" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fake_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_task_run_cancelled_by_the_test(autojump_clock: Any) -> None:
    ctx = fake_context()
    task = ctx.create_task(notify(ctx), name="notify")
    with trio.move_on_after(0.5):
        await task.run()
    assert task.state == "cancelled" and ctx.get_data("notified") is None
    assert not ctx.has_unfinished_tasks()
