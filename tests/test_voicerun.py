"""VoiceRun agents unchanged: the primfunctions event vocabulary of sessions, CLI and tools."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from helpers import check_stream_invariants, of_task
from primfunctions import events as pf
from rich.console import Console

import taskrunner
from taskrunner import events as tr
from taskrunner._session import _vocabulary
from taskrunner.events import HandlerOutput, Record, TaskCancelled, TaskOutput
from taskrunner.tools.cli import main as cli_main
from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import open_recorder, read_recording
from taskrunner.tools.render import JsonRenderer, TerminalRenderer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voicerun"


def load_fixture(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"voicerun_{name}", FIXTURES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run_session(
    handler: Any, inputs: list[Any], **options: Any
) -> tuple[list[Record], taskrunner.Session]:
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, **options) as session:

            async def read() -> None:
                async for record in session.events():
                    records.append(record)

            nursery.start_soon(read)
            for event in inputs:
                await session.send(event)
                await session.wait_until_handled()
    return records, session


def outputs(records: list[Record]) -> list[Any]:
    return [r.event for r in records if isinstance(r, HandlerOutput)]


# ---------------------------------------------------------------------------- the template


async def test_template_handler_runs_unchanged(flavor: str, autojump_clock: Any) -> None:
    template = load_fixture("template_handler")
    start, said = pf.StartEvent(), pf.TextEvent(source="speech", text="book a table")
    records, session = await run_session(
        template.handler, [start, said], events="primfunctions", flavor=flavor
    )
    out = outputs(records)
    assert all(type(e) is pf.TextToSpeechEvent for e in out)
    assert [e.data["text"] for e in out] == [
        "Hello! How can I help you today?",
        "I heard you say: book a table",
        "Goodbye! Have a great day.",  # the StopEvent the session sends when it ends
    ]
    assert all(e.data["voice"] == {"provider": "openai", "identifier": "coral"} for e in out)
    inputs = [r.input for r in records if isinstance(r, HandlerOutput)]
    assert inputs[0] is start and inputs[1] is said and type(inputs[2]) is pf.StopEvent
    assert session.vocabulary.name == "primfunctions"
    check_stream_invariants(records)


async def test_template_says_nothing_to_taskrunner_events(autojump_clock: Any) -> None:
    # The failure this issue is about: the handler's isinstance checks never match.
    template = load_fixture("template_handler")
    records, _ = await run_session(template.handler, [tr.StartEvent(), tr.TextEvent.from_text("x")])
    assert outputs(records) == []


async def test_events_of_the_other_vocabulary_are_refused(autojump_clock: Any) -> None:
    template = load_fixture("template_handler")
    async with taskrunner.open_session(template.handler, events="primfunctions") as session:
        with pytest.raises(TypeError, match=r"primfunctions\.events.*events='primfunctions'.*"
                           r"another vocabulary"):
            await session.send(tr.TextEvent.from_text("hi"))
        with pytest.raises(TypeError, match="got str"):
            await session.send("hi")
    async with taskrunner.open_session(template.handler) as session:
        with pytest.raises(TypeError, match=r"taskrunner\.events.*another vocabulary"):
            await session.send(pf.TextEvent(source="text", text="hi"))


async def test_events_argument_is_checked() -> None:
    async def handler(event: Any, context: Any) -> None:
        pass

    with pytest.raises(ValueError, match=r"events must be one of \('taskrunner', "
                       r"'primfunctions'\), got 'voicerun'"):
        async with taskrunner.open_session(handler, events="voicerun"):
            pass
    with pytest.raises(TypeError, match="events must be one of .* got int: 3"):
        async with taskrunner.open_session(handler, events=3):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match=r"interrupt_on must be a tuple of Event classes of "
                       r"primfunctions\.events"):
        async with taskrunner.open_session(
            handler, events="primfunctions", interrupt_on=(tr.TextEvent,)
        ):
            pass


# ---------------------------------------------------------------------------- interruption


async def test_primfunctions_text_event_interrupts(flavor: str, autojump_clock: Any) -> None:
    sleep = trio.sleep if flavor == "trio" else asyncio.sleep

    async def fetch() -> None:
        await sleep(100)

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            context.create_task(fetch, name="fetch", interruptible=True)
            context.create_task(fetch, name="kept")
        if isinstance(event, pf.TextEvent):
            yield pf.TextToSpeechEvent(text="ok")

    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(
            handler, events="primfunctions", flavor=flavor
        ) as session:
            nursery.start_soon(lambda: collect(session, records))
            await session.send(pf.StartEvent())
            await trio.sleep(2)
            await session.send(pf.TimeoutEvent(count=1, ms_since_input=2000))  # not a barge-in
            await session.wait_until_handled()
            assert session.context.has_unfinished_tasks()
            await session.send(pf.TextEvent(source="speech", text="stop that"))
            await session.wait_until_handled()
    fetch_end = of_task(records, "fetch")[-1]
    assert isinstance(fetch_end, TaskCancelled) and fetch_end.reason == "interrupted"
    assert fetch_end.at - records[0].at == 2
    kept_end = of_task(records, "kept")[-1]
    assert isinstance(kept_end, TaskCancelled) and kept_end.reason == "closed"


async def collect(session: taskrunner.Session, into: list[Record]) -> None:
    async for record in session.events():
        into.append(record)


# ---------------------------------------------------------------------------- task outputs


async def test_task_outputs_are_marked_background(flavor: str, autojump_clock: Any) -> None:
    sleep = trio.sleep if flavor == "trio" else asyncio.sleep

    async def lookup(context: Any) -> AsyncIterator[Any]:
        yield pf.LogEvent("looking up")
        await sleep(3)
        yield pf.TextToSpeechEvent(text="Found it.", voice="nova")

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            context.create_task(lookup(context), name="lookup")
            yield pf.TextToSpeechEvent(text="One moment.", voice="nova")

    hub = Hub()
    published: list[dict[str, Any]] = []
    hub.add_sink(lambda sid, record: published.append(record))
    records = await run_and_wait(handler, flavor, hub)
    task_events = [r.event for r in records if isinstance(r, TaskOutput)]
    handler_events = outputs(records)
    assert [e.name for e in task_events] == ["log", "text_to_speech"]
    assert all(e.background is True and e.background_task_name == "lookup" for e in task_events)
    assert [e.background for e in handler_events] == [False]
    # Marked before anyone saw the record: the hub's copy (what recordings and the debugger
    # get) already says so.
    pub = [r["event"] for r in published if r["type"] == "TaskOutput"]
    assert pub and all(
        e["background"] is True and e["background_task_name"] == "lookup" for e in pub
    )


async def run_and_wait(handler: Any, flavor: str, hub: Hub) -> list[Record]:
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(
            handler, events="primfunctions", flavor=flavor, hub=hub
        ) as session:
            nursery.start_soon(collect, session, records)
            await session.send(pf.StartEvent())
            await session.wait_until_handled()
            await session.context.wait_for_all_tasks()
    return records


# ---------------------------------------------------------------------------- output events


class Handoff(pf.Event):
    """An application's own Event subclass, with data json cannot encode by itself."""

    def __init__(self, target: str) -> None:
        super().__init__("handoff", {"target": target, "tags": {"vip"}, "obj": object()})


def every_output_kind() -> list[Any]:
    return [
        pf.TextToSpeechEvent(text="Hi", voice="nova"),
        pf.TextToSpeechEvent(
            text="Hello", voice={"provider": pf.TTSProvider.OPENAI, "identifier": "coral"}
        ),
        pf.AudioEvent(path="https://example.invalid/hold.mp3"),
        pf.SilenceEvent(duration=2000),
        pf.LogEvent("charging card"),
        pf.CustomEvent("payment_processed", {"amount": 100.0}),
        pf.InterruptEvent(),
        Handoff("billing"),
    ]


async def test_every_output_kind_is_json_safe_and_rendered(autojump_clock: Any) -> None:
    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, pf.StartEvent):
            for out in every_output_kind():
                yield out

    records, _ = await run_session(handler, [pf.StartEvent()], events="primfunctions")
    json_out = io.StringIO()
    text_out = io.StringIO()
    renderer = TerminalRenderer(Console(file=text_out, width=200, highlight=False))
    for record in records:
        JsonRenderer(json_out).render(record)
        renderer.render(record)
    lines = [json.loads(line) for line in json_out.getvalue().splitlines()]
    events = [line["event"] for line in lines if line["type"] == "HandlerOutput"]
    assert [e["type"] for e in events] == [
        "TextToSpeechEvent", "TextToSpeechEvent", "AudioEvent", "SilenceEvent", "LogEvent",
        "CustomEvent", "InterruptEvent", "Handoff",
    ]
    assert events[0]["data"]["voice"] == "nova" and events[0]["text"] == "Hi"
    assert events[1]["data"]["voice"] == {"provider": "openai", "identifier": "coral"}
    assert events[2]["data"]["path"] == "https://example.invalid/hold.mp3"
    assert events[3]["data"]["duration"] == 2000 and events[3]["name"] == "silence"
    assert events[4]["message"] == "charging card" and events[4]["data"]["message"] == (
        "charging card"
    )
    assert events[5]["name"] == "payment_processed"
    assert events[5]["data"] == {"amount": 100.0, "custom": True}
    assert events[7]["data"]["tags"] == ["vip"] and events[7]["data"]["obj"].startswith(
        "<object object"
    )
    assert all(
        set(e) >= {"name", "data", "timestamp", "turn", "background", "background_task_name"}
        for e in events
    )
    text = text_out.getvalue()
    for expected in [
        'says "Hi" (nova)',
        'says "Hello" (openai/coral)',
        "plays https://example.invalid/hold.mp3",
        "silence 2000 ms",
        "log: charging card",
        "custom payment_processed {'amount': 100.0}",
        "InterruptEvent (interrupt)",
        "Handoff (handoff) {'target': 'billing'",
    ]:
        assert expected in text, (expected, text)


async def test_recording_keeps_primfunctions_events(tmp_path: Path, autojump_clock: Any) -> None:
    hub = Hub()
    path = tmp_path / "rec.jsonl"
    template = load_fixture("template_handler")
    with open_recorder(hub, path):
        await run_session(template.handler, [pf.StartEvent()], events="primfunctions", hub=hub)
    said = [
        record["event"]["text"]
        for _, record in read_recording(path)
        if record["type"] == "HandlerOutput"
    ]
    assert said == ["Hello! How can I help you today?", "Goodbye! Have a great day."]


# ---------------------------------------------------------------------------- optional extra


def test_import_taskrunner_does_not_import_primfunctions() -> None:
    code = (
        "import sys, taskrunner, taskrunner.events, taskrunner.testing;"
        "assert 'pytest' not in sys.modules, 'pytest imported';"
        "import taskrunner.tools.cli;"
        "assert 'primfunctions' not in sys.modules, 'primfunctions imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


async def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_vocabulary._loaded, "primfunctions", raising=False)
    monkeypatch.setitem(sys.modules, "primfunctions.events", None)

    async def handler(event: Any, context: Any) -> None:
        pass

    with pytest.raises(ImportError, match=r"pip install 'taskrunner\[voicerun\]'") as info:
        async with taskrunner.open_session(handler, events="primfunctions"):
            pass
    assert isinstance(info.value, taskrunner.TaskRunnerError)


def test_cli_without_the_sdk_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(_vocabulary._loaded, "primfunctions", raising=False)
    monkeypatch.setitem(sys.modules, "primfunctions.events", None)
    agent = str(FIXTURES / "template_handler.py")
    with pytest.raises(SystemExit, match=r"imports primfunctions\.events, the VoiceRun SDK, "
                       r"which is not installed: pip install 'taskrunner\[voicerun\]'"):
        cli_main(["run", agent, "--json"])
    with pytest.raises(SystemExit, match=r"--events primfunctions: .*taskrunner\[voicerun\]"):
        cli_main(["run", str(ROOT / "examples" / "order_agent.py"), "--events", "primfunctions"])


# ---------------------------------------------------------------------------- the CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskrunner", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_cli_runs_the_template_with_its_own_vocabulary(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    done = run_cli(
        "run", "tests/fixtures/voicerun/template_handler.py", "--say", "what's on the menu",
        "--pause", "0", "--json", "--record", str(rec),
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    said = [r["event"]["data"]["text"] for r in lines if r["type"] == "HandlerOutput"]
    assert said == [
        "Hello! How can I help you today?",
        "I heard you say: what's on the menu",
        "Goodbye! Have a great day.",
    ]
    recorded = [r for _, r in read_recording(rec) if r["type"] == "HandlerOutput"]
    assert [r["event"]["text"] for r in recorded] == said

    text = run_cli("run", "tests/fixtures/voicerun/template_handler.py", "--say", "hi",
                   "--pause", "0")
    assert text.returncode == 0, text.stderr
    assert 'says "I heard you say: hi" (openai/coral)' in text.stdout
    assert 'user     TextEvent "hi"' in text.stdout  # the input, from its InputReceived record

    # Told the wrong vocabulary, the agent hears nothing it knows and says nothing.
    forced = run_cli("run", "tests/fixtures/voicerun/template_handler.py", "--say", "hi",
                     "--pause", "0", "--json", "--events", "taskrunner")
    assert forced.returncode == 0, forced.stderr
    assert not [ln for ln in forced.stdout.splitlines() if '"HandlerOutput"' in ln]


def test_cli_runs_the_seed_order_agent_with_primfunctions_imports() -> None:
    done = run_cli(
        "run", "tests/fixtures/voicerun/order_agent.py", "--say", "place order",
        "--say", "check status", "--wait", "6", "--say", "check status",
        "--speed", "50", "--json",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    said = [r["event"]["data"]["text"] for r in lines if r["type"] == "HandlerOutput"]
    assert said == [
        "Processing your order in the background.",
        "Your order status is: pending",
        "Your order status is: completed",
    ]
    table = lines[-1]
    assert [(t["name"], t["state"]) for t in table["tasks"]] == [
        ("order_processing", "finished")
    ]


def test_cli_asks_which_vocabulary_for_a_module_importing_both(tmp_path: Path) -> None:
    agent = tmp_path / "mixed_agent.py"
    agent.write_text(
        "from primfunctions.events import TextEvent\n"
        "from taskrunner.events import TextToSpeechEvent\n\n"
        "async def handler(event, context):\n"
        "    if isinstance(event, TextEvent):\n"
        "        yield TextToSpeechEvent(text='hi', voice='nova')\n"
    )
    done = run_cli("run", str(agent), "--say", "hi", "--pause", "0")
    assert done.returncode != 0
    assert "imports events from both primfunctions.events and taskrunner.events" in done.stderr
    assert "(--events)" in done.stderr
    chosen = run_cli("run", str(agent), "--say", "hi", "--pause", "0", "--json",
                     "--events", "primfunctions")
    assert chosen.returncode == 0, chosen.stderr
    lines = [json.loads(line) for line in chosen.stdout.splitlines()]
    said = [r["event"] for r in lines if r["type"] == "HandlerOutput"]
    assert said == [{"type": "TextToSpeechEvent", "text": "hi", "voice": "nova", "cache": True,
                     "interruptable": True}]
