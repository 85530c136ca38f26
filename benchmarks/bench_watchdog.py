"""What the watchdog costs when nothing blocks: ``python benchmarks/bench_watchdog.py``.

The same workloads run with and without ``open_watchdog()`` (block_threshold 100 ms), taking
turns round after round in one process, and the ratio of the medians is printed:

* spawn: ``create_task`` + completion of N trio tasks through a supervisor;
* events: one generator task forwarding M events to a reader;
* idle: a trio run sleeping 2 s, CPU time of the process (the heartbeat and the thread).

A standalone script (not part of ``run.py``'s table): it measures a tool, not the core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

import taskrunner
from taskrunner.tools.watchdog import open_watchdog


async def spawn(n: int) -> None:
    async def job() -> None:
        await trio.lowlevel.checkpoint()

    async with taskrunner.open_supervisor(history=0) as sup:

        async def drain() -> None:
            async for _ in sup.events():
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            for i in range(n):
                sup.create_task(job, timeout=None)
                if i % 500 == 499:  # 20,000 creates in one go would block the loop for real
                    await trio.lowlevel.checkpoint()
            await sup.wait_for_all_tasks()
            nursery.cancel_scope.cancel()


async def events(m: int) -> None:
    async def gen() -> AsyncIterator[int]:
        for i in range(m):
            yield i

    async with taskrunner.open_supervisor(history=0) as sup:
        sup.create_task(gen, timeout=None)
        count = 0
        async for _ in sup.events():
            count += 1
            if count >= m + 2:  # started, m outputs, finished
                break


async def idle(seconds: float) -> None:
    await trio.sleep(seconds)


def measure(work: Callable[[], Awaitable[None]], watched: bool, cpu: bool) -> float:
    async def main() -> float:
        clock = time.process_time if cpu else time.perf_counter
        if watched:
            async with open_watchdog():
                start = clock()
                await work()
                return clock() - start
        start = clock()
        await work()
        return clock() - start

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], Awaitable[None]], bool, str]] = [
        (f"spawn {args.tasks:,} tasks", lambda: spawn(args.tasks), False, "wall"),
        (f"forward {args.events:,} events", lambda: events(args.events), False, "wall"),
        (f"idle {args.idle:g} s", lambda: idle(args.idle), True, "CPU"),
    ]
    print("| workload | without | with watchdog | ratio |")
    print("|---|---:|---:|---:|")
    for label, work, cpu, unit in cases:
        plain: list[float] = []
        watched: list[float] = []
        for _ in range(args.rounds):
            plain.append(measure(work, False, cpu))
            watched.append(measure(work, True, cpu))
        a, b = statistics.median(plain), statistics.median(watched)
        print(f"| {label} ({unit}) | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {b / a:.3f}x |")


if __name__ == "__main__":
    main()
