"""TestRunner from asyncio code, as VoiceRun's tests call it (``@pytest.mark.asyncio``): the
session runs in a trio run of its own thread on a mock clock. Real threads: each test waits
at most a few seconds for one."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from primfunctions import events as pf

from taskrunner.events import SessionEnded, TaskCancelled, TaskTimedOut
from taskrunner.testing import TestRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voicerun"


def load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"aio_{name}", FIXTURES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "taskrunner.testing.TestRunner"]


def test_voicerun_test_under_asyncio() -> None:
    order_agent = load("order_agent")

    async def voicerun_style_test() -> TestRunner:
        runner = TestRunner(order_agent.handler, data={"order_status": "pending"})
        await runner.text("place order")
        await runner.text("check status")  # the clock stands still between calls
        assert runner.get_last_tts_text() == "Your order status is: pending"
        out = await runner.text("check status", wait_background=True)  # 5 s, at once
        assert [e.data["text"] for e in out] == ["Your order status is: pending"]
        await runner.text("check status")
        assert runner.get_last_tts_text() == "Your order status is: completed"
        assert runner.context.get_data("order_status") == "completed"
        runner.expect_no_errors()
        await runner.stop()
        return runner

    runner = asyncio.run(voicerun_style_test())
    assert isinstance(runner.records[-1], SessionEnded)
    assert not host_threads()


def test_timeouts_and_handler_errors_under_asyncio() -> None:
    async def slow() -> None:
        await asyncio.sleep(3600)

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            context.create_task(slow, name="slow", timeout=30)
            yield pf.TextToSpeechEvent(text="Hello!")
        elif isinstance(event, pf.TextEvent):
            raise ValueError("bad input")

    async def scenario() -> TestRunner:
        async with TestRunner(handler, events="primfunctions") as runner:
            await runner.start(wait_background=True)  # a 30 s timeout, no real time
            with pytest.raises(ValueError, match="bad input"):
                await runner.text("x")
            with pytest.raises(AssertionError, match="the handler failed: ValueError"):
                runner.expect_no_errors()
        return runner

    runner = asyncio.run(scenario())
    ended = [r for r in runner.records if isinstance(r, TaskTimedOut)]
    assert [(r.task, r.timeout) for r in ended] == [("slow", 30)]
    assert not host_threads()


def test_a_forgotten_runner_ends_its_session() -> None:
    async def lingering() -> None:
        await asyncio.sleep(3600)

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            context.create_task(lingering, name="lingering", timeout=None)
            yield pf.TextToSpeechEvent(text="Hi")

    records: list[Any] = []

    async def forget() -> None:
        runner = TestRunner(handler, events="primfunctions", on_record=records.append)
        await runner.start()
        # never stopped nor closed

    asyncio.run(forget())
    gc.collect()
    for thread in host_threads():
        thread.join(timeout=10)
    assert not host_threads()
    ends = [r for r in records if isinstance(r, TaskCancelled)]
    assert [(r.task, r.reason) for r in ends] == [("lingering", "closed")]
    assert isinstance(records[-1], SessionEnded)


def test_opening_failures_reach_the_asyncio_caller() -> None:
    def not_async(event: Any, context: Any) -> None:
        pass

    async def scenario() -> None:
        runner = TestRunner(not_async, events="primfunctions")
        with pytest.raises(TypeError, match="handler must be `async def handler"):
            await runner.start()

    asyncio.run(scenario())
    assert not host_threads()
