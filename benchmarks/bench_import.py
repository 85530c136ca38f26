"""import: ``import taskrunner`` must leave a plain ``asyncio.run()`` as fast as it was.

In a fresh child, many ``asyncio.run(small_coro())`` are timed before and after
``import taskrunner``, then, for contrast, after ``import trio_asyncio`` (which replaces
asyncio's loop factory and ``get_running_loop``; taskrunner imports it only with the first
asyncio-flavoured task). Imports cannot be undone, so the stages run in this order; the
baseline is timed twice before any import to show how much the figure moves by itself.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from harness import Figure, Group, Row, Settings, Target, perf_counter, run_child

__all__ = ["GROUP", "asyncio_run_child"]

# "1.0 within noise": the best of several batches moves by a few percent between batches
# on a quiet machine (the A/A row shows by how much in each run).
WITHIN_NOISE = Target(1.05, note="1.0 ± noise (≤ 1.05x)")


async def small_coro() -> int:
    """What each ``asyncio.run`` runs: one trip through the loop."""
    await asyncio.sleep(0)
    return 1


def _best_batch(runs: int, batches: int) -> tuple[float, list[float]]:
    """Seconds per ``asyncio.run``: the best of ``batches`` batches of ``runs`` runs."""
    per_run = []
    for _ in range(batches):
        t0 = perf_counter()
        for _ in range(runs):
            asyncio.run(small_coro())
        per_run.append((perf_counter() - t0) / runs)
    return min(per_run), per_run


def asyncio_run_child(runs: int, batches: int) -> dict[str, list[float]]:
    """In a fresh child: time the stages, in order; the samples of each, in seconds per run."""
    for module in ("taskrunner", "trio_asyncio", "trio"):
        if module in sys.modules:
            raise RuntimeError(f"{module} is already imported: the baseline would be wrong")
    _best_batch(runs, 1)  # warm-up: first-use costs of asyncio itself are not the baseline
    out: dict[str, list[float]] = {}
    out["before"] = _best_batch(runs, batches)[1]
    out["before_again"] = _best_batch(runs, batches)[1]
    importlib.import_module("taskrunner")
    out["taskrunner"] = _best_batch(runs, batches)[1]
    importlib.import_module("trio_asyncio")
    out["trio_asyncio"] = _best_batch(runs, batches)[1]
    return out


def run(settings: Settings) -> list[Row]:
    """Batches of 1,000 runs, best of 7 (quick: 200 runs, best of 2)."""
    runs = settings.pick(1_000, 200)
    samples: dict[str, list[float]] = run_child(
        "bench_import:asyncio_run_child", runs=runs, batches=settings.pick(7, 2)
    )

    def fig(key: str, label: str) -> Figure:
        values = [s * 1e6 for s in samples[key]]
        return Figure(label, min(values), "us/run", tuple(values))

    before = fig("before", "asyncio.run() before any import")
    case = f"{runs:,} asyncio.run() per batch"
    return [
        Row(
            "import",
            case,
            fig("taskrunner", "asyncio.run() after import taskrunner"),
            before,
            WITHIN_NOISE,
        ),
        Row(
            "import",
            case,
            fig("before_again", "asyncio.run() before any import, again (noise)"),
            before,
        ),
        Row(
            "import",
            case,
            fig("trio_asyncio", "asyncio.run() after import trio_asyncio (contrast)"),
            before,
        ),
    ]


GROUP = Group("import", "asyncio.run() before and after import taskrunner", run)
