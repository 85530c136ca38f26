"""Where a supervised task's time goes above trio's floor: ``python benchmarks/profile_spawn.py``.

Spawn + complete N trivial tasks, process CPU time per task with the cyclic GC off (then on),
best of several rounds: trio's floor (each task in its own CancelScope), then taskrunner
without a reader, with its reader, and with the GC on; then the pieces of create_task and of
a task's end timed one by one (timeit). Figures for the README's "where the rest goes".
"""

from __future__ import annotations

import gc
import sys
import time
import timeit
from typing import Any

import bench_spawn
import trio
from bench_spawn import raw_trio_scoped, taskrunner_spawn
from common import trivial

import taskrunner
from taskrunner._core._checks import coerce_handler
from taskrunner.events import TaskFinished, TaskStarted

bench_spawn.perf_counter = time.process_time  # type: ignore[attr-defined]


def best(fn: Any, n: int, rounds: int) -> float:
    return min(fn(n) for _ in range(rounds)) / n * 1e6


def pieces() -> dict[str, float]:
    out: dict[str, float] = {}

    async def main() -> None:
        async with taskrunner.open_supervisor() as sup:
            handle = sup.create_task(trio.sleep_forever, name="h")
            now = sup._now

            def t(label: str, stmt: Any, number: int = 100_000) -> None:
                out[label] = min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e6

            t("TaskStarted record", lambda: TaskStarted(1, 0.0, "n", 1, False, None, "trio",
                                                       session_id=None, wall=0.0))
            t("TaskFinished record", lambda: TaskFinished(1, 0.0, "n", 1, None,
                                                         session_id=None, wall=0.0))
            t("TaskHandle", lambda: taskrunner.TaskHandle(sup, "n", 1, False, None, "trio", 0.0,
                                                         handle._scope))
            t("trio.CancelScope()", trio.CancelScope)
            t("history row", handle._history_row)
            t("coerce_handler(async function)", lambda: coerce_handler(trivial)[0].close())
            t("clock read (run's clock)", now)
            t("clock read (trio.current_time)", trio.current_time)
            sup.cancel_all_tasks()

    trio.run(main)
    return out


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = 5
    gc.disable()
    cases: list[tuple[str, Any]] = [
        ("trio floor: start_soon, each task in its own CancelScope", raw_trio_scoped),
        ("create_task, no reader", lambda k: taskrunner_spawn(k, timeout=None, reader=False)),
        ("create_task, with its reader", lambda k: taskrunner_spawn(k, timeout=None)),
        ("create_task, timeout=30, with its reader", lambda k: taskrunner_spawn(k, timeout=30)),
    ]
    rows = [(label, best(fn, n, rounds)) for label, fn in cases]
    gc.enable()
    with_gc = best(lambda k: taskrunner_spawn(k, timeout=None), n, rounds)
    rows.append(("create_task, with its reader, GC on", with_gc))
    rows.append(("trio floor, GC on", best(raw_trio_scoped, n, rounds)))
    print(f"spawn + complete, N={n:,}, CPU time per task (best of {rounds}), GC off unless said\n")
    print("| case | us/task |\n|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value:.2f} |")
    print("\npieces (timeit, us per call)\n")
    print("| piece | us |\n|---|---:|")
    for label, value in pieces().items():
        print(f"| {label} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
