"""The core supervisor: creating, naming, timing out, cancelling and waiting for tasks."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import subprocess
import sys
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from helpers import check_stream_invariants, kinds, of_task, supervised

import taskrunner
from taskrunner import TaskState
from taskrunner.events import (
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)

FLAVORS = ["trio", "asyncio"]


def sleeper(flavor: str) -> Any:
    """The sleep of the flavour's own library: task code is written against one of them."""
    return trio.sleep if flavor == "trio" else asyncio.sleep


# ---------------------------------------------------------------------------- kinds of handler


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_coroutine_and_function_results(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)

    async def job(x: int) -> int:
        await sleep(1)
        return x * 2

    async def no_args() -> str:
        await sleep(2)
        return "done"

    async with supervised(flavor=flavor) as (sup, records):
        a = sup.create_task(job(21), name="a")
        b = sup.create_task(no_args)
        assert a.state is TaskState.RUNNING
        assert await a.wait() == outcome.Value(42)
        assert await b.wait() == outcome.Value("done")
    assert a.state is TaskState.FINISHED and b.state is TaskState.FINISHED
    assert a.started_at == 0 and a.ended_at == 1 and b.ended_at == 2
    assert kinds(of_task(records, "a")) == ["TaskStarted", "TaskFinished"]
    fin = of_task(records, b.name)[-1]
    assert isinstance(fin, TaskFinished) and fin.result == "done"
    started = of_task(records, "a")[0]
    assert isinstance(started, TaskStarted) and started.flavor == flavor
    check_stream_invariants(records)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_async_generator_outputs_in_order(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)

    async def gen(n: int) -> Any:
        for i in range(n):
            await sleep(0.5)
            yield {"i": i}

    async def gen_fn() -> Any:
        yield "first"
        await sleep(1)
        yield "second"

    async with supervised(flavor=flavor) as (sup, records):
        sup.create_task(gen(3), name="obj")
        fn = sup.create_task(gen_fn)
        await sup.wait_for_all_tasks()
    outs = [r.event for r in of_task(records, "obj") if isinstance(r, TaskOutput)]
    assert outs == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert kinds(of_task(records, fn.name)) == [
        "TaskStarted",
        "TaskOutput",
        "TaskOutput",
        "TaskFinished",
    ]
    assert fn.outputs == 2
    check_stream_invariants(records)


# ---------------------------------------------------------------------------- names and ids


async def test_generated_names_are_readable_and_never_reused(autojump_clock: Any) -> None:
    async def fetch_weather() -> None:
        await trio.sleep(1)

    async with supervised() as (sup, _):
        names = [sup.create_task(fetch_weather).name for _ in range(3)]
        await sup.wait_for_all_tasks()
        names += [sup.create_task(fetch_weather()).name for _ in range(2)]
    assert all(n.startswith("fetch_weather-") for n in names)
    assert len(set(names)) == 5


async def test_duplicate_name_of_unfinished_task_is_refused(autojump_clock: Any) -> None:
    async def job() -> None:
        await trio.sleep(1)

    async with supervised() as (sup, _):
        first = sup.create_task(job, name="lookup")
        coro = job()
        with pytest.raises(ValueError, match="'lookup' is still running"):
            sup.create_task(coro, name="lookup")
        coro.close()
        await first.wait()
        again = sup.create_task(job, name="lookup")  # free again once the first has ended
        assert again.id != first.id
        assert sup.get_task("lookup") is again
    # Once ended, the history keeps a frozen picture of it (not the live handle).
    info = sup.get_task("lookup")
    assert isinstance(info, taskrunner.TaskInfo) and info.id == again.id
    assert sup.get_task("nope") is None


# ---------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_timeout_runs_finally_and_reports_timed_out(
    flavor: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sleep = sleeper(flavor)
    cleaned = []

    async def slow() -> None:
        try:
            await sleep(100)
        finally:
            cleaned.append(True)

    async with supervised(flavor=flavor) as (sup, records):
        h = sup.create_task(slow, name="slow_api", timeout=2.5)
        result = await h.wait()
    assert cleaned == [True]
    assert h.state is TaskState.TIMED_OUT and h.ended_at == 2.5
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, taskrunner.TaskTimeoutError)
    assert result.error.timeout == 2.5
    last = of_task(records, "slow_api")[-1]
    assert isinstance(last, TaskTimedOut) and last.timeout == 2.5
    assert not any(isinstance(r, TaskCancelled) for r in records)
    warning = [r.getMessage() for r in caplog.records if r.name == "taskrunner"]
    assert any("'slow_api'" in m and "timeout=" in m for m in warning), warning


async def test_asyncio_generator_keeps_asyncio_timeout_and_contextvars_across_yields(
    autojump_clock: Any,
) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def gen() -> Any:
        var.set("inside")
        async with asyncio.timeout(2.2):
            for i in range(5):
                await asyncio.sleep(1)
                yield (i, var.get())

    async with supervised(flavor="asyncio") as (sup, records):
        h = sup.create_task(gen, name="g")
        await h.wait()
    outs = [r.event for r in of_task(records, "g") if isinstance(r, TaskOutput)]
    assert outs == [(0, "inside"), (1, "inside")]
    # The asyncio.timeout block spans two yields: it fires at t=2.2 inside the generator.
    assert h.state is TaskState.FAILED
    failed = of_task(records, "g")[-1]
    assert isinstance(failed, TaskFailed) and isinstance(failed.error, TimeoutError)
    assert failed.at == pytest.approx(2.2)


# ---------------------------------------------------------------------------- cancelling


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_cancel_task_by_name_and_by_handle(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)

    async def forever() -> None:
        await sleep(1000)

    async with supervised(flavor=flavor) as (sup, records):
        a = sup.create_task(forever, name="a")
        b = sup.create_task(forever, name="b")
        await trio.sleep(1)
        assert sup.cancel_task("a") is True
        assert sup.cancel_task("missing") is False
        assert b.cancel() is True
        assert (await a.wait()).error.reason == "cancel_task"  # type: ignore[union-attr]
        await b.wait()
        assert sup.cancel_task("a") is False
        assert not sup.has_unfinished_tasks()
    for name in "ab":
        last = of_task(records, name)[-1]
        assert isinstance(last, TaskCancelled) and last.reason == "cancel_task"
    assert a.state is TaskState.CANCELLED and a.cancel_reason == "cancel_task"


async def test_cancel_after_finish_changes_nothing(autojump_clock: Any) -> None:
    async def quick() -> int:
        return 7

    async with supervised() as (sup, records):
        h = sup.create_task(quick, name="q")
        await h.wait()
        assert h.cancel() is False
        assert sup.cancel_all_tasks() == 0
    assert await h.wait() == outcome.Value(7)
    assert kinds(of_task(records, "q")) == ["TaskStarted", "TaskFinished"]


async def test_task_cancelled_before_it_ran_has_start_and_end(autojump_clock: Any) -> None:
    ran = []

    async def job() -> None:
        ran.append(True)

    async with supervised() as (sup, records):
        h = sup.create_task(job, name="never")
        h.cancel()
    assert ran == []
    assert kinds(of_task(records, "never")) == ["TaskStarted", "TaskCancelled"]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_interrupt_cancels_only_interruptible_tasks(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)

    async def forever() -> None:
        await sleep(1000)

    async with supervised(flavor=flavor) as (sup, records):
        sup.create_task(forever, name="stale", interruptible=True)
        sup.create_task(forever, name="stale2", interruptible=True)
        keep = sup.create_task(forever, name="keep")
        await trio.sleep(1)
        assert sup.cancel_interruptible_tasks() == 2
        await trio.sleep(1)
        assert keep.state is TaskState.RUNNING
        assert sup.cancel_interruptible_tasks() == 0
    for name in ("stale", "stale2"):
        last = of_task(records, name)[-1]
        assert isinstance(last, TaskCancelled) and last.reason == "interrupted"
        assert last.at == 1
    last = of_task(records, "keep")[-1]
    assert isinstance(last, TaskCancelled) and last.reason == "closed"


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_uninterruptible_section_defers_interruption(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    steps: list[str] = []

    async def careful() -> None:
        with taskrunner.uninterruptible():
            await sleep(1)
            with taskrunner.uninterruptible():  # nested: the outer exit applies it
                await sleep(1)
            steps.append("inner done")
            await sleep(1)
            steps.append("outer done")
        await sleep(100)
        steps.append("never")

    async with supervised(flavor=flavor) as (sup, records):
        h = sup.create_task(careful, name="charge_card", interruptible=True)
        await trio.sleep(0.5)
        assert sup.cancel_interruptible_tasks() == 1
        assert sup.cancel_interruptible_tasks() == 1  # still deferred, counted, not doubled
        await h.wait()
    assert steps == ["inner done", "outer done"]
    last = of_task(records, "charge_card")[-1]
    assert isinstance(last, TaskCancelled) and last.reason == "interrupted"
    assert last.at == 3


async def test_uninterruptible_does_not_defer_cancel_task(autojump_clock: Any) -> None:
    async def careful() -> None:
        with taskrunner.uninterruptible():
            await trio.sleep(10)

    async with supervised() as (sup, records):
        h = sup.create_task(careful, name="c", interruptible=True)
        await trio.sleep(1)
        sup.cancel_task("c")
        await h.wait()
    last = of_task(records, "c")[-1]
    assert isinstance(last, TaskCancelled) and last.reason == "cancel_task" and last.at == 1


async def test_uninterruptible_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside any task"):
        with taskrunner.uninterruptible():
            pass


async def test_cancel_all_and_wait_from_inside_a_task_skip_the_caller(autojump_clock: Any) -> None:
    async def forever() -> None:
        await trio.sleep(1000)

    async def short() -> None:
        await trio.sleep(3)

    async def coordinator() -> str:
        sup = current_sup[0]
        sup.create_task(short, name="short")
        assert await sup.wait_for_all_tasks(timeout=10) is False  # "forever" is still there
        n = sup.cancel_all_tasks()
        assert await sup.wait_for_all_tasks() is True
        return f"cancelled {n}"

    current_sup: list[taskrunner.Supervisor] = []
    async with supervised() as (sup, records):
        current_sup.append(sup)
        sup.create_task(forever, name="forever")
        coord = sup.create_task(coordinator, name="coordinator")
        assert await coord.wait() == outcome.Value("cancelled 1")
    last = of_task(records, "forever")[-1]
    assert isinstance(last, TaskCancelled) and last.reason == "cancel_all" and last.at == 10
    assert isinstance(of_task(records, "short")[-1], TaskFinished)


async def test_wait_for_all_tasks_counts_tasks_started_while_waiting(autojump_clock: Any) -> None:
    async def spawner(sup: taskrunner.Supervisor) -> None:
        await trio.sleep(1)
        sup.create_task(trio.sleep(5), name="late")

    async with supervised() as (sup, _):
        sup.create_task(spawner(sup), name="spawner")
        assert await sup.wait_for_all_tasks() is True
        assert trio.current_time() == 6
        assert await sup.wait_for_all_tasks() is True  # nothing left: returns at once
        sup.create_task(trio.sleep(5))
        assert await sup.wait_for_all_tasks(timeout=1) is False
        assert sup.has_unfinished_tasks()


# ---------------------------------------------------------------------------- context


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_current_task_and_callers_contextvars(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[Any] = []

    async def job() -> None:
        await sleep(0)
        me = taskrunner.current_task()
        seen.append((me.name if me else None, request_id.get("missing")))

    async def gen() -> Any:
        me = taskrunner.current_task()
        yield (me.name if me else None, request_id.get("missing"))

    assert taskrunner.current_task() is None
    async with supervised(flavor=flavor) as (sup, records):
        request_id.set("r-1")
        sup.create_task(job, name="j")
        sup.create_task(gen, name="g")
        await sup.wait_for_all_tasks()
    assert seen == [("j", "r-1")]
    assert [r.event for r in records if isinstance(r, TaskOutput)] == [("g", "r-1")]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_current_task_in_children_creators_and_sections(
    flavor: str, autojump_clock: Any
) -> None:
    """current_task() names the task the code belongs to: a trio task started in a nursery
    the task opened belongs to it; a task created by another task is itself (never its
    creator), whichever flavour creates which, also in asyncio code a trio task runs through
    ``run_in_asyncio``; outside any task (a plain nursery task) it is None."""
    sleep = sleeper(flavor)
    other = "asyncio" if flavor == "trio" else "trio"
    seen: dict[str, str | None] = {}

    def note(key: str) -> None:
        me = taskrunner.current_task()
        seen[key] = None if me is None else me.name

    async def child_of_trio_task() -> None:
        await trio.sleep(0)
        note("nursery child")

    async def note_from_asyncio(key: str) -> None:
        await asyncio.sleep(0)
        note(key)

    async def created() -> None:
        await sleeper(other)(0)
        note("created")
        with taskrunner.uninterruptible():
            note("created, protected")
        if other == "trio":
            # asyncio code a trio task runs (made by an asyncio task: it must not be taken
            # for its maker's)
            await taskrunner.run_in_asyncio(note_from_asyncio, "created, its asyncio code")

    async def trio_child_asyncio() -> None:
        await taskrunner.run_in_asyncio(note_from_asyncio, "trio task, its asyncio code")

    async def parent() -> None:
        note("parent")
        sup.create_task(created, name="created", flavor=other)
        await sleep(0)
        note("parent after create")

    async def trio_parent() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child_of_trio_task)
        note("trio parent")

    async def outside() -> None:
        note("outside")

    async with supervised(flavor=flavor) as (sup, records):
        sup.create_task(parent, name="parent")
        sup.create_task(trio_parent, name="trio-parent", flavor="trio")
        sup.create_task(trio_child_asyncio, name="trio-asyncio-caller", flavor="trio")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outside)
        await sup.wait_for_all_tasks()
    assert seen == {
        "parent": "parent",
        "parent after create": "parent",
        "created": "created",
        "created, protected": "created",
        "trio task, its asyncio code": "trio-asyncio-caller",
        **({"created, its asyncio code": "created"} if other == "trio" else {}),
        "nursery child": "trio-parent",
        "trio parent": "trio-parent",
        "outside": None,
    }
    assert not [r for r in records if isinstance(r, TaskFailed)]


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_failure_is_isolated_reported_and_logged(
    flavor: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sleep = sleeper(flavor)

    async def broken() -> None:
        await sleep(1)
        raise KeyError("order-42")

    async def fine() -> str:
        await sleep(2)
        return "ok"

    caplog.set_level(logging.ERROR, logger="taskrunner")
    async with supervised(flavor=flavor) as (sup, records):
        bad = sup.create_task(broken, name="broken")
        good = sup.create_task(fine, name="fine")
        res = await bad.wait()
        assert isinstance(res, outcome.Error) and isinstance(res.error, KeyError)
        assert await good.wait() == outcome.Value("ok")
    failed = of_task(records, "broken")[-1]
    assert isinstance(failed, TaskFailed)
    data = json.loads(json.dumps(failed.to_dict()))
    assert data["type"] == "TaskFailed" and data["task"] == "broken"
    assert data["error"]["type"] == "KeyError" and "order-42" in data["error"]["message"]
    assert "raise KeyError" in data["error"]["traceback"]
    assert any("'broken'" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_keyboard_interrupt_is_not_swallowed(autojump_clock: Any) -> None:
    async def stop_now() -> None:
        raise KeyboardInterrupt

    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        async with supervised() as (sup, _):
            sup.create_task(stop_now)
            await trio.sleep(1)


async def test_trio_task_calling_asyncio_code_says_to_use_the_asyncio_flavor(
    autojump_clock: Any,
) -> None:
    async def llm_call() -> None:
        await asyncio.sleep(1)

    async with supervised() as (sup, records):
        # With and without the supervisor's asyncio loop already open.
        h1 = sup.create_task(llm_call, name="before")
        await h1.wait()
        await sup.create_task(llm_call, flavor="asyncio").wait()
        h2 = sup.create_task(llm_call, name="after")
        await h2.wait()
    for name in ("before", "after"):
        failed = of_task(records, name)[-1]
        assert isinstance(failed, TaskFailed)
        assert isinstance(failed.error, taskrunner.FlavorError)
        assert "flavor='asyncio'" in str(failed.error)


# ---------------------------------------------------------------------------- stuck tasks


async def test_task_ignoring_cancellation_is_reported_stuck(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # swallows the cancel and keeps going

    async def shielded() -> None:
        with trio.CancelScope(shield=True):
            await trio.sleep(20)

    async with supervised(stuck_after=5) as (sup, records):
        a = sup.create_task(stubborn, name="stubborn", flavor="asyncio")
        b = sup.create_task(shielded, name="shielded")
        await trio.sleep(1)
        sup.cancel_all_tasks()
        await b.wait()
        await a.wait()
    stuck = [r for r in records if isinstance(r, TaskStuck)]
    # Reported every stuck_after seconds while it goes on; the asyncio task is cancelled
    # again with each report, so the swallowed cancel is followed by one it obeys.
    assert sorted((r.task, r.at, r.since, r.reason, r.count) for r in stuck) == [
        ("shielded", 6, 1, "cancel_all", 1),
        ("shielded", 11, 1, "cancel_all", 2),
        ("shielded", 16, 1, "cancel_all", 3),
        ("stubborn", 6, 1, "cancel_all", 1),
    ]
    assert a.state is TaskState.CANCELLED and a.ended_at == 6
    assert any(
        "'stubborn'" in r.getMessage() and "ignores" in r.getMessage() for r in caplog.records
    )
    check_stream_invariants(records)
    # The shielded task returned after its protected work, but it was cancelled: it is
    # reported cancelled (what it returned is kept on the record).
    assert kinds(of_task(records, "shielded"))[-2:] == ["TaskStuck", "TaskCancelled"]
    assert b.ended_at == 20


# ---------------------------------------------------------------------------- the stream


async def test_outputs_yielded_before_cancel_are_delivered_and_backpressure(
    autojump_clock: Any,
) -> None:
    produced = []

    async def chatty() -> Any:
        for i in range(10):
            produced.append(i)
            yield i

    async with taskrunner.open_supervisor(max_buffer=4) as sup:
        h = sup.create_task(chatty, name="chatty")
        await trio.sleep(1)
        # Nobody reads: the generator is held back once the buffer is full...
        assert h.state is TaskState.RUNNING and len(produced) < 10
        # ...but start and end records never block create_task or a cancel.
        for i in range(10):
            sup.create_task(trio.sleep(0), name=f"quick-{i}")
        h.cancel()
    records = [r async for r in sup.events()]
    outs = [r.event for r in records if isinstance(r, TaskOutput)]
    assert outs == produced  # every yielded value was delivered, in order
    check_stream_invariants(records)
    assert isinstance(of_task(records, "chatty")[-1], TaskCancelled)


async def test_reader_releases_backpressure(autojump_clock: Any) -> None:
    async def chatty() -> Any:
        for i in range(1000):
            yield i

    async with supervised(max_buffer=8) as (sup, records):
        await sup.create_task(chatty, name="c").wait()
    assert [r.event for r in records if isinstance(r, TaskOutput)] == list(range(1000))


async def test_one_reader_at_a_time(autojump_clock: Any) -> None:
    async with taskrunner.open_supervisor() as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(anext, sup.events())
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(taskrunner.StreamBusyError, match="one reader"):
                await anext(sup.events())
            await sup.create_task(trio.sleep(0)).wait()  # lets the first reader return
    assert [type(r).__name__ async for r in sup.events()] == ["TaskFinished"]


async def test_stream_ends_after_close_and_records_are_json_safe(autojump_clock: Any) -> None:
    class Custom:
        def __repr__(self) -> str:
            return "<Custom>"

    async def gen() -> Any:
        yield {"speech": "hi", "n": math.inf, "obj": Custom(), "t": (1, 2)}

    async with taskrunner.open_supervisor() as sup:
        await sup.create_task(gen, name="g").wait()
    records = [r async for r in sup.events()]
    dicts = [json.loads(json.dumps(r.to_dict(), allow_nan=False)) for r in records]
    assert dicts[1]["event"] == {"speech": "hi", "n": "inf", "obj": "<Custom>", "t": [1, 2]}
    assert [d["seq"] for d in dicts] == [1, 2, 3]
    assert all(d["task"] == "g" and d["source"] == "task" for d in dicts)


# ---------------------------------------------------------------------------- closing


async def test_closing_cancels_unfinished_tasks_and_waits_for_their_cleanup(
    autojump_clock: Any,
) -> None:
    cleanup = []

    async def slow_cleanup() -> None:
        try:
            await trio.sleep(100)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(2)
            cleanup.append(trio.current_time())

    async with supervised() as (sup, records):
        sup.create_task(slow_cleanup, name="s")
        await trio.sleep(1)
    assert cleanup == [3]
    assert trio.current_time() == 3
    last = of_task(records, "s")[-1]
    assert isinstance(last, TaskCancelled) and last.reason == "closed"
    late = trio.sleep(1)
    with pytest.raises(taskrunner.SupervisorClosedError, match="closed"):
        sup.create_task(late)
    late.close()


async def test_exception_in_block_propagates_unchanged(autojump_clock: Any) -> None:
    with pytest.raises(LookupError, match="from the block"):
        async with taskrunner.open_supervisor() as sup:
            sup.create_task(trio.sleep(100), name="bg")
            await trio.sleep(1)
            raise LookupError("from the block")
    records = [r async for r in sup.events()]
    assert isinstance(of_task(records, "bg")[-1], TaskCancelled)


async def test_snapshot_keeps_a_bounded_history(autojump_clock: Any) -> None:
    async with supervised(history=3) as (sup, _):
        for i in range(5):
            sup.create_task(trio.sleep(i), name=f"t{i}")
        await trio.sleep(2.5)
        snap = sup.snapshot()
        states = {info.name: info.state for info in snap}
        assert states == {
            "t0": TaskState.FINISHED,
            "t1": TaskState.FINISHED,
            "t2": TaskState.FINISHED,
            "t3": TaskState.RUNNING,
            "t4": TaskState.RUNNING,
        }
        await sup.wait_for_all_tasks()
        assert [i.name for i in sup.snapshot()] == ["t2", "t3", "t4"]
        assert json.dumps([i.to_dict() for i in sup.snapshot()])


# ---------------------------------------------------------------------------- bad input


async def test_bad_input_fails_at_the_call(autojump_clock: Any) -> None:
    async def job() -> None:
        await trio.sleep(1)

    async def needs_arg(x: int) -> None:
        await trio.sleep(x)

    def sync_fn() -> None:
        pass

    async with taskrunner.open_supervisor() as sup:
        with pytest.raises(TypeError, match="synchronous callable .*sync_fn"):
            sup.create_task(sync_fn)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="got int: 42"):
            sup.create_task(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="takes arguments"):
            sup.create_task(needs_arg)  # type: ignore[arg-type]
        started = job()
        started.send(None)  # runs to its first checkpoint
        with pytest.raises(ValueError, match="already started"):
            sup.create_task(started)
        started.close()
        awaited = job()
        awaited.close()
        with pytest.raises(ValueError, match="already awaited or closed"):
            sup.create_task(awaited)
        for bad_name in (5, b"x"):
            with pytest.raises(TypeError, match="name must be a str"):
                sup.create_task(job, name=bad_name)  # type: ignore[arg-type]
        for bad in (-1, 0, math.nan):
            with pytest.raises(ValueError, match="timeout must be a positive number"):
                sup.create_task(job, timeout=bad)
        for bad_type in ("30", True, [1]):
            with pytest.raises(TypeError, match="timeout must be a positive number.*got"):
                sup.create_task(job, timeout=bad_type)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="flavor must be 'trio' or 'asyncio', got 'curio'"):
            sup.create_task(job, flavor="curio")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="interruptible must be True or False"):
            sup.create_task(job, interruptible="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name must be a str"):
            sup.cancel_task(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be a positive"):
            await sup.wait_for_all_tasks(timeout=-1)
        sup.create_task(job, name="dup")
        with pytest.raises(taskrunner.DuplicateTaskNameError):
            sup.create_task(job, name="dup")
        # From another thread: refused, with a RuntimeError naming the problem.
        with pytest.raises(RuntimeError, match="outside any trio run"):
            await trio.to_thread.run_sync(lambda: sup.create_task(job))
        assert not any(isinstance(h, taskrunner.TaskHandle) for h in [])
    with pytest.raises(ValueError, match="flavor"):
        async with taskrunner.open_supervisor(flavor="gevent"):  # type: ignore[arg-type]
            pass


def test_import_does_not_load_trio_asyncio() -> None:
    code = "import sys, taskrunner; print('trio_asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_supervisors_of_a_run_share_one_asyncio_loop(autojump_clock: Any) -> None:
    async def which_loop() -> Any:
        await asyncio.sleep(1)
        return asyncio.get_running_loop()

    async with taskrunner.open_supervisor(flavor="asyncio") as a:
        async with taskrunner.open_supervisor(flavor="asyncio") as b:
            loop_a = (await a.create_task(which_loop).wait()).unwrap()
            loop_b = (await b.create_task(which_loop).wait()).unwrap()
            assert loop_a is loop_b
        # b has closed; a still uses the loop.
        assert (await a.create_task(which_loop).wait()).unwrap() is loop_a
    # The loop outlives the supervisors: it lives until the trio run ends, so asyncio clients
    # made in one session still work in the next.
    assert not loop_a.is_closed()
    async with taskrunner.open_supervisor(flavor="asyncio") as c:
        loop_c = (await c.create_task(which_loop).wait()).unwrap()
    assert loop_c is loop_a


async def test_infinite_timeout_means_no_limit(autojump_clock: Any) -> None:
    async with supervised() as (sup, records):
        h = sup.create_task(trio.sleep(1000), name="long", timeout=math.inf)
        assert h.timeout is None
        assert await h.wait() == outcome.Value(None)
    started = of_task(records, "long")[0]
    assert isinstance(started, TaskStarted) and started.timeout is None
