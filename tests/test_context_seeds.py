"""The seeds' examples (seed 000 and 001), their code unchanged but for imports, in both
flavours, against a real store (examples/seeds/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import trio
from context_support import Ran, converse, outputs

import taskrunner
from taskrunner.events import (
    AudioEvent,
    CustomEvent,
    SilenceEvent,
    StartEvent,
    TextEvent,
    TextToSpeechEvent,
    TimeoutEvent,
)

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "seeds"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"seed_{name}", SEEDS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def say(text: str) -> TextEvent:
    return TextEvent.from_text(text)


def speech(ran: Ran) -> list[str]:
    return [e.text for e in outputs(ran) if isinstance(e, TextToSpeechEvent)]


async def test_properties_and_variables(flavor: str, sqlite_store: taskrunner.Store) -> None:
    await sqlite_store.set_variable(taskrunner.Variable("org", "", "", "AWS_REGION", "eu-west-1"))
    await sqlite_store.set_variable(
        taskrunner.Variable("environment", "shop", "production", "ANTHROPIC_API_KEY", "sk-1", True)
    )
    ran = await converse(
        load("ctx_properties").handler, [StartEvent()], flavor=flavor, store=sqlite_store,
        agent_id="shop", environment="production",
    )
    assert ran.context.get_data("seen") == {"api_key": "sk-1", "region": "eu-west-1"}


async def test_data(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("ctx_data").handler, [StartEvent()], flavor=flavor, store=sqlite_store,
        variables={"OPENAI_API_KEY": "k"},
    )
    assert ran.context.get_data("read") == ["John", ["coffee", "sandwich"], "k"]
    assert ran.context.get_data("order_total") == 15.99
    # the handler ran on the StartEvent and the StopEvent, two writes each
    assert [c.source for c in ran.context.data_history("user_name")] == ["handler"] * 4


async def test_completion_messages(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("ctx_completions").handler, [StartEvent(), say("hi"), say("bye")],
        flavor=flavor, store=sqlite_store,
    )
    assert speech(ran) == ["echo: hi", "echo: bye"]
    assert ran.context.get_completion_messages() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "echo: hi"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "echo: bye"},
    ]


async def test_cache(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("ctx_cache").handler, [StartEvent()], flavor=flavor, store=sqlite_store
    )
    assert ran.context.get_data("cached") == ["weather in NYC", 5]


async def test_ab_test_is_stable_within_a_session(
    flavor: str, sqlite_store: taskrunner.Store
) -> None:
    module = load("ctx_tests")
    seen = set()
    for _ in range(12):
        ran = await converse(
            module.handler, [StartEvent(), say("x")], flavor=flavor, store=sqlite_store
        )
        greeting = ran.context.get_data("greeting")
        assert speech(ran) == [greeting] and ran.context.get_test("greeting_style") == greeting
        seen.add(greeting)
    assert len(seen) >= 2  # three options drawn at random: 12 sessions never all alike
    [state] = await sqlite_store.list_tests()
    assert state.name == "greeting_style" and len(state.definition["options"]) == 3


async def test_ab_test_with_stop_conditions(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("ctx_tests_stop").handler, [StartEvent()], flavor=flavor, store=sqlite_store
    )
    assert ran.context.get_test("upsell_approach") in ("direct", "subtle")
    [state] = await sqlite_store.list_tests()
    assert state.definition["stop"]["notify"] == ["analytics@company.com"]


async def test_outcomes(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("ctx_outcomes").handler,
        [StartEvent(), say("hello"), say("Great, I'll order it"), say("thank you")],
        flavor=flavor, store=sqlite_store,
    )
    assert speech(ran) == [f"This is message number {n}." for n in (1, 2, 3)]
    assert ran.context.get_outcome("message_count") == 3
    assert ran.context.get_outcome("user_satisfied") is True
    assert ran.context.get_outcome("order_value") == 29.99


async def test_testing_metadata(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(load("ctx_metadata").handler, [StartEvent()], flavor=flavor,
                         store=sqlite_store)
    assert ran.context.get_data("segment") == "returning_customer"
    assert ran.context.get_testing_metadata("source") == "phone"
    assert ran.context.get_testing_metadata("missing", 7) == 7


async def test_basic_structure_with_timeout(
    flavor: str, sqlite_store: taskrunner.Store, autojump_clock: trio.abc.Clock
) -> None:
    ran = await converse(
        load("guide_basic").handler, [StartEvent(), say("hi")], after=25,
        flavor=flavor, store=sqlite_store, input_timeout=10,
    )
    assert speech(ran) == [
        "Hello!", "You said: hi", "Are you still there?", "Are you still there?", "Goodbye!"
    ]
    timeouts = [r.input for r in ran.of(taskrunner.events.HandlerOutput)
                if isinstance(r.input, TimeoutEvent)]
    assert [t.data for t in timeouts] == [
        {"count": 1, "ms_since_input": 10000}, {"count": 2, "ms_since_input": 20000}
    ]


async def test_output_and_custom_events(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("guide_output_events").handler,
        [StartEvent(), CustomEvent("payment_processed", {"amount": 100.0})],
        flavor=flavor, store=sqlite_store,
    )
    out = outputs(ran)
    assert out[1:3] == [AudioEvent(path="/path/to/audio.mp3"), SilenceEvent(duration=2000)]
    assert speech(ran) == ["Hello, how can I help you?", "Payment of 100.0 processed"]


async def test_guide_tests(flavor: str, sqlite_store: taskrunner.Store) -> None:
    texts = {
        "formal": "Good day! How may I assist you?",
        "casual": "Hey there! What's up?",
        "friendly": "Hi! I'm here to help!",
    }
    for _ in range(3):
        ran = await converse(load("guide_tests").handler, [StartEvent()], flavor=flavor,
                             store=sqlite_store)
        assert speech(ran) == [texts[ran.context.get_test("greeting_variant")]]


async def test_guide_outcomes(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("guide_outcomes").handler,
        [StartEvent(), say("I want to buy"), say("no"), say("purchase it")],
        flavor=flavor, store=sqlite_store,
    )
    assert abs(ran.context.get_outcome("conversion_rate") - 0.2) < 1e-9


async def test_guide_stop_conditions(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(load("guide_stop_conditions").handler, [StartEvent()], flavor=flavor,
                         store=sqlite_store)
    variant = ran.context.get_test("button_color")
    assert speech(ran) == [f"The button is {variant}."]


async def test_outbound_parameters(flavor: str, sqlite_store: taskrunner.Store) -> None:
    ran = await converse(
        load("guide_outbound").handler, [StartEvent()], flavor=flavor, store=sqlite_store,
        parameters={"phoneNumber": "+15550100"},
    )
    assert speech(ran) == ["Calling +15550100."]
    [change] = ran.context.data_history("phoneNumber")
    assert change.source == "parameters"
