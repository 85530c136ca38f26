"""taskrunner's side-by-side benchmarks: ``python benchmarks/run.py [--quick] [--only NAME]``.

Each benchmark measures taskrunner and what it is compared with in the same run (cases take
turns, round after round) and prints a markdown table of ratios, with the target each ratio
must meet. Ratios, not absolute figures, are what carries from one machine to another.

``--quick`` (used by CI, through tests/test_benchmarks_quick.py) runs every benchmark once at
a small size, so that the suite cannot rot; its figures mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import bench_asyncio
import bench_cancel
import bench_events
import bench_import
import bench_memory
import bench_sessions
import bench_spawn
from harness import CLOCK_ENV, Group, Row, Settings, clock_name

GROUPS: tuple[Group, ...] = (
    bench_spawn.GROUP,
    bench_events.GROUP,
    bench_cancel.GROUP,
    bench_memory.GROUP,
    bench_asyncio.GROUP,
    bench_import.GROUP,
    bench_sessions.GROUP,
)

_COLUMNS = (
    "benchmark",
    "case",
    "taskrunner / subject",
    "figure",
    "baseline",
    "figure",
    "ratio",
    "target",
    "result",
)


def _cell(text: str) -> str:
    # A "|" inside a cell would end it early in markdown.
    return text.replace("|", "\\|")


def format_table(rows: list[Row]) -> str:
    """The rows as a markdown table (one line per row, so it pastes into the README)."""
    lines = [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "|".join(["---"] * 3 + ["---:", "---", "---:", "---:", "---", "---"]) + "|",
    ]
    for r in rows:
        result = {"met": "met", "MISSED": "**MISSED**", "info": "—"}[r.status]
        cells = [
            r.benchmark,
            r.case,
            r.subject.label,
            r.subject.text(),
            r.baseline.label,
            r.baseline.text(),
            f"{r.ratio:.2f}x",
            r.target.text() if r.target else "—",
            result,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _versions() -> str:
    names = ("taskrunner", "trio", "trio-asyncio", "anyio", "aiojobs")
    parts = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in avg)


def _parse(argv: list[str]) -> argparse.Namespace:
    names = [g.name for g in GROUPS]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small sizes, each case once (CI)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(names)}",
    )
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the rows as JSON")
    p.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic GC inside timed sections (to see what collection costs)",
    )
    p.add_argument(
        "--wall-clock",
        action="store_true",
        help="time with wall-clock time (default: the process's CPU time, which other "
        "processes on a shared machine do not inflate)",
    )
    p.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = p.parse_args(argv)
    if args.only:
        wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        args.only = wanted
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, print the table; exit status 0 unless one crashed."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        for g in GROUPS:
            print(f"{g.name}\t{g.title}")
        return 0
    if args.wall_clock:
        os.environ[CLOCK_ENV] = "wall"  # children inherit it
    settings = Settings(quick=args.quick, no_gc=args.no_gc)
    groups = [g for g in GROUPS if not args.only or g.name in args.only]
    rows: list[Row] = []
    durations: dict[str, float] = {}
    start = time.perf_counter()
    load_before = os.getloadavg()
    for g in groups:
        # Progress goes to stderr: stdout carries only the report, ready to paste.
        print(f"[{g.name}] {g.title} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows += g.run(settings)
        durations[g.name] = time.perf_counter() - t0
        print(f"[{g.name}] done in {durations[g.name]:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - start

    mode = "quick" if settings.quick else "full"
    print(
        f"taskrunner benchmarks ({mode} mode, {clock_name()} time"
        f"{', GC off in timed sections' if args.no_gc else ''})"
        f" — {_versions()}; {platform.machine()}, {platform.system()}; {total:.0f} s; "
        f"load average before/after: {_load(load_before)} / {_load(os.getloadavg())}\n"
    )
    print(format_table(rows))
    missed = [r for r in rows if r.status == "MISSED"]
    targeted = [r for r in rows if r.status != "info"]
    print(f"\n{len(targeted) - len(missed)} of {len(targeted)} targets met.")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mode": mode,
                    "no_gc": args.no_gc,
                    "clock": clock_name(),
                    "versions": _versions(),
                    "seconds": durations,
                    "rows": [r.to_json() for r in rows],
                },
                indent=2,
            )
            + "\n"
        )
    # A missed target is a finding to report, not a failure of the run: the exit status says
    # only whether every benchmark ran.
    return 0


if __name__ == "__main__":
    sys.exit(main())
