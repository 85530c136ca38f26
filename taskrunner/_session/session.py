"""open_session: one agent conversation, its handler, its tasks and its output stream."""

from __future__ import annotations

import inspect
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol, TypeAlias

import trio
from trio.lowlevel import ParkingLot

from .._core._checks import check_count, check_flavor, check_seconds, flavor_misuse, safe_repr
from .._core._flavored import flavored
from .._core._limiter import Limiter
from .._core.errors import SessionClosedError
from .._core.records import Record, TaskOutput
from .._core.supervisor import (
    Flavor,
    Lifecycle,
    RecordSink,
    Supervisor,
    open_supervisor,
)
from ._options import SessionOptions, check_session_options
from ._vocabulary import Vocabulary, resolve_vocabulary
from .agent_events import Event
from .context import Context, _current_context, _current_phase
from .records import HandlerFailed, HandlerOutput, InputReceived, SessionEnded, SessionStarted

__all__ = ["AgentHandler", "Session", "open_session"]

logger = logging.getLogger("taskrunner")

#: ``async def handler(event, context)``: an async generator (yielding output events) or a
#: coroutine function.
AgentHandler: TypeAlias = Callable[[Any, Context], Any]


class RecordHub(Protocol):
    """Where a session publishes its records for tools (``taskrunner.tools.hub.Hub``)."""

    def register(self, session_id: str, control: Any = None) -> None:
        """A session opened; ``control`` has ``cancel_task(name)`` and ``interrupt()``."""

    def publish(self, session_id: str, record: dict[str, Any]) -> None:
        """One record (``record.to_dict()``), synchronously, in stream order."""

    def unregister_control(self, session_id: str) -> None:
        """The session ended: its history stays, its controls go."""


def _check_handler(handler: object) -> bool:
    """Return True for an async generator function, False for a coroutine function."""
    is_gen = inspect.isasyncgenfunction(handler)
    if not (is_gen or inspect.iscoroutinefunction(handler)):
        if inspect.isasyncgen(handler) or inspect.iscoroutine(handler):
            what = f"a {type(handler).__name__} object (call result)"
        else:
            what = f"{type(handler).__name__}: {handler!r:.80}"
        raise TypeError(
            "handler must be `async def handler(event, context)`, an async generator function "
            f"or a coroutine function taking (event, context); got {what}"
        )
    try:
        inspect.signature(handler).bind(None, None)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"handler {getattr(handler, '__qualname__', handler)!r} must accept two "
            f"arguments (event, context); its signature is {inspect.signature(handler)}"  # type: ignore[arg-type]
        ) from None
    return is_gen


class Session:
    """One running conversation, made by :func:`open_session`.

    Send input with :meth:`send`; read the one output stream with :meth:`events`. Its
    ``state`` is ``Lifecycle.OPEN`` until a ``StopEvent`` is accepted, ``STOPPING``
    while the stop sequence runs, ``CLOSED`` once every task has ended. ``vocabulary`` is
    the event family it sends and recognises (``open_session(events=...)``).
    """

    def __init__(
        self,
        sup: Supervisor,
        handler: AgentHandler,
        is_gen: bool,
        flavor: Flavor,
        context: Context,
        interrupt_on: tuple[type, ...],
        stop_grace: float,
        max_pending_inputs: int,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        self._sup = sup
        self._handler = handler
        self._is_gen = is_gen
        self._flavor: Flavor = flavor
        self.context = context
        self._interrupt_on = interrupt_on
        self._stop_grace = stop_grace
        self.vocabulary = vocabulary or resolve_vocabulary("taskrunner")
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Any](max_pending_inputs)
        self.state = Lifecycle.OPEN
        self._pending = 0
        self._idle_lot = ParkingLot()
        self._done = trio.Event()
        self._scope = trio.CancelScope()
        # wait_for_playout: the seq of the handler's last output, and of the last record read
        self._last_output_seq = 0
        self._read_seq = 0
        self._playout_lot = ParkingLot()
        # input_timeout: silence since the last input sent by the user (the lot and the
        # scope are made only for sessions with an input_timeout)
        self._input_timeout: float | None = None
        self._last_input = 0.0
        self._silence_count = 0
        self._silence_lot: ParkingLot | None = None
        self._silence_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return (
            f"<Session {self.session_id!r} {self.state.value} pending_inputs={self._pending}>"
        )

    @property
    def session_id(self) -> str:
        """The session's id (``context.session_id``)."""
        return self.context.session_id

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor that runs the session's tasks."""
        return self._sup

    # ------------------------------------------------------------------ input

    def send(self, event: Any) -> Awaitable[None]:
        """Deliver an input event; the handler takes inputs one at a time, in order.

        The event is of the session's vocabulary (``open_session(events=...)``: the classes
        of ``taskrunner.events`` by default, or of ``primfunctions.events``); another object
        is refused with a ``TypeError``. Works from trio and from asyncio code. The input is
        recorded (``InputReceived``) once queued; an event of an ``interrupt_on`` type (by
        default the vocabulary's ``TextEvent``) then cancels the interruptible tasks at once,
        even while the handler is still answering an earlier input. Waits only while
        ``max_pending_inputs`` inputs are queued; if that wait is cancelled, nothing happened
        (the input is not queued, a StopEvent does not stop). Once a ``StopEvent`` has been
        accepted, ``send`` raises :class:`SessionClosedError` (a ``RuntimeError``).
        """
        vocab = self.vocabulary
        if not vocab.is_event(event):
            other = ""
            if isinstance(event, Event) or type(event).__module__.startswith("primfunctions."):
                other = (
                    f" ({type(event).__module__}.{type(event).__qualname__} is of another "
                    f"vocabulary: open the session with the events= its handler imports)"
                )
            raise TypeError(
                f"send() takes an input event of {vocab.module_name} (StartEvent, TextEvent, "
                f"TimeoutEvent, StopEvent, CustomEvent...) since the session was opened with "
                f"events={vocab.name!r}; got {type(event).__name__}: "
                f"{safe_repr(event, 80)}{other}"
            )
        self._check_open(event)
        if self._silence_lot is not None:  # the user spoke: the silence clock restarts
            self._last_input = trio.current_time()
            self._silence_count = 0
            self._silence_lot.unpark_all()
        return flavored(self._send, event)

    def _check_open(self, event: Event) -> None:
        if self.state is not Lifecycle.OPEN:
            raise SessionClosedError(
                f"session {self.session_id!r} is {self.state.value} (it has received a "
                f"StopEvent) and takes no more input; send({type(event).__name__}) is refused"
            )

    async def _send(self, event: Event) -> None:
        self._check_open(event)
        stopping = self.vocabulary.is_stop(event)
        if stopping:
            self.state = Lifecycle.STOPPING  # reserved now; rolled back if the wait is cancelled
        self._pending += 1
        try:
            try:
                self._inbox_send.send_nowait(event)
            except trio.WouldBlock:
                await self._inbox_send.send(event)
        except BaseException:
            self._pending -= 1
            if stopping and self.state is Lifecycle.STOPPING:
                self.state = Lifecycle.OPEN
            if self._pending == 0 and self._idle_lot:
                self._idle_lot.unpark_all()
            raise
        sup = self._sup
        at = trio.current_time()
        sup.emit(InputReceived(sup.next_seq(), at, event, **sup.stamp(at)))
        if isinstance(event, self._interrupt_on):
            self._interrupt(f"input:{type(event).__name__}")

    def interrupt(self, *, origin: str | None = None) -> int:
        """Cancel the interruptible tasks now (reason ``"interrupted"``); how many were hit."""
        return self._interrupt(origin or "interrupt")

    def _interrupt(self, origin: str) -> int:
        return self._sup.cancel_interruptible_tasks(origin=origin)

    def cancel_task(self, name: str, *, origin: str | None = None) -> bool:
        """Cancel the unfinished task ``name`` (reason ``"cancel_task"``); False if none."""
        return self._sup.cancel_task(name, origin=origin or "session")

    def wait_until_handled(self) -> Awaitable[None]:
        """Return once every input sent so far has been handled (from trio or asyncio)."""
        return flavored(self._wait_until_handled)

    async def _wait_until_handled(self) -> None:
        while self._pending:
            await self._idle_lot.park()
        await trio.lowlevel.checkpoint()

    def stop(self) -> Awaitable[None]:
        """Send a :class:`StopEvent` (unless one was accepted) and wait until the session has
        ended its tasks (from trio or asyncio). Leaving the ``open_session`` block does this.
        The stop sequence runs once, whoever asks."""
        return flavored(self._stop)

    async def _stop(self) -> None:
        if self.state is Lifecycle.OPEN:
            await self._send(self.vocabulary.stop())
        await self._done.wait()

    def events(self) -> AsyncIterator[Record]:
        """The session's one output stream, in order: ``SessionStarted``, ``InputReceived``,
        ``HandlerOutput``, ``HandlerFailed``, every task record, and last ``SessionEnded``.
        One reader at a time; see :meth:`taskrunner.Supervisor.events` for what happens when
        nobody reads."""
        return _PlayoutTracker(self, self._sup.events())

    def _was_read(self, seq: int) -> None:
        self._read_seq = seq
        if self._playout_lot and seq >= self._last_output_seq:
            self._playout_lot.unpark_all()

    async def _wait_for_playout(self) -> None:
        target = self._last_output_seq
        while self._read_seq < target:
            await self._playout_lot.park()
        await trio.lowlevel.checkpoint()

    async def _watch_silence(self) -> None:
        """input_timeout: a TimeoutEvent after each ``input_timeout`` of user silence."""
        timeout = self._input_timeout
        assert timeout is not None and self._silence_lot is not None
        assert self._silence_scope is not None
        with self._silence_scope:
            while self.state is Lifecycle.OPEN:
                due = self._last_input + timeout * (self._silence_count + 1)
                with trio.move_on_at(due) as waited:
                    await self._silence_lot.park()
                if not waited.cancelled_caught or self.state is not Lifecycle.OPEN:
                    continue  # an input came: the clock restarts
                self._silence_count += 1
                since = round((trio.current_time() - self._last_input) * 1000)
                try:
                    await self._send(self.vocabulary.timeout(self._silence_count, since))
                except (SessionClosedError, trio.ClosedResourceError):
                    return  # the session closed while the input queue was full

    # ------------------------------------------------------------------ the handler

    async def _dispatch(self) -> None:
        _current_context.set(self.context)
        try:
            with self._scope:
                async for event in self._inbox_recv:
                    try:
                        await self._handle(event)
                    finally:
                        self._pending -= 1
                        if self._pending == 0 and self._idle_lot:
                            self._idle_lot.unpark_all()
                    if self.vocabulary.is_stop(event):
                        break
            if not self._scope.cancelled_caught:
                await self._end_tasks()
        finally:
            self.state = Lifecycle.CLOSED
            self._inbox_send.close()
            if self._silence_scope is not None:
                self._silence_scope.cancel()
            with trio.CancelScope(shield=True):
                await self.context._finish()  # the store's part: tests, outcomes
            self._done.set()
            self._idle_lot.unpark_all()

    async def _handle(self, event: Event) -> None:
        sup = self._sup
        try:
            if self._is_gen:
                port = sup.record_port(lambda out: partial(self._output, out=out, input=event))
                agen = self._handler(event, self.context)
                if self._flavor == "trio":
                    await sup.drive_generator(agen, *port)
                else:
                    from .._adapters.aio import run_generator

                    await run_generator(sup, agen, *port)
            elif self._flavor == "trio":
                await self._handler(event, self.context)
            else:
                from .._adapters.aio import run_coroutine

                await run_coroutine(self._handler(event, self.context))
        except trio.Cancelled:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the handler's failure; the session goes on
            self._failed(exc, event)

    def _output(self, seq: int, at: float, *, out: Any, input: Event) -> HandlerOutput:
        self._last_output_seq = seq
        return HandlerOutput(seq, at, out, input, **self._sup.stamp(at))

    def _failed(self, exc: BaseException, input: Event) -> None:
        exc = flavor_misuse(exc, self._flavor, "the handler", "open_session") or exc
        try:
            logger.error(
                "session %r: the handler failed on %s",
                self.session_id,
                type(input).__name__,
                exc_info=exc,
            )
        except Exception:
            pass
        sup = self._sup
        at = trio.current_time()
        sup.emit(HandlerFailed(sup.next_seq(), at, exc, input, **sup.stamp(at)))

    async def _end_tasks(self) -> None:
        """The stop sequence, run once: interruptible tasks at once, the others after
        ``stop_grace`` (tasks they start meanwhile included), then nothing may start."""
        sup = self._sup
        sup.begin_stop()
        sup.cancel_where(lambda h: h.interruptible, "closed", "stop")
        if self._stop_grace > 0:
            await sup._wait_for_all(self._stop_grace, 0)
        sup.close_to_new_tasks()
        sup.cancel_where(lambda h: True, "closed", "stop")
        await sup._wait_for_all(None, 0)

    def _abort(self) -> None:
        self.state = Lifecycle.CLOSED
        self._inbox_send.close()
        self._scope.cancel()
        self._sup.close_to_new_tasks()

    def _emit_ended(self) -> None:
        sup = self._sup
        at = trio.current_time()
        sup.emit(SessionEnded(sup.next_seq(), at, **sup.stamp(at)))


class _PlayoutTracker:
    """``session.events()``: the supervisor's records, noting how far they were read."""

    __slots__ = ("_records", "_session")

    def __init__(self, session: Session, records: AsyncIterator[Record]) -> None:
        self._session = session
        self._records = records

    def __aiter__(self) -> _PlayoutTracker:
        return self

    async def __anext__(self) -> Record:
        record = await self._records.__anext__()
        self._session._was_read(record.seq)
        return record


def _publisher(
    hub: RecordHub, session_id: str, then: RecordSink | None, context: list[Context[Any]]
) -> RecordSink:
    def publish(record: Record) -> None:
        d = record.to_dict()
        if context:
            ctx = context[0]
            # a task's phase is kept by the Context; TaskStarted (issued inside create_task)
            # and the handler's records take the phase of the code that made them
            task_id = d.get("task_id")
            phase = ctx.task_phase(task_id) if task_id is not None else None
            if phase is None:
                phase = _current_phase.get()
            if phase is not None:
                d["phase"] = phase
            d = ctx._redact(d)
        hub.publish(session_id, d)
        if then is not None:
            then(record)

    return publish


def _background_marker(vocab: Vocabulary, then: RecordSink | None) -> RecordSink:
    """Mark what a task yields as the vocabulary's runtime does, before anyone sees it."""

    def mark(record: Record) -> None:
        if isinstance(record, TaskOutput):
            vocab.mark_background(record.event, record.task)
        if then is not None:
            then(record)

    return mark


@asynccontextmanager
async def open_session(
    handler: AgentHandler,
    *,
    session_id: str | None = None,
    agent_id: str = "",
    environment: str = "",
    variables: dict[str, str] | None = None,
    flavor: Flavor = "asyncio",
    events: str | Vocabulary = "taskrunner",
    interrupt_on: tuple[type, ...] | None = None,
    stop_grace: float = 0.0,
    max_buffer: int = 1024,
    max_pending_inputs: int = 256,
    history: int = 1000,
    data_history_per_key: int = 100,
    stuck_after: float | None = 10.0,
    on_record: RecordSink | None = None,
    hub: RecordHub | None = None,
    default_timeout: float | None = 30,
    limit: int | Limiter | None = None,
    pending_limit: int | None = None,
    store: Any = None,
    parameters: dict[str, Any] | None = None,
    input_timeout: float | None = None,
    writable_keys: Any = None,
    restore: dict[str, Any] | str | None = None,
    userdata: Any = None,
    memory: Any = None,
    notifier: Any = None,
) -> AsyncIterator[Session]:
    """Run one agent session for the duration of the block.

    ``handler(event, context)`` is an async generator (yielding output events) or a coroutine
    function, of the session's ``flavor`` (asyncio by default, as the seeds' code is; the
    flavour is also the default of its tasks). ``events`` is the vocabulary the handler is
    written against: ``"taskrunner"`` (the classes of :mod:`taskrunner.events`) or
    ``"primfunctions"`` (the VoiceRun SDK's ``primfunctions.events``, from the
    ``taskrunner[voicerun]`` extra, imported only then); the session sends and recognises
    that family's ``StartEvent``/``TextEvent``/``TimeoutEvent``/``StopEvent``, and marks what
    background tasks yield as that family's runtime does. ``interrupt_on`` lists the input
    event types that cancel interruptible tasks when sent (default: the vocabulary's
    ``TextEvent``). When the ``StopEvent`` has been handled,
    interruptible tasks are cancelled at once and the others after up to ``stop_grace``
    seconds (reason ``"closed"``).

    Leaving the block normally stops the session as :meth:`Session.stop` does (the inputs
    already sent are handled first). If the block raises, the handler is cancelled, the tasks
    are cancelled (``"closed"``) and the exception propagates unchanged.
    ``max_buffer``, ``history``, ``stuck_after`` and ``on_record`` are as for
    :func:`taskrunner.open_supervisor`, and so are ``default_timeout``, ``limit`` and
    ``pending_limit``. Every record carries the session id. In the Context a task created with
    the name of a running task replaces it (reason ``"replaced"``). With ``hub`` (a
    ``taskrunner.tools.hub.Hub``), the session registers itself (so the debugger can cancel
    its tasks and interrupt it) and publishes every record there as it is appended (with
    masked variable values redacted).

    The Context (see "The Context" and "The store" in the README): ``store`` (a
    :class:`taskrunner.Store`, a URL, or None for ``taskrunner.db`` in the working
    directory) holds variables, A/B tests, outcomes, memory and checkpoints;
    ``parameters`` go into the session data (source ``"parameters"``) before the
    ``StartEvent``; ``input_timeout`` (seconds) sends ``TimeoutEvent(data={"count",
    "ms_since_input"})`` after each such silence of the user; ``writable_keys`` limits
    ``set_data``; ``restore`` resumes from ``context.checkpoint()`` (or the session id of
    one saved in the store); ``userdata`` is ``context.userdata``; ``memory`` a
    ``MemoryProvider`` (default: full-text search in the store); ``notifier`` tells the
    ``notify`` addresses when an A/B test concludes.
    """
    is_gen = _check_handler(handler)
    opts: SessionOptions = check_session_options(
        store=store,
        parameters=parameters,
        input_timeout=input_timeout,
        writable_keys=writable_keys,
        restore=restore,
        memory=memory,
        notifier=notifier,
    )
    if session_id is None and isinstance(restore, dict):
        session_id = restore.get("session_id")
    elif session_id is None and isinstance(restore, str):
        session_id = restore
    flavor = check_flavor(flavor)
    vocabulary = resolve_vocabulary(events)
    if interrupt_on is None:
        interrupt_on = (vocabulary.text_type,)
    if session_id is None:
        session_id = f"session-{uuid.uuid4().hex[:12]}"
    for name, value in (
        ("session_id", session_id),
        ("agent_id", agent_id),
        ("environment", environment),
    ):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r}")
    if variables is None:
        variables = {}
    elif not isinstance(variables, dict):
        raise TypeError(f"variables must be a dict of str, got {type(variables).__name__}")
    if not isinstance(interrupt_on, tuple) or not all(
        isinstance(t, type) and issubclass(t, vocabulary.event_type) for t in interrupt_on
    ):
        raise TypeError(
            f"interrupt_on must be a tuple of Event classes of {vocabulary.module_name} "
            f"(e.g. (TextEvent,)), got {interrupt_on!r}"
        )
    grace = check_seconds(stop_grace, "stop_grace")
    if math.isinf(grace):
        raise ValueError("stop_grace must be a finite number of seconds >= 0, got inf")
    check_count(max_pending_inputs, "max_pending_inputs")
    published_context: list[Context[Any]] = []
    if hub is not None:
        on_record = _publisher(hub, session_id, on_record, published_context)
    if vocabulary.name != "taskrunner":
        on_record = _background_marker(vocabulary, on_record)
    async with open_supervisor(
        flavor=flavor,
        max_buffer=max_buffer,
        history=history,
        stuck_after=stuck_after,
        on_record=on_record,
        default_timeout=default_timeout,
        limit=limit,
        pending_limit=pending_limit,
        session_id=session_id,
    ) as sup:
        session: Session | None = None

        def interrupt() -> int:
            assert session is not None
            return session.interrupt()

        context = Context(
            sup,
            session_id=session_id,
            agent_id=agent_id,
            environment=environment,
            function_id=getattr(handler, "__qualname__", repr(handler)),
            variables=dict(variables),
            history_per_key=data_history_per_key,
            on_interrupt=interrupt,
            store=opts.store,
            writable_keys=opts.writable_keys,
            userdata=userdata,
            memory=opts.memory,
            notifier=opts.notifier,
        )
        published_context.append(context)
        session = Session(
            sup,
            handler,
            is_gen,
            flavor,
            context,
            interrupt_on,
            grace,
            max_pending_inputs,
            vocabulary,
        )
        context._session = session
        sup.call_before_close(session._emit_ended)
        if hub is not None:
            hub.register(session_id, session)
            sup.call_before_close(partial(hub.unregister_control, session_id))
        at = trio.current_time()
        sup.emit(
            SessionStarted(
                sup.next_seq(), at, agent_id, environment, **sup.stamp(at)
            )
        )
        await context._start(opts.parameters, opts.restore)
        sup.start_job(session._dispatch, name=f"taskrunner.session:{session_id}")
        if opts.input_timeout is not None:
            session._input_timeout = opts.input_timeout
            session._last_input = trio.current_time()
            session._silence_lot = ParkingLot()
            session._silence_scope = trio.CancelScope()
            sup.start_job(session._watch_silence, name=f"taskrunner.silence:{session_id}")
        try:
            yield session
        except BaseException:
            session._abort()
            raise
        await session._stop()
