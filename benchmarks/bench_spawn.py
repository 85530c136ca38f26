"""spawn: start N trivial tasks and wait until every one has completed.

taskrunner's ``create_task`` against trio's ``nursery.start_soon`` (what it stands on),
``asyncio.TaskGroup``, anyio's task group and aiojobs' ``Scheduler.spawn``. The timed section
of a taskrunner case runs from opening the supervisor until its reader has read the last
record, so the figure includes delivering each task's start and end records.

One more baseline, "each task in its own CancelScope", is raw trio doing the least that
per-task cancellation and timeouts need (a wrapper entering a scope per task): it shows how
much of taskrunner's cost is trio's own price for that.

The asyncio-flavoured case needs trio-asyncio, which must not be imported in the main process
(see :func:`harness.assert_no_trio_asyncio`): it runs in a child, against the trio flavour
and against bare trio-asyncio (``aio_as_trio`` per task) measured in that same child. It and
the variants (coroutine object, no reader) are measured at the smaller N only, since their
ratios do not change with N and the full run must stay within minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import aiojobs
import anyio
import trio
from common import supervisor_with_reader, trivial
from harness import (
    Figure,
    Group,
    Row,
    Settings,
    Target,
    assert_no_trio_asyncio,
    per_unit,
    perf_counter,
    run_child,
    settings_from_json,
    settings_json,
    time_interleaved,
)

from taskrunner import Flavor

__all__ = ["GROUP", "flavour_child"]

# The targets for create_task: against trio's own price for per-task cancellation (issue 9),
# and against a bare start_soon (an earlier target, kept for information).
VS_FLOOR = Target(1.3)
VS_RAW = Target(1.5)
ASYNCIO_VS_TRIO_ASYNCIO = Target(1.3)
FASTER = Target(1.0, strict=True, note="< 1x (faster)")
ASYNCIO_VS_TRIO = Target(3.0)


def raw_trio(n: int) -> float:
    """trio alone: ``nursery.start_soon`` N times, then the nursery waits for them."""

    async def main() -> float:
        t0 = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(trivial)
        return perf_counter() - t0

    return trio.run(main)


async def _in_own_scope() -> None:
    # What per-task cancellation costs in trio itself: a wrapper coroutine entering a
    # CancelScope of its own around the body, as every supervised task must.
    with trio.CancelScope():
        await trivial()


async def _in_own_scope_with_deadline() -> None:
    # The same with a deadline trio knows about (registered in its deadline heap), as a
    # task with a timeout that code inside it can see must have.
    with trio.CancelScope(deadline=trio.current_time() + 30):
        await trivial()


def raw_trio_scoped_deadline(n: int) -> float:
    """trio alone, each task in its own CancelScope with a 30 s deadline."""

    async def main() -> float:
        t0 = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_in_own_scope_with_deadline)
        return perf_counter() - t0

    return trio.run(main)


def raw_trio_scoped(n: int) -> float:
    """trio alone, each task in its own CancelScope: the floor of per-task cancellation."""

    async def main() -> float:
        t0 = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_in_own_scope)
        return perf_counter() - t0

    return trio.run(main)


def raw_trio_asyncio(n: int) -> float:
    """trio-asyncio alone: N trio tasks, each awaiting ``aio_as_trio(trivial())``.

    What one asyncio-flavoured task needs at the least: a trio task waiting on an asyncio
    task of the loop. The loop is opened inside the timed section, as taskrunner's is.
    """
    import trio_asyncio  # only ever in a child process

    async def one() -> None:
        await trio_asyncio.aio_as_trio(trivial())

    async def main() -> float:
        t0 = perf_counter()
        async with trio_asyncio.open_loop():
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one)
        return perf_counter() - t0

    return trio.run(main)


def taskrunner_spawn(
    n: int,
    *,
    timeout: float | None,
    reader: bool = True,
    coroutine_object: bool = False,
    flavor: Flavor = "trio",
) -> float:
    """``sup.create_task`` N times, then ``wait_for_all_tasks`` and close.

    The handler is the async function itself, as with ``start_soon`` (``coroutine_object``
    passes ``trivial()`` instead, which create_task checks differently).
    """

    async def main() -> float:
        counter = [0]
        t0 = perf_counter()
        async with supervisor_with_reader(reader, counter, flavor=flavor) as sup:
            for _ in range(n):
                sup.create_task(trivial() if coroutine_object else trivial, timeout=timeout)
            await sup.wait_for_all_tasks()
        elapsed = perf_counter() - t0
        if reader and counter[0] != 2 * n:  # a start and an end record per task
            raise RuntimeError(f"the reader saw {counter[0]} records, expected {2 * n}")
        return elapsed

    return trio.run(main)


def asyncio_taskgroup(n: int) -> float:
    """``asyncio.TaskGroup.create_task`` N times (Python 3.11+)."""

    async def main() -> float:
        t0 = perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(trivial())
        return perf_counter() - t0

    assert_no_trio_asyncio()
    return asyncio.run(main())


def anyio_taskgroup(n: int, backend: str = "trio") -> float:
    """anyio's task group ``start_soon`` N times, on ``backend``."""

    async def main() -> float:
        t0 = perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(trivial)
        return perf_counter() - t0

    return anyio.run(main, backend=backend)


def aiojobs_spawn(n: int) -> float:
    """aiojobs: ``await scheduler.spawn`` N times, then ``wait_and_close``.

    ``limit=None``: the default limit of 100 active jobs would queue the rest, which measures
    the queue rather than spawning.
    """

    async def main() -> float:
        t0 = perf_counter()
        scheduler = aiojobs.Scheduler(limit=None)
        for _ in range(n):
            await scheduler.spawn(trivial())
        await scheduler.wait_and_close()
        return perf_counter() - t0

    assert_no_trio_asyncio()
    return asyncio.run(main())


def flavour_child(n: int, rounds: int, settings: dict[str, Any]) -> dict[str, list[float]]:
    """In a child: the trio and asyncio flavours of ``create_task``, interleaved."""
    return time_interleaved(
        {
            "trio": lambda: taskrunner_spawn(n, timeout=None),
            "asyncio": lambda: taskrunner_spawn(n, timeout=None, flavor="asyncio"),
            "raw": lambda: raw_trio_asyncio(n),
        },
        rounds,
        settings_from_json(settings),
    )


# Every case: key -> (label, the function measuring it at size n).
_CASES: dict[str, tuple[str, Callable[[int], float]]] = {
    "raw": ("trio nursery.start_soon", raw_trio),
    "floor": ("trio start_soon, each task in its own CancelScope", raw_trio_scoped),
    "floor30": (
        "trio start_soon, each task in its own CancelScope with a deadline",
        raw_trio_scoped_deadline,
    ),
    "tr": (
        "create_task (reader, timeout=None)",
        lambda n: taskrunner_spawn(n, timeout=None),
    ),
    "tr30": (
        "create_task (reader, timeout=30, the default)",
        lambda n: taskrunner_spawn(n, timeout=30),
    ),
    "tr_coro": (
        "create_task(coroutine object) (reader, timeout=None)",
        lambda n: taskrunner_spawn(n, timeout=None, coroutine_object=True),
    ),
    "tr_noreader": (
        "create_task (no reader, timeout=None)",
        lambda n: taskrunner_spawn(n, timeout=None, reader=False),
    ),
    "asyncio": ("asyncio.TaskGroup.create_task", asyncio_taskgroup),
    "anyio": ("anyio task group start_soon (trio backend)", anyio_taskgroup),
    "aiojobs": ("aiojobs Scheduler.spawn (limit=None)", aiojobs_spawn),
}


def _rows_for(n: int, rounds: int, settings: Settings, detail: bool) -> list[Row]:
    """The rows at size ``n``; ``detail`` adds the variants and the asyncio flavour.

    The variants (coroutine object, no reader) and the asyncio flavour say the same at any
    size, so the larger size leaves them out and the full run stays within minutes.
    """
    keys = [k for k in _CASES if detail or k not in ("tr_coro", "tr_noreader")]
    samples = time_interleaved(
        {k: partial(_CASES[k][1], n) for k in keys},
        rounds,
        settings,
    )
    fig: dict[str, Figure] = {k: per_unit(_CASES[k][0], samples[k], n) for k in keys}
    case = f"N={n:,}"

    def row(subject: str, baseline: str, target: Target | None = None) -> Row:
        return Row("spawn", case, fig[subject], fig[baseline], target)

    rows = [row("tr", "floor", VS_FLOOR), row("tr30", "floor30", VS_FLOOR)]
    if detail:
        rows += [row("tr_noreader", "floor"), row("tr_coro", "floor")]
    rows += [
        row("floor", "raw"),
        row("floor30", "floor"),
        row("tr", "raw", VS_RAW),
        row("tr30", "raw", VS_RAW),
        row("tr", "anyio", FASTER),
        row("tr", "aiojobs", FASTER),
        row("anyio", "raw"),
        row("asyncio", "raw"),
        row("aiojobs", "asyncio"),
    ]
    if not detail:
        return rows

    flavours = run_child(
        "bench_spawn:flavour_child", n=n, rounds=rounds, settings=settings_json(settings)
    )
    trio_flavour = per_unit("create_task, trio flavour (reader, timeout=None)", flavours["trio"], n)
    aio_flavour = per_unit(
        "create_task, asyncio flavour (reader, timeout=None)", flavours["asyncio"], n
    )
    aio_raw = per_unit("trio-asyncio: start_soon + aio_as_trio(coro)", flavours["raw"], n)
    return [
        *rows,
        Row(
            "spawn",
            case,
            aio_flavour,
            trio_flavour,
            ASYNCIO_VS_TRIO,
            comment="both in one child process (trio-asyncio loaded)",
        ),
        Row("spawn", case, aio_flavour, aio_raw, ASYNCIO_VS_TRIO_ASYNCIO),
    ]


def run(settings: Settings) -> list[Row]:
    """N = 10,000 (with every variant) and 100,000 (quick: 1,000 and 5,000)."""
    rows = _rows_for(settings.pick(10_000, 1_000), settings.rounds(3), settings, detail=True)
    rows += _rows_for(settings.pick(100_000, 5_000), settings.rounds(2), settings, detail=False)
    return rows


GROUP = Group("spawn", "spawn + complete N trivial tasks", run)
