"""memory: bytes per idle task, N tasks parked in ``trio.sleep_forever()``, against raw trio.

Each figure comes from a fresh child process: the growth of the process from just before the
tasks are started until all of them (and, for taskrunner, the reader, which by then has read
every start record) are blocked, divided by N. Two ways to count:

* ``tracemalloc``: the bytes Python allocated and still holds (exact, allocator overhead
  left out);
* ``RSS``: the growth of the resident set (what the operating system sees, allocator
  overhead and fragmentation included).
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any, Literal

import trio
import trio.testing
from common import supervisor_with_reader
from harness import Figure, Group, Row, Settings, Target, child_exit, run_children

__all__ = ["GROUP", "METHODS", "Method", "growth", "idle_tasks_child", "method_tag"]

Method = Literal["tracemalloc", "rss"]
VS_RAW = Target(1.5)
VS_FLOOR = Target(1.15)


def _rss_bytes() -> int:
    """The resident set size of this process now."""
    try:
        # Linux: the current RSS, in pages (field 2 of statm).
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # Elsewhere the peak RSS is what the standard library offers; memory only grows
        # during this measurement, so the peak is close to the current size.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _probe(method: Method) -> int:
    # Collect first so that garbage waiting for the cyclic GC is not counted.
    gc.collect()
    if method == "tracemalloc":
        return tracemalloc.get_traced_memory()[0]
    return _rss_bytes()


async def growth(method: Method, spawn: Callable[[], None], rounds: int = 1) -> int:
    """How many bytes the process grows by when ``spawn()``, called ``rounds`` times (each
    time once every task started so far has parked), starts tasks that all park.

    Call from a trio task, once everything else that runs is already blocked.
    """
    await trio.testing.wait_all_tasks_blocked()
    # With a heap that only grows, the cyclic GC would take most of the time (each full
    # collection traverses every parked task), and it has nothing to free: starting idle
    # tasks makes no cyclic garbage. The figures are the same with it on (checked: RSS per
    # session and per task within 0.1%), and _probe still collects before each reading.
    gc.disable()
    if method == "tracemalloc":
        tracemalloc.start()
    try:
        before = _probe(method)
        for _ in range(rounds):
            spawn()
            await trio.testing.wait_all_tasks_blocked()
        return _probe(method) - before
    finally:
        gc.enable()
        if method == "tracemalloc":
            tracemalloc.stop()


async def _sleep_in_own_scope() -> None:
    with trio.CancelScope():
        await trio.sleep_forever()


def idle_tasks_child(
    kind: str, n: int, method: Method, timeout: float | None = None, batch: int | None = None
) -> None:
    """In a child: print the bytes per idle task of ``kind`` ("raw", "scoped", "taskrunner").

    ``batch``: taskrunner's tasks are created ``batch`` at a time, the reader taking their
    start records in between (as when tasks start over time), instead of in one synchronous
    burst whose start records all wait in the stream at once: freed after they are read,
    their memory stays with the allocator and shows in the RSS, not in tracemalloc.

    The process ends right after (:func:`harness.child_exit`), with the tasks still parked.
    """

    def spawn_raw(nursery: trio.Nursery) -> None:
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)

    def spawn_scoped(nursery: trio.Nursery) -> None:
        # Each task in its own entered CancelScope: the floor of per-task cancellation.
        for _ in range(n):
            nursery.start_soon(_sleep_in_own_scope)

    def per_task(grown: int) -> float:
        # Every task must still be parked when the figure is read: one that ended (a
        # deadline passed) would make the figure look better than it is.
        living = trio.lowlevel.current_statistics().tasks_living
        if living < n:
            raise RuntimeError(f"only {living} tasks alive, fewer than the {n} started")
        return grown / n

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if kind == "taskrunner":
                async with supervisor_with_reader() as sup:
                    size = n if batch is None else batch

                    def spawn() -> None:
                        for _ in range(size):
                            sup.create_task(trio.sleep_forever, timeout=timeout)

                    child_exit(per_task(await growth(method, spawn, n // size)))
            spawner = spawn_raw if kind == "raw" else spawn_scoped
            child_exit(per_task(await growth(method, lambda: spawner(nursery))))

    trio.run(main)


def method_tag(method: Method) -> str:
    """How a method reads in the table."""
    return "tracemalloc" if method == "tracemalloc" else "RSS"


#: Both ways of counting, each figure from one child: with N tasks per child, the figure is
#: an average over N already, and a second child moves it by well under 1%.
METHODS: tuple[Method, ...] = ("tracemalloc", "rss")


#: kind -> (label, extra keyword arguments of idle_tasks_child)
_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "raw": ("raw trio task", {"kind": "raw"}),
    "floor": ("trio task in its own CancelScope", {"kind": "scoped"}),
    "tr": ("create_task (timeout=None)", {"kind": "taskrunner"}),
    # A deadline far enough that no task reaches it while the child runs (tracemalloc makes
    # starting 100,000 tasks slow); what it costs in memory does not depend on its value.
    "tr_deadline": ("create_task (timeout=3600)", {"kind": "taskrunner", "timeout": 3600}),
    "tr_batched": (
        "create_task (timeout=None), 1,000 at a time",
        {"kind": "taskrunner", "batch": 1000},
    ),
}


def run(settings: Settings) -> list[Row]:
    """N = 100,000 (quick: 2,000), each figure in its own child process."""
    n = settings.pick(100_000, 2_000)  # a multiple of the 1,000 of "tr_batched"
    jobs = [(m, k) for m in METHODS for k in _KINDS]
    values = run_children(
        [("bench_memory:idle_tasks_child", {"n": n, "method": m, **_KINDS[k][1]}) for m, k in jobs]
    )
    fig = {
        (m, k): Figure(f"{_KINDS[k][0]} ({method_tag(m)})", v, "B/task", (v,))
        for (m, k), v in zip(jobs, values, strict=True)
    }
    rows: list[Row] = []
    for m in METHODS:
        case = f"N={n:,}, {method_tag(m)}"
        rows += [
            Row("memory", case, fig[m, "tr"], fig[m, "raw"], VS_RAW),
            Row("memory", case, fig[m, "tr_deadline"], fig[m, "raw"], VS_RAW),
            Row("memory", case, fig[m, "floor"], fig[m, "raw"]),
            Row("memory", case, fig[m, "tr"], fig[m, "floor"], VS_FLOOR),
            Row("memory", case, fig[m, "tr_batched"], fig[m, "floor"], VS_FLOOR),
        ]
    return rows


GROUP = Group("memory", "memory per idle task", run)
