"""The stress runner: a short configuration, with every correctness check it makes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from taskrunner.events import TaskFinished, TaskOutput, TaskStarted
from taskrunner.tools.stress import StressConfig, StressReport, _Checker, run_stress


async def test_short_stress_run_passes_its_checks(autojump_clock: Any) -> None:
    config = StressConfig(
        sessions=20,
        tasks_per_session=8,
        events_per_task=6,
        interruptible=0.4,
        failing=0.2,
        timing_out=0.2,
        asyncio_share=0.3,
        interrupt_rate=2.0,
        duration=1.0,
        event_gap=0.05,
    )
    report = await run_stress(config)
    assert report.ok, report.failures
    assert report.tasks >= 20 * 8
    assert report.events_delivered + report.events_kept == report.events_yielded > 0
    assert report.interruptions > 0 and len(report.latencies) == report.interruptions
    assert report.peak_live_tasks > 0


def test_checker_catches_lost_events_and_records_after_the_end() -> None:
    report = StressReport(config=StressConfig())
    checker = _Checker(report, yielded={1: 2}, session_id="s")
    checker.feed(TaskStarted(1, 0.0, "t", 1, False, None, "trio"))
    checker.feed(TaskOutput(2, 0.0, "t", 1, "a"))
    checker.feed(TaskFinished(3, 0.0, "t", 1, None))
    checker.feed(TaskOutput(4, 0.0, "t", 1, "late"))
    checker.finish()
    assert any("after the terminal record" in f for f in report.failures)
    assert any("without SessionEnded" in f for f in report.failures)
    assert not report.ok


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="sessions must be a positive int"):
        StressConfig(sessions=0)
    with pytest.raises(ValueError, match="share in \\[0, 1\\]"):
        StressConfig(failing=1.5)


def test_stress_command_exits_zero_and_prints_the_report() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskrunner",
            "stress",
            "--sessions",
            "10",
            "--tasks-per-session",
            "4",
            "--events-per-task",
            "3",
            "--event-gap",
            "0",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "all passed" in out.stdout and "interruption latency" in out.stdout
