"""``python -m taskrunner``: run, demo, --json, --record, debug, and bad input."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
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
    assert bad_recording.returncode != 0 and "no such file" in bad_recording.stderr


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


# ---- every error the CLI can meet: one line, non-zero, no traceback -------------------


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


NOT_ASYNC = "def handler(event, context):\n    return None\n"
BROKEN = "import no_such_module_xyz\n"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["demo", "--port", "99999"], ["--port", "0 to 65535"]),
        (["demo", "--port", "http"], ["--port", "port number"]),
        (["demo", "--pause", "-1"], ["--pause", ">= 0"]),
        (["demo", "--speed", "0"], ["--speed", "> 0"]),
        (["demo", "--speed", "nan"], ["--speed"]),
        (["demo", "--block-threshold", "0"], ["--block-threshold"]),
        (["demo", "--max-clients", "0"], ["--max-clients", "at least 1"]),
        (["run", "examples/order_agent.py", "--wait", "inf"], ["--wait", "finite"]),
        (["run", "examples/order_agent.py", "--wait", "-2"], ["--wait"]),
        (["run", "examples/no_such_agent.py"], ["no such file"]),
        (["run", "no_such_module_anywhere_xyz"], ["cannot import"]),
        (["run", "examples/order_agent.py", "--handler", "nope"], ["has no 'nope'"]),
        (["demo", "--ui", "--host", "0.0.0.0", "--port", "0"], ["needs a token", "--token"]),
        (["bogus-command"], ["invalid choice"]),
    ],
)
def test_cli_errors_are_one_clear_line(args: list[str], needles: list[str]) -> None:
    env_token = os.environ.pop("TASKRUNNER_TOKEN", None)
    try:
        one_line_error(run_cli(*args, timeout=60), *needles)
    finally:
        if env_token is not None:
            os.environ["TASKRUNNER_TOKEN"] = env_token


def test_handler_errors_are_one_clear_line(tmp_path: Path) -> None:
    not_async = tmp_path / "not_async.py"
    not_async.write_text(NOT_ASYNC)
    one_line_error(run_cli("run", str(not_async)), "handler must be", "async")
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    one_line_error(run_cli("run", str(broken)), "cannot load", "ModuleNotFoundError")


def test_recording_errors_are_one_clear_line(tmp_path: Path) -> None:
    import gzip

    cases = {
        "empty.jsonl": (b"", "empty"),
        "packed.jsonl.gz": (gzip.compress(b"{}\n"), "gzip"),
        "latin1.jsonl": ("caf\xe9\n".encode("latin-1"), "not UTF-8"),
        "binary.jsonl": (bytes(range(256)), "binary"),
        "text.jsonl": (b"hello\n", "not JSON"),
    }
    for name, (content, needle) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        one_line_error(run_cli("debug", str(path), "--port", "0", timeout=30), needle)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    one_line_error(run_cli("debug", str(fifo), "--port", "0", timeout=30), "not a regular file")
    one_line_error(run_cli("debug", str(tmp_path), "--port", "0", timeout=30), "directory")


def test_port_in_use_is_one_clear_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(
            run_cli("demo", "--ui", "--port", str(port), timeout=60), "cannot serve", str(port)
        )


def test_record_refuses_to_overwrite_and_creates_private_files(tmp_path: Path) -> None:
    rec = tmp_path / "run.jsonl"
    rec.write_text("precious\n")
    one_line_error(run_cli("demo", "--json", "--speed", "50", "--record", str(rec)), "--force")
    assert rec.read_text() == "precious\n"
    done = run_cli("demo", "--json", "--speed", "50", "--record", str(rec), "--force")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(rec.stat().st_mode) == 0o600
    assert [r["type"] for _, r in read_recording(rec)][-1] == "SessionEnded"


# ---- Ctrl-C: one line, exit 130, recording flushed ------------------------------------


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(
    args: list[str], ready: str, *, stream: str = "stderr", delay: float = 0.0
) -> tuple[int, str]:
    """Start the CLI, wait for ``ready`` on its stderr (or stdout) and ``delay``, send SIGINT."""
    proc = subprocess.Popen(
        # faulthandler: a child that hangs is sent SIGABRT below, which prints its stacks.
        [sys.executable, "-X", "faulthandler", "-m", "taskrunner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # A suite started in the background by a non-interactive shell inherits SIGINT
        # ignored, and Python then leaves it ignored: the Ctrl-C under test would be lost.
        preexec_fn=_default_sigint,
    )
    watched = proc.stderr if stream == "stderr" else proc.stdout
    assert watched is not None
    seen = ""
    deadline = time.monotonic() + 60
    while ready not in seen:
        assert time.monotonic() < deadline, seen
        line = watched.readline()
        assert line, f"ended before {ready!r}: {seen}"
        seen += line
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        # A failing test must not leave the CLI running; its stacks say where it hung.
        proc.send_signal(signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(
            f"still running 30 s after Ctrl-C; output:\n{seen}{out}\nstderr:\n{err}"
        ) from None
    return proc.returncode, (seen + err) if stream == "stderr" else err


def _core_warning(line: str) -> bool:
    return "RuntimeWarning: coroutine" in line or "Enable tracemalloc" in line


def test_ctrl_c_during_a_run_flushes_the_recording(tmp_path: Path) -> None:
    rec = tmp_path / "run.jsonl"
    code, err = interrupt_when(
        ["run", "examples/order_agent.py", "--say", "place order", "--wait", "60",
         "--json", "--record", str(rec)],
        '"TaskStarted"',
        stream="stdout",
    )  # fmt: skip
    assert code == 130
    # One line is ours. Python may add RuntimeWarnings about coroutines never awaited when
    # the Ctrl-C lands at the wrong moment (a core issue, reported to the lead; it depends on
    # timing): those lines, and only those, are left out here.
    ours = [line for line in err.strip().splitlines() if not _core_warning(line)]
    assert ours == ["interrupted"], err
    assert "Traceback" not in err
    records = [r for _, r in read_recording(rec)]
    assert [r["type"] for r in records][:2] == ["SessionStarted", "InputReceived"]
    assert any(r["type"] == "TaskStarted" for r in records)
    assert rec.read_text().endswith("\n")  # whole lines only


def test_ctrl_c_ends_the_page_and_debug_and_stress(tmp_path: Path) -> None:
    rec = tmp_path / "demo.jsonl"
    code, err = interrupt_when(
        ["demo", "--ui", "--port", "0", "--speed", "50", "--json", "--record", str(rec)],
        "session over",
    )
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err
    assert [r["type"] for _, r in read_recording(rec)][-1] == "SessionEnded"

    code, err = interrupt_when(["debug", str(rec), "--port", "0"], "Ctrl-C to quit")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err

    # stress prints nothing until it ends: give it time to be running (real time: a process).
    code, err = interrupt_when(
        ["stress", "--sessions", "5", "--duration", "60", "--no-progress"], "", delay=3.0
    )
    assert code == 130
    assert [line for line in err.strip().splitlines() if not _core_warning(line)] == [
        "interrupted"
    ], err


def test_terminal_shows_inputs_origins_and_blocks() -> None:
    from rich.console import Console

    from taskrunner.events import InputReceived, TaskCancelled, TextEvent
    from taskrunner.tools.watchdog import LoopBlocked

    console = Console(file=io.StringIO(), width=200, highlight=False)
    renderer = TerminalRenderer(console)
    renderer.render(InputReceived(1, 0.0, TextEvent.from_text("place order")))
    renderer.render(TaskCancelled(2, 0.5, "lookup", 1, "cancel_task", "debugger"))
    frame = {"file": "/x/agent.py", "line": 7, "function": "lookup", "code": "time.sleep(2)"}
    renderer.render(LoopBlocked(3, 1.0, duration=0.42, task="lookup", task_id=1, stack=(frame,)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert 'user     TextEvent "place order"' in text
    assert "cancelled (cancel_task by debugger)" in text
    assert "loop blocked 420 ms by task 'lookup' at agent.py:7: time.sleep(2)" in text
