"""run_agent: drive an agent's session turn by turn, with its records collected per turn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias

import trio
from trio.lowlevel import ParkingLot

from .._core.records import TERMINAL_RECORDS, Record, TaskRecord, TaskStarted
from .._session._vocabulary import Vocabulary, detect_vocabulary, resolve_vocabulary
from .._session.context import Context
from .._session.session import AgentHandler, Session, open_session
from ._turn import Turn, format_transcript

__all__ = ["Agent", "run_agent"]

#: a turn's ``wait=``: seconds of quiet, None (until its tasks end) or the runner's default
_Wait: TypeAlias = float | Literal["default"] | None

#: the default bound on how long (session clock) a turn waits for its tasks
DEFAULT_MAX_WAIT = 300.0


def _check_seconds(value: object, what: str, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        accepted = "a number of seconds >= 0" + (" or None" if allow_none else "")
        raise ValueError(f"{what} must be {accepted}, got {value!r}")
    return float(value)


class Agent:
    """The agent under test, from :func:`run_agent`: send it input, get each turn back.

    Every input method returns a :class:`Turn` once the handler has answered and the turn is
    over: by default when every task the turn started has ended (bounded by ``max_wait``
    seconds of the session clock), or with ``wait=SECONDS`` once nothing has happened for
    that long. Time is trio's clock: under a mock clock (``autojump_clock``, or the
    ``run_agent`` fixture of the pytest plugin) a 30 s task timeout takes milliseconds.
    """

    def __init__(
        self,
        session: Session,
        records: list[Record],
        lot: ParkingLot,
        t0: float,
        wait: float | None,
        max_wait: float,
    ) -> None:
        self.session = session
        self._records = records
        self._lot = lot
        self._t0 = t0
        self._wait = wait
        self._max_wait = max_wait
        self.turns: list[Turn] = []

    def __repr__(self) -> str:
        return f"<Agent session={self.session.session_id!r} turns={len(self.turns)}>"

    @property
    def context(self) -> Context:
        """The session's :class:`~taskrunner.Context` (data, tasks...)."""
        return self.session.context

    @property
    def vocabulary(self) -> Vocabulary:
        """The event family the session speaks (``events=``)."""
        return self.session.vocabulary

    @property
    def records(self) -> list[Record]:
        """Every record of the session so far, in order (a copy)."""
        return list(self._records)

    # ------------------------------------------------------------------ input

    async def start(self, *, wait: _Wait = "default", max_wait: float | None = None) -> Turn:
        """Send the vocabulary's ``StartEvent``; see :meth:`send`."""
        return await self.send(self.vocabulary.start(), wait=wait, max_wait=max_wait)

    async def say(
        self,
        text: str,
        *,
        source: str = "text",
        wait: _Wait = "default",
        max_wait: float | None = None,
    ) -> Turn:
        """Send a ``TextEvent`` with ``text`` (``source``: ``"text"`` or ``"speech"``)."""
        if not isinstance(text, str):
            raise TypeError(f"say() takes the user's text (str), got {type(text).__name__}")
        return await self.send(self.vocabulary.text(text, source), wait=wait, max_wait=max_wait)

    async def timeout(
        self,
        count: int = 1,
        ms_since_input: int = 5000,
        *,
        wait: _Wait = "default",
        max_wait: float | None = None,
    ) -> Turn:
        """Send a ``TimeoutEvent`` (the user has been silent)."""
        event = self.vocabulary.timeout(count, ms_since_input)
        return await self.send(event, wait=wait, max_wait=max_wait)

    async def send(
        self, event: Any, *, wait: _Wait = "default", max_wait: float | None = None
    ) -> Turn:
        """Send ``event`` and return the turn once it is over.

        ``wait=None``: until the handler has answered and every task the turn started has
        ended; ``wait=SECONDS``: until the handler has answered and then nothing more has
        happened for that long; ``"default"``: what :func:`run_agent` was given (None unless
        told). Either way the turn ends after at most ``max_wait`` seconds (default: what
        :func:`run_agent` was given, 300 s); the tasks still running are in
        ``turn.unfinished``. A ``StopEvent`` ends the session: the turn lasts until its tasks
        have ended. If the waiting test is cancelled, the cancellation propagates.
        """
        wait_s = self._wait if wait == "default" else _check_seconds(wait, "wait", allow_none=True)
        bound = (
            self._max_wait
            if max_wait is None
            else _check_seconds(max_wait, "max_wait", allow_none=False)
        )
        assert bound is not None
        first = len(self._records)
        sent_at = trio.current_time()
        stopping = self.vocabulary.is_stop(event)
        await self.session.send(event)
        unfinished: list[str] = []
        with trio.move_on_after(bound) as scope:
            if stopping:
                await self.session.stop()
            else:
                await self.session.wait_until_handled()
                await self._settle(first, wait_s)
        if scope.cancelled_caught:
            unfinished = self._unfinished(first)
        return self._turn(event, first, sent_at, unfinished)

    async def stop(self, *, max_wait: float | None = None) -> Turn:
        """Send the ``StopEvent`` and return the turn once the session has ended its tasks;
        the session takes no more input afterwards."""
        return await self.send(self.vocabulary.stop(), max_wait=max_wait)

    async def advance(self, seconds: float) -> Turn:
        """Let ``seconds`` pass on the session clock; the turn holds what happened."""
        secs = _check_seconds(seconds, "advance(seconds)", allow_none=False)
        assert secs is not None
        first = len(self._records)
        at = trio.current_time()
        await trio.sleep(secs)
        return self._turn(None, first, at, ())

    # ------------------------------------------------------------------ waiting

    async def _next_record(self, count: int) -> None:
        while len(self._records) <= count:
            await self._lot.park()

    def _unfinished(self, first: int) -> list[str]:
        started: dict[int, str] = {}
        for r in self._records[first:]:
            if isinstance(r, TaskStarted):
                started[r.task_id] = r.task
            elif isinstance(r, TERMINAL_RECORDS) and isinstance(r, TaskRecord):
                started.pop(r.task_id, None)
        return list(started.values())

    async def _settle(self, first: int, wait: float | None) -> None:
        if wait is None:
            while self._unfinished(first):
                await self._next_record(len(self._records))
            return
        while True:
            count = len(self._records)
            with trio.move_on_after(wait) as quiet:
                await self._next_record(count)
            if quiet.cancelled_caught:
                return

    def _turn(self, event: Any, first: int, sent_at: float, unfinished: Any) -> Turn:
        turn = Turn(
            index=len(self.turns) + 1,
            input=event,
            records=self._records[first:],
            vocabulary=self.vocabulary,
            t0=self._t0,
            sent_at=sent_at,
            ended_at=trio.current_time(),
            unfinished=unfinished,
        )
        self.turns.append(turn)
        return turn

    def transcript(self) -> str:
        """The whole session so far as readable lines (times since the session started)."""
        return format_transcript(
            self._records, t0=self._t0, title="session transcript", vocabulary=self.vocabulary
        )


@asynccontextmanager
async def run_agent(
    handler: AgentHandler,
    *,
    wait: float | None = None,
    max_wait: float = DEFAULT_MAX_WAIT,
    events: str | Vocabulary = "auto",
    on_record: Callable[[Record], None] | None = None,
    **session_options: Any,
) -> AsyncIterator[Agent]:
    """Run ``handler`` in a session for the block and drive it with an :class:`Agent`.

    ``async with run_agent(handler) as agent: turn = await agent.say("place order")``.
    ``session_options`` are :func:`taskrunner.open_session`'s (``flavor=``, ``variables=``,
    ``agent_id=``, ``interrupt_on=``...). ``events="auto"`` (the default) picks
    ``"primfunctions"`` when the handler's module imports ``primfunctions.events``, else
    ``"taskrunner"``. ``wait`` and ``max_wait`` are the defaults of every turn (see
    :meth:`Agent.send`). Every record is collected (``agent.records``) and also given to
    ``on_record``.

    Leaving the block stops the session as ``open_session`` does (a ``StopEvent`` unless one
    was sent, then the tasks are ended); an exception in the block cancels the session's
    tasks and propagates (as itself when it is the only error, not in an exception group).
    Use trio's mock clock so waiting costs no real time.
    """
    wait_s = _check_seconds(wait, "wait", allow_none=True)
    bound = _check_seconds(max_wait, "max_wait", allow_none=False)
    assert bound is not None
    if events == "auto":
        events = detect_vocabulary(handler)
    vocabulary = resolve_vocabulary(events)
    records: list[Record] = []
    lot = ParkingLot()

    def collect(record: Record) -> None:
        records.append(record)
        lot.unpark_all()
        if on_record is not None:
            on_record(record)

    async def drain(session: Session) -> None:
        async for _ in session.events():
            pass

    try:
        async with trio.open_nursery() as nursery:
            async with open_session(
                handler, events=vocabulary, on_record=collect, **session_options
            ) as session:
                nursery.start_soon(drain, session)
                t0 = records[0].at if records else trio.current_time()
                yield Agent(session, records, lot, t0, wait_s, bound)
    except BaseExceptionGroup as group:
        # A failed expectation in the block reaches the test as itself, not wrapped in the
        # nurseries' exception groups: pytest then shows its message and transcript plainly.
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        cause, context, suppress = leaf.__cause__, leaf.__context__, leaf.__suppress_context__
        try:
            raise leaf
        finally:
            leaf.__cause__, leaf.__context__ = cause, context
            leaf.__suppress_context__ = suppress


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
