"""What every benchmark group shares: the run settings, timing, rows of the table, children.

A group measures several *cases* (taskrunner and the primitives or peers it is compared with)
in the same run, and turns them into :class:`Row` objects, each one a ratio of a subject to a
baseline, with the target that ratio must meet (or none: the row is for information).
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

__all__ = [
    "BENCH_DIR",
    "Figure",
    "Group",
    "Row",
    "Settings",
    "Target",
    "assert_no_trio_asyncio",
    "child_exit",
    "clock_name",
    "per_unit",
    "perf_counter",
    "run_child",
    "run_children",
    "settings_from_json",
    "settings_json",
    "time_interleaved",
]

#: The folder of the suite: children are started as ``python BENCH_DIR/child.py``.
BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """How big and how often: full mode, or ``--quick`` (small N, each case once)."""

    quick: bool = False
    #: Disable the cyclic GC inside timed sections (``--no-gc``): shows how much of a figure
    #: is collection work. Off by default, since applications run with the GC on.
    no_gc: bool = False

    def pick(self, full: int, quick: int) -> int:
        """``full`` in full mode, ``quick`` in quick mode."""
        return quick if self.quick else full

    def rounds(self, full: int) -> int:
        """How many times each case runs: ``full`` times, or once in quick mode."""
        return 1 if self.quick else full


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``value`` in ``unit`` (``us/task``, ``B/task``, ...) for ``label``."""

    label: str
    value: float
    unit: str
    #: Every sample behind ``value`` (the best of them), kept for the JSON output.
    samples: tuple[float, ...] = ()

    def text(self) -> str:
        """The value with a precision fit for a table cell, and the unit."""
        v = self.value
        if v >= 1000:
            num = f"{v:,.0f}"
        elif v >= 100:
            num = f"{v:.0f}"
        elif v >= 10:
            num = f"{v:.1f}"
        else:
            num = f"{v:.2f}"
        return f"{num} {self.unit}"


@dataclass(frozen=True)
class Target:
    """An upper bound for a ratio: met when ``ratio <= limit`` (``< limit`` if ``strict``)."""

    limit: float
    strict: bool = False
    #: How the target reads in the table when the bare bound would not say enough.
    note: str = ""

    def met(self, ratio: float) -> bool:
        """True when ``ratio`` satisfies the bound."""
        return ratio < self.limit if self.strict else ratio <= self.limit

    def text(self) -> str:
        """``≤ 1.5x``, ``< 1.0x``, or the note."""
        if self.note:
            return self.note
        return f"{'<' if self.strict else '≤'} {self.limit:g}x"


@dataclass(frozen=True)
class Row:
    """One line of the table: ``subject`` compared with ``baseline`` in one benchmark."""

    benchmark: str
    case: str
    subject: Figure
    baseline: Figure
    target: Target | None = None
    comment: str = ""

    @property
    def ratio(self) -> float:
        """subject / baseline (lower is better for every figure of this suite)."""
        if self.baseline.value == 0:
            return math.inf
        return self.subject.value / self.baseline.value

    @property
    def status(self) -> Literal["met", "MISSED", "info"]:
        """``info`` for rows without a target."""
        if self.target is None:
            return "info"
        return "met" if self.target.met(self.ratio) else "MISSED"

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "subject": _figure_json(self.subject),
            "baseline": _figure_json(self.baseline),
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.text(),
            "status": self.status,
            "comment": self.comment,
        }


def _figure_json(fig: Figure) -> dict[str, Any]:
    return {"label": fig.label, "value": fig.value, "unit": fig.unit, "samples": fig.samples}


def time_interleaved(
    cases: Mapping[str, Callable[[], float]], rounds: int, settings: Settings
) -> dict[str, list[float]]:
    """Run each case ``rounds`` times, in turn, and return every case's measured seconds.

    Each case callable runs its own event loop and returns the seconds of its timed section
    (set-up and tear-down of the loop stay outside). Cases alternate round by round rather
    than running back to back, so that a burst of load from other processes on the machine
    hits every case alike, and the ratios of one run stay comparable.
    """
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            # Start each sample from a clean heap: garbage of the previous case must not be
            # collected on this one's time.
            gc.collect()
            if settings.no_gc:
                gc.disable()
            try:
                out[name].append(case())
            finally:
                gc.enable()
    return out


def per_unit(
    label: str, seconds: list[float], count: int, unit: str = "us/task", scale: float = 1e6
) -> Figure:
    """The best of ``seconds`` divided by ``count``, in ``unit`` (microseconds by default).

    The best sample, not the mean: on a shared machine, noise only ever adds time, so the
    minimum is the figure least disturbed by other processes.
    """
    per = [s * scale / count for s in seconds]
    return Figure(label, min(per), unit, tuple(per))


def run_child(function: str, **kwargs: Any) -> Any:
    """Run ``function`` ("module:name" in this folder) in a fresh interpreter; return its result.

    Measurements that depend on the state of the whole process (resident memory, what has
    been imported) run in a child: a fresh process has no heap left over from other cases
    and no modules loaded but its own. The child prints its result as one JSON line.
    """
    cmd = [sys.executable, str(BENCH_DIR / "child.py"), function, json.dumps(kwargs)]
    env = dict(os.environ)
    # The child finds the sibling modules through its script folder; make sure nothing from
    # the parent's environment changes how Python itself runs (a debug allocator would change
    # every memory figure).
    env.pop("PYTHONMALLOC", None)
    env.pop("PYTHONTRACEMALLOC", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark child {function} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip()}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_children(calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """:func:`run_child` for each ``(function, kwargs)``, two at a time; results in order.

    Only for memory figures: a child's heap and resident set do not depend on what runs
    beside it, so children that take seconds each may share the machine's cores. (Timed
    cases never run side by side.)
    """
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda call: run_child(call[0], **call[1]), calls))


def child_exit(result: Any) -> NoReturn:
    """End a child at once, printing ``result`` as :func:`run_child` expects.

    For children that park many tasks: tearing them down (cancelling 100,000 tasks) would
    take longer than the measurement itself, and nothing is left to clean up in a process
    that ends here.
    """
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


#: The clock of timed sections: the CPU time of the measuring process by default (on a
#: machine shared with others, wall time also counts the time spent waiting for a core, which
#: depends on the neighbours, not on the code); ``run.py --wall-clock`` sets this variable
#: (children inherit it) to time with ``time.perf_counter`` instead.
CLOCK_ENV = "TASKRUNNER_BENCH_CLOCK"


def clock_name() -> str:
    """``"cpu"`` (process CPU time, the default) or ``"wall"``."""
    return "wall" if os.environ.get(CLOCK_ENV) == "wall" else "cpu"


def perf_counter() -> float:
    """The clock of every timed section (a name to import, so that all cases use the same):
    the process's CPU time, or wall time with ``run.py --wall-clock``. Every case is
    single-threaded CPU work, so both count the same work; CPU time leaves out the waits for
    a core that other processes cause."""
    if os.environ.get(CLOCK_ENV) == "wall":
        return time.perf_counter()
    return time.process_time()


@dataclass(frozen=True)
class Group:
    """One benchmark, selectable with ``--only NAME``: it measures and returns its rows."""

    name: str
    title: str
    run: Callable[[Settings], list[Row]]


def settings_json(settings: Settings) -> dict[str, Any]:
    """``settings`` as keyword arguments for a child (see :func:`settings_from_json`)."""
    return {"quick": settings.quick, "no_gc": settings.no_gc}


def settings_from_json(data: Mapping[str, Any]) -> Settings:
    """The inverse of :func:`settings_json`."""
    return Settings(quick=bool(data["quick"]), no_gc=bool(data["no_gc"]))


def assert_no_trio_asyncio() -> None:
    """Fail if trio-asyncio was imported in this process.

    Importing trio-asyncio replaces ``asyncio.new_event_loop`` and ``get_running_loop``:
    ``asyncio.run()`` then runs on trio-asyncio's own loop, so any asyncio figure taken
    afterwards would measure trio-asyncio, not asyncio. Cases that need it run in a child.
    """
    if "trio_asyncio" in sys.modules:
        raise RuntimeError(
            "trio_asyncio was imported in the main benchmark process: asyncio figures would "
            "be wrong from now on; run the cases that need it through run_child()"
        )
