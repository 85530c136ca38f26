"""``python -m taskrunner``: run, demo, --json, --record, debug, and bad input."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from taskrunner.tools import demo_agent
from taskrunner.tools.cli import _load_module, run_conversation
from taskrunner.tools.recorder import read_recording
from taskrunner.tools.render import JsonRenderer, TerminalRenderer

ROOT = Path(__file__).resolve().parent.parent


def lines_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_demo_script_against_the_order_agent(autojump_clock: Any) -> None:
    out = io.StringIO()
    await run_conversation(demo_agent.handler, demo_agent.SCRIPT, renderer=JsonRenderer(out))
    records = lines_of(out.getvalue())
    table = records.pop()
    assert table["type"] == "TaskTable"
    states = {t["name"]: (t["state"], t["cancel_reason"]) for t in table["tasks"]}
    assert states == {
        "suggest_extras": ("cancelled", "interrupted"),
        "order_processing": ("finished", None),
        "notify_kitchen": ("timed_out", None),
    }
    said = [r["event"]["text"] for r in records if r["type"] == "HandlerOutput"]
    assert "Your order status is: pending" in said
    assert said[-1] == "Your order status is: completed"
    assert records[0]["type"] == "SessionStarted" and records[-1]["type"] == "SessionEnded"
    logs = [r["event"]["message"] for r in records if r["type"] == "TaskOutput"]
    assert "Order processing complete" in logs


async def test_terminal_renderer_marks_tasks_and_prints_the_table(autojump_clock: Any) -> None:
    from rich.console import Console

    console = Console(
        file=io.StringIO(),
        force_terminal=True,
        width=120,
        color_system="truecolor",
        highlight=False,
    )
    await run_conversation(
        demo_agent.handler, demo_agent.SCRIPT, renderer=TerminalRenderer(console)
    )
    raw = console.file.getvalue()  # type: ignore[attr-defined]
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert " order_processing " in text and "timed out after 2s" in text
    assert "48;5;214m order_processing " in raw  # the name on an orange (orange1) tag
    assert "+  0.00s session" in text  # times relative to the session's start
    assert "┃ task" in text and "cancelled (interrupted)" in text


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskrunner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_run_command_with_a_script_json_and_a_recording(tmp_path: Path) -> None:
    rec = tmp_path / "run.jsonl"
    done = run_cli(
        "run", "examples/order_agent.py",
        "--say", "place order", "--say", "check status", "--wait", "6", "--say", "check status",
        "--json", "--speed", "20", "--record", str(rec),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = lines_of(done.stdout)
    table = printed.pop()
    assert [(t["name"], t["state"]) for t in table["tasks"]] == [("order_processing", "finished")]
    said = [r["event"]["text"] for r in printed if r["type"] == "HandlerOutput"]
    assert said == [
        "Processing your order in the background.",
        "Your order status is: pending",
        "Your order status is: completed",
    ]
    # The recording holds the very records that were printed, in order.
    recorded = [record for _, record in read_recording(rec)]
    assert recorded == printed


def test_bad_command_lines_fail_with_a_message() -> None:
    missing = run_cli("run", "examples/no_such_agent.py")
    assert missing.returncode != 0 and "no such file" in missing.stderr
    bad_wait = run_cli("run", "examples/order_agent.py", "--wait", "soon")
    assert bad_wait.returncode != 0 and "--wait takes a number of seconds" in bad_wait.stderr
    no_handler = run_cli("run", "examples/order_agent.py", "--handler", "nope")
    assert no_handler.returncode != 0 and "has no 'nope'" in no_handler.stderr
    bad_recording = run_cli("debug", "/nonexistent/recording.jsonl")
    assert bad_recording.returncode != 0 and "No such file" in bad_recording.stderr


def test_load_module_by_name_and_path() -> None:
    assert _load_module(str(ROOT / "examples" / "trio_agent.py")).FLAVOR == "trio"
    assert _load_module("taskrunner.tools.demo_agent").SCRIPT == demo_agent.SCRIPT
    with pytest.raises(SystemExit, match="cannot import"):
        _load_module("no_such_module_anywhere")


async def test_run_conversation_serves_a_hub(autojump_clock: Any) -> None:
    from taskrunner.tools.hub import Hub

    hub = Hub()
    await run_conversation(
        demo_agent.handler, [("say", "hi")], renderer=JsonRenderer(io.StringIO()), hub=hub,
        session_id="cli-test",
    )  # fmt: skip
    assert hub.session_ids() == ["cli-test"]
    kinds = [r["type"] for r in hub.records("cli-test")]
    assert kinds[0] == "SessionStarted" and kinds[-1] == "SessionEnded"
    assert hub.control("cli-test") is None  # the session ended: no more actions
    await trio.lowlevel.checkpoint()
