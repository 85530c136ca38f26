"""The lean core (issue 9): what the cheaper records, history, GC policy, stress runner and
asyncio loop must still guarantee. No figure is asserted here: speed is measured by
benchmarks/run.py and ``python -m taskrunner stress``, never by tests."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
import weakref
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from helpers import of_task, supervised

import taskrunner
from taskrunner.events import (
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskStarted,
)
from taskrunner.tools.stress import StressConfig, run_baseline, run_stress


@pytest.fixture(params=["trio", "asyncio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sleeper(flavor: str) -> Any:
    return trio.sleep if flavor == "trio" else asyncio.sleep


# ---------------------------------------------------------------------------- records


def test_task_records_keep_their_fields_and_json_form() -> None:
    started = TaskStarted(1, 2.5, "t", 7, True, 30.0, "trio", session_id="s", wall=100.0)
    assert [f.name for f in attrs.fields(TaskStarted)] == [
        "seq", "at", "session_id", "wall", "task", "task_id", "interruptible", "timeout",
        "flavor",
    ]
    assert started.to_dict() == {
        "type": "TaskStarted", "source": "task", "task": "t", "task_id": 7, "seq": 1,
        "at": 2.5, "session_id": "s", "wall": 100.0, "interruptible": True, "timeout": 30.0,
        "flavor": "trio",
    }
    cancelled = TaskCancelled(3, 4.0, "t", 7, "interrupted", "handler", "late")
    assert (cancelled.reason, cancelled.origin, cancelled.result) == (
        "interrupted", "handler", "late",
    )
    assert cancelled.session_id is None and cancelled.wall == 0.0
    assert TaskOutput(2, 3.0, "t", 7, {"a": 1}) == TaskOutput(2, 3.0, "t", 7, {"a": 1})
    assert TaskFinished(2, 3.0, "t", 7, 1) != TaskFinished(2, 3.0, "t", 7, 2)
    # Slotted: a misspelt attribute is an error, not a silent new field.
    with pytest.raises(AttributeError):
        started.taks = "x"  # type: ignore[attr-defined]
    assert "TaskStarted(seq=1" in repr(started)


async def test_records_made_by_a_supervisor_carry_stamp_and_one_clock_reading(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)

    async def work() -> int:
        await sleep(1)
        return 5

    async with supervised(flavor=flavor, session_id="abc") as (sup, records):
        sup.create_task(work, name="w")
        await sup.wait_for_all_tasks()
    started, finished = of_task(records, "w")
    assert isinstance(started, TaskStarted) and isinstance(finished, TaskFinished)
    assert finished.result == 5
    assert finished.at - started.at == pytest.approx(1.0)
    for record in (started, finished):
        assert record.session_id == "abc"
        # wall time is the trio clock plus one offset fixed when the supervisor opened
        assert record.wall - record.at == pytest.approx(started.wall - started.at)


# ---------------------------------------------------------------------------- history


class _Result:
    pass


async def test_history_keeps_neither_results_nor_live_errors(
    flavor: str, autojump_clock: Any
) -> None:
    sleep = sleeper(flavor)
    holder = [_Result()]
    alive = weakref.ref(holder[0])

    async def returns() -> _Result:
        await sleep(0.1)
        return holder.pop()

    async def fails() -> None:
        await sleep(0.1)
        raise ValueError("broken on purpose")

    async with supervised(flavor=flavor) as (sup, records):
        handle = sup.create_task(returns(), name="r")
        sup.create_task(fails(), name="f")
        await sup.wait_for_all_tasks()
        info = sup.get_task("f")
        snapshot = sup.snapshot()
    assert isinstance(info, taskrunner.TaskInfo)
    assert info.state is taskrunner.TaskState.FAILED
    assert info.error is not None and info.error["type"] == "ValueError"
    assert "broken on purpose" in info.error["message"]
    assert "Traceback" in info.error["traceback"]
    assert sorted(i.name for i in snapshot) == ["f", "r"]
    assert all(isinstance(i, taskrunner.TaskInfo) for i in snapshot)
    assert isinstance(of_task(records, "f")[-1], TaskFailed)
    # Only the handle (and the terminal record, until read) hold the result.
    assert (await handle.wait()).unwrap() is alive()
    del handle
    records.clear()
    gc.collect()
    assert alive() is None


# ---------------------------------------------------------------------------- tune_gc


def test_tune_gc_sets_thresholds_freezes_and_undoes() -> None:
    # An object alive before the call: frozen objects are no longer listed by the collector.
    # (Not the freeze count: frozen objects still die by reference count, so the count of
    # an earlier freeze in this process can drop at any time.)
    probe = [object()]
    before = gc.get_threshold()
    tuning = taskrunner.tune_gc()
    try:
        assert gc.get_threshold() == tuning.thresholds == (50_000, 20, 100)
        assert tuning.previous_thresholds == before
        assert tuning.frozen > 0
        assert not any(o is probe for o in gc.get_objects())
    finally:
        tuning.undo()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert any(o is probe for o in gc.get_objects())


def test_tune_gc_without_freeze_and_bad_thresholds() -> None:
    before = gc.get_threshold()
    tuning = taskrunner.tune_gc(freeze=False, thresholds=(1000, 10, 10))
    try:
        assert tuning.frozen == 0 and gc.get_threshold() == (1000, 10, 10)
    finally:
        gc.set_threshold(*before)
    for bad in ((0, 10, 10), (1000, 10), [1000, 10, 10], (1000, 10, 1.5), (True, 1, 1)):
        with pytest.raises(ValueError, match="thresholds must be a tuple of three ints"):
            taskrunner.tune_gc(freeze=False, thresholds=bad)  # type: ignore[arg-type]
    assert gc.get_threshold() == before


# ---------------------------------------------------------------------------- stress


_SMALL = StressConfig(
    sessions=6,
    tasks_per_session=8,
    events_per_task=5,
    interruptible=0.5,
    failing=0.1,
    timing_out=0.1,
    asyncio_share=0.3,
    interrupt_rate=3.0,
    duration=2.0,
    event_gap=0.1,
)


async def test_stress_latency_is_one_countdown_per_interruption(autojump_clock: Any) -> None:
    report = await run_stress(_SMALL)
    assert report.ok, report.failures
    assert report.interruptions > 0
    assert len(report.latencies) == len(report.latency_starts) == report.interruptions
    assert all(lat >= 0 for lat in report.latencies)
    assert report.startup >= 0
    assert report.events_delivered + report.events_kept == report.events_yielded


async def test_baseline_runs_the_same_workload_in_raw_trio(autojump_clock: Any) -> None:
    mine = await run_stress(_SMALL)
    base = await run_baseline(_SMALL)
    assert base.ok
    # The same random mix: the same number of tasks, each ending once.
    assert base.tasks == mine.tasks >= _SMALL.sessions * _SMALL.tasks_per_session
    assert base.interruptions > 0 and len(base.latencies) == base.interruptions
    assert base.events_delivered == base.events_yielded > 0
    assert [label for label, _, _ in base.figures()] == [
        label for label, _, _ in mine.figures()
    ]


async def test_progress_is_called_while_running_and_at_the_end(autojump_clock: Any) -> None:
    calls: list[tuple[int, int]] = []
    report = await run_stress(_SMALL, progress=lambda r, live: calls.append((r.tasks, live)))
    assert len(calls) >= 2
    assert calls[-1] == (report.tasks, 0)


def test_stress_command_with_baseline_prints_both_side_by_side(tmp_path: Any) -> None:
    json_path = tmp_path / "stress.json"
    out = subprocess.run(
        [
            sys.executable, "-m", "taskrunner", "stress", "--sessions", "4",
            "--tasks-per-session", "4", "--events-per-task", "3", "--event-gap", "0.01",
            "--interrupt-rate", "20", "--baseline", "--no-tune-gc", "--json", str(json_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "GC: CPython defaults" in out.stdout
    assert "raw trio" in out.stdout and "ratio" in out.stdout
    assert "interruption latency p99" in out.stdout
    # the live progress line, on stderr
    assert "[taskrunner]" in out.stderr and "[raw trio]" in out.stderr
    data = json.loads(json_path.read_text())
    assert data["gc"] == "CPython defaults" and data["config"]["sessions"] == 4
    for side in ("taskrunner", "baseline"):
        assert len(data[side]["latencies"]) == len(data[side]["latency_starts"])
        assert "interruption latency p99" in data[side]["figures"]


# ---------------------------------------------------------------------------- asyncio loop


async def test_taskrunner_loop_runs_ready_callbacks_in_batches_in_order() -> None:
    from taskrunner._adapters import aio

    loop = await aio.asyncio_loop()
    # The trio-asyncio installed is one whose loop taskrunner knows how to batch.
    assert "_main_loop_one" in vars(loop)
    order: list[int] = []

    async def schedule() -> None:
        running = asyncio.get_running_loop()
        for i in range(300):
            running.call_soon(order.append, i)
        running.call_later(0.01, order.append, -1)
        await asyncio.sleep(0.05)

    await taskrunner.run_in_asyncio(schedule)
    assert order == [*range(300), -1]


def _spin(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_the_trio_side_runs_every_slice_while_asyncio_code_is_busy() -> None:
    """60 asyncio-flavoured tasks spending CPU in 1 ms pieces (asyncio.sleep(0) between):
    the trio side (here a task counting its turns; in a server, its I/O, timeouts and
    cancellations) still runs about every ``ROUND_SLICE_S``, not once per pass over every
    ready piece (60 ms). Real time: the loop slices real CPU work. asyncio only: trio-
    flavoured tasks are trio tasks, and trio's own round-robin applies to them."""
    from taskrunner._adapters import _aio_loop

    async def busy() -> None:
        for _ in range(10):
            _spin(0.001)
            await asyncio.sleep(0)

    gaps: list[float] = []
    async with supervised(flavor="asyncio") as (sup, records):
        for i in range(60):
            sup.create_task(busy, name=f"busy{i}")
        last = time.perf_counter()
        while sup.has_unfinished_tasks():
            await trio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    assert len(of_task(records, "busy59")) == 2  # started, finished
    gaps.sort()
    # The loop's turns alternate with rounds where it has nothing new (short gaps), so take a
    # high percentile (without the slice: a pass over all 60 pieces, 60 ms, every other gap).
    typical = gaps[int(len(gaps) * 0.9)]
    assert _aio_loop.ROUND_SLICE_S <= 0.002
    assert typical < 0.02, (typical, len(gaps))


async def test_cpu_heavy_trio_tasks_do_not_starve_asyncio_flavoured_ones() -> None:
    """20 trio tasks and 20 asyncio-flavoured ones, all spending CPU in 1 ms pieces: the
    asyncio ones get about as much of the thread (the loop's slice grows to what the rest
    of the trio run took), not one short slice per trio round (a tenth as much)."""
    pieces = {"trio": 0, "asyncio": 0}
    stop = trio.Event()

    async def busy_trio() -> None:
        while not stop.is_set():
            _spin(0.001)
            pieces["trio"] += 1
            await trio.sleep(0)

    async def busy_asyncio() -> None:
        while not stop.is_set():
            _spin(0.001)
            pieces["asyncio"] += 1
            await asyncio.sleep(0)

    async with supervised(flavor="asyncio") as (sup, _):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(busy_trio)
                sup.create_task(busy_asyncio, name=f"a{i}")
            await trio.sleep(0.6)  # real time: real CPU work is shared
            stop.set()
    ratio = pieces["asyncio"] / pieces["trio"]
    assert 0.5 < ratio < 2, pieces


@pytest.mark.parametrize("ending", ["cancelled", "failed", "returned"])
async def test_the_trio_side_learns_at_once_that_an_asyncio_task_ended(ending: str) -> None:
    """With 50 asyncio tasks busy in 1 ms pieces, the trio side learns that an asyncio task
    ended (cancelled by a barge-in, failed, returned) within a few pieces of its last step,
    not after another pass over every ready piece of the loop (50)."""
    pieces = [0]
    ended_at: list[int] = []
    stop = trio.Event()

    async def busy() -> None:
        while not stop.is_set():
            _spin(0.001)
            pieces[0] += 1
            await asyncio.sleep(0)

    async def target() -> None:
        try:
            if ending == "cancelled":
                await asyncio.sleep(3600)
            await asyncio.sleep(0.05)
        finally:
            ended_at.append(pieces[0])
        if ending == "failed":
            raise ValueError("boom")

    async with supervised(flavor="asyncio") as (sup, records):
        for i in range(50):
            sup.create_task(busy, name=f"busy{i}")
        handle = sup.create_task(target, name="target", interruptible=True)
        if ending == "cancelled":
            await trio.sleep(0.1)  # real time: every task in its loop
            sup.cancel_interruptible_tasks(origin="test")
        await handle.wait()
        learned = pieces[0]
        stop.set()
    assert ended_at and learned - ended_at[0] < 25, (ended_at, learned)
    kind = {"cancelled": TaskCancelled, "failed": TaskFailed, "returned": TaskFinished}[ending]
    assert isinstance(of_task(records, "target")[-1], kind)


async def test_a_failed_asyncio_task_leaves_no_unretrieved_exception() -> None:
    """The trio side takes a failed asyncio task's exception from its last step; asyncio's
    own copy is marked retrieved, so asyncio will not log "exception was never retrieved"
    when it collects the task (``_log_traceback``: the flag it logs by)."""
    tasks: list[asyncio.Task[Any]] = []

    async def fail() -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        await asyncio.sleep(0)
        raise ValueError("boom")

    async with supervised(flavor="asyncio") as (sup, records):
        for i in range(20):
            sup.create_task(fail, name=f"f{i}")
        assert await sup.wait_for_all_tasks(timeout=10)
        await trio.sleep(0.05)  # real time: the loop runs the tasks' done callbacks
    assert sum(isinstance(r, TaskFailed) for r in records) == 20
    assert len(tasks) == 20 and all(t.done() for t in tasks)
    assert not any(t._log_traceback for t in tasks)


async def test_many_asyncio_tasks_interrupted_at_once_all_end_cancelled() -> None:
    async def speak() -> None:
        await asyncio.sleep(3600)

    async with supervised(flavor="asyncio") as (sup, records):
        handles = [
            sup.create_task(speak, name=f"s{i}", interruptible=True) for i in range(300)
        ]
        keep = sup.create_task(speak, name="keep")
        with trio.fail_after(30):
            await trio.testing.wait_all_tasks_blocked()  # every asyncio task in its sleep
            assert sup.cancel_interruptible_tasks(origin="test") == 300
            for handle in handles:
                outcome = await handle.wait()
                with pytest.raises(taskrunner.TaskCancelledError):
                    outcome.unwrap()
        assert not keep.done
    ends = [r for r in records if isinstance(r, TaskCancelled) and r.task.startswith("s")]
    assert len(ends) == 300
    assert {(r.reason, r.origin) for r in ends} == {("interrupted", "test")}
