"""asyncio: per-event cost of an asyncio-flavoured async-generator task.

One asyncio-flavoured task yields E events to the supervisor's reader, against the same task
in the trio flavour, and against trio-asyncio's own way of iterating an asyncio async
generator from trio: ``async for x in trio_asyncio.aio_as_trio(agen())`` inside
``trio_asyncio.open_loop()`` (its loop is opened inside the timed section, as taskrunner opens
its own with the first asyncio-flavoured task).

(The per-task cost of the asyncio flavour is in the ``spawn`` benchmark.)

Everything runs in a child process: trio-asyncio must not be imported in the main one.
"""

from __future__ import annotations

from typing import Any

import trio
from bench_events import numbers, taskrunner_events
from harness import (
    Group,
    Row,
    Settings,
    Target,
    per_unit,
    perf_counter,
    run_child,
    settings_from_json,
    settings_json,
    time_interleaved,
)

__all__ = ["GROUP", "events_child"]

NO_SLOWER = Target(1.0)


def aio_as_trio_iteration(events: int) -> float:
    """trio-asyncio alone: iterate an asyncio async generator with ``aio_as_trio``."""
    import trio_asyncio  # only ever in a child process

    async def main() -> float:
        seen = 0
        t0 = perf_counter()
        async with trio_asyncio.open_loop():
            async for _ in trio_asyncio.aio_as_trio(numbers(events)):
                seen += 1
        elapsed = perf_counter() - t0
        if seen != events:
            raise RuntimeError(f"saw {seen} events, expected {events}")
        return elapsed

    return trio.run(main)


def events_child(events: int, rounds: int, settings: dict[str, Any]) -> dict[str, list[float]]:
    """In a child: the three cases, interleaved."""
    return time_interleaved(
        {
            "aio_as_trio": lambda: aio_as_trio_iteration(events),
            "asyncio": lambda: taskrunner_events(1, events, flavor="asyncio"),
            "trio": lambda: taskrunner_events(1, events, flavor="trio"),
        },
        rounds,
        settings_from_json(settings),
    )


def run(settings: Settings) -> list[Row]:
    """1 task x 100,000 events (quick: 5,000)."""
    events = settings.pick(100_000, 5_000)
    samples = run_child(
        "bench_asyncio:events_child",
        events=events,
        rounds=settings.rounds(3),
        settings=settings_json(settings),
    )
    aio = per_unit("asyncio-flavoured generator task", samples["asyncio"], events, "us/event")
    trio_flavour = per_unit("trio-flavoured generator task", samples["trio"], events, "us/event")
    native = per_unit(
        "trio_asyncio.aio_as_trio(agen) iteration", samples["aio_as_trio"], events, "us/event"
    )
    case = f"1 task x {events:,} events"
    return [
        Row("asyncio", case, aio, native, NO_SLOWER),
        Row("asyncio", case, aio, trio_flavour),
    ]


GROUP = Group("asyncio", "asyncio flavour: per-event cost", run)
