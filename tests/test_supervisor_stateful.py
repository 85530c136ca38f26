"""Stateful (hypothesis) test of the core supervisor against a model of its tasks.

A ``RuleBasedStateMachine`` creates tasks of every kind (coroutine or async generator, trio or
asyncio flavour, handed over as an object or as a function, interruptible or not, with or
without a timeout, with or without an opening ``uninterruptible()`` section, finishing, failing
or running forever, ending at once when cancelled or lingering for a while first), cancels them
by name or handle (also in the very step that created them, before they ever ran), interrupts
them, cancels them all, waits for them with a timeout (creating another task meanwhile),
advances the clock, closes the supervisor, and after every step compares the supervisor with a
model that predicts what each task has done by now: its records (kinds, order, fields and clock
times, ``TaskStuck`` included), its handle and ``wait()`` outcome, ``has_unfinished_tasks()``,
``get_task()``, ``snapshot()``, and, once closed, that every task has ended and the stream too.

How trio is driven from the synchronous rules: every example owns one ``trio.run`` in a
background thread, with a ``MockClock`` that never moves on its own. A rule sends a function
into that run (``_TrioThread.call``) which acts, then waits for ``wait_all_tasks_blocked()``
so that everything the action caused has happened before the rule checks anything. Time moves
only in the rules that advance it, by steps of ``STEP`` seconds, settling after each step.

Ties are avoided by construction, so the model is exact: a task starts at a multiple of
``STEP``; everything a task does (leaving its section, yielding, returning, raising) happens at
an odd multiple of ``STEP`` after its start, while its timeout is a whole number of seconds
(an even multiple); a lingering task lingers 1 s or 3 s, never ``STUCK_AFTER`` (2 s). The one
tie left, a ``wait_for_all_tasks`` whose limit is reached at the very step the last task ends,
accepts either answer.

Fixed scenarios at the end run the rare paths through the same machine on every run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
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
    TaskRecord,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)

STEP = 0.5  # the clock moves by this much at a time; all the model's times are multiples of it
STUCK_AFTER = 2.0  # the supervisor's grace before reporting a task that ignores its cancel
REAL_TIMEOUT = 20.0  # wall-clock seconds one call into the trio run may take before we give up
NAMES = ["a", "b", "c", "coro_body-2", "gen_body-3"]  # the last two collide with generated names


class Boom(Exception):
    """What a failing task raises."""


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
    timeout: int | None  # whole seconds: never equal to an event time (odd multiples of STEP)
    ending: str  # "finish", "fail" or "long" (never ends by itself)
    section: float | None  # length of the opening uninterruptible() section, if any
    delays: tuple[float, ...]  # sleeps after the section
    as_function: bool  # hand create_task the async function rather than the object
    linger: float | None = None  # once cancelled, go on (shielded) for this long, then end

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
        timeout=draw(st.none() | st.integers(1, 5)),
        ending=ending,
        section=section,
        delays=tuple(delays),
        as_function=draw(st.booleans()),
        # Never STUCK_AFTER: the TaskStuck report and the end never tie.
        linger=draw(st.sampled_from([None, None, 1.0, 3.0])),
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

    if spec.gen:

        async def gen_body() -> Any:
            try:
                if spec.section is not None:
                    with uninterruptible():
                        await sleep(spec.section)
                for i, d in enumerate(spec.delays):
                    await sleep(d)
                    yield ("out", token, i)
                if spec.ending == "fail":
                    raise Boom(token)
                if spec.ending == "long":
                    await forever()
            except cancelled:
                if spec.linger is not None:
                    await linger(spec.linger)
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
                raise Boom(token)
            if spec.ending == "long":
                await forever()
            return ("result", token)
        except cancelled:
            if spec.linger is not None:
                await linger(spec.linger)
            raise

    return coro_body if spec.as_function else coro_body()


def discard(handler: Any) -> None:
    """Close a coroutine object create_task refused, so that it is not reported as unawaited."""
    if asyncio.iscoroutine(handler):
        handler.close()


# ---------------------------------------------------------------------------- the model


@dataclass
class ModelTask:
    id: int
    name: str
    token: int
    spec: Spec
    started: float
    handle: TaskHandle
    pending: list[tuple[float, str, int]]  # events still to come: (absolute time, what, index)
    records: list[tuple[Any, ...]] = field(default_factory=list)  # expected, in order
    state: TaskState = TaskState.RUNNING
    ended_at: float | None = None
    cancel_reason: str | None = None
    in_section: bool = False
    interrupt_pending: bool = False
    # Cancelled (reason, None for the timeout) at this time, but lingering: not ended yet.
    stopping: tuple[str | None, float] | None = None
    coroutine: Any = None  # the coroutine object handed to create_task, if one was

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def deadline(self) -> float | None:
        return None if self.spec.timeout is None else self.started + self.spec.timeout

    def end(self, state: TaskState, at: float, record: tuple[Any, ...]) -> None:
        assert self.running
        self.state = state
        self.ended_at = at
        self.pending = []
        self.records.append(record)

    def cancel(self, reason: str | None, now: float, ran: bool = True) -> None:
        """The task is cancelled now (``reason`` None: its timeout has passed).

        It ends at once, or, if it lingers (and has ever run), once it has lingered.
        """
        assert self.running
        if self.stopping is not None:
            return  # already cancelled: nothing changes
        self.in_section = False
        if reason is not None:
            self.cancel_reason = reason
        if self.spec.linger is None or not ran:
            self.stopped(reason, now)
            return
        self.stopping = (reason, now)
        self.pending = [(now + self.spec.linger, "stopped", 0)]
        if STUCK_AFTER < self.spec.linger:
            self.pending.insert(0, (now + STUCK_AFTER, "stuck", 0))
        event("a cancelled task lingers")

    def stopped(self, reason: str | None, now: float) -> None:
        if reason is None:
            timeout = float(self.spec.timeout or 0)
            self.end(TaskState.TIMED_OUT, now, ("TaskTimedOut", now, timeout))
        else:
            self.end(TaskState.CANCELLED, now, ("TaskCancelled", now, reason))

    def reach(self, now: float) -> None:
        """Apply what the task does at ``now`` (the clock has just arrived there)."""
        while self.running and self.pending and self.pending[0][0] == now:
            _, what, index = self.pending.pop(0)
            if what == "unshield":
                self.in_section = False
                if self.interrupt_pending:
                    # Applied when the section exits; it lands on the next sleep.
                    self.cancel("interrupted", now)
                    event("a deferred interruption landed")
            elif what == "output":
                self.records.append(("TaskOutput", now, ("out", self.token, index)))
            elif what == "finish":
                result = None if self.spec.gen else ("result", self.token)
                self.end(TaskState.FINISHED, now, ("TaskFinished", now, result))
            elif what == "fail":
                self.end(TaskState.FAILED, now, ("TaskFailed", now, ("Boom", (self.token,))))
            elif what == "stuck":
                assert self.stopping is not None
                reason, since = self.stopping
                # reason None (a timeout): regression check, fixed in 3689a11. A task that
                # timed out and went on ignoring the cancel was never reported stuck (only
                # cancels through Supervisor._cancel were watched, not scope deadlines).
                self.records.append(("TaskStuck", now, reason or "timed_out", since))
                event(f"reported stuck: {reason or 'timed_out'}")
                if self.spec.flavor == "asyncio":
                    # asyncio code is cancelled again with each report: it ends now.
                    self.stopped(reason, now)
            elif what == "stopped":
                assert self.stopping is not None
                self.stopped(self.stopping[0], now)
        if self.pending:
            assert self.pending[0][0] > now, "the model skipped an event"
        if self.running and self.stopping is None and self.deadline == now:
            self.cancel(None, now)


def describe(record: TaskRecord) -> tuple[Any, ...]:
    """The fields of a record the model predicts, in the model's form."""
    if isinstance(record, TaskStarted):
        return ("TaskStarted", record.at, record.interruptible, record.timeout, record.flavor)
    if isinstance(record, TaskOutput):
        return ("TaskOutput", record.at, record.event)
    if isinstance(record, TaskFinished):
        return ("TaskFinished", record.at, record.result)
    if isinstance(record, TaskFailed):
        return ("TaskFailed", record.at, (type(record.error).__name__, record.error.args))
    if isinstance(record, TaskCancelled):
        return ("TaskCancelled", record.at, record.reason)
    if isinstance(record, TaskTimedOut):
        return ("TaskTimedOut", record.at, record.timeout)
    if isinstance(record, TaskStuck):
        return ("TaskStuck", record.at, record.reason, record.since)
    return (type(record).__name__, record.at)


# ---------------------------------------------------------------------------- the trio side


class _TrioThread:
    """One trio run (MockClock) in a thread, holding a supervisor and a reader of its records."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()  # rate 0, no autojump: time moves when we say
        self.records: list[Any] = []  # what the reader got from sup.events()
        self.sunk: list[Any] = []  # what on_record got
        self.reader_done = False
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

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.close_requested = trio.Event()
        self.stop_requested = trio.Event()
        with trio.CancelScope() as self.kill_scope:  # only used to end a broken run
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                async with taskrunner.open_supervisor(
                    max_buffer=100_000, stuck_after=STUCK_AFTER, on_record=self.sunk.append
                ) as sup:
                    self.sup = sup
                    nursery.start_soon(self._read, sup)
                    self._started.set()
                    await self.close_requested.wait()
                self.sup_closed = True
                await self.stop_requested.wait()

    async def _read(self, sup: taskrunner.Supervisor) -> None:
        async for record in sup.events():
            self.records.append(record)
        self.reader_done = True

    def _spawn(self, afn: Callable[[], Any]) -> None:
        self.token.run_sync_soon(lambda: trio.lowlevel.spawn_system_task(afn, name="stateful-step"))

    def call(self, afn: Callable[[], Any]) -> Any:
        """Run ``await afn()`` in a new task of the trio run, then settle; return its result.

        Settled means ``wait_all_tasks_blocked()``: every task of the run is waiting for
        something that only a later step (the clock, a cancel) can bring.
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
        self.trio = _TrioThread()
        self.now = 0.0
        self.next_id = 0
        self.next_token = 0
        self.tasks: dict[int, ModelTask] = {}  # by id, in creation order
        self.closed = False
        self.step_ok = True
        self.newest: ModelTask | None = None  # the task create() has just made

    # ---------------------------------------------------------------- the model's operations

    def running(self) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.running]

    def running_by_name(self, name: str) -> ModelTask | None:
        for t in self.running():
            if t.name == name:
                return t
        return None

    def names(self) -> list[str]:
        return sorted(set(NAMES) | {t.name for t in self.tasks.values()} | {"missing"})

    def model_interrupt(self, ran: bool = True) -> int:
        count = 0
        for t in self.running():
            if t.spec.interruptible:
                count += 1
                if t.stopping is not None:
                    pass  # already cancelled, still lingering
                elif t.in_section:
                    t.interrupt_pending = True  # deferred until the section exits
                    event("an interruption was deferred")
                else:
                    t.cancel("interrupted", self.now, ran=ran or t is not self.newest)
        return count

    def model_cancel_all(self, reason: str, ran: bool = True) -> int:
        running = self.running()
        for t in running:
            t.cancel(reason, self.now, ran=ran or t is not self.newest)
        return len(running)

    def advance_one_step(self) -> None:
        """Move the clock by STEP, let the run settle, and move the model the same way."""
        clock = self.trio.clock

        async def jump() -> None:
            clock.jump(STEP)

        self.trio.call(jump)
        self.now += STEP
        for t in self.tasks.values():
            if t.running:
                t.reach(self.now)
        self.check()

    # ---------------------------------------------------------------- creating tasks

    @initialize(batch=st.lists(st.tuples(specs(), _NAME), min_size=1, max_size=4))
    @step
    def create_some_tasks(self, batch: list[tuple[Spec, str | None]]) -> None:
        for spec, name in batch:
            self.create(spec, name)

    @rule(spec=specs(), name=_NAME)
    @step
    def create_task(self, spec: Spec, name: str | None) -> None:
        self.create(spec, name)

    @rule(spec=specs(), name=_NAME, how=st.sampled_from(_CANCELS))
    @step
    def create_and_cancel(self, spec: Spec, name: str | None, how: str) -> None:
        """Create a task and cancel it in the same trio step, before it has ever run."""
        self.create(spec, name, then=how)

    def create(self, spec: Spec, name: str | None, then: str | None = None) -> None:
        token = self.next_token
        self.next_token += 1
        handler = make_handler(spec, token)
        sup = self.trio.sup

        def act() -> tuple[outcome.Outcome[TaskHandle], Any]:
            try:
                handle = sup.create_task(
                    handler,
                    name=name,
                    interruptible=spec.interruptible,
                    timeout=spec.timeout,
                    flavor=spec.flavor,  # type: ignore[arg-type]
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
        if self.closed:
            assert isinstance(got, outcome.Error), "create_task accepted a task after closing"
            assert isinstance(got.error, taskrunner.SupervisorClosedError), got.error
        elif name is not None and self.running_by_name(name) is not None:
            assert isinstance(got, outcome.Error), f"duplicate name {name!r} was accepted"
            assert isinstance(got.error, taskrunner.DuplicateTaskNameError), got.error
            event("duplicate name refused")
        else:
            handle = got.unwrap()
            self.next_id += 1
            if name is None:
                base = "gen_body" if spec.gen else "coro_body"
                name = f"{base}-{self.next_id}"
                while self.running_by_name(name) is not None:
                    name += "'"
            assert (handle.id, handle.name) == (self.next_id, name)
            task = ModelTask(
                id=handle.id,
                name=name,
                token=token,
                spec=spec,
                started=self.now,
                handle=handle,
                pending=[(self.now + off, what, i) for off, what, i in spec.events()],
                coroutine=handler if asyncio.iscoroutine(handler) else None,
            )
            timeout = None if spec.timeout is None else float(spec.timeout)
            task.records.append(("TaskStarted", self.now, spec.interruptible, timeout, spec.flavor))
            self.tasks[handle.id] = task
            self.newest = task
            # A cancel in the same step comes before the task has run at all (not even into
            # its section): it ends at once, lingering or not.
            if then in ("cancel_task", "handle"):
                assert cancelled is True, (then, cancelled)
                task.cancel("cancel_task", self.now, ran=False)
            elif then == "interrupt":
                expected = self.model_interrupt(ran=False)
                assert cancelled == expected, (then, cancelled, expected)
            elif then == "cancel_all":
                expected = self.model_cancel_all("cancel_all", ran=False)
                assert cancelled == expected, (then, cancelled, expected)
            self.newest = None
            if task.running:
                task.in_section = spec.section is not None
                task.reach(self.now)  # what it does at once (returning without sleeping)
            else:
                event(f"cancelled before it ran: {spec.flavor} {'gen' if spec.gen else 'coro'}")
        self.check()

    # ---------------------------------------------------------------- cancelling

    @rule(data=st.data())
    @step
    def cancel_task(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.names()), label="name")
        sup = self.trio.sup
        got = self.trio.call_sync(lambda: sup.cancel_task(name))
        target = self.running_by_name(name)
        assert got is (target is not None), (name, got)
        if target is not None:
            target.cancel("cancel_task", self.now)
        self.check()

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    @step
    def cancel_handle(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(list(self.tasks.values())), label="task")
        got = self.trio.call_sync(task.handle.cancel)
        assert got is task.running, (task.name, got)
        if task.running:
            task.cancel("cancel_task", self.now)
        self.check()

    @rule(then_advance=st.integers(0, 4))
    @step
    def interrupt(self, then_advance: int) -> None:
        """Interrupt, then (often) let time pass so that deferred interruptions get to land."""
        sup = self.trio.sup
        got = self.trio.call_sync(sup.cancel_interruptible_tasks)
        expected = self.model_interrupt()
        assert got == expected, (got, expected)
        self.check()
        for _ in range(then_advance):
            self.advance_one_step()

    @rule()
    @step
    def cancel_all(self) -> None:
        sup = self.trio.sup
        got = self.trio.call_sync(sup.cancel_all_tasks)
        expected = self.model_cancel_all("cancel_all")
        assert got == expected, (got, expected)
        self.check()

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
            idle = not self.running()
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
        self.check()
        # Closing waits for the lingering tasks, while the clock moves.
        while self.running():
            assert not self.trio.sup_closed, "the supervisor closed with a task still running"
            self.advance_one_step()
        assert self.trio.sup_closed, "closing the supervisor did not complete"
        # Nothing is left running: every handle has ended, with its terminal record (checked
        # above), and the stream has ended.
        assert self.trio.reader_done, "sup.events() did not end after the supervisor closed"

    def teardown(self) -> None:
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

    def check(self) -> None:
        """Compare everything the supervisor shows with the model."""
        sup = self.trio.sup

        async def look() -> dict[str, Any]:
            outcomes = {}
            for t in self.tasks.values():
                if t.handle.done:
                    outcomes[t.id] = await t.handle.wait()
            return {
                "records": list(self.trio.records),
                "sunk": list(self.trio.sunk),
                "unfinished": sup.has_unfinished_tasks(),
                "closed": sup.closed,
                "get_task": {n: sup.get_task(n) for n in self.names()},
                "snapshot": sup.snapshot(),
                "outcomes": outcomes,
                "handles": {
                    t.id: (
                        t.handle.state,
                        t.handle.done,
                        t.handle.ended_at,
                        t.handle.cancel_reason,
                        t.handle.outputs,
                    )
                    for t in self.tasks.values()
                },
            }

        seen = self.trio.call(look)
        records = seen["records"]

        # The reader and on_record saw the same records; seq goes 1, 2, 3, ...
        assert records == seen["sunk"], "sup.events() and on_record disagree"
        seqs = [r.seq for r in records]
        assert seqs == list(range(1, len(records) + 1)), seqs
        assert all(isinstance(r, TaskRecord) for r in records), records
        assert all(r.task_id in self.tasks for r in records), "a record of an unknown task"

        # Per task: exactly the records the model predicts, in order, with their clock times:
        # TaskStarted first, the outputs in the order yielded, then one terminal record of
        # the predicted kind and reason, and nothing after it (no TaskStuck either).
        by_id: dict[int, list[TaskRecord]] = {i: [] for i in self.tasks}
        for r in records:
            by_id[r.task_id].append(r)
        for t in self.tasks.values():
            mine = by_id[t.id]
            assert all(r.task == t.name for r in mine), (t.name, mine)
            got = [describe(r) for r in mine]
            assert got == t.records, f"task {t.name!r} {t.spec}:\n got {got}\nwant {t.records}"

        # Handles, and what handle.wait() gives once ended.
        for t in self.tasks.values():
            want_outputs = sum(1 for r in t.records if r[0] == "TaskOutput")
            want = (t.state, not t.running, t.ended_at, t.cancel_reason, want_outputs)
            assert seen["handles"][t.id] == want, (t.name, t.spec, seen["handles"][t.id], want)
            if not t.running:
                self.check_outcome(t, seen["outcomes"][t.id])

        # The supervisor's own view.
        assert seen["unfinished"] is bool(self.running())
        assert seen["closed"] is self.closed
        # get_task(): the running task of that name, else the one of that name that ended last.
        terminal_order = [r.task_id for r in records if describe(r)[0] in _TERMINAL]
        for name, handle in seen["get_task"].items():
            mine = [t for t in self.tasks.values() if t.name == name]
            live = [t for t in mine if t.running]
            ended = sorted(
                (t for t in mine if not t.running), key=lambda t: terminal_order.index(t.id)
            )
            if live:
                assert handle is live[0].handle, name
            elif ended:
                # Ended tasks are kept as frozen TaskInfo pictures, not live handles.
                assert isinstance(handle, TaskInfo) and handle.id == ended[-1].id, name
            else:
                assert handle is None, name
        # snapshot(): the finished tasks in the order they ended, then the running ones.
        running_ids = [t.id for t in self.tasks.values() if t.running]
        assert [i.id for i in seen["snapshot"]] == terminal_order + running_ids

    def check_outcome(self, t: ModelTask, got: outcome.Outcome[Any]) -> None:
        kind, _, detail = t.records[-1]
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
                assert isinstance(error, Boom) and error.args == (t.token,), error
        if t.coroutine is not None:
            # Regression check (fixed in be94cd2): an asyncio-flavoured task cancelled before it
            # ever ran left the coroutine object it was given unclosed, and Python then warned
            # "coroutine ... was never awaited".
            assert t.coroutine.cr_frame is None, (
                f"task {t.name!r} ({t.spec.flavor}) has ended, but the coroutine object it was "
                f"given was neither run to its end nor closed"
            )


SupervisorMachine.TestCase.settings = settings(
    max_examples=150,
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


def _run(*steps: Callable[[SupervisorMachine], Any]) -> SupervisorMachine:
    machine = SupervisorMachine()
    try:
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
    assert m.tasks[1].records[-1] == ("TaskCancelled", 1.5, "interrupted")


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
    assert m.tasks[1].records[-1] == ("TaskTimedOut", 2.0, 2.0)


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
    assert m.tasks[1].records[-1] == ("TaskCancelled", 0.5, "cancel_task")
    assert m.tasks[2].records[-1] == ("TaskCancelled", 0.5, "closed")


@pytest.mark.parametrize(("flavor", "gen"), KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("how", _CANCELS)
def test_cancelled_before_it_ever_ran(flavor: str, gen: bool, how: str) -> None:
    spec = _spec(flavor, gen, delays=(0.5,))
    reason = {"interrupt": "interrupted", "cancel_all": "cancel_all"}.get(how, "cancel_task")
    m = _run(lambda m: m.create_and_cancel(spec, None, how))
    assert m.tasks[1].records == [
        ("TaskStarted", 0.0, True, None, flavor),
        ("TaskCancelled", 0.0, reason),
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
        ("TaskCancelled", end, "cancel_task"),
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
        ("TaskTimedOut", end, 1.0),
    ]
