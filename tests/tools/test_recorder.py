"""Tests of taskrunner.tools.recorder: JSON-lines recording and loading."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import (
    Recorder,
    RecordingError,
    encode_line,
    load_recording,
    open_recorder,
    read_recording,
)
from tools import FakeControl, RecordFactory


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_record_is_written_and_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    hub = Hub(buffer_size=1)
    f = RecordFactory("s1")
    # A full subscriber must not make the recorder lose anything.
    with hub.subscribe("s1"), open_recorder(hub, path) as recorder:
        for i, record in enumerate(
            [f.session_started(), f.task_started("t"), f.task_output("t", "x")], start=1
        ):
            hub.publish("s1", record)
            # Readable by another process right away: flushed after each record.
            written = lines(path)
            assert len(written) == i
            assert written[-1] == {"session": "s1", "record": record}
        assert recorder.records_written == 3
    hub.publish("s1", f.session_ended())  # after close: not recorded, no error
    assert len(lines(path)) == 3


def test_attaching_late_writes_the_history_first(tmp_path: Path) -> None:
    hub = Hub()
    f, g = RecordFactory("s1"), RecordFactory("s2")
    hub.publish("s1", f.session_started())
    hub.publish("s2", g.session_started())
    with open_recorder(hub, tmp_path / "a.jsonl"):
        hub.publish("s1", f.handler_output("hi"))
    assert [(e["session"], e["record"]["seq"]) for e in lines(tmp_path / "a.jsonl")] == [  # type: ignore[index]
        ("s1", 1),
        ("s2", 1),
        ("s1", 2),
    ]
    with open_recorder(hub, tmp_path / "b.jsonl", include_history=False):
        hub.publish("s2", g.handler_output("only this"))
    assert len(lines(tmp_path / "b.jsonl")) == 1


def test_round_trip_rebuilds_sessions_and_tasks(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    live = Hub()
    live.register("s1", FakeControl())
    f, g = RecordFactory("s1"), RecordFactory("s2")
    with open_recorder(live, path):
        live.publish("s1", f.session_started(at=1.0))
        live.publish("s2", g.session_started(at=1.5))
        live.publish("s1", f.task_started("weather", timeout=3.0, at=2.0))
        live.publish("s1", f.task_output("weather", "<b>Processing...</b>\u2028\nnext", at=2.1))
        live.publish("s1", f.task_failed("weather", "no network", at=2.5))
        live.publish("s2", g.handler_failed("'city'", at=3.0))
        live.publish("s1", f.session_ended(at=4.0))
    # One line per record even with newlines and U+2028 in the text.
    assert len(path.read_text(encoding="utf-8").split("\n")) == 8
    loaded = load_recording(path)
    assert loaded.session_ids() == ["s1", "s2"]
    for session_id in ("s1", "s2"):
        assert loaded.records(session_id) == live.records(session_id)
        assert loaded.tasks(session_id) == live.tasks(session_id)
        assert loaded.control(session_id) is None
    info = loaded.session_info("s1")
    assert info["ended"] is True and info["live"] is False
    assert loaded.history_limit is None


def test_non_json_values_do_not_lose_records(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    hub = Hub()
    f = RecordFactory("s1")
    with open_recorder(hub, path):
        hub.publish("s1", f.task_finished("t", result={"when": object, "tags": (1, 2)}))
    ((session_id, record),) = list(read_recording(path))
    assert session_id == "s1"
    assert record["result"]["tags"] == [1, 2]
    assert record["result"]["when"] == repr(object)


def test_truncated_last_line_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = RecordFactory("s1")
    path = tmp_path / "cut.jsonl"
    whole = encode_line("s1", f.session_started()) + encode_line("s1", f.handler_output("hi"))
    path.write_text(whole + encode_line("s1", f.handler_output("cut"))[:25])
    with caplog.at_level(logging.WARNING, logger="taskrunner.tools.recorder"):
        hub = load_recording(path)
    assert [r["seq"] for r in hub.records("s1")] == [1, 2]
    assert "truncated" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"session": "s1", "record": {"type": "X"}}\nnot json\n', ":2: not JSON"),
        ('["a list"]\n', ':1: expected {"session"'),
        ('{"session": 1, "record": {}}\n', ":1: expected"),
        ('{"session": "s1", "record": []}\n', ":1: expected"),
    ],
)
def test_bad_lines_are_reported_with_line_numbers(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RecordingError, match=message):
        load_recording(path)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text("\n" + encode_line("s1", RecordFactory("s1").session_started()) + "\n\n")
    assert len(list(read_recording(path))) == 1


def test_recorder_detach_and_close_are_idempotent(tmp_path: Path) -> None:
    hub = Hub()
    path = tmp_path / "r.jsonl"
    recorder = open_recorder(hub, path)
    recorder.detach()
    hub.publish("s1", RecordFactory("s1").session_started())
    recorder.close()
    recorder.close()
    assert path.read_text() == ""


def test_recorder_on_a_caller_owned_file(tmp_path: Path) -> None:
    path = tmp_path / "own.jsonl"
    hub = Hub()
    with path.open("w") as file:
        with Recorder(file, close_file=False) as recorder:
            recorder.attach(hub)
            hub.publish("s1", RecordFactory("s1").session_started())
        assert not file.closed
    assert len(lines(path)) == 1
