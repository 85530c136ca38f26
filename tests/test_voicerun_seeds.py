"""The seeds' VoiceRun examples, with their original primfunctions imports, run unchanged.

Driven with taskrunner.testing (the vocabulary is picked from the module's imports),
including the examples that use the rest of the Context (A/B tests, outcomes, cache,
completion messages).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from primfunctions.events import (
    AudioEvent,
    CustomEvent,
    LogEvent,
    SilenceEvent,
    TextToSpeechEvent,
)

from taskrunner.testing import TestRunner, contains, regex, run_agent

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voicerun"

def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"seed_{name}", FIXTURES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- seed 000


async def test_order_agent(autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="primfunctions")
    agent_module = load("order_agent")
    async with run_agent(agent_module.handler, agent_id="orders") as agent:
        assert agent.vocabulary.name == "primfunctions"
        turn = await agent.say("Place order please", wait=0)
        turn.expect.next_output(TextToSpeechEvent, text="Processing your order in the background.")
        turn.expect.no_more_outputs()
        turn.expect.task("order_processing").started(timeout=60)
        turn.expect.task("order_processing").still_running()

        turn = await agent.say("check status", wait=0)
        turn.expect.next_output(TextToSpeechEvent, text="Your order status is: pending")

        later = await agent.advance(6)
        assert later.expect.task("order_processing").finished().at - later.t0 == 5

        turn = await agent.say("check status")
        turn.expect.next_output(TextToSpeechEvent, text="Your order status is: completed")
        assert agent.context.get_data("order_status") == "completed"
    # The SDK's logger goes to logging (its fallback would print into --json output).
    assert [r.getMessage() for r in caplog.records if r.name == "primfunctions"] == [
        "Starting order processing...",
        "Order processing complete",
    ]


async def test_basic_structure_agent(autojump_clock: Any) -> None:
    agent_module = load("basic_agent")
    async with run_agent(
        agent_module.handler, variables={"OPENAI_API_KEY": "sk-test"}, agent_id="basic"
    ) as agent:
        (await agent.start()).expect.next_output(TextToSpeechEvent, text="Hello!", voice="nova")
        assert agent.context.get_data("has_key") is True
        turn = await agent.say("hi there", source="speech")
        turn.expect.next_output(TextToSpeechEvent, text="You said: hi there")
        turn = await agent.timeout(count=1, ms_since_input=1000)
        turn.expect.next_output(TextToSpeechEvent, text="Are you still there?")
        turn.expect.no_more_outputs()
        turn = await agent.stop()
        turn.expect.next_output(TextToSpeechEvent, text="Goodbye!")


# ---------------------------------------------------------------------------- seed 001


async def test_background_agent_waiting_for_the_task(autojump_clock: Any) -> None:
    agent_module = load("background_agent")
    async with run_agent(agent_module.handler) as agent:
        turn = await agent.start()  # waits until the task the turn started has ended
        turn.expect.next_output(TextToSpeechEvent, text=contains("in the background"))
        log = turn.expect.next_output(LogEvent, message="Processing background task...")
        done = turn.expect.next_output(LogEvent, message="Background task done")
        turn.expect.no_more_outputs()
        # As VoiceRun's runtime marks them: orange in its debugger, with the task's name.
        (name,) = {log.background_task_name, done.background_task_name}
        assert name.startswith("background_task-") and log.background and done.background
        turn.expect.task(name).finished()

        turn = await agent.say("how is it going?")
        turn.expect.next_output(
            TextToSpeechEvent,
            text=regex(r"^The data is done processing\. Completion was \d+ seconds ago\.$"),
        )
        turn.expect.next_output(TextToSpeechEvent, text="Starting new task...")
        second = turn.expect.next_output(LogEvent).background_task_name
        assert second != name  # the new task has its own generated name
        turn.expect.task(second).finished()


async def test_background_agent_answering_while_the_task_runs(autojump_clock: Any) -> None:
    agent_module = load("background_agent")
    async with run_agent(agent_module.handler, wait=0) as agent:
        await agent.start()
        turn = await agent.say("done yet?")
        turn.expect.next_output(TextToSpeechEvent, text="The data is still processing.")
        turn.expect.no_more_outputs()


async def test_output_events_and_custom_events(autojump_clock: Any) -> None:
    agent_module = load("output_events_agent")
    async with run_agent(agent_module.handler) as agent:
        turn = await agent.start()
        turn.expect.next_output(TextToSpeechEvent, text="Hello, how can I help you?", cache=True)
        turn.expect.next_output(AudioEvent, path="/path/to/audio.mp3")
        turn.expect.next_output(SilenceEvent, duration=2000)
        turn.expect.next_output(CustomEvent, name="payment_processed", amount=100.0)
        turn.expect.no_more_outputs()
        turn = await agent.send(CustomEvent("payment_processed", {"amount": 100.00}))
        turn.expect.next_output(TextToSpeechEvent, text="Payment of 100.0 processed")


async def test_template_with_voiceruns_own_test_style(autojump_clock: Any) -> None:
    # A test written for primfunctions.test_runner.TestRunner, with only the import changed.
    runner = TestRunner(load("template_handler").handler)
    await runner.start()
    assert "Hello! How can I help you today?" in runner.get_tts_texts()
    assert runner.has_event_type(TextToSpeechEvent)
    await runner.text("hello world")
    assert "I heard you say: hello world" in runner.get_tts_texts()
    runner.expect_any_tts_contains("hello world")
    runner.expect_no_errors()
    await runner.stop()
    assert runner.get_last_tts_text() == "Goodbye! Have a great day."
    assert runner.get_tts_events()[0].data["voice"] == {"provider": "openai", "identifier": "coral"}


# ---------------------------------------------------------------------------- issue 10 Context


async def test_ab_test_agent(autojump_clock: Any) -> None:
    greetings = {
        "Hello! How can I help you today?",
        "Hi there! What can I do for you?",
        "Welcome! How may I assist you?",
    }
    async with run_agent(load("ab_test_agent").handler) as agent:
        first = (await agent.start()).expect.next_output(TextToSpeechEvent).data["text"]
        assert first in greetings
        again = await agent.say("hello?")
        again.expect.next_output(TextToSpeechEvent, text=first)  # the same for the session
        again.expect.no_failures()


async def test_stop_conditions_agent(autojump_clock: Any) -> None:
    async with run_agent(load("stop_conditions_agent").handler) as agent:
        turn = await agent.start()
        turn.expect.no_failures()
        said = turn.expect.next_output(TextToSpeechEvent).data["text"]
        assert said == f"The button is {agent.context.get_test('button_color')}."  # type: ignore[attr-defined]


async def test_outcomes_agent(autojump_clock: Any) -> None:
    async with run_agent(load("outcomes_agent").handler) as agent:
        (await agent.start()).expect.no_failures()
        turn = await agent.say("I'd like to order")
        turn.expect.next_output(TextToSpeechEvent, text="This is message number 1.")
        turn = await agent.say("thank you, great")
        turn.expect.next_output(TextToSpeechEvent, text="This is message number 2.")
        context: Any = agent.context
        assert context.get_outcome("order_value") == 29.99
        assert context.get_outcome("user_satisfied") is True
        assert context.get_testing_metadata("segment") == "returning_customer"


async def test_cache_agent(autojump_clock: Any) -> None:
    async with run_agent(load("cache_agent").handler) as agent:
        turn = await agent.say("weather in NYC")
        turn.expect.next_output(TextToSpeechEvent, text="Query 1: weather in NYC")
        turn = await agent.say("and tomorrow?")
        turn.expect.next_output(TextToSpeechEvent, text="Query 2: and tomorrow?")
        context: Any = agent.context
        assert context.cache_get("last_query") == "and tomorrow?"


async def test_completions_agent(autojump_clock: Any) -> None:
    async with run_agent(load("completions_agent").handler) as agent:
        turn = await agent.say("hi")
        turn.expect.next_output(TextToSpeechEvent, text="I have seen 1 message(s).")
        turn = await agent.say("again")
        turn.expect.next_output(TextToSpeechEvent, text="I have seen 3 message(s).")
        context: Any = agent.context
        roles = [m["role"] for m in context.get_completion_messages()]
        assert roles == ["user", "assistant", "user", "assistant"]
