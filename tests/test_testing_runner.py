"""taskrunner.testing.TestRunner: VoiceRun's runner names, backed by a real session."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from primfunctions import events as pf

import taskrunner
from taskrunner import events as tr
from taskrunner.events import SessionEnded, TaskCancelled
from taskrunner.testing import TestRunner, create_test_runner


@pytest.fixture(params=["asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def voicerun_agent(flavor: str) -> Any:
    """A VoiceRun agent: a background lookup that speaks when done, errors, a crash."""
    sleep = trio.sleep if flavor == "trio" else asyncio.sleep

    async def lookup(context: Any) -> AsyncIterator[Any]:
        await sleep(3)
        context.set_data("found", True)
        yield pf.TextToSpeechEvent(text="I found your booking.", voice="nova")

    async def explode() -> None:
        await sleep(1)
        raise ValueError("backend down")

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            yield pf.TextToSpeechEvent(text=f"Hello {context.get_data('name', 'guest')}!")
        elif isinstance(event, pf.TextEvent):
            text = event.data["text"]
            if text == "booking":
                context.create_task(lookup(context), name="lookup")
                yield pf.TextToSpeechEvent(text="Let me look.", voice="nova")
            elif text == "explode":
                context.create_task(explode, name="explode")
            elif text == "error event":
                yield pf.ErrorEvent("quota exceeded")
            elif text == "crash":
                raise KeyError("crashed")
            else:
                yield pf.TextToSpeechEvent(text=f"Echo: {text}")
                yield pf.LogEvent("echoed")
        elif isinstance(event, pf.TimeoutEvent):
            yield pf.TextToSpeechEvent(text=f"Still there? ({event.data['count']})")
        elif isinstance(event, pf.StopEvent):
            yield pf.TextToSpeechEvent(text="Bye.")

    return handler


async def test_voicerun_style_test(flavor: str, autojump_clock: Any) -> None:
    runner = TestRunner(
        voicerun_agent(flavor), flavor=flavor, data={"name": "Ada"}, events="primfunctions"
    )
    out = await runner.start()
    assert [e.data["text"] for e in out] == ["Hello Ada!"]
    assert runner.context.get_data("name") == "Ada"
    out = await runner.text("booking")
    assert [e.data["text"] for e in out] == ["Let me look."]  # the lookup is still running
    await trio.sleep(5)
    # What the task said later is captured too, marked as background output of its turn.
    assert runner.get_tts_texts() == ["Hello Ada!", "Let me look.", "I found your booking."]
    late = runner.get_tts_events()[-1]
    assert late.background and late.background_task_name == "lookup" and late.turn == 2
    assert runner.get_last_tts_text() == "I found your booking."
    out = await runner.timeout(count=2)
    assert [e.data["text"] for e in out] == ["Still there? (2)"]
    assert [e.data["text"] for e in runner.last_turn_events()] == ["Still there? (2)"]
    assert sorted(runner.events_by_turn()) == [1, 2, 3]
    runner.expect_any_tts_contains("booking")
    runner.expect_no_errors()
    out = await runner.stop()
    assert [e.data["text"] for e in out] == ["Bye."]
    assert isinstance(runner.records[-1], SessionEnded)  # stop() ended the session
    with pytest.raises(taskrunner.SessionClosedError, match="has received a StopEvent"):
        await runner.text("hello?")


async def test_wait_background(flavor: str, autojump_clock: Any) -> None:
    async with TestRunner(voicerun_agent(flavor), flavor=flavor, events="primfunctions") as runner:
        await runner.start()
        start = trio.current_time()
        out = await runner.text("booking", wait_background=True)
        assert trio.current_time() - start == 3
        assert [e.data["text"] for e in out] == ["Let me look.", "I found your booking."]
        assert runner.context.get_data("found") is True
        await runner.text("booking")
    # Leaving the block ends the session: the second lookup was cancelled ("closed").
    ends = [r for r in runner.records if isinstance(r, TaskCancelled)]
    assert [(r.task, r.reason) for r in ends] == [("lookup", "closed")]
    assert isinstance(runner.records[-1], SessionEnded)


async def test_inspecting_and_reset(autojump_clock: Any) -> None:
    async with TestRunner(voicerun_agent("asyncio"), events="primfunctions") as runner:
        await runner.run_dialogue("hi", pf.TimeoutEvent(count=1, ms_since_input=10))
        assert runner.get_tts_texts() == ["Echo: hi", "Still there? (1)"]
        assert [type(e).__name__ for e in runner.get_events_by_type(pf.LogEvent)] == ["LogEvent"]
        assert runner.has_event_type(pf.LogEvent) and not runner.has_event_type(pf.AudioEvent)
        assert runner.has_event_name("log") and len(runner.get_events_by_name("text_to_speech"))
        runner.expect_event_types_in_last_turn(["text_to_speech"])
        with pytest.raises(AssertionError) as info:
            runner.expect_event_types_in_last_turn(["log"])
        assert str(info.value).startswith(
            "Unexpected events for turn 2. Expected ['log'], got ['text_to_speech']\n\n"
            "session transcript\n"
        )
        runner.reset()
        assert runner.captured_events == [] and runner.get_last_tts_text() is None
        out = await runner.run(["again"])
        assert [e.data["text"] for e in out if e.name == "text_to_speech"] == ["Echo: again"]
        assert list(runner.events_by_turn()) == [1]
        with pytest.raises(TypeError, match="event_type must be a class"):
            runner.get_events_by_type("log")  # type: ignore[arg-type]


async def test_failures(flavor: str, autojump_clock: Any) -> None:
    runner = TestRunner(voicerun_agent(flavor), flavor=flavor, events="primfunctions")
    with pytest.raises(RuntimeError, match="opens with the first input: call start"):
        runner.context  # noqa: B018
    await runner.start()
    # As VoiceRun's runner does, the handler's exception comes out of the input method.
    with pytest.raises(KeyError, match="crashed"):
        await runner.text("crash")
    with pytest.raises(AssertionError) as info:
        runner.expect_no_errors()
    assert str(info.value).startswith(
        "Expected no errors, but 1 error(s): the handler failed: KeyError: 'crashed'"
    )
    await runner.text("explode", wait_background=True)
    await runner.text("error event")
    with pytest.raises(AssertionError) as info:
        runner.expect_no_errors()
    message = str(info.value)
    assert "task 'explode' failed: ValueError: backend down" in message
    assert "ErrorEvent: quota exceeded" in message
    assert "[explode] FAILED: ValueError('backend down')" in message  # the transcript
    with pytest.raises(AssertionError) as info:
        runner.expect_any_tts_contains("goodbye")
    assert str(info.value).startswith(
        "No TextToSpeechEvent contained substring: 'goodbye'. Got 1 TTS events with texts: "
        "['Hello guest!']"
    )
    await runner.close()
    assert isinstance(runner.records[-1], SessionEnded)


async def test_close_ends_the_tasks(autojump_clock: Any) -> None:
    runner = create_test_runner(voicerun_agent("asyncio"), events="primfunctions")
    assert isinstance(runner, TestRunner)
    await runner.text("booking")
    await runner.close()
    await runner.close()  # idempotent
    ends = [r for r in runner.records if isinstance(r, TaskCancelled)]
    assert [(r.task, r.reason) for r in ends] == [("lookup", "closed")]


async def test_the_vocabulary_is_the_handler_modules(autojump_clock: Any) -> None:
    order_agent = load_example("order_agent")  # imports taskrunner.events only
    runner = TestRunner(order_agent.handler)
    out = await runner.text("check status")
    assert out == [tr.TextToSpeechEvent(text="Your order status is: pending", voice="nova")]
    assert runner.get_tts_texts() == ["Your order status is: pending"]
    await runner.close()
    # This module imports both families: which one a handler here uses must be said.
    ambiguous = TestRunner(voicerun_agent("asyncio"))
    with pytest.raises(ValueError, match="imports events from both primfunctions.events and "
                       "taskrunner.events; say which ones its handler uses with events="):
        await ambiguous.start()


def load_example(name: str) -> Any:
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"runner_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_bad_handler_is_reported_at_the_first_input(autojump_clock: Any) -> None:
    def not_async(event: Any, context: Any) -> None:
        pass

    runner = TestRunner(not_async, events="taskrunner")
    with pytest.raises(TypeError, match="handler must be `async def handler"):
        await runner.start()
    with pytest.raises(TypeError, match="data must be a dict"):
        TestRunner(not_async, data=[1])  # type: ignore[arg-type]
    runner2 = TestRunner(voicerun_agent("asyncio"), events="primfunctions")
    async with runner2:
        with pytest.raises(RuntimeError, match="already open"):
            await runner2.__aenter__()
