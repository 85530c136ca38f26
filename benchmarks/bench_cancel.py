"""cancel: ``cancel_interruptible_tasks()`` over N running tasks, against a raw nursery.

N tasks wait in ``trio.sleep_forever()``; once all of them are blocked, the clock runs from
the cancel call until every task has ended: ``sup.wait_for_all_tasks()`` returning for
taskrunner (each task's end record is then in the stream, its reader running alongside),
the nursery's block exiting for raw trio (its ``cancel_scope.cancel()``).
"""

from __future__ import annotations

import trio
import trio.testing
from common import supervisor_with_reader
from harness import Group, Row, Settings, Target, per_unit, perf_counter, time_interleaved

__all__ = ["GROUP"]

VS_RAW = Target(1.3)


def raw_trio(n: int) -> float:
    """N ``sleep_forever`` tasks in a nursery; time ``nursery.cancel_scope.cancel()``."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            t0 = perf_counter()
            nursery.cancel_scope.cancel()
        return perf_counter() - t0

    return trio.run(main)


async def _sleep_in(scope: trio.CancelScope) -> None:
    with scope:
        await trio.sleep_forever()


def raw_trio_scoped(n: int) -> float:
    """N tasks, each in its own CancelScope, cancelled one by one: the per-task floor.

    This is what cancelling tasks individually costs in trio itself (taskrunner must, since
    only the interruptible ones are cancelled), before any bookkeeping of taskrunner's.
    """

    async def main() -> float:
        scopes = [trio.CancelScope() for _ in range(n)]
        async with trio.open_nursery() as nursery:
            for scope in scopes:
                nursery.start_soon(_sleep_in, scope)
            await trio.testing.wait_all_tasks_blocked()
            t0 = perf_counter()
            for scope in scopes:
                scope.cancel()
        return perf_counter() - t0

    return trio.run(main)


def raw_trio_shared(n: int) -> float:
    """N tasks, each in its own CancelScope, all in one nursery cancelled at once.

    The floor of "one shared cancel scope per interruptible generation": the tasks still need
    their own scopes (each task's deadline, ``cancel_task`` of one task, deferred interrupts),
    and trio's price for a cancel that crosses a task's own scope is paid per task however
    the cancel is delivered.
    """

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_sleep_in, trio.CancelScope())
            await trio.testing.wait_all_tasks_blocked()
            t0 = perf_counter()
            nursery.cancel_scope.cancel()
        return perf_counter() - t0

    return trio.run(main)


def taskrunner_cancel(n: int, timeout: float | None) -> float:
    """N interruptible ``sleep_forever`` tasks; time ``cancel_interruptible_tasks()``."""

    async def main() -> float:
        async with supervisor_with_reader() as sup:
            for _ in range(n):
                sup.create_task(trio.sleep_forever, interruptible=True, timeout=timeout)
            await trio.testing.wait_all_tasks_blocked()
            t0 = perf_counter()
            cancelled = sup.cancel_interruptible_tasks()
            await sup.wait_for_all_tasks()
            elapsed = perf_counter() - t0
        if cancelled != n:
            raise RuntimeError(f"cancel_interruptible_tasks() returned {cancelled}, not {n}")
        return elapsed

    return trio.run(main)


def run(settings: Settings) -> list[Row]:
    """N = 10,000 (quick: 1,000)."""
    n = settings.pick(10_000, 1_000)
    samples = time_interleaved(
        {
            "raw": lambda: raw_trio(n),
            "floor": lambda: raw_trio_scoped(n),
            "shared": lambda: raw_trio_shared(n),
            "tr": lambda: taskrunner_cancel(n, None),
            "tr30": lambda: taskrunner_cancel(n, 30),
        },
        settings.rounds(5),
        settings,
    )
    raw = per_unit("cancel a raw nursery's scope", samples["raw"], n)
    floor = per_unit("cancel N CancelScopes, one per task", samples["floor"], n)
    shared = per_unit(
        "cancel one nursery's scope over N tasks in their own CancelScopes", samples["shared"], n
    )
    tr = per_unit("cancel_interruptible_tasks() (timeout=None)", samples["tr"], n)
    case = f"N={n:,}"
    return [
        Row("cancel", case, tr, raw, VS_RAW),
        Row(
            "cancel",
            case,
            per_unit("cancel_interruptible_tasks() (timeout=30)", samples["tr30"], n),
            raw,
            VS_RAW,
        ),
        Row("cancel", case, floor, raw),
        Row("cancel", case, shared, raw),
        Row("cancel", case, tr, floor),
    ]


GROUP = Group("cancel", "cancel N running tasks until all have ended", run)
