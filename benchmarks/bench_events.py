"""events: outputs forwarded from async-generator tasks to the stream's reader.

T tasks each yield E events; one reader consumes them all. taskrunner (a trio-flavoured
async-generator task per producer, the reader on ``sup.events()``) against a raw trio memory
channel (each producer ``await send``, the consumer ``async for``) and an ``asyncio.Queue``.
All three have the same bound: taskrunner's default ``max_buffer`` of 1024 records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import trio
from common import supervisor_with_reader
from harness import (
    Figure,
    Group,
    Row,
    Settings,
    Target,
    assert_no_trio_asyncio,
    per_unit,
    perf_counter,
    time_interleaved,
)

from taskrunner import Flavor

__all__ = ["GROUP", "taskrunner_events"]

BUFFER = 1024  # taskrunner's default max_buffer; the same bound for every case
VS_CHANNEL = Target(0.35)


async def numbers(count: int) -> AsyncGenerator[int, None]:
    """The producer of every case: yields ``count`` small ints, no other work."""
    for i in range(count):
        yield i


def taskrunner_events(tasks: int, events: int, flavor: Flavor = "trio") -> float:
    """``tasks`` async-generator tasks of ``events`` outputs each, read by ``sup.events()``."""

    async def main() -> float:
        counter = [0]
        t0 = perf_counter()
        async with supervisor_with_reader(True, counter, flavor=flavor) as sup:
            for _ in range(tasks):
                sup.create_task(numbers(events), timeout=None)
            await sup.wait_for_all_tasks()
        elapsed = perf_counter() - t0
        expected = tasks * (events + 2)  # outputs, plus a start and an end record per task
        if counter[0] != expected:
            raise RuntimeError(f"the reader saw {counter[0]} records, expected {expected}")
        return elapsed

    return trio.run(main)


def trio_channel(tasks: int, events: int) -> float:
    """Raw trio: each producer task ``await send``s, one consumer ``async for``s the channel."""

    async def produce(send: trio.MemorySendChannel[int]) -> None:
        async with send:
            async for i in numbers(events):
                await send.send(i)

    async def main() -> float:
        seen = 0
        t0 = perf_counter()
        send, receive = trio.open_memory_channel[int](BUFFER)
        async with trio.open_nursery() as nursery:
            async with send:
                for _ in range(tasks):
                    nursery.start_soon(produce, send.clone())
            async for _ in receive:
                seen += 1
        elapsed = perf_counter() - t0
        if seen != tasks * events:
            raise RuntimeError(f"the consumer saw {seen} events, expected {tasks * events}")
        return elapsed

    return trio.run(main)


def asyncio_queue(tasks: int, events: int) -> float:
    """asyncio: each producer task ``await put``s, one consumer ``await get``s until done."""

    async def produce(queue: asyncio.Queue[int]) -> None:
        async for i in numbers(events):
            await queue.put(i)

    async def main() -> float:
        total = tasks * events
        t0 = perf_counter()
        queue: asyncio.Queue[int] = asyncio.Queue(BUFFER)
        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(produce(queue))
            # asyncio.Queue has no end-of-stream: the consumer knows how many to expect.
            for _ in range(total):
                await queue.get()
        return perf_counter() - t0

    assert_no_trio_asyncio()
    return asyncio.run(main())


def _rows_for(tasks: int, events: int, rounds: int, settings: Settings) -> list[Row]:
    samples = time_interleaved(
        {
            "channel": lambda: trio_channel(tasks, events),
            "tr": lambda: taskrunner_events(tasks, events),
            "queue": lambda: asyncio_queue(tasks, events),
        },
        rounds,
        settings,
    )
    total = tasks * events
    fig: dict[str, Figure] = {
        key: per_unit(label, samples[key], total, unit="us/event")
        for key, label in [
            ("channel", f"trio memory channel({BUFFER})"),
            ("tr", "async-generator task → sup.events()"),
            ("queue", f"asyncio.Queue({BUFFER})"),
        ]
    }
    case = f"{tasks:,} task{'s' if tasks > 1 else ''} x {events:,} events"
    return [
        Row("events", case, fig["tr"], fig["channel"], VS_CHANNEL),
        Row("events", case, fig["queue"], fig["channel"]),
        Row("events", case, fig["tr"], fig["queue"]),
    ]


def run(settings: Settings) -> list[Row]:
    """1 task x 1,000,000 events and 100 tasks x 10,000 (quick: 1 x 20,000 and 10 x 2,000)."""
    rounds = settings.rounds(2)
    rows = _rows_for(1, settings.pick(1_000_000, 20_000), rounds, settings)
    rows += _rows_for(settings.pick(100, 10), settings.pick(10_000, 2_000), rounds, settings)
    return rows


GROUP = Group("events", "events forwarded from async-generator tasks to one reader", run)
