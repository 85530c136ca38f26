"""Stateful (hypothesis) test of the core supervisor against a model of its tasks.

A ``RuleBasedStateMachine`` opens a supervisor with a drawn configuration (``max_buffer`` from
1 to 4 or large, ``limit=`` / ``pending_limit=``, ``on_duplicate=``, ``default_timeout=``, an
``on_record`` callback that raises on some records), creates tasks of every kind (coroutine or
async generator, trio or asyncio flavour, handed over as an object or as a function,
interruptible or not, with a timeout, none, or the supervisor's default, with or without an
opening ``uninterruptible()`` section, finishing, failing or running forever, ending at once
when cancelled or lingering for a while first, returning or yielding a value after their cancel
was delivered, with results and outputs whose ``__repr__`` raises and failures whose ``__str__``
and ``__repr__`` raise), replaces them by name, cancels them by name or handle (also in the very
step that created them, before they ever ran), interrupts them, cancels them all, moves their
deadlines, waits for them with a timeout (creating another task meanwhile), advances the clock,
pauses, cancels and restarts the reader of ``events()`` (one reader at a time: a second one gets
``StreamBusyError``), closes the supervisor, and after every step compares the supervisor with a
model that predicts what each task has done by now: its records (kinds, order, fields and clock
times, ``TaskQueued`` and ``TaskStuck`` included), its handle and ``wait()`` outcome,
``has_unfinished_tasks()``, ``get_task()``, ``snapshot()``, and, once closed, that every task
has ended and the stream too. Every record's ``to_dict()`` must give JSON.

How trio is driven from the synchronous rules: every example owns one ``trio.run`` in a
background thread, with a ``MockClock`` that never moves on its own. A rule sends a function
into that run (``_TrioThread.call``) which acts, then waits for ``wait_all_tasks_blocked()``
so that everything the action caused has happened before the rule checks anything. Time moves
only in the rules that advance it, by steps of ``STEP`` seconds, settling after each step.

Backpressure. The reader is "live" (it reads every record as it comes: the stream is empty at
every settled point), "paused" (it keeps its iterator but reads nothing) or "gone" (cancelled;
a new ``events()`` iterator may start later). Which of several generators yielding at the same
instant gets the last free place is up to trio's scheduler, so for outputs the model follows
what ``on_record`` saw (the ground truth of what was appended, and when) and checks it against
the rules: an output is appended at the instant it is yielded if and only if the stream had
room (then every later event of the task keeps its time); otherwise the generator is blocked,
which may only happen while the reader is not live and the stream holds ``max_buffer`` unread
records, and it resumes at the instant the reader reads again (the rest of its life shifted by
the wait); a blocked output whose task is cancelled or times out is still appended, at that
instant, and the task ends there. Nothing else in the model depends on the scheduler.

Ties are avoided by construction where the outcome would be the scheduler's choice: a task
starts at a multiple of ``STEP``; its events (leaving its section, yielding, returning, raising)
happen at multiples of ``STEP`` too; a lingering task lingers 1 s or 3 s, never ``STUCK_AFTER``
(2 s). A task's own deadline equal to the time of one of its events is a tie with a defined
outcome (the task's own timeout wins), and the model says so. The one tie left, a
``wait_for_all_tasks`` whose limit is reached at the very step the last task ends, accepts
either answer.

Deterministic: ``derandomize=True`` (the same examples on every run) and no database.

Fixed scenarios at the end run the rare paths through the same machine on every run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import math
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import outcome
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.control import event as _event
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import taskrunner
from taskrunner import TaskHandle, TaskInfo, TaskState, uninterruptible
from taskrunner.events import (
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskQueued,
    TaskRecord,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)

STEP = 0.5  # the clock moves by this much at a time; all the model's times are multiples of it
STUCK_AFTER = 2.0  # the supervisor's grace before reporting a task that ignores its cancel
REAL_TIMEOUT = 20.0  # wall-clock seconds one call into the trio run may take before we give up
NAMES = ["a", "b", "c", "coro_body-2", "gen_body-3"]  # the last two collide with generated names
BIG_BUFFER = 100_000


class Boom(Exception):
    """What a failing task raises."""


class BadBoom(Exception):
    """What a failing "bad" task raises: neither ``str()`` nor ``repr()`` works on it."""

    def __str__(self) -> str:
        raise RuntimeError("BadBoom.__str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("BadBoom.__repr__ is broken")


class BadRepr:
    """A result or output whose ``repr()`` (and ``str()``) raises; equal by ``key``."""

    __slots__ = ("key",)

    def __init__(self, *key: Any) -> None:
        self.key = key

    def __repr__(self) -> str:
        raise RuntimeError("BadRepr.__repr__ is broken")

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return type(other) is BadRepr and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def shown(value: Any) -> Any:
    """``value`` with every BadRepr replaced by a readable stand-in (for failure messages)."""
    if isinstance(value, BadRepr):
        return f"<BadRepr {value.key}>"
    if isinstance(value, (tuple, list)):
        return type(value)(shown(v) for v in value)
    return value


class SinkError(Exception):
    """What the faulty ``on_record`` callback raises."""


def event(text: str) -> None:
    """Count ``text`` in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        _event(text)


# ---------------------------------------------------------------------------- task kinds


@dataclass(frozen=True)
class Spec:
    """What one task does; every time is relative to its start."""

    gen: bool  # an async generator (yields after each delay) rather than a coroutine
    flavor: str
    interruptible: bool
    # whole seconds, or "default": create_task without timeout= (the supervisor's default)
    timeout: int | str | None
    ending: str  # "finish", "fail" or "long" (never ends by itself)
    section: float | None  # length of the opening uninterruptible() section, if any
    delays: tuple[float, ...]  # sleeps after the section
    as_function: bool  # hand create_task the async function rather than the object
    linger: float | None = None  # once cancelled, go on (shielded) for this long, then end
    # once cancelled (and done lingering), a generator yields ("late", token) and a coroutine
    # returns it, instead of letting the cancellation out
    after_cancel: bool = False
    bad: bool = False  # results/outputs with a broken __repr__; fails with BadBoom

    def events(self) -> list[tuple[float, str, int]]:
        """(offset, what, index) for everything the task does, in order."""
        out: list[tuple[float, str, int]] = []
        at = 0.0
        if self.section is not None:
            at = self.section
            out.append((at, "unshield", 0))
        for i, d in enumerate(self.delays):
            at += d
            if self.gen:
                out.append((at, "output", i))
        if self.ending != "long":
            out.append((at, self.ending, 0))
        return out

    def value(self, *key: Any) -> Any:
        """An output, result or late value of this task, as it makes it."""
        return BadRepr(*key) if self.bad else key


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    ending = draw(st.sampled_from(["finish", "fail", "long"]))
    section = draw(st.none() | st.sampled_from([0.5, 1.5, 2.5]))
    gen = draw(st.booleans())
    max_delays = 3 if gen else 2
    # After a section there must be one more checkpoint (a sleep) for a deferred interruption to
    # land on, so a finishing/failing task with a section sleeps at least once more.
    min_delays = 1 if section is not None and ending != "long" else 0
    n = draw(st.integers(min_delays, max_delays))
    delays: list[float] = []
    for i in range(n):
        odd = section is None and i == 0  # the first event must land at an odd multiple of STEP
        delays.append(draw(st.sampled_from([0.5, 1.5, 2.5] if odd else [1.0, 2.0])))
    return Spec(
        gen=gen,
        flavor=draw(st.sampled_from(["trio", "asyncio"])),
        interruptible=draw(st.booleans()),
        timeout=draw(st.none() | st.integers(1, 5) | st.just("default")),
        ending=ending,
        section=section,
        delays=tuple(delays),
        as_function=draw(st.booleans()),
        # Never STUCK_AFTER: the TaskStuck report and the end never tie.
        linger=draw(st.sampled_from([None, None, 1.0, 3.0])),
        after_cancel=draw(st.sampled_from([False, False, True])),
        bad=draw(st.sampled_from([False, False, True])),
    )


def make_handler(spec: Spec, token: int) -> Any:
    """The code of a task: sleeps of its flavour's library, as ``spec`` says."""
    cancelled: type[BaseException]
    if spec.flavor == "trio":
        sleep: Callable[[float], Any] = trio.sleep
        cancelled = trio.Cancelled

        async def forever() -> None:
            await trio.sleep_forever()

        async def linger(seconds: float) -> None:
            with trio.CancelScope(shield=True):
                await trio.sleep(seconds)

    else:
        sleep = asyncio.sleep
        cancelled = asyncio.CancelledError

        async def forever() -> None:
            await asyncio.get_running_loop().create_future()

        async def linger(seconds: float) -> None:
            # Swallows the first cancel; the stuck report cancels the asyncio task again and
            # that one ends it.
            await asyncio.sleep(seconds)

    def failure() -> Exception:
        return BadBoom(token) if spec.bad else Boom(token)

    if spec.gen:

        async def gen_body() -> Any:
            try:
                if spec.section is not None:
                    with uninterruptible():
                        await sleep(spec.section)
                for i, d in enumerate(spec.delays):
                    await sleep(d)
                    yield spec.value("out", token, i)
                if spec.ending == "fail":
                    raise failure()
                if spec.ending == "long":
                    await forever()
            except cancelled:
                if spec.linger is not None:
                    await linger(spec.linger)
                if spec.after_cancel:
                    # Stale speech after a barge-in: must not be forwarded, but is kept.
                    yield spec.value("late", token)
                raise

        return gen_body if spec.as_function else gen_body()

    async def coro_body() -> Any:
        try:
            if spec.section is not None:
                with uninterruptible():
                    await sleep(spec.section)
            for d in spec.delays:
                await sleep(d)
            if spec.ending == "fail":
                raise failure()
            if spec.ending == "long":
                await forever()
            return spec.value("result", token)
        except cancelled:
            if spec.linger is not None:
                await linger(spec.linger)
            if spec.after_cancel:
                return spec.value("late", token)
            raise

    return coro_body if spec.as_function else coro_body()


def discard(handler: Any) -> None:
    """Close a coroutine object create_task refused, so that it is not reported as unawaited."""
    if asyncio.iscoroutine(handler):
        handler.close()


# ---------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """How the supervisor is opened."""

    max_buffer: int | None = None  # None: BIG_BUFFER (never full)
    limit: int | None = None
    pending_limit: int | None = None
    on_duplicate: str = "error"
    default_timeout: int | None = None
    faulty_sink: bool = False  # on_record raises on every third record
    paused: bool = False  # the reader is paused before the first task is created


@st.composite
def configs(draw: st.DrawFn) -> Config:
    limit = draw(st.none() | st.integers(1, 3))
    return Config(
        max_buffer=draw(st.sampled_from([None, 1, 2, 3, 4])),
        limit=limit,
        pending_limit=None if limit is None else draw(st.none() | st.integers(0, 2)),
        on_duplicate=draw(st.sampled_from(["error", "replace"])),
        default_timeout=draw(st.none() | st.integers(1, 5)),
        faulty_sink=draw(st.booleans()),
        paused=draw(st.booleans()),
    )


# ---------------------------------------------------------------------------- the model


@dataclass(repr=False)
class ModelTask:
    id: int
    name: str  # handle.name, on every record
    key: str  # the name the supervisor finds it by (a replaced task's is renamed)
    token: int
    spec: Spec
    timeout: float | None  # the effective timeout (the default applied)
    handle: TaskHandle
    started: float | None  # None while pending
    pending: list[tuple[float, str, int]] = field(default_factory=list)  # (abs time, what, i)
    records: list[tuple[Any, ...]] = field(default_factory=list)  # expected, in order
    state: TaskState = TaskState.RUNNING
    ended_at: float | None = None
    cancel_reason: str | None = None
    in_section: bool = False
    interrupt_pending: bool = False
    # Cancelled (reason, None for the timeout) at this time, but lingering: not ended yet.
    stopping: tuple[str | None, float] | None = None
    # Blocked on an output: (its index, since when, the rest of its events relative to the
    # instant the output is appended).
    blocked: tuple[int, float, list[tuple[float, str, int]]] | None = None
    deadline: float = math.inf  # absolute; set when it starts, or moved through the handle
    deadline_set: bool = False  # moved through the handle while pending
    coroutine: Any = None  # the coroutine object handed to create_task, if one was

    def __repr__(self) -> str:
        return f"<ModelTask {self.id} {self.name!r} {self.state.value} {self.spec}>"

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def unfinished(self) -> bool:
        return self.state in (TaskState.RUNNING, TaskState.PENDING)


def describe(record: TaskRecord) -> tuple[Any, ...]:
    """The fields of a record the model predicts, in the model's form."""
    if isinstance(record, TaskStarted):
        return ("TaskStarted", record.at, record.interruptible, record.timeout, record.flavor)
    if isinstance(record, TaskQueued):
        return (
            "TaskQueued",
            record.at,
            record.interruptible,
            record.timeout,
            record.flavor,
            record.limit,
        )
    if isinstance(record, TaskOutput):
        return ("TaskOutput", record.at, record.event)
    if isinstance(record, TaskFinished):
        return ("TaskFinished", record.at, record.result)
    if isinstance(record, TaskFailed):
        return ("TaskFailed", record.at, (type(record.error).__name__, record.error.args))
    if isinstance(record, TaskCancelled):
        return ("TaskCancelled", record.at, record.reason, record.result)
    if isinstance(record, TaskTimedOut):
        return ("TaskTimedOut", record.at, record.timeout, record.result)
    if isinstance(record, TaskStuck):
        return ("TaskStuck", record.at, record.reason, record.since)
    return (type(record).__name__, record.at)


def output_key(record: TaskOutput) -> tuple[int, int]:
    """(task id, index of the output in the task's order) of an output record."""
    value = record.event
    key = value.key if isinstance(value, BadRepr) else value
    assert key[0] == "out", record
    return (record.task_id, key[2])


# ---------------------------------------------------------------------------- the trio side


class _TrioThread:
    """One trio run (MockClock) in a thread, holding a supervisor and a reader of its records."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = trio.testing.MockClock()  # rate 0, no autojump: time moves when we say
        self.records: list[Any] = []  # what the readers got from sup.events(), in order
        self.sunk: list[Any] = []  # what on_record got: everything appended, in order
        self.reader_done = False
        self.reader_error: BaseException | None = None
        self.reader_state = "live"  # "live", "paused" or "gone"
        self.read_scope: trio.CancelScope | None = None
        self.reader_scope: trio.CancelScope | None = None
        self.iterator: weakref.ref[Any] | None = None
        self.sup_closed = False  # the `async with open_supervisor()` block has been left
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        if not self._started.wait(REAL_TIMEOUT):
            raise RuntimeError("the trio run did not start")
        if self.error is not None:
            raise RuntimeError("the trio run failed to start") from self.error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock)
        except BaseException as exc:
            self.error = exc
        finally:
            self._started.set()

    def _sink(self, record: Any) -> None:
        self.sunk.append(record)
        if self.config.faulty_sink and record.seq % 3 == 0:
            raise SinkError(record.seq)

    async def _main(self) -> None:
        cfg = self.config
        self.token = trio.lowlevel.current_trio_token()
        self.close_requested = trio.Event()
        self.stop_requested = trio.Event()
        self.resume = trio.Event()
        self.resume.set()
        with trio.CancelScope() as self.kill_scope:  # only used to end a broken run
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                async with taskrunner.open_supervisor(
                    max_buffer=cfg.max_buffer or BIG_BUFFER,
                    stuck_after=STUCK_AFTER,
                    on_record=self._sink,
                    default_timeout=cfg.default_timeout,
                    limit=cfg.limit,
                    pending_limit=cfg.pending_limit,
                    on_duplicate=cfg.on_duplicate,  # type: ignore[arg-type]
                ) as sup:
                    self.sup = sup
                    nursery.start_soon(self._read)
                    await trio.testing.wait_all_tasks_blocked()  # the reader waits in a read
                    self._started.set()
                    await self.close_requested.wait()
                self.sup_closed = True
                await self.stop_requested.wait()

    async def _read(self) -> None:
        """The reader: reads while ``resume`` is set; its reads can be cancelled (paused)."""
        with trio.CancelScope() as self.reader_scope:
            it = self.sup.events()
            self.iterator = weakref.ref(it)
            while True:
                await self.resume.wait()
                with trio.CancelScope() as self.read_scope:
                    try:
                        record = await it.__anext__()
                    except StopAsyncIteration:
                        self.reader_done = True
                        return
                    except taskrunner.TaskRunnerError as exc:  # StreamBusyError
                        self.reader_error = exc
                        return
                    self.records.append(record)
                self.read_scope = None

    def _spawn(self, afn: Callable[[], Any]) -> None:
        self.token.run_sync_soon(lambda: trio.lowlevel.spawn_system_task(afn, name="stateful-step"))

    def call(self, afn: Callable[[], Any]) -> Any:
        """Run ``await afn()`` in a new task of the trio run, then settle; return its result.

        Settled means ``wait_all_tasks_blocked()``: every task of the run is waiting for
        something that only a later step (the clock, a cancel, the reader) can bring.
        """
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def runner() -> None:
            try:
                value = await afn()
                await trio.testing.wait_all_tasks_blocked()
            except BaseException as exc:
                result.set_exception(exc)
            else:
                result.set_result(value)

        self._spawn(runner)
        return result.result(timeout=REAL_TIMEOUT)

    def call_sync(self, fn: Callable[[], Any]) -> Any:
        async def afn() -> Any:
            return fn()

        return self.call(afn)

    # ---------------------------------------------------------------- the reader's life

    def pause_reader(self) -> None:
        def act() -> None:
            self.resume = trio.Event()
            if self.read_scope is not None:
                self.read_scope.cancel()  # parked in a read of an empty stream

        self.call_sync(act)
        self.reader_state = "paused"

    def resume_reader(self) -> None:
        self.call_sync(self.resume.set)
        self.reader_state = "live"

    def cancel_reader(self) -> None:
        assert self.reader_scope is not None
        self.call_sync(self.reader_scope.cancel)
        self.reader_state = "gone"

    def start_reader(self) -> None:
        def act() -> None:
            self.resume = trio.Event()
            self.resume.set()
            self.read_scope = None
            self.nursery.start_soon(self._read)

        self.call_sync(act)
        self.reader_state = "live"

    def stop(self) -> None:
        """End the run: close the supervisor if still open, letting the clock run on its own
        (lingering tasks end); cancel everything if that is not enough (after a failure)."""

        async def finish() -> None:
            self.clock.autojump_threshold = 0
            self.close_requested.set()
            self.stop_requested.set()
            await trio.testing.wait_all_tasks_blocked()
            self.kill_scope.cancel()  # only reached if the run did not end by itself

        if self._thread.is_alive():
            try:
                self._spawn(finish)
            except trio.RunFinishedError:
                pass
            self._thread.join(REAL_TIMEOUT)
            assert not self._thread.is_alive(), "the trio run did not end"
        if self.error is not None:
            raise self.error


# ---------------------------------------------------------------------------- the machine

_TERMINAL = ("TaskFinished", "TaskFailed", "TaskCancelled", "TaskTimedOut")
# How create_and_cancel cancels the task it has just created, in the same trio step.
_CANCELS = ["cancel_task", "handle", "interrupt", "cancel_all"]
_NAME = st.none() | st.sampled_from(NAMES)
_DUP = st.sampled_from([None, None, "error", "replace"])

F = TypeVar("F", bound=Callable[..., None])


def step(method: F) -> F:
    """Mark a rule: teardown only checks the end state if no rule stopped half-way."""

    @functools.wraps(method)
    def wrapper(self: SupervisorMachine, *args: Any, **kwargs: Any) -> None:
        self.step_ok = False
        method(self, *args, **kwargs)
        self.step_ok = True

    return wrapper  # type: ignore[return-value]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._trio: _TrioThread | None = None
        self.config = Config()
        self.now = 0.0
        self.next_id = 0
        self.next_token = 0
        self.tasks: dict[int, ModelTask] = {}  # by id, in creation order
        self.order: list[int] = []  # unfinished task ids, in the supervisor's table order
        self.queue: list[ModelTask] = []  # pending tasks, first come first started
        self.closed = False
        self.step_ok = True
        self.newest: ModelTask | None = None  # the task create() has just made
        self.hold = 0  # inside one synchronous action (see holding())
        self.deferred: list[Callable[[], None]] = []
        # What on_record saw, digested: where each output went, and which were forced in.
        self.seen = 0  # how many of trio.sunk have been looked at
        self.appended: dict[tuple[int, int], float] = {}
        self.forced: set[tuple[int, int]] = set()  # blocked outputs appended by a cancel
        self.fresh: list[tuple[tuple[int, int], int]] = []  # (output, unread before it)

    @property
    def trio(self) -> _TrioThread:
        if self._trio is None:  # a fixed scenario that did not call setup()
            self.setup(Config())
        assert self._trio is not None
        return self._trio

    def setup(self, config: Config) -> None:
        assert self._trio is None
        self.config = config
        self._trio = _TrioThread(config)

    # ---------------------------------------------------------------- the model's operations

    def running(self) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.running]

    def unfinished(self) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.unfinished]

    def by_key(self, key: str) -> ModelTask | None:
        for t in self.unfinished():
            if t.key == key:
                return t
        return None

    def names(self) -> list[str]:
        keys = {t.key for t in self.unfinished()}
        return sorted(set(NAMES) | {t.name for t in self.tasks.values()} | keys | {"missing"})

    def end(self, t: ModelTask, state: TaskState, record: tuple[Any, ...]) -> None:
        was_running = t.running
        assert t.unfinished
        t.state = state
        t.ended_at = self.now
        t.pending = []
        t.blocked = None
        t.records.append(record)
        self.order.remove(t.id)
        if t in self.queue:
            self.queue.remove(t)
        if was_running and not self.hold:
            self.admit()

    def admit(self) -> None:
        """Start pending tasks while the limit allows (a running task has just ended)."""
        limit = self.config.limit
        while limit is not None and self.queue and len(self.running()) < limit:
            t = self.queue.pop(0)
            event("a pending task started")
            self.start(t, ran_yet=False)

    def start(self, t: ModelTask, ran_yet: bool = True) -> None:
        """``t`` starts now (created with room, or admitted from the queue)."""
        t.state = TaskState.RUNNING
        t.started = self.now
        t.records.append(("TaskStarted", self.now, t.spec.interruptible, t.timeout, t.spec.flavor))
        if not t.deadline_set:
            t.deadline = math.inf if t.timeout is None else self.now + t.timeout
        t.pending = [(self.now + off, what, i) for off, what, i in t.spec.events()]
        # (The task create() has just made is not in its section before it has run at all.)
        t.in_section = t.spec.section is not None and t is not self.newest
        if not ran_yet and t.deadline <= self.now:
            # Its deadline (moved while it waited) passed before it ran: it never runs.
            event("a pending task timed out before it ran")
            self.stopped(t, None)
            return
        if t is not self.newest:
            self.reach(t)

    def model_interrupt(self, ran: bool = True) -> int:
        count = 0
        # Pending tasks end at once (they never run); running ones end at their next
        # checkpoint, after the call, so no pending task is admitted meanwhile.
        with self.holding():
            for t in self.unfinished():
                if not t.spec.interruptible:
                    continue
                count += 1
                if t.state is TaskState.PENDING:
                    self.cancel(t, "interrupted")
                elif t.stopping is not None:
                    pass  # already cancelled, still lingering
                elif t.in_section:
                    t.interrupt_pending = True  # deferred until the section exits
                    event("an interruption was deferred")
                else:
                    self.cancel(t, "interrupted", ran=ran or t is not self.newest)
        return count

    def model_cancel_all(self, reason: str, ran: bool = True) -> int:
        targets = self.unfinished()
        with self.holding():
            for t in targets:
                self.cancel(t, reason, ran=ran or t is not self.newest)
        return len(targets)

    def late(self, t: ModelTask) -> Any:
        return t.spec.value("late", t.token) if t.spec.after_cancel else None

    def cancel(self, t: ModelTask, reason: str | None, ran: bool = True) -> None:
        """``t`` is cancelled now (``reason`` None: its deadline has passed).

        A pending task ends at once and never runs. A running one ends at once, or, if it
        lingers (and has ever run), once it has lingered.
        """
        if t.state is TaskState.PENDING:
            assert reason is not None
            t.cancel_reason = reason
            self.end(t, TaskState.CANCELLED, ("TaskCancelled", self.now, reason, None))
            event(f"pending task cancelled: {reason}")
            return
        assert t.running
        if t.stopping is not None:
            return  # already cancelled: nothing changes
        t.in_section = False
        if reason is not None:
            t.cancel_reason = reason
        if t.blocked is not None:
            # Its output waits for room: it is appended anyway, then the generator is closed
            # where it yielded (no lingering: the cancel lands in the supervisor, not its code).
            index = t.blocked[0]

            def deliver() -> None:
                t.records.append(("TaskOutput", self.now, t.spec.value("out", t.token, index)))
                self.forced.add((t.id, index))
                event(f"blocked output delivered on cancel: {reason or 'timed_out'}")
                self.stopped(t, reason)

            self.ends_now(t, reason, deliver)
            return
        if not ran:
            self.ends_now(t, reason, lambda: self.stopped(t, reason))
            return
        if t.spec.linger is None:
            self.ends_now(t, reason, lambda: self.stopped(t, reason, self.late(t)))
            return
        t.stopping = (reason, self.now)
        t.pending = [(self.now + t.spec.linger, "stopped", 0)]
        if STUCK_AFTER < t.spec.linger:
            t.pending.insert(0, (self.now + STUCK_AFTER, "stuck", 0))
        event("a cancelled task lingers")

    def ends_now(self, t: ModelTask, reason: str | None, finish: Callable[[], None]) -> None:
        """``t`` ends now because of its cancel: at once, or, inside one synchronous action
        (see :meth:`holding`), once the action is over (until then it still runs and counts)."""
        if self.hold:
            t.stopping = (reason, self.now)  # later cancels in the action change nothing
            self.deferred.append(finish)
        else:
            finish()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Apply one synchronous action of the supervisor (one trio step): a running task it
        cancels ends only after it (at its next checkpoint), so it is still counted by later
        cancels of the same action, and its slot goes to a pending task only then."""
        self.hold += 1
        try:
            yield
        finally:
            self.hold -= 1
            if not self.hold:
                while self.deferred:
                    self.deferred.pop(0)()
                self.admit()

    def stopped(self, t: ModelTask, reason: str | None, result: Any = None) -> None:
        if result is not None:
            event("a value returned or yielded after the cancel was kept")
        if reason is None:
            self.end(t, TaskState.TIMED_OUT, ("TaskTimedOut", self.now, t.timeout, result))
        else:
            self.end(t, TaskState.CANCELLED, ("TaskCancelled", self.now, reason, result))

    def reach(self, t: ModelTask) -> None:
        """Apply what ``t`` does now (the clock has just arrived here, or it just started)."""
        now = self.now
        if not t.running:
            return
        # The task's own deadline first: it wins a tie with the task's own events.
        if t.stopping is None and t.deadline <= now:
            assert t.deadline == now, "the model skipped a deadline"
            self.cancel(t, None)
        while t.running and t.blocked is None and t.pending and t.pending[0][0] == now:
            _, what, index = t.pending.pop(0)
            if what == "unshield":
                t.in_section = False
                if t.interrupt_pending:
                    # Applied when the section exits; it lands on the next sleep.
                    self.cancel(t, "interrupted")
                    event("a deferred interruption landed")
            elif what == "output":
                if (t.id, index) in self.appended:
                    at = self.appended[(t.id, index)]
                    assert at == now, f"output {index} of {t.name!r} appended at {at}, not {now}"
                    t.records.append(("TaskOutput", now, t.spec.value("out", t.token, index)))
                else:
                    # Blocked by a full stream: the rest of its life waits for the reader.
                    t.blocked = (index, now, [(a - now, w, i) for a, w, i in t.pending])
                    t.pending = []
                    event("a generator blocked on a full stream")
            elif what == "finish":
                result = None if t.spec.gen else t.spec.value("result", t.token)
                self.end(t, TaskState.FINISHED, ("TaskFinished", now, result))
            elif what == "fail":
                kind = "BadBoom" if t.spec.bad else "Boom"
                self.end(t, TaskState.FAILED, ("TaskFailed", now, (kind, (t.token,))))
            elif what == "stuck":
                assert t.stopping is not None
                reason, since = t.stopping
                t.records.append(("TaskStuck", now, reason or "timed_out", since))
                event(f"reported stuck: {reason or 'timed_out'}")
                if t.spec.flavor == "asyncio":
                    # asyncio code is cancelled again with each report: it ends now, without
                    # getting to its late value.
                    self.stopped(t, reason)
            elif what == "stopped":
                assert t.stopping is not None
                self.stopped(t, t.stopping[0], self.late(t))
        if t.pending:
            assert t.pending[0][0] > now, "the model skipped an event"

    def unblock(self) -> None:
        """Blocked generators whose output the reader made room for go on from now."""
        for t in self.running():
            if t.blocked is None:
                continue
            index, _since, rest = t.blocked
            at = self.appended.get((t.id, index))
            if at is None:
                continue
            assert at == self.now, (t.name, index, at, self.now)
            event("a blocked generator resumed")
            t.blocked = None
            t.records.append(("TaskOutput", self.now, t.spec.value("out", t.token, index)))
            t.pending = [(self.now + off, w, i) for off, w, i in rest]
            self.reach(t)

    def observe(self) -> None:
        """Digest what on_record saw since the last look: every record's ``to_dict()`` gives
        JSON; outputs are indexed, with how many records were unread when each came in."""
        trio_side = self.trio
        sunk = trio_side.sunk
        reads = len(trio_side.records)
        live = trio_side.reader_state == "live"
        for pos in range(self.seen, len(sunk)):
            record = sunk[pos]
            json.dumps(record.to_dict())  # never raises, whatever the task put in it
            if isinstance(record, TaskOutput):
                key = output_key(record)
                assert key not in self.appended, f"output {key} appended twice"
                self.appended[key] = record.at
                if not live:
                    self.fresh.append((key, pos - reads))
        self.seen = len(sunk)

    def settle(self) -> None:
        """After an action: digest what happened, resume unblocked generators, check."""
        self.observe()
        self.unblock()
        self.check()

    def advance_one_step(self) -> None:
        """Move the clock by STEP, let the run settle, and move the model the same way."""
        clock = self.trio.clock
        look = self.look()

        async def jump_and_look() -> Any:
            clock.jump(STEP)
            await trio.testing.wait_all_tasks_blocked()
            return await look()

        seen = self.trio.call(jump_and_look)
        self.now += STEP
        self.observe()
        for t in list(self.tasks.values()):
            self.reach(t)
        self.unblock()
        self.check(seen)

    # ---------------------------------------------------------------- creating tasks

    @initialize(
        config=configs(),
        batch=st.lists(st.tuples(specs(), _NAME), min_size=1, max_size=4),
    )
    @step
    def create_some_tasks(self, config: Config, batch: list[tuple[Spec, str | None]]) -> None:
        self.setup(config)
        if config.paused:
            self.trio.pause_reader()
        for spec, name in batch:
            self.create(spec, name)

    @rule(spec=specs(), name=_NAME, dup=_DUP)
    @step
    def create_task(self, spec: Spec, name: str | None, dup: str | None) -> None:
        self.create(spec, name, dup=dup)

    @rule(spec=specs(), name=_NAME, how=st.sampled_from(_CANCELS))
    @step
    def create_and_cancel(self, spec: Spec, name: str | None, how: str) -> None:
        """Create a task and cancel it in the same trio step, before it has ever run."""
        self.create(spec, name, then=how)

    def create(
        self, spec: Spec, name: str | None, then: str | None = None, dup: str | None = None
    ) -> None:
        token = self.next_token
        self.next_token += 1
        handler = make_handler(spec, token)
        sup = self.trio.sup
        kwargs: dict[str, Any] = {}
        if spec.timeout != "default":
            kwargs["timeout"] = spec.timeout
        if dup is not None:
            kwargs["on_duplicate"] = dup

        def act() -> tuple[outcome.Outcome[TaskHandle], Any]:
            try:
                handle = sup.create_task(
                    handler,
                    name=name,
                    interruptible=spec.interruptible,
                    flavor=spec.flavor,  # type: ignore[arg-type]
                    **kwargs,
                )
            except Exception as exc:
                discard(handler)
                return outcome.Error(exc), None
            if then == "cancel_task":
                return outcome.Value(handle), sup.cancel_task(handle.name)
            if then == "handle":
                return outcome.Value(handle), handle.cancel()
            if then == "interrupt":
                return outcome.Value(handle), sup.cancel_interruptible_tasks()
            if then == "cancel_all":
                return outcome.Value(handle), sup.cancel_all_tasks()
            return outcome.Value(handle), None

        got, cancelled = self.trio.call_sync(act)
        old = None if name is None else self.by_key(name)
        policy = dup or self.config.on_duplicate
        limit, pending_limit = self.config.limit, self.config.pending_limit
        queued = limit is not None and (len(self.running()) >= limit or bool(self.queue))
        if self.closed:
            assert isinstance(got, outcome.Error), "create_task accepted a task after closing"
            assert isinstance(got.error, taskrunner.SupervisorClosedError), got.error
            self.settle()
            return
        if old is not None and policy == "error":
            assert isinstance(got, outcome.Error), f"duplicate name {name!r} was accepted"
            assert isinstance(got.error, taskrunner.DuplicateTaskNameError), got.error
            event("duplicate name refused")
            self.settle()
            return
        # A pending task being replaced gives its place in the queue up first.
        waiting = len(self.queue) - (old is not None and policy == "replace" and not old.running)
        if queued and pending_limit is not None and waiting >= pending_limit:
            assert isinstance(got, outcome.Error), "create_task went over pending_limit"
            assert isinstance(got.error, taskrunner.TaskLimitError), got.error
            message = str(got.error)
            assert f"limit={limit}" in message and f"pending_limit={pending_limit}" in message
            event("pending_limit refused a task")
            self.settle()
            return
        handle = got.unwrap()
        self.next_id += 1
        if old is not None:
            # Replaced: cancelled ("replaced"); a running one goes on under another key
            # until it ends, and moves to the end of the table.
            event(f"replaced a {old.state.value} task")
            if old.running:
                old.key = f"{old.name}~replaced-{old.id}"
                self.order.remove(old.id)
                self.order.append(old.id)
        if name is None:
            base = "gen_body" if spec.gen else "coro_body"
            name = f"{base}-{self.next_id}"
            while any(self.tasks[i].key == name for i in self.order):
                name += "'"
        assert (handle.id, handle.name) == (self.next_id, name)
        timeout_value = self.config.default_timeout if spec.timeout == "default" else spec.timeout
        timeout = None if timeout_value is None else float(timeout_value)
        task = ModelTask(
            id=handle.id,
            name=name,
            key=name,
            token=token,
            spec=spec,
            timeout=timeout,
            handle=handle,
            started=None,
            coroutine=handler if asyncio.iscoroutine(handler) else None,
        )
        self.tasks[handle.id] = task
        self.order.append(handle.id)
        self.newest = task
        with self.holding():  # everything below happens in the one call of the action
            if old is not None:
                # (A pending one leaves the queue before the new task joins it.)
                self.cancel(old, "replaced")
            if queued:
                task.state = TaskState.PENDING
                task.records.append(
                    ("TaskQueued", self.now, spec.interruptible, timeout, spec.flavor, limit)
                )
                self.queue.append(task)
                event("a task was queued")
            else:
                self.start(task)
            # A cancel in the same step comes before the task has run at all (not even into
            # its section): it ends at once, lingering or not.
            if then in ("cancel_task", "handle"):
                assert cancelled is True, (then, cancelled)
                self.cancel(task, "cancel_task", ran=False)
            elif then == "interrupt":
                expected = self.model_interrupt(ran=False)
                assert cancelled == expected, (then, cancelled, expected)
            elif then == "cancel_all":
                expected = self.model_cancel_all("cancel_all", ran=False)
                assert cancelled == expected, (then, cancelled, expected)
        self.newest = None
        if task.running:
            task.in_section = spec.section is not None and task.stopping is None
            self.reach(task)  # what it does at once (returning without sleeping)
        elif task.state is not TaskState.PENDING:
            event(f"cancelled before it ran: {spec.flavor} {'gen' if spec.gen else 'coro'}")
        self.settle()

    # ---------------------------------------------------------------- cancelling

    @rule(data=st.data())
    @step
    def cancel_task(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.names()), label="name")
        sup = self.trio.sup
        got = self.trio.call_sync(lambda: sup.cancel_task(name))
        target = self.by_key(name)
        assert got is (target is not None), (name, got)
        if target is not None:
            self.cancel(target, "cancel_task")
        self.settle()

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    @step
    def cancel_handle(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(list(self.tasks.values())), label="task")
        got = self.trio.call_sync(task.handle.cancel)
        assert got is task.unfinished, (task.name, got)
        if task.unfinished:
            self.cancel(task, "cancel_task")
        self.settle()

    @rule(then_advance=st.integers(0, 4))
    @step
    def interrupt(self, then_advance: int) -> None:
        """Interrupt, then (often) let time pass so that deferred interruptions get to land."""
        sup = self.trio.sup
        got = self.trio.call_sync(sup.cancel_interruptible_tasks)
        expected = self.model_interrupt()
        assert got == expected, (got, expected)
        self.settle()
        for _ in range(then_advance):
            self.advance_one_step()

    @rule()
    @step
    def cancel_all(self) -> None:
        sup = self.trio.sup
        got = self.trio.call_sync(sup.cancel_all_tasks)
        expected = self.model_cancel_all("cancel_all")
        assert got == expected, (got, expected)
        self.settle()

    # ---------------------------------------------------------------- deadlines

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data(), later=st.none() | st.integers(1, 8))
    @step
    def move_deadline(self, data: st.DataObject, later: int | None) -> None:
        """``handle.deadline = now + later * STEP`` (None: ``math.inf``, no deadline).

        On a task already cancelled or timed out (lingering) it changes nothing: its end is
        decided."""
        task = data.draw(st.sampled_from(list(self.tasks.values())), label="task")
        value = math.inf if later is None else self.now + later * STEP
        handle = task.handle

        def act() -> outcome.Outcome[float]:
            try:
                handle.deadline = value
            except Exception as exc:
                return outcome.Error(exc)
            return outcome.Value(handle.deadline)

        got = self.trio.call_sync(act)
        if not task.unfinished:
            assert isinstance(got, outcome.Error), "the deadline of an ended task moved"
            assert isinstance(got.error, ValueError), got.error
        elif task.stopping is not None:
            # Cancelled or timed out already: its end is decided, the deadline stays.
            assert got == outcome.Value(task.deadline), (got, task.deadline)
            event("deadline moved on a cancelled task")
        else:
            assert got == outcome.Value(value), got
            task.deadline = value
            if task.state is TaskState.PENDING:
                task.deadline_set = True
            event(f"deadline moved on a {task.state.value} task")
        self.settle()

    # ---------------------------------------------------------------- the reader

    @precondition(lambda self: self.trio.reader_state == "live" and not self.closed)
    @rule(steps=st.integers(0, 6))
    @step
    def pause_reader(self, steps: int) -> None:
        """The reader stops reading (its iterator kept) for ``steps`` steps (0: until a later
        rule resumes it or cancels it)."""
        self.trio.pause_reader()
        self.settle()
        if steps:
            for _ in range(steps):
                self.advance_one_step()
            self.resume_reader()

    @precondition(lambda self: not self.closed)
    @rule(
        batch=st.lists(st.tuples(specs(), _NAME), min_size=1, max_size=3),
        pause=st.integers(1, 8),
        after=st.integers(0, 4),
    )
    @step
    def burst(self, batch: list[tuple[Spec, str | None]], pause: int, after: int) -> None:
        """Generators start while the reader pauses for ``pause`` steps, then it reads again
        (a new reader if it was gone) while time goes on ``after`` more steps."""
        if self.trio.reader_state == "live":
            self.trio.pause_reader()
            self.settle()
        for spec, name in batch:
            self.create(dataclasses.replace(spec, gen=True), name)
        for _ in range(pause):
            self.advance_one_step()
        if self.trio.reader_state == "paused":
            self.resume_reader()
        else:
            self.start_reader()
        for _ in range(after):
            self.advance_one_step()

    @precondition(lambda self: self.trio.reader_state == "paused")
    @rule()
    @step
    def resume_reader(self) -> None:
        self.trio.resume_reader()
        self.settle()

    @precondition(lambda self: self.trio.reader_state != "gone" and not self.closed)
    @rule()
    @step
    def cancel_reader(self) -> None:
        """The reader's task is cancelled; its iterator goes with it."""
        self.trio.cancel_reader()
        self.settle()

    @precondition(lambda self: self.trio.reader_state == "gone")
    @rule()
    @step
    def start_reader(self) -> None:
        """A new ``events()`` iterator, once the old one is gone: it takes over where the old
        one stopped, with nothing lost or read twice."""
        event("a new reader took over")
        self.trio.start_reader()
        assert self.trio.reader_error is None, (
            f"a new reader was refused: {self.trio.reader_error!r}"
        )
        self.settle()

    @precondition(lambda self: self.trio.reader_state != "live" and not self.closed)
    @rule()
    @step
    def cancelled_read(self) -> None:
        """A read that is cancelled at once takes nothing (from the paused reader's iterator,
        or from a new one that is then dropped)."""
        trio_side = self.trio
        sup = trio_side.sup

        async def act() -> bool:
            it = trio_side.iterator() if trio_side.reader_state == "paused" else None
            if it is None:
                it = sup.events()
            with trio.CancelScope() as scope:
                scope.cancel()
                record = await it.__anext__()
                trio_side.records.append(record)  # wrong, but kept for the checks to see
            del it
            return scope.cancelled_caught

        before = len(trio_side.records)
        event(f"a cancelled read ({trio_side.reader_state} reader)")
        assert self.trio.call(act), "a cancelled read returned a record"
        assert len(trio_side.records) == before
        self.settle()

    @precondition(lambda self: self.trio.reader_state != "gone" and not self.closed)
    @rule()
    @step
    def second_reader(self) -> None:
        """A second ``events()`` iterator while one is in use: ``StreamBusyError`` at once,
        before it takes any record."""
        sup = self.trio.sup

        def act() -> BaseException | None:
            it = sup.events()
            try:
                awaitable = it.__anext__()
            except taskrunner.StreamBusyError as exc:
                return exc
            awaitable.close()  # type: ignore[attr-defined]
            return None

        event("a second reader was refused")
        assert isinstance(self.trio.call_sync(act), taskrunner.StreamBusyError)
        self.settle()

    # ---------------------------------------------------------------- time

    @rule(steps=st.integers(1, 6))
    @step
    def advance_clock(self, steps: int) -> None:
        for _ in range(steps):
            self.advance_one_step()

    @rule(
        limit=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 4.0]),
        late=st.none() | st.tuples(specs(), _NAME),
    )
    @step
    def wait_for_all_tasks(self, limit: float, late: tuple[Spec, str | None] | None) -> None:
        """``wait_for_all_tasks(timeout=limit)``, the clock moving by STEP until it returns.

        ``late``: a task created once the wait has begun; it is waited for too.
        """
        sup = self.trio.sup
        answer: list[tuple[bool, float]] = []

        async def waiter() -> None:
            done = await sup.wait_for_all_tasks(timeout=limit)
            answer.append((done, trio.current_time()))

        async def start() -> None:
            self.trio.nursery.start_soon(waiter)

        self.trio.call(start)
        if late is not None and not answer:
            self.create(*late)
        elapsed = 0.0
        while True:
            idle = not self.unfinished()
            if idle or elapsed == limit:
                assert answer, f"wait_for_all_tasks has not returned after {elapsed} s"
                done, at = answer[0]
                assert at == self.now, (at, self.now)
                if idle and elapsed == limit and elapsed > 0:
                    # The last task ended at the very step the limit was reached: a tie,
                    # either answer is right.
                    event(f"wait_for_all_tasks tie: {done}")
                else:
                    assert done is idle, (done, idle, elapsed)
                    event(f"wait_for_all_tasks: {done}")
                break
            assert not answer, f"wait_for_all_tasks returned {answer} too early"
            self.advance_one_step()
            elapsed += STEP
        self.check()

    # ---------------------------------------------------------------- closing

    @precondition(lambda self: not self.closed)
    @rule()
    @step
    def close(self) -> None:
        self.close_supervisor()

    def close_supervisor(self) -> None:
        self.trio.call_sync(self.trio.close_requested.set)
        self.closed = True
        self.model_cancel_all("closed")
        self.settle()
        # Closing waits for the lingering tasks, while the clock moves.
        while self.running():
            assert not self.trio.sup_closed, "the supervisor closed with a task still running"
            self.advance_one_step()
        assert self.trio.sup_closed, "closing the supervisor did not complete"
        # Whatever the reader's state, a reader now gets every record left, then the end.
        if self.trio.reader_state == "paused":
            self.resume_reader()
        elif self.trio.reader_state == "gone":
            self.start_reader()
        # Nothing is left running: every handle has ended, with its terminal record (checked
        # above), and the stream has ended.
        assert self.trio.reader_done, "sup.events() did not end after the supervisor closed"

    def teardown(self) -> None:
        if self._trio is None:
            return
        try:
            if self.step_ok and self.trio.error is None:
                if not self.closed:
                    self.close_supervisor()
                for t in self.tasks.values():
                    kind = "gen" if t.spec.gen else "coro"
                    event(f"{t.spec.flavor} {kind} ended: {t.records[-1][0]} {t.cancel_reason}")
                many = len(self.tasks) >= 10
                event(f"tasks per example: {'10+' if many else len(self.tasks)}")
        finally:
            self.trio.stop()

    # ---------------------------------------------------------------- checks

    def look(self) -> Callable[[], Any]:
        """What ``check`` compares with the model, gathered inside the trio run."""
        trio_side = self.trio
        sup = trio_side.sup
        tasks = list(self.tasks.values())
        names = self.names()

        async def look() -> dict[str, Any]:
            outcomes = {}
            for t in tasks:
                if t.handle.done:
                    outcomes[t.id] = await t.handle.wait()
            return {
                "records": list(trio_side.records),
                "sunk": list(trio_side.sunk),
                "unfinished": sup.has_unfinished_tasks(),
                "closed": sup.closed,
                "get_task": {n: sup.get_task(n) for n in names},
                "snapshot": sup.snapshot(),
                "outcomes": outcomes,
                "handles": {
                    t.id: (
                        t.handle.state,
                        t.handle.done,
                        t.handle.started_at,
                        t.handle.ended_at,
                        t.handle.cancel_reason,
                        t.handle.outputs,
                    )
                    for t in tasks
                },
            }

        return look

    def check(self, seen: dict[str, Any] | None = None) -> None:
        """Compare everything the supervisor shows with the model (``seen``: gathered by
        :meth:`look` in the same trio call as the action, else now)."""
        trio_side = self.trio
        if seen is None:
            seen = trio_side.call(self.look())
        records, sunk = seen["records"], seen["sunk"]

        # The readers got what on_record got, in order, each record once (a paused or gone
        # reader: a prefix of it); seq goes 1, 2, 3, ...
        if trio_side.reader_state == "live":
            assert records == sunk, "sup.events() and on_record disagree"
        else:
            assert records == sunk[: len(records)], "sup.events() and on_record disagree"
        assert trio_side.reader_error is None, trio_side.reader_error
        seqs = [r.seq for r in sunk]
        assert seqs == list(range(1, len(sunk) + 1)), seqs
        assert all(isinstance(r, TaskRecord) for r in sunk), sunk
        assert all(r.task_id in self.tasks for r in sunk), "a record of an unknown task"

        # Backpressure: an output found room when it came in (unless its blocked task was
        # cancelled); a generator is blocked only while nobody reads and the stream is full.
        cap = self.config.max_buffer or BIG_BUFFER
        for key, unread in self.fresh:
            if key not in self.forced:
                assert unread < cap, f"output {key} appended with {unread} records unread"
        self.fresh = []
        unread = len(sunk) - len(records)
        for t in self.running():
            if t.blocked is not None:
                assert trio_side.reader_state != "live", f"{t.name!r} blocked, reader live"
                assert unread >= cap, f"{t.name!r} blocked with {unread} of {cap} unread"

        # Per task: exactly the records the model predicts, in order, with their clock times:
        # TaskQueued if it waited, TaskStarted, the outputs in the order yielded, then one
        # terminal record of the predicted kind and reason, and nothing after it.
        by_id: dict[int, list[TaskRecord]] = {i: [] for i in self.tasks}
        for r in sunk:
            by_id[r.task_id].append(r)
        for t in self.tasks.values():
            mine = by_id[t.id]
            assert all(r.task == t.name for r in mine), (t.name, mine)
            got = [describe(r) for r in mine]
            assert got == t.records, (
                f"task {t.name!r} {t.spec}:\n got {shown(got)}\nwant {shown(t.records)}"
            )

        # Handles, and what handle.wait() gives once ended.
        for t in self.tasks.values():
            want_outputs = sum(1 for r in t.records if r[0] == "TaskOutput")
            want = (t.state, not t.unfinished, t.started, t.ended_at, t.cancel_reason, want_outputs)
            state, done, started_at, ended_at, reason, outputs = seen["handles"][t.id]
            if t.started is None:
                started_at = None  # pending: not started yet
            have = (state, done, started_at, ended_at, reason, outputs)
            assert have == want, (t.name, t.spec, have, want)
            if not t.unfinished:
                self.check_outcome(t, seen["outcomes"][t.id])

        # The supervisor's own view.
        assert seen["unfinished"] is bool(self.unfinished())
        assert seen["closed"] is self.closed
        # get_task(): the unfinished task of that key, else the one of that name that ended
        # last.
        terminal_order = [r.task_id for r in sunk if describe(r)[0] in _TERMINAL]
        for name, handle in seen["get_task"].items():
            live = [t for t in self.unfinished() if t.key == name]
            ended = sorted(
                (t for t in self.tasks.values() if t.name == name and not t.unfinished),
                key=lambda t: terminal_order.index(t.id),
            )
            if live:
                assert handle is live[0].handle, name
            elif ended:
                # Ended tasks are kept as frozen TaskInfo pictures, not live handles.
                assert isinstance(handle, TaskInfo) and handle.id == ended[-1].id, name
            else:
                assert handle is None, name
        # snapshot(): the finished tasks in the order they ended, then the unfinished ones in
        # the supervisor's table order; every picture gives JSON.
        assert [i.id for i in seen["snapshot"]] == terminal_order + self.order
        for info in seen["snapshot"]:
            json.dumps(info.to_dict())
        # Admission control: never more than `limit` running, and a task waits only while
        # the limit is reached.
        limit = self.config.limit
        if limit is not None:
            assert len(self.running()) <= limit
            if self.queue:
                assert len(self.running()) == limit
            # The same, read from the stream alone: a reader counting TaskStarted minus
            # terminal records never sees more than `limit` tasks running.
            active: set[int] = set()
            for r in sunk:
                if isinstance(r, TaskStarted):
                    active.add(r.task_id)
                    assert len(active) <= limit, f"the stream shows {sorted(active)} running"
                elif describe(r)[0] in _TERMINAL:
                    active.discard(r.task_id)

    def check_outcome(self, t: ModelTask, got: outcome.Outcome[Any]) -> None:
        kind, _, detail, *_ = t.records[-1]
        if kind == "TaskFinished":
            assert got == outcome.Value(detail), (t.name, got)
        else:
            assert isinstance(got, outcome.Error), (t.name, got)
            error = got.error
            if kind == "TaskCancelled":
                assert isinstance(error, taskrunner.TaskCancelledError), error
                assert error.reason == detail
            elif kind == "TaskTimedOut":
                assert isinstance(error, taskrunner.TaskTimeoutError), error
                assert error.timeout == detail
            else:
                assert isinstance(error, (BadBoom if t.spec.bad else Boom)), type(error)
                assert error.args == (t.token,), error.args
        if t.coroutine is not None:
            # Regression check (fixed in be94cd2): an asyncio-flavoured task cancelled before it
            # ever ran left the coroutine object it was given unclosed, and Python then warned
            # "coroutine ... was never awaited".
            assert t.coroutine.cr_frame is None, (
                f"task {t.name!r} ({t.spec.flavor}) has ended, but the coroutine object it was "
                f"given was neither run to its end nor closed"
            )


SupervisorMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: deterministic in CI
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorStateful = SupervisorMachine.TestCase


# ---------------------------------------------------------------------------- fixed scenarios
# The rare paths, run through the same machine on every run whatever hypothesis draws.


def _spec(flavor: str, gen: bool, **kwargs: Any) -> Spec:
    fields: dict[str, Any] = {
        "gen": gen,
        "flavor": flavor,
        "interruptible": True,
        "timeout": None,
        "ending": "finish",
        "section": None,
        "delays": (),
        "as_function": False,
    }
    fields.update(kwargs)
    return Spec(**fields)


def _run(
    *steps: Callable[[SupervisorMachine], Any], config: Config | None = None
) -> SupervisorMachine:
    machine = SupervisorMachine()
    try:
        if config is not None:
            machine.setup(config)
        for do in steps:
            do(machine)
    finally:
        machine.teardown()
    return machine


class _Data:
    """Stands in for hypothesis' ``st.data()`` in the fixed scenarios: draws one given value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.value


KINDS = [(f, g) for f in ("trio", "asyncio") for g in (False, True)]
KIND_IDS = [f"{f}-{'gen' if g else 'coro'}" for f, g in KINDS]


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
def test_deferred_interruption_lands_when_the_section_exits(flavor: str, gen: bool) -> None:
    spec = _spec(flavor, gen, section=1.5, delays=(1.0, 1.0))
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(1),
        lambda m: m.interrupt(0),  # deferred: inside the section until t=1.5
        lambda m: m.advance_clock(4),
    )
    assert m.tasks[1].records[-1] == ("TaskCancelled", 1.5, "interrupted", None)


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
def test_timeout_inside_the_section_wins_over_a_deferred_interruption(
    flavor: str, gen: bool
) -> None:
    spec = _spec(flavor, gen, section=2.5, delays=(1.0,), timeout=2)
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.interrupt(0),
        lambda m: m.advance_clock(6),
    )
    assert m.tasks[1].records[-1] == ("TaskTimedOut", 2.0, 2.0, None)


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
def test_cancel_and_close_are_not_deferred_by_a_section(flavor: str, gen: bool) -> None:
    spec = _spec(flavor, gen, section=2.5, ending="long")
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.create(spec, "y"),
        lambda m: m.interrupt(1),
        lambda m: m.cancel_task(_Data("x")),
        lambda m: m.close(),
    )
    assert m.tasks[1].records[-1] == ("TaskCancelled", 0.5, "cancel_task", None)
    assert m.tasks[2].records[-1] == ("TaskCancelled", 0.5, "closed", None)


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("how", _CANCELS)
def test_cancelled_before_it_ever_ran(flavor: str, gen: bool, how: str) -> None:
    spec = _spec(flavor, gen, delays=(0.5,))
    reason = {"interrupt": "interrupted", "cancel_all": "cancel_all"}.get(how, "cancel_task")
    m = _run(lambda m: m.create_and_cancel(spec, None, how))
    assert m.tasks[1].records == [
        ("TaskStarted", 0.0, True, None, flavor),
        ("TaskCancelled", 0.0, reason, None),
    ]


def test_wait_for_all_tasks_waits_for_a_task_started_while_waiting() -> None:
    m = _run(
        lambda m: m.create(_spec("trio", False, delays=(0.5,)), None),
        lambda m: m.wait_for_all_tasks(4.0, (_spec("asyncio", True, delays=(2.5,)), None)),
    )
    assert m.now == 2.5


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
def test_a_task_that_ignores_its_cancel_is_reported_stuck_once(flavor: str, gen: bool) -> None:
    spec = _spec(flavor, gen, ending="long", linger=3.0)
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(2),
        lambda m: m.cancel_task(_Data("x")),  # at t=1: lingers until t=4
        lambda m: m.advance_clock(3),
        lambda m: m.cancel_all(),  # still running: counted, changes nothing
        lambda m: m.advance_clock(6),
    )
    end = 3.0 if flavor == "asyncio" else 4.0  # asyncio code is cancelled again at t=3
    assert m.tasks[1].records[1:] == [
        ("TaskStuck", 3.0, "cancel_task", 1.0),
        ("TaskCancelled", end, "cancel_task", None),
    ]


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
def test_a_task_that_ignores_its_timeout_is_reported_stuck(flavor: str, gen: bool) -> None:
    # Regression check, fixed in 3689a11 (see ModelTask.reach).
    spec = _spec(flavor, gen, ending="long", linger=3.0, timeout=1)
    m = _run(
        lambda m: m.advance_clock(1),
        lambda m: m.create(spec, "x"),
        lambda m: m.wait_for_all_tasks(4.0, None),
    )
    end = 3.5 if flavor == "asyncio" else 4.5
    assert m.tasks[1].records[1:] == [
        ("TaskStuck", 3.5, "timed_out", 1.5),
        ("TaskTimedOut", end, 1.0, None),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_a_freed_slot_is_taken_after_the_terminal_record_that_freed_it(flavor: str) -> None:
    # Regression check (found by the machine): with limit=1, the pending task's TaskStarted was
    # appended before the TaskFinished of the task whose end freed the slot, so a reader
    # counting the stream saw two tasks running at once.
    spec = _spec(flavor, False, delays=(0.5,))
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.create(spec, "y"),
        lambda m: m.advance_clock(1),
        config=Config(limit=1),
    )
    order = [(type(r).__name__, r.task, r.at) for r in m.trio.sunk]
    assert order[:4] == [
        ("TaskStarted", "x", 0.0),
        ("TaskQueued", "y", 0.0),
        ("TaskFinished", "x", 0.5),
        ("TaskStarted", "y", 0.5),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_a_replaced_task_that_ignores_its_cancel_is_reported_stuck(flavor: str) -> None:
    # Regression check (found by the machine): a task replaced by on_duplicate="replace" goes
    # on under another name while it ends; the stuck watch looked it up by its own name, found
    # the new task instead, and never reported it (nor cancelled asyncio code again, so a
    # replaced asyncio task that swallows its CancelledError was never ended).
    spec = _spec(flavor, False, ending="long", linger=3.0)
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(2),
        lambda m: m.create(_spec(flavor, False, ending="long"), "x"),  # at t=1: replaces it
        lambda m: m.advance_clock(6),
        config=Config(on_duplicate="replace"),
    )
    end = 3.0 if flavor == "asyncio" else 4.0  # asyncio code is cancelled again at t=3
    assert m.tasks[1].records[1:] == [
        ("TaskStuck", 3.0, "replaced", 1.0),
        ("TaskCancelled", end, "replaced", None),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_a_generator_blocks_while_the_stream_is_full_and_resumes_when_read(flavor: str) -> None:
    # max_buffer=2, reader paused: x's TaskStarted and its first output fill the stream, so its
    # second output (t=1.5) waits until the reader reads again (t=3), and the rest of x's life
    # moves by that wait: its third output comes 1 s later, at t=4.
    spec = _spec(flavor, True, delays=(0.5, 1.0, 1.0))
    m = _run(
        lambda m: m.trio.pause_reader(),
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(6),
        lambda m: m.resume_reader(),
        lambda m: m.advance_clock(4),
        config=Config(max_buffer=2),
    )
    out = functools.partial(spec.value, "out", 0)
    assert m.tasks[1].records[1:] == [
        ("TaskOutput", 0.5, out(0)),
        ("TaskOutput", 3.0, out(1)),
        ("TaskOutput", 4.0, out(2)),
        ("TaskFinished", 4.0, None),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
@pytest.mark.parametrize("how", ["cancel_task", "timeout", "close", "replace"])
def test_an_output_waiting_for_room_is_delivered_when_its_task_is_cancelled(
    flavor: str, how: str
) -> None:
    spec = _spec(
        flavor,
        True,
        delays=(0.5, 1.0),
        ending="long",
        linger=3.0,
        after_cancel=True,
        timeout=3 if how == "timeout" else None,
    )
    steps: list[Callable[[SupervisorMachine], Any]] = [
        lambda m: m.trio.pause_reader(),
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(4),  # the second output (t=1.5) is blocked since then
    ]
    if how == "cancel_task":
        steps.append(lambda m: m.cancel_task(_Data("x")))
    elif how == "replace":
        steps.append(lambda m: m.create(_spec(flavor, False, ending="long"), "x", dup="replace"))
    elif how == "timeout":
        steps.append(lambda m: m.advance_clock(2))
    m = _run(*steps, config=Config(max_buffer=2))
    reason = {"cancel_task": "cancel_task", "close": "closed", "replace": "replaced"}.get(how)
    end = 3.0 if how == "timeout" else 2.0
    terminal = (
        ("TaskTimedOut", end, 3.0, None) if reason is None else ("TaskCancelled", end, reason, None)
    )
    # Closed where it yielded: no lingering, no late value (the cancel reached the
    # supervisor's forwarding, not the generator's code).
    assert m.tasks[1].records[1:] == [
        ("TaskOutput", 0.5, ("out", 0, 0)),
        ("TaskOutput", end, ("out", 0, 1)),
        terminal,
    ]


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("linger", [None, 1.0])
def test_a_value_after_the_cancel_is_kept_on_the_terminal_record(
    flavor: str, gen: bool, linger: float | None
) -> None:
    spec = _spec(flavor, gen, delays=(0.5, 1.0), linger=linger, after_cancel=True, bad=True)
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(2),
        lambda m: m.cancel_task(_Data("x")),  # at t=1
        lambda m: m.advance_clock(3),
    )
    outputs = [("TaskOutput", 0.5, BadRepr("out", 0, 0))] if gen else []
    end = 1.0 + (linger or 0.0)
    # Not forwarded as an output (stale speech), but kept: whatever its repr does.
    assert m.tasks[1].records[1:] == [
        *outputs,
        ("TaskCancelled", end, "cancel_task", BadRepr("late", 0)),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
@pytest.mark.parametrize("later", [None, 6])
def test_a_deadline_moved_while_pending_holds_when_the_task_starts(
    flavor: str, later: int | None
) -> None:
    # Regression check (found by the machine): handle.deadline set while the task was pending
    # is kept when it starts ("unless set here before"), but math.inf (no deadline) was taken
    # for "not set" and the task's timeout applied anyway; and a finite one set while pending
    # was not watched, so a task ignoring that timeout was never reported stuck.
    first = _spec(flavor, False, delays=(1.5,))
    waiting = _spec(flavor, False, ending="long", timeout=1, linger=3.0)
    m = _run(
        lambda m: m.create(first, "x"),
        lambda m: m.create(waiting, "y"),  # pending until x ends at t=1.5
        lambda m: m.move_deadline(_Data(m.tasks[2]), later),  # at t=0: none, or t=3
        lambda m: m.advance_clock(12),
        config=Config(limit=1),
    )
    if later is None:
        # No timeout: it runs until the close (t=6) cancels it.
        records = m.tasks[2].records
        assert records[1] == ("TaskStarted", 1.5, True, 1.0, flavor)
        assert [r[0] for r in records[2:]] == ["TaskStuck", "TaskCancelled"]
        assert records[-1][2] == "closed"
    else:
        end = 5.0 if flavor == "asyncio" else 6.0  # asyncio code is cancelled again at t=5
        assert m.tasks[2].records[1:] == [
            ("TaskStarted", 1.5, True, 1.0, flavor),
            ("TaskStuck", 5.0, "timed_out", 3.0),
            ("TaskTimedOut", end, 1.0, None),
        ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_a_pending_task_whose_moved_deadline_passed_never_runs(flavor: str) -> None:
    first = _spec(flavor, False, delays=(2.5,))
    waiting = _spec(flavor, False, ending="long", linger=3.0, timeout=None)
    m = _run(
        lambda m: m.create(first, "x"),
        lambda m: m.create(waiting, "y"),  # pending until x ends at t=2.5
        lambda m: m.move_deadline(_Data(m.tasks[2]), 2),  # at t=0: t=1, while still pending
        lambda m: m.advance_clock(10),
        config=Config(limit=1),
    )
    # It starts and times out at once, without running (so it cannot be stuck either).
    assert m.tasks[2].records[1:] == [
        ("TaskStarted", 2.5, True, None, flavor),
        ("TaskTimedOut", 2.5, None, None),
    ]


@pytest.mark.parametrize("flavor", ["trio", "asyncio"])
def test_moving_the_deadline_of_a_task_that_already_timed_out_changes_nothing(
    flavor: str,
) -> None:
    # Regression check (found by the machine): a task that timed out at t=1 and ignores its
    # cancel (lingering until t=4) had its deadline moved at t=1.5; the stuck report due at
    # t=3 was lost, and a cancel_task at t=2 turned the timeout into a cancellation. Now the
    # move changes nothing (the machine checks that handle.deadline still reads t=1).
    spec = _spec(flavor, False, ending="long", linger=3.0, timeout=1)
    m = _run(
        lambda m: m.create(spec, "x"),
        lambda m: m.advance_clock(3),
        lambda m: m.move_deadline(_Data(m.tasks[1]), 17),  # at t=1.5: t=10
        lambda m: m.advance_clock(1),
        lambda m: m.cancel_task(_Data("x")),  # at t=2
        lambda m: m.advance_clock(6),
    )
    end = 3.0 if flavor == "asyncio" else 4.0  # asyncio code is cancelled again at t=3
    assert m.tasks[1].records[1:] == [
        ("TaskStuck", 3.0, "timed_out", 1.0),
        ("TaskTimedOut", end, 1.0, None),
    ]
