"""The HTTP example: a real httpx client against a real slow server on 127.0.0.1.

The session's clock is trio's MockClock, but it only jumps after the run has been idle for a
while of real time: socket I/O is real and must not be mistaken for idleness (autojump with a
zero threshold would jump straight to the timeouts while a response is on its way).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import trio
import trio.testing
from helpers import check_stream_invariants, of_task

import taskrunner
from taskrunner.events import (
    HandlerOutput,
    Record,
    StartEvent,
    TaskCancelled,
    TaskFinished,
    TaskOutput,
    TaskTimedOut,
    TextEvent,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "http_agent.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("http_agent", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_http_agent_timeout_interruption_and_late_result(mock_clock: Any) -> None:
    mock_clock.autojump_threshold = 0.2
    agent = load()
    records: list[Record] = []
    async with agent.lifespan() as variables:
        assert variables["PRICING_API"].startswith("http://127.0.0.1:")
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(agent.handler, variables=variables) as session:

                async def read() -> None:
                    async for record in session.events():
                        records.append(record)

                nursery.start_soon(read)

                async def say(text: str) -> None:
                    await session.send(TextEvent.from_text(text))
                    await session.wait_until_handled()

                await session.send(StartEvent())
                await say("price of coffee")
                await say("hello?")  # the conversation goes on while the request runs
                assert session.context.get_data("price:coffee") is None
                await trio.sleep(3)
                assert session.context.get_data("price:coffee") == 3.5
                await say("search cheaper coffee")
                await trio.sleep(1)  # mid-request
                await say("never mind")
                await say("slow price of tea")
                await trio.sleep(6)
    check_stream_invariants(records)
    coffee = of_task(records, "price coffee")
    assert isinstance(coffee[-1], TaskFinished)
    assert [r.event.message for r in coffee if isinstance(r, TaskOutput)] == [
        "asking the pricing service about coffee",
        "coffee costs 3.5",
    ]
    answers = [r.event.text for r in records if isinstance(r, HandlerOutput)]
    assert answers[1] == "Prices I know so far: none."
    assert coffee[-1].at > next(
        r.at for r in records if isinstance(r, HandlerOutput) and "none" in r.event.text
    )
    search = of_task(records, "search cheaper coffee")
    assert isinstance(search[-1], TaskCancelled) and search[-1].reason == "interrupted"
    assert [r.event.message for r in search if isinstance(r, TaskOutput)] == [
        "asking the pricing service about cheaper coffee"
    ]
    slow = of_task(records, "slow tea")
    assert isinstance(slow[-1], TaskTimedOut) and slow[-1].timeout == 5
    assert "price:tea" not in session.context.data
