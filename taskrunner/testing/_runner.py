"""TestRunner: VoiceRun's test runner, its class and method names, backed by a real session."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import trio

from .._core.errors import TaskRunnerError
from .._core.records import Record, TaskFailed, TaskOutput
from .._session._vocabulary import Vocabulary, detect_vocabulary, resolve_vocabulary
from .._session.context import Context
from .._session.records import HandlerFailed, HandlerOutput
from .._session.session import AgentHandler
from ._agent import Agent, run_agent
from ._thread_host import ThreadHost, in_trio

__all__ = ["TestRunner", "create_test_runner"]

T = TypeVar("T")


class TestRunner:
    """A runner with the names of VoiceRun's ``primfunctions.test_runner.TestRunner``,
    backed by a taskrunner session: background tasks really run (supervised, with their
    timeouts and interruption), on trio's clock.

    ``runner = TestRunner(handler, **session_options)``, then ``await runner.start()``,
    ``await runner.text("hi")``... Each input method returns the output events of its turn:
    what the handler yielded, and what tasks yielded meanwhile (with
    ``wait_background=True``, after every task has ended). Background output that arrives
    later is captured too (``captured_events``). A handler that raises makes the input method
    raise that exception, as VoiceRun's runner does.

    ``agent_id``, ``environment``, ``variables``, ``session_id`` go to the session; ``data``
    is put into the session data before the first input; ``events`` is the vocabulary
    (``"auto"``: the handler module's). Use it as ``async with TestRunner(h) as runner:`` to
    bound the session to a block; without that, the first input opens the session in a
    background task of the trio run, and :meth:`close` (or :meth:`stop`, or the end of the
    test's trio run, which cancels its tasks) ends it. An input method cancelled while it
    waits lets the cancellation propagate; the session stays open.

    From asyncio code (a ``@pytest.mark.asyncio`` test, ``asyncio.run``), the session runs in
    a trio run of its own thread, on a mock clock that stands still between the runner's calls
    and jumps ahead during them (``wait_background=True`` sees a 30 s task end at once); it
    ends with :meth:`stop`, :meth:`close`, or when the runner is garbage-collected. There,
    ``runner.context`` is for reading (write session data with ``data=``).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        handler: AgentHandler,
        *,
        agent_id: str = "",
        environment: str = "",
        variables: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        session_id: str | None = None,
        events: str | Vocabulary = "auto",
        **session_options: Any,
    ) -> None:
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        self.handler = handler
        self._options: dict[str, Any] = dict(
            agent_id=agent_id,
            environment=environment,
            variables=variables,
            session_id=session_id,
            **session_options,
        )
        self._data = dict(data or {})
        self._events = events
        self._agent: Agent | None = None
        self._cm: AbstractAsyncContextManager[Agent] | None = None
        self._close_host: trio.Event | None = None
        self._host_done: trio.Event | None = None
        self._thread_host: ThreadHost | None = None
        self._captured: list[tuple[int, Any]] = []
        self._seen = 0
        self._turn = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._agent else "not started")
        return f"<TestRunner {state} turn={self._turn} events={len(self._captured)}>"

    # ------------------------------------------------------------------ lifecycle

    def _agent_cm(self) -> AbstractAsyncContextManager[Agent]:
        events = self._events
        if events == "auto":
            events = detect_vocabulary(self.handler)
        resolve_vocabulary(events)  # a missing extra is reported here, before anything runs
        return run_agent(self.handler, events=events, wait=0, **self._options)

    async def __aenter__(self) -> TestRunner:
        if self._agent is not None or self._closed:
            raise RuntimeError("this TestRunner is already open; use one runner per block")
        if not in_trio():
            await self._open_in_thread()
            return self
        cm = self._agent_cm()
        self._agent = await cm.__aenter__()
        self._cm = cm
        self._put_data()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        cm, self._cm = self._cm, None
        self._closed = True
        if cm is None:
            await self.close()
            return None
        try:
            return await cm.__aexit__(exc_type, exc, tb)
        finally:
            self._sync()

    def _put_data(self) -> None:
        assert self._agent is not None
        for key, value in self._data.items():
            self._agent.context.set_data(key, value)

    async def _open_in_thread(self) -> None:
        host = ThreadHost(self._agent_cm(), dict(self._data))
        try:
            self._agent = await host.start()
        except BaseException:
            self._closed = True
            raise
        self._thread_host = host
        weakref.finalize(self, host.request_close)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` where the session lives: here in trio, in the host thread otherwise."""
        if self._thread_host is None and not in_trio():
            if self._closed:
                raise TaskRunnerError("this TestRunner's session has ended (stop() or close())")
            await self._open_in_thread()
        if self._thread_host is not None:
            return await self._thread_host.call(fn)
        return await fn()

    async def _ensure_open(self) -> Agent:
        if self._agent is not None:
            return self._agent
        if self._closed:
            raise TaskRunnerError("this TestRunner's session has ended (stop() or close())")
        cm = self._agent_cm()
        ready = trio.Event()
        self._close_host = close = trio.Event()
        self._host_done = done = trio.Event()
        failure: list[BaseException] = []

        async def host() -> None:
            try:
                async with cm as agent:
                    self._agent = agent
                    self._put_data()
                    ready.set()
                    await close.wait()
            except Exception as exc:  # reported to the caller of the first input
                failure.append(exc)
            finally:
                ready.set()
                done.set()

        trio.lowlevel.spawn_system_task(host, name=f"taskrunner.testing.TestRunner:{self!r}")
        await ready.wait()
        if failure:
            self._closed = True
            raise failure[0]
        assert self._agent is not None
        return self._agent

    async def close(self) -> None:
        """End the session (its tasks are ended as ``open_session`` does) if it is open.
        Idempotent."""
        self._closed = True
        if self._thread_host is not None:
            await self._thread_host.aclose()
        elif self._close_host is not None and self._host_done is not None:
            self._close_host.set()
            await self._host_done.wait()
        self._sync()

    # ------------------------------------------------------------------ core execution

    @property
    def context(self) -> Context:
        """The session's :class:`~taskrunner.Context` (once the first input was sent)."""
        if self._agent is None:
            raise RuntimeError(
                "the TestRunner's session opens with the first input: call start() (or "
                "send/text) before using runner.context, or pass data= to TestRunner(...)"
            )
        return self._agent.context

    @property
    def agent(self) -> Agent:
        """The :class:`Agent` behind the runner (turns with expectations, records)."""
        if self._agent is None:
            raise RuntimeError("the TestRunner's session opens with the first input")
        return self._agent

    @property
    def records(self) -> list[Record]:
        """Every taskrunner record of the session so far."""
        return self._agent.records if self._agent is not None else []

    def _sync(self) -> None:
        """Capture the output events that arrived since the last look, tagged with the turn."""
        if self._agent is None:
            return
        records = self._agent._records
        for record in records[self._seen :]:
            if isinstance(record, (HandlerOutput, TaskOutput)):
                event = record.event
                if getattr(event, "turn", 1) in (0, None):
                    try:
                        event.turn = self._turn
                    except AttributeError:  # frozen events (taskrunner's) carry no turn
                        pass
                self._captured.append((self._turn, event))
        self._seen = len(records)

    async def send(self, event: Any, *, wait_background: bool = False) -> list[Any]:
        """Send one input event; return the output events captured during its turn.

        With ``wait_background=True``, also wait until every background task has ended (the
        session's ``wait_for_all_tasks``). If the handler raised, that exception is raised.
        """
        return await self._call(partial(self._send, event, wait_background))

    async def _send(self, event: Any, wait_background: bool) -> list[Any]:
        agent = await self._ensure_open()
        self._sync()
        self._turn += 1
        if getattr(event, "turn", None) == 0:
            try:
                event.turn = self._turn
            except AttributeError:
                pass
        before = len(self._captured)
        turn = await agent.send(event, wait=0)
        if wait_background and not agent.vocabulary.is_stop(event):
            await agent.context.wait_for_all_tasks()
        self._sync()
        for record in turn.records:
            if isinstance(record, HandlerFailed) and record.input is event:
                raise record.error
        return [e for _, e in self._captured[before:]]

    async def start(self, *, wait_background: bool = False) -> list[Any]:
        """Reset the captured events and send a ``StartEvent``."""
        self.reset()
        return await self._call(partial(self._make_and_send, "start", (), wait_background))

    async def _make_and_send(self, kind: str, args: tuple[Any, ...], wait: bool) -> list[Any]:
        agent = await self._ensure_open()
        vocab = agent.vocabulary
        maker: Callable[..., Any] = getattr(vocab, kind)
        return await self._send(maker(*args), wait)

    async def text(
        self, message: str, source: str = "text", *, wait_background: bool = False
    ) -> list[Any]:
        """Send a ``TextEvent`` with ``message``."""
        return await self._call(
            partial(self._make_and_send, "text", (message, source), wait_background)
        )

    async def timeout(
        self, count: int = 1, ms_since_input: int = 5000, *, wait_background: bool = False
    ) -> list[Any]:
        """Send a ``TimeoutEvent``."""
        return await self._call(
            partial(self._make_and_send, "timeout", (count, ms_since_input), wait_background)
        )

    async def stop(self, *, wait_background: bool = False) -> list[Any]:
        """Send a ``StopEvent``: the handler answers, then the session ends its tasks (as a
        session does at its end) and takes no more input."""
        outputs = await self._call(partial(self._make_and_send, "stop", (), wait_background))
        if self._cm is None:
            await self.close()
            self._sync()
        return outputs

    async def run(self, inputs: Iterable[Any], *, wait_background: bool = False) -> list[Any]:
        """Send each input in turn (a str is a ``TextEvent``); return all their outputs."""
        start = len(self._captured)
        for item in inputs:
            if isinstance(item, str):
                await self.text(item, wait_background=wait_background)
            else:
                await self.send(item, wait_background=wait_background)
        return [e for _, e in self._captured[start:]]

    async def run_dialogue(self, *inputs: Any, wait_background: bool = False) -> list[Any]:
        """``run(inputs)`` with the inputs as arguments."""
        return await self.run(inputs, wait_background=wait_background)

    # ------------------------------------------------------------------ inspecting

    @property
    def captured_events(self) -> list[Any]:
        """Every output event captured since the last :meth:`reset`, in order."""
        self._sync()
        return [e for _, e in self._captured]

    def last_turn_events(self) -> list[Any]:
        """The output events captured during the last turn."""
        self._sync()
        return [e for t, e in self._captured if t == self._turn]

    def events_by_turn(self) -> dict[int, list[Any]]:
        """The captured output events grouped by turn number."""
        self._sync()
        by_turn: dict[int, list[Any]] = {}
        for t, e in self._captured:
            by_turn.setdefault(t, []).append(e)
        return by_turn

    def _vocab(self) -> Vocabulary:
        if self._agent is not None:
            return self._agent.vocabulary
        events = self._events
        return resolve_vocabulary(detect_vocabulary(self.handler) if events == "auto" else events)

    def get_tts_events(self) -> list[Any]:
        """The captured text-to-speech events."""
        tts = self._vocab().tts_type
        return [e for e in self.captured_events if isinstance(e, tts)]

    def get_tts_texts(self) -> list[str]:
        """The texts of the captured text-to-speech events."""
        vocab = self._vocab()
        texts = (vocab.tts_text(e) for e in self.captured_events)
        return [t for t in texts if t is not None]

    def get_last_tts_text(self) -> str | None:
        """The text of the last text-to-speech event, None if there was none."""
        texts = self.get_tts_texts()
        return texts[-1] if texts else None

    def get_events_by_type(self, event_type: type) -> list[Any]:
        """The captured events that are instances of ``event_type``."""
        if not isinstance(event_type, type):
            raise TypeError(f"event_type must be a class, got {type(event_type).__name__}")
        return [e for e in self.captured_events if isinstance(e, event_type)]

    def get_events_by_name(self, event_name: str) -> list[Any]:
        """The captured events whose ``name`` is ``event_name`` (primfunctions events)."""
        return [e for e in self.captured_events if getattr(e, "name", None) == event_name]

    def has_event_type(self, event_type: type) -> bool:
        """True if some captured event is an ``event_type``."""
        return bool(self.get_events_by_type(event_type))

    def has_event_name(self, event_name: str) -> bool:
        """True if some captured event is named ``event_name``."""
        return bool(self.get_events_by_name(event_name))

    def expect_any_tts_contains(self, substring: str) -> None:
        """Raise ``AssertionError`` unless some captured text-to-speech text contains
        ``substring``."""
        texts = self.get_tts_texts()
        if not any(substring in t for t in texts):
            raise AssertionError(
                f"No TextToSpeechEvent contained substring: {substring!r}. "
                f"Got {len(texts)} TTS events with texts: {texts}\n\n{self._transcript()}"
            )

    def expect_event_types_in_last_turn(self, expected_types: list[str]) -> None:
        """Raise ``AssertionError`` unless the last turn's events have exactly these names
        (``event.name``, or the class name for events without one)."""
        names = [getattr(e, "name", type(e).__name__) for e in self.last_turn_events()]
        if names != list(expected_types):
            raise AssertionError(
                f"Unexpected events for turn {self._turn}. Expected {list(expected_types)}, "
                f"got {names}\n\n{self._transcript()}"
            )

    def expect_no_errors(self) -> None:
        """Raise ``AssertionError`` if the handler or a task failed, or an ``ErrorEvent`` was
        yielded, since the session opened."""
        problems: list[str] = []
        for record in self.records:
            if isinstance(record, HandlerFailed):
                problems.append(f"the handler failed: {_error(record.error)}")
            elif isinstance(record, TaskFailed):
                problems.append(f"task {record.task!r} failed: {_error(record.error)}")
        for event in self.captured_events:
            if type(event).__name__ == "ErrorEvent":
                data = getattr(event, "data", None)
                message = data.get("message", "") if isinstance(data, dict) else event
                problems.append(f"ErrorEvent: {message}")
        if problems:
            raise AssertionError(
                f"Expected no errors, but {len(problems)} error(s): "
                + "; ".join(problems)
                + f"\n\n{self._transcript()}"
            )

    def reset(self) -> None:
        """Forget the captured events and restart the turn count (the session goes on)."""
        self._sync()
        self._captured.clear()
        self._turn = 0

    def _transcript(self) -> str:
        return self._agent.transcript() if self._agent is not None else "(no session yet)"


def _error(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__}: <unprintable>"


def create_test_runner(handler: AgentHandler, **options: Any) -> TestRunner:
    """``TestRunner(handler, **options)``, under the name of VoiceRun's factory."""
    return TestRunner(handler, **options)
