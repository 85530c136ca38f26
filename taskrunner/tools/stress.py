"""``python -m taskrunner stress``: many sessions at once in one process, with checks.

Each session runs waves of tasks of a configurable mix (async generators yielding events;
some interruptible, failing, timing out, asyncio-flavoured), is interrupted at a given rate,
and is read by a checker that verifies, for every task: ``TaskStarted`` first, exactly one
terminal record, nothing after it, and as many outputs delivered as the task yielded (an
output yielded after the task's cancel was delivered is kept on its terminal record instead).
After each session closed, no task of it may be left running.

Interruption latency is measured with one countdown per interruption: the ids of the
interruptible tasks it hits; the last of them to end (its terminal record, through
``on_record``, as it is made) records the time since ``interrupt()`` was called. ``--baseline``
runs the same workload in raw trio (and bare trio-asyncio for the asyncio share) in the same
process after it, and prints both side by side with their ratios. The command applies
:func:`taskrunner.tune_gc` before the runs unless ``--no-tune-gc``.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import resource
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import attrs
import trio

from .._core.handle import TaskState
from .._core.records import (
    TERMINAL_RECORDS,
    Record,
    TaskCancelled,
    TaskOutput,
    TaskRecord,
    TaskStarted,
    TaskTimedOut,
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
    #: seconds over which the sessions start (evenly spread); 0 starts them all at once
    ramp: float = 0.0

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
        for name in ("interrupt_rate", "duration", "event_gap", "ramp"):
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
    #: events yielded after the task's cancel was delivered: kept on its terminal record
    events_kept: int = 0
    records: int = 0
    interruptions: int = 0
    latencies: list[float] = attrs.field(factory=list)
    #: when each interruption was made (seconds since the run started), beside ``latencies``
    latency_starts: list[float] = attrs.field(factory=list)
    #: seconds from the start until every session had started its first wave
    startup: float = math.nan
    cpu_seconds: float = 0.0
    #: cyclic-GC collections per generation during the run, their total and longest pause
    gc_collections: list[int] = attrs.field(factory=lambda: [0, 0, 0])
    gc_pause_total: float = 0.0
    gc_pause_max: float = 0.0
    peak_live_tasks: int = 0
    rss_start_kib: int = 0
    rss_peak_kib: int = 0
    failures: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        """True when every correctness check held."""
        return not self.failures

    def percentile(self, p: float, *, after_startup: bool = False) -> float:
        """The ``p``-th percentile of interruption latency, in seconds (nan if none);
        ``after_startup`` counts only interruptions made once every session had started."""
        values = self.latencies
        if after_startup:
            values = [
                lat
                for lat, at in zip(self.latencies, self.latency_starts, strict=False)
                if at >= self.startup
            ]
        return _percentile(values, p)

    def figures(self) -> list[tuple[str, float, str]]:
        """(label, value, unit) of the measures two runs are compared on."""
        el = max(self.elapsed, 1e-9)
        return [
            ("elapsed", self.elapsed, "s"),
            ("CPU", self.cpu_seconds, "s"),
            ("CPU share of one core", 100 * self.cpu_seconds / el, "%"),
            ("tasks ended", float(self.tasks), ""),
            ("events delivered", float(self.events_delivered), ""),
            ("interruptions", float(self.interruptions), ""),
            ("interruption latency p50", self.percentile(50) * 1e3, "ms"),
            ("interruption latency p99", self.percentile(99) * 1e3, "ms"),
            ("p99 after start-up", self.percentile(99, after_startup=True) * 1e3, "ms"),
            ("latency max", self.percentile(100) * 1e3, "ms"),
            ("start-up", self.startup, "s"),
            ("full GC collections", float(self.gc_collections[2]), ""),
            ("GC pauses total", self.gc_pause_total * 1e3, "ms"),
            ("GC pause max", self.gc_pause_max * 1e3, "ms"),
            ("peak live tasks", float(self.peak_live_tasks), ""),
        ]

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
            (
                "events delivered",
                f"{self.events_delivered:,} of {self.events_yielded:,} yielded"
                + (f" ({self.events_kept:,} stale, kept on terminal records)"
                   if self.events_kept else ""),
            ),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("tasks / s", f"{self.tasks / el:,.0f}"),
            ("events / s", f"{self.events_delivered / el:,.0f}"),
            ("records / s", f"{self.records / el:,.0f}"),
            ("interruptions", f"{self.interruptions:,}"),
            (
                "interruption latency p50 / p99",
                f"{self.percentile(50) * 1e3:.2f} ms / {self.percentile(99) * 1e3:.2f} ms",
            ),
            (
                "p99 after start-up",
                f"{self.percentile(99, after_startup=True) * 1e3:.2f} ms "
                f"(start-up {self.startup:.1f} s)",
            ),
            ("CPU", f"{self.cpu_seconds:.1f} s ({100 * self.cpu_seconds / el:.0f}% of a core)"),
            (
                "GC (young/middle/full, pauses)",
                f"{self.gc_collections[0]}/{self.gc_collections[1]}/{self.gc_collections[2]}, "
                f"{self.gc_pause_total * 1e3:.0f} ms total, {self.gc_pause_max * 1e3:.1f} ms max",
            ),
            ("peak live tasks", f"{self.peak_live_tasks:,}"),
            ("peak RSS", f"{self.rss_peak_kib / 1024:,.1f} MiB"),
            ("memory per live task", f"{per_task:,.0f} B (RSS growth / peak live tasks)"),
            ("checks", "all passed" if self.ok else f"{len(self.failures)} FAILED"),
        ]


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


class _GcWatch:
    """Counts cyclic-GC collections per generation and their pauses while installed."""

    def __init__(self, report: StressReport) -> None:
        self.report = report
        self.t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self.t0
        report = self.report
        report.gc_collections[info["generation"]] += 1
        report.gc_pause_total += pause
        report.gc_pause_max = max(report.gc_pause_max, pause)

    def __enter__(self) -> _GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class _Countdown:
    """One interruption: the ids of the tasks it hit; the last of them to end records the
    latency and wakes the session's loop (no awaiting of each handle in turn, which would
    add a scheduling round per task to the figure)."""

    __slots__ = ("done", "pending", "started")

    def __init__(self, ids: set[int], started: float) -> None:
        self.pending = ids
        self.started = started
        self.done = trio.Event()

    def ended(self, task_id: int, report: StressReport, origin: float) -> None:
        pending = self.pending
        if task_id in pending:
            pending.discard(task_id)
            if not pending:
                report.latencies.append(trio.current_time() - self.started)
                report.latency_starts.append(self.started - origin)
                report.interruptions += 1
                self.done.set()


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
            if isinstance(record, (TaskCancelled, TaskTimedOut)) and record.result is not None:
                # Yielded after its cancel was delivered: not forwarded (stale), but kept on
                # the terminal record, so not lost.
                self.outputs[tid] = self.outputs.get(tid, 0) + 1
                self.report.events_kept += 1

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
    index: int,
    config: StressConfig,
    report: StressReport,
    live: list[int],
    deadline: float,
    started: list[int],
    origin: float,
) -> None:
    rng = random.Random(config.seed * 1_000_003 + index)
    yielded: dict[int, int] = {}
    session_id = f"stress-{index}"
    checker = _Checker(report, yielded, session_id)
    countdown: list[_Countdown | None] = [None]

    def on_record(record: Record) -> None:
        # Called as each record is made: for a terminal record, inside the ending task.
        current = countdown[0]
        if current is not None and isinstance(record, TERMINAL_RECORDS):
            current.ended(record.task_id, report, origin)

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
            on_record=on_record,
        ) as session:

            async def read() -> None:
                async for record in session.events():
                    checker.feed(record)
                    if isinstance(record, TERMINAL_RECORDS):
                        live[0] -= 1

            nursery.start_soon(read)
            sup = session.supervisor
            first = True
            while True:
                await session.send(StartEvent())
                await session.wait_until_handled()
                if first:
                    first = False
                    started[0] += 1
                    if started[0] == config.sessions:
                        report.startup = trio.current_time() - origin
                while sup.has_unfinished_tasks():
                    if config.interrupt_rate > 0:
                        pause = rng.expovariate(config.interrupt_rate)
                        with trio.move_on_after(pause):
                            await sup.wait_for_all_tasks()
                        if not sup.has_unfinished_tasks():
                            break
                        affected = {
                            info.id
                            for info in sup.snapshot()
                            if info.interruptible and info.state is TaskState.RUNNING
                        }
                        if not affected:
                            continue
                        current = countdown[0] = _Countdown(affected, trio.current_time())
                        session.interrupt()
                        await current.done.wait()
                        countdown[0] = None
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

    ``progress``, when given, is called as ``progress(report, live_tasks)`` a few times a
    second while the run goes on, and once at the end.
    """
    return await _measure(config, progress, _run_session)


async def _measure(config: StressConfig, progress: Any, session_fn: Any) -> StressReport:
    report = StressReport(config=config, rss_start_kib=_rss_kib())
    live = [0]
    started = [0]
    start = trio.current_time()
    cpu0 = time.process_time()
    deadline = start + config.duration
    with _GcWatch(report):
        async with trio.open_nursery() as outer:
            done = trio.Event()

            async def sample() -> None:
                while not done.is_set():
                    report.peak_live_tasks = max(report.peak_live_tasks, live[0])
                    report.elapsed = trio.current_time() - start
                    report.cpu_seconds = time.process_time() - cpu0
                    if progress is not None:
                        progress(report, live[0])
                    with trio.move_on_after(0.25):
                        await done.wait()

            outer.start_soon(sample)
            async with trio.open_nursery() as nursery:
                for i in range(config.sessions):
                    nursery.start_soon(
                        _start_later, i * config.ramp / config.sessions, session_fn,
                        i, config, report, live, deadline, started, start,
                    )
            done.set()
    report.elapsed = trio.current_time() - start
    report.cpu_seconds = time.process_time() - cpu0
    report.rss_peak_kib = _rss_kib()
    if progress is not None:
        progress(report, 0)
    return report


async def _start_later(delay: float, session_fn: Any, *args: Any) -> None:
    if delay > 0:
        await trio.sleep(delay)
    await session_fn(*args)


# ---------------------------------------------------------------------------- the baseline


async def _raw_session(
    index: int,
    config: StressConfig,
    report: StressReport,
    live: list[int],
    deadline: float,
    started: list[int],
    origin: float,
) -> None:
    """The same workload in raw trio: the same random mix of tasks, each interruptible one in
    a cancel scope of its own, an interruption cancelling that group of scopes; outputs go to
    a reader through a memory channel. The asyncio share runs as asyncio code through bare
    trio-asyncio (``aio_as_trio``, on a loop opened by :func:`run_baseline`), so that the
    comparison holds trio-asyncio's own cost on both sides."""
    rng = random.Random(config.seed * 1_000_003 + index)
    send, receive = trio.open_memory_channel[Any](1024)
    scopes: dict[int, trio.CancelScope] = {}
    countdown: list[_Countdown | None] = [None]
    running = [0]
    idle = [trio.Event()]
    next_id = [0]

    async def aio_work(n: int, fail_at: int | None) -> None:
        # asyncio code, as an asyncio-flavoured task's: sleeps in asyncio, hands each event
        # over without waiting (the channel's reader keeps up; a full one fails loudly).
        for i in range(n):
            if fail_at is not None and i == fail_at:
                raise RuntimeError(f"planned failure after {i} events")
            await asyncio.sleep(config.event_gap)
            report.events_yielded += 1
            send.send_nowait(_EVENT)

    async def work(task_id: int, n: int, fail_at: int | None, timeout: float | None,
                   scope: trio.CancelScope | None, aio: bool) -> None:
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                with scope if scope is not None else trio.CancelScope():
                    if aio:
                        import trio_asyncio

                        await trio_asyncio.aio_as_trio(aio_work)(n, fail_at)
                        return
                    for i in range(n):
                        if fail_at is not None and i == fail_at:
                            raise RuntimeError(f"planned failure after {i} events")
                        await trio.sleep(config.event_gap)
                        report.events_yielded += 1
                        await send.send(_EVENT)
        except RuntimeError:
            pass
        finally:
            scopes.pop(task_id, None)
            report.tasks += 1
            live[0] -= 1
            running[0] -= 1
            current = countdown[0]
            if current is not None:
                current.ended(task_id, report, origin)
            if running[0] == 0:
                idle[0].set()

    async def read() -> None:
        async for _ in receive:
            report.events_delivered += 1
            report.records += 1

    async with trio.open_nursery() as outer:
        outer.start_soon(read)
        async with trio.open_nursery() as nursery:
            first = True
            while True:
                idle[0] = trio.Event()
                for _ in range(config.tasks_per_session):
                    n = config.events_per_task
                    roll = rng.random()
                    fail_at = rng.randrange(n) if roll < config.failing else None
                    timing_out = config.failing <= roll < config.failing + config.timing_out
                    w = n * config.event_gap
                    timeout = w / 2 if timing_out else max(30.0, w * 10)
                    aio = rng.random() < config.asyncio_share
                    interruptible = rng.random() < config.interruptible
                    next_id[0] += 1
                    scope = trio.CancelScope() if interruptible else None
                    if scope is not None:
                        scopes[next_id[0]] = scope
                    running[0] += 1
                    live[0] += 1
                    nursery.start_soon(
                        work, next_id[0], n, fail_at, timeout if w > 0 else None, scope, aio
                    )
                await trio.lowlevel.checkpoint()
                if first:
                    first = False
                    started[0] += 1
                    if started[0] == config.sessions:
                        report.startup = trio.current_time() - origin
                while running[0]:
                    if config.interrupt_rate > 0:
                        with trio.move_on_after(rng.expovariate(config.interrupt_rate)):
                            await idle[0].wait()
                        if not running[0]:
                            break
                        if not scopes:
                            continue
                        current = countdown[0] = _Countdown(set(scopes), trio.current_time())
                        for scope in list(scopes.values()):
                            scope.cancel()
                        await current.done.wait()
                        countdown[0] = None
                    else:
                        await idle[0].wait()
                if trio.current_time() >= deadline:
                    break
        await send.aclose()


async def run_baseline(config: StressConfig, *, progress: Any = None) -> StressReport:
    """The raw-trio version of the same workload (see :func:`_raw_session`), measured the
    same way: what taskrunner's figures are compared with."""
    if config.asyncio_share == 0:
        return await _measure(config, progress, _raw_session)
    import trio_asyncio  # the baseline's asyncio share needs a loop, as taskrunner's does

    async with trio_asyncio.open_loop():
        return await _measure(config, progress, _raw_session)


class _ProgressLine:
    """One live line on stderr (rewritten in place on a terminal, every few seconds else)."""

    def __init__(self, label: str, expected: int | None, stream: Any = None) -> None:
        self.label = label
        self.expected = expected
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = -math.inf

    def __call__(self, report: StressReport, live: int) -> None:
        now = time.monotonic()
        final = live == 0 and report.elapsed > 0 and report.tasks >= (self.expected or 1)
        if not self.tty and now - self.last < 5 and not final:
            return
        self.last = now
        el = max(report.elapsed, 1e-9)
        line = (
            f"[{self.label}] {report.elapsed:6.1f} s  live {live:,}  ended {report.tasks:,}"
            f"{'' if self.expected is None else f'/{self.expected:,}'}  "
            f"interruptions {report.interruptions:,}  "
            f"p50 {report.percentile(50) * 1e3:.1f} ms  p99 {report.percentile(99) * 1e3:.1f} ms"
            f"  CPU {100 * report.cpu_seconds / el:.0f}%  full GC {report.gc_collections[2]}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def main_stress(args: Any) -> int:
    """The ``stress`` subcommand: run, show a live progress line, print the report table
    (with ``--baseline``, the raw-trio run beside it, and their ratios)."""
    from rich.console import Console
    from rich.table import Table

    from .._gc import tune_gc

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
            ramp=args.ramp,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    gc_note = "CPython defaults"
    if not args.no_tune_gc:
        tuning = tune_gc()
        gc_note = f"tune_gc(): thresholds {tuning.thresholds}, {tuning.frozen:,} objects frozen"
    # one wave per session without --duration; with it, as many as fit
    expected = None if config.duration else config.sessions * config.tasks_per_session

    def line(label: str) -> Any:
        return None if args.no_progress else _ProgressLine(label, expected)

    report = trio.run(lambda: run_stress(config, progress=line("taskrunner")))
    base: StressReport | None = None
    if args.baseline:
        gc.collect()
        base = trio.run(lambda: run_baseline(config, progress=line("raw trio")))
    table = Table(title=f"stress (GC: {gc_note})", title_justify="left")
    table.add_column("measure")
    table.add_column("taskrunner", justify="right")
    for label, value in report.summary_rows():
        table.add_row(label, value)
    Console().print(table)
    if base is not None:
        side = Table(title="taskrunner vs raw trio, same workload, same run", title_justify="left")
        for column in ("measure", "taskrunner", "raw trio", "ratio"):
            side.add_column(column, justify="left" if column == "measure" else "right")
        for (label, mine, unit), (_, theirs, _) in zip(
            report.figures(), base.figures(), strict=True
        ):
            ratio = mine / theirs if theirs and not math.isnan(theirs) else math.nan
            side.add_row(
                label, _fmt(mine, unit), _fmt(theirs, unit),
                "" if math.isnan(ratio) else f"{ratio:.2f}x",
            )
        Console().print(side)
    if args.json:
        _write_json(args.json, report, base, gc_note)
    for failure in report.failures[:20]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 0 if report.ok else 1


def _write_json(path: str, report: StressReport, base: StressReport | None, gc_note: str) -> None:
    import json

    def one(r: StressReport) -> dict[str, Any]:
        return {
            "figures": {label: (value, unit) for label, value, unit in r.figures()},
            "latencies": r.latencies,
            "latency_starts": r.latency_starts,
            "failures": r.failures,
        }

    data = {
        "config": attrs.asdict(report.config),
        "gc": gc_note,
        "taskrunner": one(report),
        "baseline": None if base is None else one(base),
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("", "%"):
        return f"{value:,.0f}{unit}"
    return f"{value:,.2f} {unit}"


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
    p.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="seconds over which the sessions start, evenly spread (default: all at once)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run the same workload in raw trio, and print both side by side",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures and latencies as JSON")
    p.add_argument(
        "--no-tune-gc",
        action="store_true",
        help="keep CPython's GC settings (default: taskrunner.tune_gc() before the run)",
    )
    p.set_defaults(run=main_stress)
