"""The store from the command line: variables, tests, --store, --param, redaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from context_support import converse, make_store

import taskrunner
from taskrunner.events import StartEvent
from taskrunner.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures logging for a terminal (a filter on the supervisor's logger, root
    handlers); put it back, so that later tests see the log as they expect."""
    sup_log, root = logging.getLogger("taskrunner"), logging.getLogger()
    filters, handlers, level = sup_log.filters[:], root.handlers[:], root.level
    yield
    sup_log.filters[:] = filters
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_variables_commands(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    s = ("--store", store_url)
    code, out, _ = cli(capsys, "variables", "set", "REGION", "eu", "--org", *s)
    assert (code, out) == (0, "set (org) REGION=eu\n")
    code, out, _ = cli(capsys, "variables", "set", "API_KEY", "sk-secret", "--environment",
                       "production", "--agent", "shop", "--masked", *s)
    assert code == 0 and "sk-secret" not in out and "API_KEY=********" in out
    assert cli(capsys, "variables", "set", "REGION", "us", "--org", *s)[1].startswith("replaced")
    code, out, _ = cli(capsys, "variables", "list", *s)
    assert "sk-secret" not in out and "********" in out and "us" in out
    rows = [json.loads(line) for line in cli(capsys, "variables", "list", "--json", *s)[1]
            .splitlines()]
    assert [(r["scope"], r["name"], r["value"]) for r in rows] == [
        ("org", "REGION", "us"), ("environment", "API_KEY", "********")
    ]

    async def seen() -> dict[str, str]:
        async def handler(event: Any, context: taskrunner.Context) -> None:
            pass

        store = make_store(store_url)
        try:
            ran = await converse(handler, [StartEvent()], store=store, agent_id="shop",
                                 environment="production")
        finally:
            await store.aclose()
        return ran.context.variables

    assert trio.run(seen) == {"REGION": "us", "API_KEY": "sk-secret"}
    assert cli(capsys, "variables", "unset", "API_KEY", "--environment", "production",
               "--agent", "shop", *s)[0] == 0
    code, _, err = cli(capsys, "variables", "unset", "API_KEY", "--environment", "production",
                       "--agent", "shop", *s)
    assert code == 1 and "no variable 'API_KEY'" in err
    assert trio.run(seen) == {"REGION": "us"}


def test_variables_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = ("--store", f"sqlite:///{tmp_path / 'v.db'}")
    with pytest.raises(SystemExit) as exc:
        main(["variables", "set", "A", "1", *s])  # no scope
    assert exc.value.code == 2
    assert "one of the arguments --org --environment is required" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--environment needs --agent"):
        main(["variables", "set", "A", "1", "--environment", "prod", *s])
    with pytest.raises(SystemExit, match="--agent goes with --environment"):
        main(["variables", "set", "A", "1", "--org", "--agent", "x", *s])
    with pytest.raises(SystemExit, match="non-empty str without spaces, got 'A B'"):
        main(["variables", "set", "A B", "1", "--org", *s])
    with pytest.raises(SystemExit, match="--store: unknown store URL 'redis://x'"):
        main(["variables", "list", "--store", "redis://x"])
    with pytest.raises(SystemExit, match="cannot open the SQLite store"):
        main(["variables", "list", "--store", f"sqlite:///{tmp_path}"])
    assert cli(capsys, "variables", "list", *s)[1].splitlines()[1:] == []  # nothing was stored


AGENT = """
from taskrunner.events import StartEvent, TextToSpeechEvent

async def handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"key {context.variables['API_KEY']} for "
                                     f"{context.get_data('caller')}", voice="nova")
"""


def test_run_with_store_params_and_redaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    cli(capsys, "variables", "set", "API_KEY", "sk-hidden-42", "--org", "--masked", "--store", url)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    record = tmp_path / "rec.jsonl"
    code, out, _ = cli(capsys, "run", str(agent), "--json", "--store", url, "--param",
                       "caller=Ada", "--param", "empty=", "--record", str(record))
    assert code == 0
    said = [json.loads(line) for line in out.splitlines()]
    [speech] = [r["event"]["text"] for r in said if r["type"] == "HandlerOutput"]
    assert speech == "key ******** for Ada"
    assert "sk-hidden-42" not in out and "sk-hidden-42" not in record.read_text()
    with pytest.raises(SystemExit, match="--param takes KEY=VALUE, got 'caller'"):
        main(["run", str(agent), "--store", url, "--param", "caller"])


def test_outbound_seed_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", str(ROOT / "examples/seeds/guide_outbound.py"), "--json",
                       "--store", f"sqlite:///{tmp_path / 'o.db'}", "--param",
                       "phoneNumber=+15550100")
    assert code == 0 and "Calling +15550100." in out


def test_tests_command(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_outcome("converted", "boolean")
            context.add_outcome("spent", "float")
            option = context.add_test(
                "upsell", {"direct": 1, "subtle": 1}, description="How to upsell",
                stop={"max_confidence": 90, "target_outcome": "converted"},
            )
            if option == "direct":
                context.trigger_outcome("converted")
                context.set_outcome("spent", 10.0)

    async def sessions() -> None:
        store = make_store(store_url)
        try:
            for _ in range(6):
                await converse(handler, [StartEvent()], store=store, agent_id="shop")
        finally:
            await store.aclose()

    trio.run(sessions)
    code, out, _ = cli(capsys, "tests", "--store", store_url)
    assert code == 0
    assert "shop / upsell:" in out and "How to upsell" in out
    assert "mean converted" in out and "confidence on 'converted'" in out
    [t] = [json.loads(line) for line in cli(capsys, "tests", "--json", "--store", store_url)[1]
           .splitlines()]
    by = {o["option"]: o for o in t["options"]}
    assert t["sessions"] == by["direct"]["sessions"] + by["subtle"]["sessions"] >= 4
    if by["direct"]["sessions"]:
        assert by["direct"]["means"] == {"converted": 1.0, "spent": 10.0}
    if by["subtle"]["sessions"]:
        assert by["subtle"]["means"] == {"converted": 0.0, "spent": 0.0}
    assert t["concluded"] == (t["reason"] == "max_confidence")
    assert cli(capsys, "tests", "--agent", "other", "--store", store_url)[1].startswith(
        "no A/B tests"
    )


def test_input_timeout_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", str(ROOT / "examples/seeds/guide_basic.py"), "--json",
                       "--store", f"sqlite:///{tmp_path / 't.db'}", "--speed", "50",
                       "--input-timeout", "4", "--say", "hi", "--wait", "9")
    said = [json.loads(line)["event"]["text"] for line in out.splitlines()
            if json.loads(line)["type"] == "HandlerOutput"]
    assert code == 0
    assert said == ["Hello!", "You said: hi", "Are you still there?", "Are you still there?",
                    "Goodbye!"]
    with pytest.raises(SystemExit, match="--input-timeout must be > 0"):
        main(["run", str(ROOT / "examples/seeds/guide_basic.py"), "--input-timeout", "0"])
