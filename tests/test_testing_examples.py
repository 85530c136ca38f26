"""The project's example agents (examples/), tested as agent developers would: with
taskrunner.testing, on trio's mock clock."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from taskrunner.events import LogEvent, TextToSpeechEvent
from taskrunner.testing import TestRunner, contains, regex, run_agent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"helpers_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_order_agent(autojump_clock: Any) -> None:
    order_agent = load_example("order_agent")
    async with run_agent(order_agent.handler, wait=0) as agent:
        turn = await agent.say("place order")
        turn.expect.next_output(TextToSpeechEvent, text=contains("in the background"))
        turn.expect.task("order_processing").started(timeout=60)
        (await agent.say("check status")).expect.next_output(
            TextToSpeechEvent, text="Your order status is: pending"
        )
        (await agent.advance(6)).expect.task("order_processing").finished()
        (await agent.say("check status")).expect.next_output(
            TextToSpeechEvent, text="Your order status is: completed"
        )


async def test_background_agent(autojump_clock: Any) -> None:
    background_agent = load_example("background_agent")
    async with run_agent(background_agent.handler) as agent:
        turn = await agent.start()
        turn.expect.next_output(TextToSpeechEvent, voice="brooke")
        turn.expect.next_output(LogEvent, message="Processing background task...")
        turn.expect.next_output(LogEvent, message="Background task done")
        turn.expect.no_more_outputs()
        turn = await agent.say("status?")
        turn.expect.next_output(TextToSpeechEvent, text=regex(r"^The data is done processing"))


async def test_interruptible_agent(autojump_clock: Any) -> None:
    interruptible_agent = load_example("interruptible_agent")
    async with run_agent(interruptible_agent.handler, wait=0) as agent:
        await agent.start()
        suggestions = await agent.advance(2.5)
        assert [e.message for e in suggestions.outputs] == [
            "suggesting coffee", "suggesting bagel"
        ]
        pay = await agent.say("I want to pay")
        pay.expect.task("suggest").cancelled(reason="interrupted")
        pay.expect.next_output(TextToSpeechEvent, text="Charging your card.")
        await agent.advance(1)
        # Arrives during the protected charge: the interruption waits for it to complete.
        turn = await agent.say("wait, one more thing", wait=1.5)
        turn.expect.next_output(TextToSpeechEvent, text="OK. Charged so far: False.")
        turn.expect.next_output(LogEvent, message="card charged")
        assert turn.expect.task("charge_card").cancelled(reason="interrupted").at == 4.5 + turn.t0
        assert agent.context.get_data("charged") is True


async def test_trio_agent(autojump_clock: Any) -> None:
    trio_agent = load_example("trio_agent")
    async with run_agent(trio_agent.handler, flavor=trio_agent.FLAVOR) as agent:
        (await agent.start(wait=0)).expect.task("heartbeat").started(timeout=None)
        turn = await agent.say("weather")
        turn.expect.task("lookup weather").finished()
        assert turn.expect.task("lookup weather").outputs == [LogEvent("cache: 'weather' found")]
        beats = await agent.advance(4)
        assert beats.expect.task("heartbeat").outputs == [LogEvent("still here")] * 2
        (await agent.stop()).expect.task("heartbeat").cancelled(reason="closed")


async def test_order_agent_with_voiceruns_runner_names(autojump_clock: Any) -> None:
    order_agent = load_example("order_agent")
    async with TestRunner(order_agent.handler) as runner:
        await runner.text("place order", wait_background=True)
        await runner.text("check status")
        assert runner.get_tts_texts() == [
            "Processing your order in the background.",
            "Your order status is: completed",
        ]
        runner.expect_no_errors()
