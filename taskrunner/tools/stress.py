"""``python -m taskrunner stress``: many sessions at once in one process, with checks.

Each session runs waves of tasks of a configurable mix (async generators yielding events;
some interruptible, failing, timing out, asyncio-flavoured), is interrupted at a given rate,
and is read by a checker that verifies, for every task: ``TaskStarted`` first, exactly one
terminal record, nothing after it, and as many outputs delivered as the task yielded. After
each session closed, no task of it may be left running.
"""

from __future__ import annotations

import asyncio
import math
import random
import resource
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import attrs
import trio

from .._core.handle import TaskHandle
from .._core.records import (
    TERMINAL_RECORDS,
    Record,
    TaskOutput,
    TaskRecord,
    TaskStarted,
)
from .._session.agent_events import Event, StartEvent, StopEvent, TextEvent
from .._session.context import Context
from .._session.records import SessionEnded
from .._session.session import open_session

__all__ = ["StressConfig", "StressReport", "run_stress"]


@attrs.frozen
class StressConfig:
    """What to run. Shares are fractions of the tasks, in [0, 1]."""

    sessions: int = 100
    tasks_per_session: int = 10
    events_per_task: int = 10
    interruptible: float = 0.3
    failing: float = 0.1
    timing_out: float = 0.1
    asyncio_share: float = 0.2
    #: interruptions per session per second
    interrupt_rate: float = 0.5
    #: seconds to keep starting new waves of tasks; 0 runs one wave
    duration: float = 0.0
    #: pause between two events of a task, seconds
    event_gap: float = 0.01
    seed: int = 1

    def __attrs_post_init__(self) -> None:
        for name in ("sessions", "tasks_per_session", "events_per_task"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("interruptible", "failing", "timing_out", "asyncio_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"--{name.replace('_', '-')} is a share in [0, 1], got {value!r}")
        if self.failing + self.timing_out > 1:
            raise ValueError("failing + timing-out shares add up to more than 1")
        for name in ("interrupt_rate", "duration", "event_gap"):
            value = getattr(self, name)
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@attrs.define
class StressReport:
    """What a run measured and whether every check held."""

    config: StressConfig
    elapsed: float = 0.0
    tasks: int = 0
    events_yielded: int = 0
    events_delivered: int = 0
    records: int = 0
    interruptions: int = 0
    latencies: list[float] = attrs.field(factory=list)
    peak_live_tasks: int = 0
    rss_start_kib: int = 0
    rss_peak_kib: int = 0
    failures: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        """True when every correctness check held."""
        return not self.failures

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of interruption latency, in seconds (nan if none)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for the final table."""
        el = max(self.elapsed, 1e-9)
        per_task = (
            (self.rss_peak_kib - self.rss_start_kib) * 1024 / self.peak_live_tasks
            if self.peak_live_tasks
            else math.nan
        )
        return [
            ("sessions", f"{self.config.sessions:,}"),
            ("tasks", f"{self.tasks:,}"),
            ("events delivered", f"{self.events_delivered:,} of {self.events_yielded:,} yielded"),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("tasks / s", f"{self.tasks / el:,.0f}"),
            ("events / s", f"{self.events_delivered / el:,.0f}"),
            ("records / s", f"{self.records / el:,.0f}"),
            ("interruptions", f"{self.interruptions:,}"),
            (
                "interruption latency p50 / p99",
                f"{self.percentile(50) * 1e3:.2f} ms / {self.percentile(99) * 1e3:.2f} ms",
            ),
            ("peak live tasks", f"{self.peak_live_tasks:,}"),
            ("peak RSS", f"{self.rss_peak_kib / 1024:,.1f} MiB"),
            ("memory per live task", f"{per_task:,.0f} B (RSS growth / peak live tasks)"),
            ("checks", "all passed" if self.ok else f"{len(self.failures)} FAILED"),
        ]


def _rss_kib() -> int:
    # ru_maxrss is the peak resident set size, in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _Checker:
    """Reads one session's stream and checks every task's records as they come."""

    def __init__(self, report: StressReport, yielded: dict[int, int], session_id: str) -> None:
        self.report = report
        self.yielded = yielded
        self.session_id = session_id
        self.outputs: dict[int, int] = {}
        self.ended: set[int] = set()
        self.started: set[int] = set()
        self.last_seq = 0
        self.session_ended = False

    def fail(self, message: str) -> None:
        self.report.failures.append(f"{self.session_id}: {message}")

    def feed(self, record: Record) -> None:
        self.report.records += 1
        if record.seq <= self.last_seq:
            self.fail(f"seq went from {self.last_seq} to {record.seq}")
        self.last_seq = record.seq
        if self.session_ended:
            self.fail(f"record after SessionEnded: {record!r}")
        if isinstance(record, SessionEnded):
            self.session_ended = True
        if not isinstance(record, TaskRecord):
            return
        tid = record.task_id
        if tid in self.ended:
            self.fail(f"record after the terminal record of task {record.task!r}: {record!r}")
        if isinstance(record, TaskStarted):
            if tid in self.started:
                self.fail(f"task {record.task!r} started twice")
            self.started.add(tid)
            return
        if tid not in self.started:
            self.fail(f"{type(record).__name__} of task {record.task!r} before its TaskStarted")
        if isinstance(record, TaskOutput):
            self.outputs[tid] = self.outputs.get(tid, 0) + 1
            self.report.events_delivered += 1
        elif isinstance(record, TERMINAL_RECORDS):
            self.ended.add(tid)
            self.report.tasks += 1

    def finish(self) -> None:
        if not self.session_ended:
            self.fail("the stream ended without SessionEnded")
        missing = self.started - self.ended
        if missing:
            self.fail(f"{len(missing)} task(s) without a terminal record")
        for tid, count in self.yielded.items():
            got = self.outputs.get(tid, 0)
            if got != count:
                self.fail(f"task id {tid} yielded {count} events, {got} delivered")


async def _work(
    sleep: Callable[[float], Awaitable[Any]],
    n: int,
    gap: float,
    fail_at: int | None,
    yielded: dict[int, int],
) -> AsyncGenerator[Event, None]:
    """A task of the mix: ``n`` events ``gap`` apart (``sleep`` is trio's or asyncio's)."""
    task = _current_id()
    for i in range(n):
        if fail_at is not None and i == fail_at:
            raise RuntimeError(f"planned failure after {i} events")
        await sleep(gap)
        yielded[task] = yielded.get(task, 0) + 1
        yield _EVENT


def _current_id() -> int:
    from .._core.supervisor import current_task

    handle = current_task()
    assert handle is not None
    return handle.id


_EVENT = TextEvent(data={"source": "stress", "text": "tick"})


async def _run_session(
    index: int, config: StressConfig, report: StressReport, live: list[int], deadline: float
) -> None:
    rng = random.Random(config.seed * 1_000_003 + index)
    yielded: dict[int, int] = {}
    session_id = f"stress-{index}"
    checker = _Checker(report, yielded, session_id)

    async def handler(event: Event, context: Context) -> None:
        if not isinstance(event, StartEvent):
            return
        for _ in range(config.tasks_per_session):
            n = config.events_per_task
            roll = rng.random()
            fail_at = rng.randrange(n) if roll < config.failing else None
            timing_out = config.failing <= roll < config.failing + config.timing_out
            work = n * config.event_gap
            timeout = work / 2 if timing_out else max(30.0, work * 10)
            flavor = "asyncio" if rng.random() < config.asyncio_share else "trio"
            sleep = asyncio.sleep if flavor == "asyncio" else trio.sleep
            context.create_task(
                _work(sleep, n, config.event_gap, fail_at, yielded),
                interruptible=rng.random() < config.interruptible,
                timeout=timeout if work > 0 else None,
                flavor=flavor,  # type: ignore[arg-type]
            )
            live[0] += 1

    async with trio.open_nursery() as nursery:
        async with open_session(
            handler,
            session_id=session_id,
            flavor="trio",
            stuck_after=None,
            interrupt_on=(),
        ) as session:

            async def read() -> None:
                async for record in session.events():
                    checker.feed(record)
                    if isinstance(record, TERMINAL_RECORDS):
                        live[0] -= 1

            nursery.start_soon(read)
            sup = session.supervisor
            while True:
                await session.send(StartEvent())
                await session.wait_until_handled()
                while sup.has_unfinished_tasks():
                    if config.interrupt_rate > 0:
                        pause = rng.expovariate(config.interrupt_rate)
                        with trio.move_on_after(pause):
                            await sup.wait_for_all_tasks()
                        if not sup.has_unfinished_tasks():
                            break
                        affected: list[TaskHandle] = [
                            h
                            for h in (sup.get_task(i.name) for i in sup.snapshot())
                            if isinstance(h, TaskHandle) and h.interruptible and not h.done
                        ]
                        if not affected:
                            continue
                        started = trio.current_time()
                        session.interrupt()
                        for handle in affected:
                            await handle.wait()
                        report.latencies.append(trio.current_time() - started)
                        report.interruptions += 1
                    else:
                        await sup.wait_for_all_tasks()
                if trio.current_time() >= deadline:
                    break
            await session.send(StopEvent())
        if sup.has_unfinished_tasks():
            checker.fail("tasks still running after the session closed")
    checker.finish()
    report.events_yielded += sum(yielded.values())


async def run_stress(config: StressConfig, *, progress: Any = None) -> StressReport:
    """Run the sessions of ``config`` concurrently and return the report.

    ``progress``, when given, is called as ``progress(tasks_ended, live_tasks)`` a few times
    a second while the run goes on.
    """
    report = StressReport(config=config, rss_start_kib=_rss_kib())
    live = [0]
    start = trio.current_time()
    deadline = start + config.duration
    async with trio.open_nursery() as outer:
        done = trio.Event()

        async def sample() -> None:
            while not done.is_set():
                report.peak_live_tasks = max(report.peak_live_tasks, live[0])
                if progress is not None:
                    progress(report.tasks, live[0])
                with trio.move_on_after(0.2):
                    await done.wait()

        outer.start_soon(sample)
        async with trio.open_nursery() as nursery:
            for i in range(config.sessions):
                nursery.start_soon(_run_session, i, config, report, live, deadline)
        done.set()
    report.elapsed = trio.current_time() - start
    report.rss_peak_kib = _rss_kib()
    if progress is not None:
        progress(report.tasks, 0)
    return report


def main_stress(args: Any) -> int:
    """The ``stress`` subcommand: run, show a progress bar, print the report table."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    try:
        config = StressConfig(
            sessions=args.sessions,
            tasks_per_session=args.tasks_per_session,
            events_per_task=args.events_per_task,
            interruptible=args.interruptible,
            failing=args.failing,
            timing_out=args.timing_out,
            asyncio_share=args.asyncio,
            interrupt_rate=args.interrupt_rate,
            duration=args.duration,
            event_gap=args.event_gap,
            seed=args.seed,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    console = Console(stderr=True)
    expected = config.sessions * config.tasks_per_session
    with Progress(
        TextColumn("[orange1]stress"),
        BarColumn(),
        TextColumn("{task.completed:,} tasks ended, {task.fields[live]:,} live"),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress,
    ) as bar:
        task_id = bar.add_task("run", total=None if config.duration else expected, live=0)

        def progress(ended: int, live: int) -> None:
            bar.update(task_id, completed=ended, live=live)

        report = trio.run(lambda: run_stress(config, progress=progress))
    table = Table(title="stress", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in report.summary_rows():
        table.add_row(label, value)
    Console().print(table)
    for failure in report.failures[:20]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 0 if report.ok else 1


def add_stress_parser(sub: Any) -> None:
    """Register the ``stress`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("stress", help="run many sessions at once and check every record")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--tasks-per-session", type=int, default=10)
    p.add_argument("--events-per-task", type=int, default=10)
    p.add_argument("--interruptible", type=float, default=0.3, help="share of tasks")
    p.add_argument("--failing", type=float, default=0.1, help="share of tasks")
    p.add_argument("--timing-out", type=float, default=0.1, help="share of tasks")
    p.add_argument("--asyncio", type=float, default=0.2, help="share of asyncio-flavoured tasks")
    p.add_argument("--interrupt-rate", type=float, default=0.5, help="per session per second")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of waves (0: one wave)")
    p.add_argument("--event-gap", type=float, default=0.01, help="seconds between events")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=main_stress)
