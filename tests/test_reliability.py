"""Regression tests for issue 8: the asyncio seam, the lifecycle, faults and deadlines.

Each test names the finding it pins down. Every behaviour runs in both flavours (the
``flavor`` fixture) unless it only exists in one.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import sys
import threading
import warnings
import weakref
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from helpers import check_stream_invariants, kinds, of_task, supervised

import taskrunner
from taskrunner import Lifecycle, Limiter, TaskState
from taskrunner.events import (
    HandlerOutput,
    InputReceived,
    Record,
    StartEvent,
    StopEvent,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskQueued,
    TaskStarted,
    TaskTimedOut,
    TextEvent,
)


@pytest.fixture(params=["trio", "asyncio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sleeper(flavor: str) -> Any:
    return trio.sleep if flavor == "trio" else asyncio.sleep


async def collect(session: taskrunner.Session, into: list[Record]) -> None:
    async for record in session.events():
        into.append(record)


# ---------------------------------------------------------------- 1: awaits from asyncio code


async def test_finding1_wait_for_all_tasks_and_handle_wait_from_asyncio_handler(
    autojump_clock: Any,
) -> None:
    seen: dict[str, Any] = {}

    async def job() -> str:
        await asyncio.sleep(2)
        return "done"

    async def handler(event: Any, context: taskrunner.Context) -> Any:
        if isinstance(event, StartEvent):
            h = context.create_task(job(), name="job")
            seen["all"] = await context.wait_for_all_tasks()
            seen["wait"] = (await h.wait()).unwrap()
            seen["again"] = (await h.wait()).unwrap()
            yield "answered"

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler) as session:
            nursery.start_soon(collect, session, records)
            await session.send(StartEvent())
            await session.wait_until_handled()
    assert seen == {"all": True, "wait": "done", "again": "done"}
    assert [r.event for r in records if isinstance(r, HandlerOutput)] == ["answered"]


async def test_finding1_session_awaits_and_events_from_asyncio_code(autojump_clock: Any) -> None:
    """send, wait_until_handled and iterating events() from asyncio code, as from trio."""

    async def handler(event: Any, context: taskrunner.Context) -> Any:
        yield f"got {type(event).__name__}"

    async with taskrunner.open_session(handler, flavor="trio") as session:

        async def drive() -> list[str]:
            await session.send(StartEvent())
            await session.wait_until_handled()
            got = []
            async for record in session.events():
                if isinstance(record, HandlerOutput):
                    got.append(record.event)
                    break
            return got

        async with taskrunner.open_supervisor(flavor="asyncio") as sup:
            got = (await sup.create_task(drive()).wait()).unwrap()
    assert got == ["got StartEvent"]


# ---------------------------------------------------------------- 2: backpressure, both flavours


@pytest.mark.parametrize("max_buffer", [1, 3])
async def test_finding2_generator_waits_for_a_slow_reader(
    flavor: str, max_buffer: int, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)

    async def gen() -> Any:
        for i in range(20):
            yield i

    async def handler(event: Any, context: taskrunner.Context) -> Any:
        if isinstance(event, StartEvent):
            context.create_task(gen(), name="g")
            for i in range(10):
                yield f"h{i}"
                await sleep(0)

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(
            handler, flavor=flavor, max_buffer=max_buffer
        ) as session:
            await session.send(StartEvent())
            await trio.sleep(5)  # nobody reads: writers wait, nothing fails

            async def slow() -> None:
                async for record in session.events():
                    records.append(record)
                    await trio.sleep(0.1)

            nursery.start_soon(slow)
            await session.wait_until_handled()
            await session.context.wait_for_all_tasks()
    outs = [r.event for r in records if isinstance(r, TaskOutput)]
    assert outs == list(range(20))
    assert [r.event for r in records if isinstance(r, HandlerOutput)] == [
        f"h{i}" for i in range(10)
    ]
    assert isinstance(of_task(records, "g")[-1], TaskFinished)
    check_stream_invariants(records)


async def test_finding2_output_waiting_for_room_is_kept_when_cancelled(
    flavor: str, autojump_clock: Any
) -> None:
    async def gen() -> Any:
        for i in range(5):
            yield i

    records: list[Record] = []
    async with taskrunner.open_supervisor(flavor=flavor, max_buffer=2) as sup:
        h = sup.create_task(gen(), name="g")
        await trio.sleep(1)  # blocked on its third record (TaskStarted, 0, then 1 waits)
        h.cancel()
        await h.wait()
    async for r in sup.events():
        records.append(r)
    outs = [r.event for r in of_task(records, "g") if isinstance(r, TaskOutput)]
    assert outs == [0, 1]  # the one waiting for room when cancelled is delivered
    assert isinstance(of_task(records, "g")[-1], TaskCancelled)


# ---------------------------------------------------------------- 3: asyncio's exception handler


async def test_finding3_asyncio_errors_are_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fire_and_forget() -> str:
        async def boom() -> None:
            raise ValueError("background boom")

        asyncio.ensure_future(boom())  # noqa: RUF006 - fire and forget, on purpose
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(KeyError("never retrieved"))
        del fut
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0.05)
        return "survived"

    async def other() -> str:
        await asyncio.sleep(0.3)
        return "other survived"

    with caplog.at_level(logging.ERROR, logger="taskrunner"):
        async with taskrunner.open_supervisor(flavor="asyncio") as a:
            async with taskrunner.open_supervisor(flavor="asyncio") as b:
                hb = b.create_task(other())
                ha = a.create_task(fire_and_forget())
                assert (await ha.wait()).unwrap() == "survived"
                assert (await hb.wait()).unwrap() == "other survived"
    text = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "background boom" in text
    assert "never retrieved" in text


# ---------------------------------------------------------------- 4: executor work on cancel


async def test_finding4_interrupt_during_to_thread_cancels_at_once() -> None:
    release = threading.Event()
    finished = threading.Event()

    def blocking() -> str:
        release.wait(5)
        finished.set()
        return "late"

    async def job() -> str:
        return await asyncio.to_thread(blocking)

    async def job2() -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, blocking)

    async with supervised(flavor="asyncio") as (sup, records):
        a = sup.create_task(job(), name="a", interruptible=True)
        b = sup.create_task(job2(), name="b", interruptible=True)
        await trio.sleep(0.1)
        assert sup.cancel_interruptible_tasks() == 2
        with trio.fail_after(2):
            oa, ob = await a.wait(), await b.wait()
        assert a.state is TaskState.CANCELLED and b.state is TaskState.CANCELLED
        assert not finished.is_set()  # the thread is still blocked: abandoned, not waited for
        release.set()
        await trio.to_thread.run_sync(finished.wait, 5)
    assert isinstance(oa, outcome.Error) and isinstance(ob, outcome.Error)
    assert not any(r for r in records if type(r).__name__ == "TaskStuck")


# ---------------------------------------------------------------- 5: the asyncio loop's life


async def test_finding5_asyncio_objects_outlive_a_session() -> None:
    shared: dict[str, Any] = {}

    async def first(event: Any, context: taskrunner.Context) -> None:
        if not isinstance(event, StartEvent):
            return
        loop = asyncio.get_running_loop()
        shared["loop"] = loop
        shared["queue"] = asyncio.Queue()
        shared["lock"] = asyncio.Lock()
        async with shared["lock"]:
            await shared["queue"].put("from session 1")

    async def second(event: Any, context: taskrunner.Context) -> None:
        if not isinstance(event, StartEvent):
            return
        assert asyncio.get_running_loop() is shared["loop"]
        async with shared["lock"]:
            shared["got"] = await shared["queue"].get()

    async with taskrunner.open_session(first) as s1:
        await s1.send(StartEvent())
    async with taskrunner.open_session(second) as s2:
        await s2.send(StartEvent())
        await s2.wait_until_handled()
    assert shared["got"] == "from session 1"
    assert not shared["loop"].is_closed()


async def test_finding5_an_application_loop_is_adopted() -> None:
    import trio_asyncio

    async def which() -> Any:
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    async with trio_asyncio.open_loop() as mine:
        async with taskrunner.open_supervisor(flavor="asyncio") as sup:
            got = (await sup.create_task(which()).wait()).unwrap()
        assert got is mine
        assert await taskrunner.asyncio_loop() is mine


async def test_finding5_run_in_asyncio_makes_long_lived_objects() -> None:
    async def make() -> Any:
        return asyncio.Event()

    ev = await taskrunner.run_in_asyncio(make)

    async def waiter() -> str:
        await ev.wait()
        return "woken"

    async def setter() -> None:
        ev.set()

    async with taskrunner.open_supervisor(flavor="asyncio") as sup:
        w = sup.create_task(waiter())
        sup.create_task(setter())
        assert (await w.wait()).unwrap() == "woken"


# ---------------------------------------------------------------- 6: faults in user code


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


async def test_finding6_broken_str_and_repr_are_isolated(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)

    async def fails() -> None:
        await sleep(1)
        raise BadStr()

    async def returns() -> Any:
        await sleep(1)
        return BadRepr()

    async def bystander() -> str:
        await sleep(3)
        return "fine"

    async with supervised(flavor=flavor) as (sup, records):
        a = sup.create_task(fails, name="a")
        b = sup.create_task(returns, name="b")
        c = sup.create_task(bystander, name="c")
        await sup.wait_for_all_tasks()
    assert a.state is TaskState.FAILED and b.state is TaskState.FINISHED
    assert (await c.wait()).unwrap() == "fine"
    for r in records:
        r.to_dict()  # never raises
    failed = of_task(records, "a")[-1].to_dict()
    assert failed["error"]["type"] == "BadStr" and "str() raised" in failed["error"]["message"]
    assert "repr() raised" in of_task(records, "b")[-1].to_dict()["result"]
    info = next(i for i in sup.snapshot() if i.name == "a")
    assert info.error is not None and info.error["type"] == "BadStr"
    check_stream_invariants(records)


async def test_finding6_on_record_that_raises_changes_nothing(
    flavor: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sleep = sleeper(flavor)
    calls = []

    def sink(record: Record) -> None:
        calls.append(record)
        raise RuntimeError("sink broke")

    async def job(i: int) -> int:
        await sleep(i)
        return i

    async with supervised(flavor=flavor, on_record=sink) as (sup, records):
        handles = [sup.create_task(job(i)) for i in range(3)]
        with trio.fail_after(10):
            await sup.wait_for_all_tasks()
    assert [h.state for h in handles] == [TaskState.FINISHED] * 3
    assert len(calls) == len(records) == 6
    assert "on_record callback failed" in caplog.text


def test_finding6_cyclic_and_shared_data_serialize_in_linear_time() -> None:
    from taskrunner._core.records import jsonable

    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    out = jsonable(cyclic)
    assert out == {"name": "loop", "self": "<cycle: dict>"}
    # A DAG with 2**40 paths: converted once per distinct object.
    node: Any = ["leaf"]
    for _ in range(40):
        node = [node, node]
    converted = jsonable(node)
    assert isinstance(converted, list) and converted[0] is converted[1]


# ---------------------------------------------------------------- 7: the session's lifecycle


async def test_finding7_cancelled_stop_rolls_back(flavor: str, autojump_clock: Any) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        await sleeper(flavor)(1)

    async with taskrunner.open_session(
        handler, flavor=flavor, max_pending_inputs=1
    ) as session:
        await session.send(StartEvent())
        await session.send(TextEvent.from_text("queued"))  # the inbox is full now
        with trio.move_on_after(0.1):
            await session.send(StopEvent())  # waits for room, then cancelled
        assert session.state is Lifecycle.OPEN
        await session.send(TextEvent.from_text("still open"))
    assert session.state is Lifecycle.CLOSED


async def test_finding7_send_racing_stop_gets_a_clear_error(autojump_clock: Any) -> None:
    handled = []

    async def handler(event: Any, context: taskrunner.Context) -> None:
        handled.append(type(event).__name__)
        await trio.sleep(1)

    outcomes: list[tuple[str, str]] = []
    async with taskrunner.open_session(handler, flavor="trio", max_pending_inputs=1) as session:
        await session.send(StartEvent())
        await session.send(TextEvent.from_text("fills the inbox"))

        async def send(event: Any, delay: float) -> None:
            await trio.sleep(delay)
            try:
                await session.send(event)
                outcomes.append(("ok", type(event).__name__))
            except taskrunner.SessionClosedError as exc:
                assert "StopEvent" in str(exc)
                outcomes.append(("refused", type(event).__name__))

        async with trio.open_nursery() as nursery:  # all three wait on the full inbox
            nursery.start_soon(send, TextEvent.from_text("before"), 0.1)
            nursery.start_soon(send, StopEvent(), 0.2)
            nursery.start_soon(send, TextEvent.from_text("after"), 0.3)
    assert sorted(outcomes) == [("ok", "StopEvent"), ("ok", "TextEvent"), ("refused", "TextEvent")]
    assert handled == ["StartEvent", "TextEvent", "TextEvent", "StopEvent"]


async def test_finding7_task_started_from_finally_during_stop(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    refused: list[BaseException] = []

    async def cleanup() -> None:
        await sleep(100)

    async def job(context: taskrunner.Context) -> None:
        try:
            await sleep(100)
        finally:
            try:
                context.create_task(cleanup(), name="cleanup")
            except taskrunner.SupervisorClosedError as exc:
                refused.append(exc)

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.create_task(job(context), name="job", timeout=None)

    records: list[Record] = []
    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(handler, flavor=flavor, stop_grace=2) as session:
                nursery.start_soon(collect, session, records)
                await session.send(StartEvent())
    assert refused and "closed" in str(refused[0])
    check_stream_invariants(records)


async def test_stopping_refuses_interruptible_and_grace_covers_new_tasks(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    events: list[str] = []

    async def child() -> None:
        await sleep(1)
        events.append("child done")

    async def parent(context: taskrunner.Context) -> None:
        await sleep(10)  # still running when the stop arrives at t=0
        try:
            context.create_task(child(), name="bad", interruptible=True)
        except taskrunner.SupervisorClosedError:
            events.append("interruptible refused")
        context.create_task(child(), name="child")

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.create_task(parent(context), name="parent", timeout=None)

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, flavor=flavor, stop_grace=20) as session:
            nursery.start_soon(collect, session, records)
            await session.send(StartEvent())
    assert events == ["interruptible refused", "child done"]
    assert isinstance(of_task(records, "child")[-1], TaskFinished)


async def test_input_received_records_every_turn(autojump_clock: Any) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        return None  # answers nothing

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, session_id="s1") as session:
            nursery.start_soon(collect, session, records)
            await session.send(StartEvent())
            await session.send(TextEvent.from_text("hello?"))
    inputs = [r for r in records if isinstance(r, InputReceived)]
    assert [type(r.event).__name__ for r in inputs] == ["StartEvent", "TextEvent", "StopEvent"]
    assert all(r.session_id == "s1" and r.wall > 1e9 for r in records)
    assert inputs[1].to_dict()["event"]["data"]["text"] == "hello?"


# ---------------------------------------------------------------- 8: escaping exceptions


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
async def test_finding8_exit_and_ctrl_c_leave_unwrapped(
    flavor: str, exc: BaseException, autojump_clock: Any
) -> None:
    async def job() -> None:
        await sleeper(flavor)(1)
        raise exc

    with pytest.raises(type(exc)) as info:
        async with taskrunner.open_supervisor(flavor=flavor) as sup:
            sup.create_task(job())
            await trio.sleep(10)
    assert info.value is exc


class UserBase(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [GeneratorExit, UserBase])
async def test_finding8_other_base_exceptions_fail_only_their_task(
    flavor: str, exc_type: type[BaseException], autojump_clock: Any
) -> None:
    async def job() -> None:
        await sleeper(flavor)(1)
        raise exc_type("mine")

    async def other() -> str:
        await sleeper(flavor)(2)
        return "ok"

    async with supervised(flavor=flavor) as (sup, records):
        a = sup.create_task(job(), name="a")
        b = sup.create_task(other(), name="b")
        await sup.wait_for_all_tasks()
    assert a.state is TaskState.FAILED
    assert isinstance(of_task(records, "a")[-1], TaskFailed)
    assert (await b.wait()).unwrap() == "ok"


# ---------------------------------------------------------------- 9: deadlines


async def test_finding9_swallowed_timeout_is_timed_out_with_the_value_kept(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    cancelled = trio.Cancelled if flavor == "trio" else asyncio.CancelledError

    async def job() -> str:
        try:
            await sleep(10)
        except cancelled:
            return "returned anyway"
        return "never"

    async with supervised(flavor=flavor) as (sup, records):
        h = sup.create_task(job(), name="j", timeout=1)
        await h.wait()
    assert h.state is TaskState.TIMED_OUT
    end = of_task(records, "j")[-1]
    assert isinstance(end, TaskTimedOut) and end.result == "returned anyway"


async def test_finding9_inner_scope_at_the_same_deadline_gives_one_outcome(
    autojump_clock: Any,
) -> None:
    async def job() -> str:
        with trio.move_on_after(1):
            await trio.sleep(10)
        return "inner scope expired"

    for _ in range(20):
        async with supervised() as (sup, _records):
            h = sup.create_task(job(), timeout=1)
            await h.wait()
        assert h.state is TaskState.TIMED_OUT


async def test_finding9_deadline_visible_and_movable(autojump_clock: Any) -> None:
    seen = []

    async def job() -> None:
        seen.append(trio.current_effective_deadline())
        await trio.sleep(5)
        seen.append(trio.current_effective_deadline())
        await trio.sleep(100)

    async with supervised(default_timeout=7) as (sup, _records):
        h = sup.create_task(job(), name="j")
        assert h.deadline == 7 and h.timeout == 7
        await trio.sleep(1)
        h.deadline = 12
        await h.wait()
        assert h.ended_at == 12 and h.state is TaskState.TIMED_OUT
        n = sup.create_task(trio.sleep(1000), name="n")
        n.deadline = math.inf
        await trio.sleep(500)
        assert not n.done
        n.cancel()
    assert seen == [7, 12]


async def test_finding9_generator_yield_after_cancel_is_not_forwarded(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    cancelled = trio.Cancelled if flavor == "trio" else asyncio.CancelledError

    async def speaker() -> Any:
        yield "hello"
        try:
            await sleep(10)
        except cancelled:
            yield "stale speech"  # after the barge-in: must not be spoken
            yield "more stale"

    async with supervised(flavor=flavor) as (sup, records):
        h = sup.create_task(speaker(), name="s", interruptible=True)
        await trio.sleep(1)
        sup.cancel_interruptible_tasks()
    outs = [r.event for r in of_task(records, "s") if isinstance(r, TaskOutput)]
    assert outs == ["hello"]
    end = of_task(records, "s")[-1]
    assert isinstance(end, TaskCancelled) and end.reason == "interrupted"
    assert end.result == "stale speech"
    assert h.state is TaskState.CANCELLED


# ---------------------------------------------------------------- 10: outcomes


async def test_finding10_every_wait_gives_a_fresh_outcome(flavor: str, autojump_clock: Any) -> None:
    async def job() -> int:
        await sleeper(flavor)(1)
        return 5

    async with supervised(flavor=flavor) as (sup, _):
        h = sup.create_task(job())
        assert (await h.wait()).unwrap() == 5
        assert (await h.wait()).unwrap() == 5
        s = sup.create_task(sleeper(flavor)(100))
        with pytest.raises(TimeoutError, match="still running after waiting 2 s"):
            await s.wait(timeout=2)
        assert not s.done
        s.cancel()
        for _ in range(2):
            with pytest.raises(taskrunner.TaskCancelledError):
                (await s.wait()).unwrap()


# ---------------------------------------------------------------- 11: memory


async def test_finding11_finished_tasks_hold_no_results_or_frames(autojump_clock: Any) -> None:
    class Big:
        pass

    refs: list[weakref.ref[Any]] = []

    async def job() -> Big:
        big = Big()
        refs.append(weakref.ref(big))
        return big

    async def failing() -> None:
        local = Big()
        refs.append(weakref.ref(local))
        raise ValueError("with a frame holding a local")

    # pytest's log capture keeps the failures' log records (with their tracebacks): keep
    # them out of it, as a production handler that formats at once would.
    logger = logging.getLogger("taskrunner")
    logger.propagate = False
    try:
        await _fill_and_check(job, failing, refs)
    finally:
        logger.propagate = True


async def _fill_and_check(job: Any, failing: Any, refs: list[weakref.ref[Any]]) -> None:
    async def drain(sup: taskrunner.Supervisor) -> None:
        it = sup.events()
        try:
            while True:
                record = await it.__anext__()
                del record  # hold nothing between reads
        except StopAsyncIteration:
            pass

    async with trio.open_nursery() as nursery:
        async with taskrunner.open_supervisor(history=1000) as sup:
            nursery.start_soon(drain, sup)
            for _ in range(200):
                sup.create_task(job)
                sup.create_task(failing)
            await sup.wait_for_all_tasks()
            await trio.testing.wait_all_tasks_blocked()  # the reader has read every record
            gc.collect()
            assert refs and all(r() is None for r in refs)
            watch = sup._watch
            assert watch is not None
            entries = sum(len(f) for f in watch._timeouts.values()) + len(watch._moved)
            assert entries <= 64 + 1  # swept once they outnumbered the running tasks
            infos = sup.snapshot()
            assert any(i.error and "ValueError" in i.error["traceback"] for i in infos)


# ---------------------------------------------------------------- 12: two readers


async def test_finding12_second_reader_is_refused_before_it_takes_anything(
    autojump_clock: Any,
) -> None:
    async with taskrunner.open_supervisor() as sup:
        sup.create_task(trio.sleep(1), name="a")
        sup.create_task(trio.sleep(2), name="b")
        first = sup.events()
        r1 = await first.__anext__()
        second = sup.events()
        with pytest.raises(taskrunner.StreamBusyError):
            await second.__anext__()
        r2 = await first.__anext__()
        assert (r1.seq, r2.seq) == (1, 2)
        del first
        gc.collect()
        third = sup.events()  # the first reader is gone: another may read
        assert (await third.__anext__()).seq == 3


# ---------------------------------------------------------------- 13: handlers given to create_task


async def test_finding13_refused_coroutines_are_closed_and_not_reused(
    autojump_clock: Any,
) -> None:
    async def job() -> int:
        await trio.sleep(1)
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with supervised() as (sup, _):
            sup.create_task(job(), name="taken")
            coro = job()
            with pytest.raises(taskrunner.DuplicateTaskNameError):
                sup.create_task(coro, name="taken")
            assert coro.cr_frame is None  # closed: no "never awaited" warning
            with pytest.raises(TypeError):
                sup.create_task(job(), timeout="soon")  # type: ignore[arg-type]
            once = job()
            sup.create_task(once)
            with pytest.raises(ValueError, match="already given to create_task"):
                sup.create_task(once)
        gc.collect()
        with pytest.raises(taskrunner.SupervisorClosedError):
            late = job()
            try:
                sup.create_task(late)
            finally:
                assert late.cr_frame is None


async def test_finding13_async_callables_and_wrapped_names(autojump_clock: Any) -> None:
    class Tool:
        async def __call__(self) -> str:
            await trio.sleep(1)
            return "called"

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper() -> Any:
            return await fn()

        return wrapper

    @logged
    async def fetch_weather() -> str:
        return "sunny"

    async with supervised() as (sup, _):
        t = sup.create_task(Tool())
        w = sup.create_task(fetch_weather)
        assert (await t.wait()).unwrap() == "called"
        assert (await w.wait()).unwrap() == "sunny"
    assert w.name.startswith("fetch_weather-")


# ---------------------------------------------------------------- 14: calls from elsewhere, args


async def test_finding14_other_threads_and_argument_errors(autojump_clock: Any) -> None:
    async with supervised() as (sup, _):
        h = sup.create_task(trio.sleep_forever(), name="x", interruptible=True, timeout=None)
        for call in (
            lambda: sup.cancel_task("x"),
            sup.cancel_interruptible_tasks,
            sup.cancel_all_tasks,
            sup.has_unfinished_tasks,
            sup.snapshot,
            h.cancel,
        ):
            with pytest.raises(taskrunner.WrongContextError, match="outside any trio run"):
                await trio.to_thread.run_sync(call)
        assert not h.done and h.cancel_reason is None
        huge = sup.create_task(trio.sleep(1), timeout=10**400)
        assert huge.timeout is None
        h.cancel()
    with pytest.raises(TypeError, match="max_buffer must be an int"):
        async with taskrunner.open_supervisor(max_buffer=2.5):  # type: ignore[arg-type]
            pass

    async def handler(event: Any, context: Any) -> None:
        return None

    with pytest.raises(ValueError, match="stop_grace must be a number of seconds >= 0.*-1"):
        async with taskrunner.open_session(handler, stop_grace=-1):
            pass
    with pytest.raises(TypeError, match="stop_grace must be .*got None"):
        async with taskrunner.open_session(handler, stop_grace=None):  # type: ignore[arg-type]
            pass


# ---------------------------------------------------------------- admission control


async def test_limit_queues_tasks_in_pending(flavor: str, autojump_clock: Any) -> None:
    sleep = sleeper(flavor)
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await sleep(1)
        running -= 1

    async with supervised(flavor=flavor, limit=2, pending_limit=3) as (sup, records):
        hs = [sup.create_task(job(), name=f"t{i}") for i in range(5)]
        assert [h.state for h in hs] == [TaskState.RUNNING] * 2 + [TaskState.PENDING] * 3
        with pytest.raises(taskrunner.TaskLimitError, match="limit=2.*pending_limit=3"):
            sup.create_task(job(), name="t5")
        assert hs[4].cancel()  # a pending task cancelled never runs
        await sup.wait_for_all_tasks()
    assert peak == 2
    assert kinds(of_task(records, "t2")) == ["TaskQueued", "TaskStarted", "TaskFinished"]
    assert kinds(of_task(records, "t4")) == ["TaskQueued", "TaskCancelled"]
    assert isinstance(of_task(records, "t2")[0], TaskQueued)
    started = of_task(records, "t2")[1]
    assert isinstance(started, TaskStarted) and started.at == 1


async def test_replacing_a_pending_task_when_the_queue_is_full(
    flavor: str, autojump_clock: Any
) -> None:
    """on_duplicate="replace" of a pending task with the queue at pending_limit: the old one
    gives its place up (cancelled, "replaced") and the new one waits in it."""

    async def job() -> None:
        await sleeper(flavor)(1)

    async with supervised(flavor=flavor, limit=1, pending_limit=1) as (sup, records):
        sup.create_task(job(), name="running")
        old = sup.create_task(job(), name="later")
        assert old.state is TaskState.PENDING
        with pytest.raises(taskrunner.TaskLimitError):
            sup.create_task(job(), name="other")  # the queue is full for a new name
        new = sup.create_task(job(), name="later", on_duplicate="replace")
        assert old.state is TaskState.CANCELLED and old.cancel_reason == "replaced"
        assert new.state is TaskState.PENDING
        await sup.wait_for_all_tasks()
        assert new.state is TaskState.FINISHED
    assert [(type(r).__name__, r.task_id) for r in of_task(records, "later")] == [
        ("TaskQueued", old.id),
        ("TaskCancelled", old.id),
        ("TaskQueued", new.id),
        ("TaskStarted", new.id),
        ("TaskFinished", new.id),
    ]


async def test_a_limiter_shared_by_sessions(autojump_clock: Any) -> None:
    shared = Limiter(3)
    peak = 0

    async def job() -> None:
        nonlocal peak
        peak = max(peak, shared.running)
        await asyncio.sleep(1)

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            for _ in range(4):
                context.create_task(job())

    async with taskrunner.open_session(handler, limit=shared) as a:
        async with taskrunner.open_session(handler, limit=shared) as b:
            await a.send(StartEvent())
            await b.send(StartEvent())
            await trio.sleep(0.5)
            assert shared.running == 3 and shared.waiting == 5
    assert peak == 3 and shared.running == 0


async def test_replacing_a_task_by_name_in_the_context(flavor: str, autojump_clock: Any) -> None:
    async def job(tag: str) -> str:
        await sleeper(flavor)(5)
        return tag

    async def handler(event: Any, context: taskrunner.Context) -> None:
        context.create_task(job(type(event).__name__), name="lookup")

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, flavor=flavor) as session:
            nursery.start_soon(collect, session, records)
            await session.send(StartEvent())
            await trio.sleep(1)
            await session.send(TextEvent.from_text("again"))
            await session.wait_until_handled()
            await trio.sleep(10)
    ends = [r for r in of_task(records, "lookup") if type(r).__name__ != "TaskStarted"]
    assert isinstance(ends[0], TaskCancelled) and ends[0].reason == "replaced"
    assert ends[0].origin == "handler"
    assert isinstance(ends[1], TaskFinished) and ends[1].result == "TextEvent"


def test_sys_exit_in_a_task_exits_the_process_with_its_code(flavor: str, tmp_path: Any) -> None:
    import subprocess

    script = tmp_path / "exit3.py"
    sleep = "trio.sleep(0)" if flavor == "trio" else "asyncio.sleep(0)"
    script.write_text(
        "import sys, trio, asyncio, taskrunner\n"
        "async def job():\n"
        f"    await {sleep}\n"
        "    sys.exit(3)\n"
        "async def main():\n"
        f"    async with taskrunner.open_supervisor(flavor={flavor!r}) as sup:\n"
        "        sup.create_task(job())\n"
        "        await trio.sleep(5)\n"
        "trio.run(main)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=30)
    assert done.returncode == 3, done.stderr.decode()
