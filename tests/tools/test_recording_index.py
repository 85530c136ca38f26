"""Recordings opened for paging (RecordingIndex), what `debug` refuses, and how they are made."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import pytest

from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import RecordingError, encode_line, open_recorder
from taskrunner.tools.recording_index import RecordingIndex, check_recording
from tools import RecordFactory


def write_recording(path: Path, sessions: int = 2, tasks: int = 30, outputs: int = 5) -> int:
    count = 0
    with path.open("w") as file:
        for s in range(sessions):
            f = RecordFactory(f"s{s}")
            sid = f"s{s}"
            file.write(encode_line(sid, f.session_started()))
            count += 1
            for t in range(tasks):
                file.write(encode_line(sid, f.task_started(f"t{t}")))
                for o in range(outputs):
                    file.write(encode_line(sid, f.task_output(f"t{t}", f"out {o}")))
                if t % 3 == 0:
                    file.write(encode_line(sid, f.task_failed(f"t{t}", "bad")))
                elif t % 3 == 1:
                    file.write(encode_line(sid, f.task_cancelled(f"t{t}", "interrupted")))
                else:
                    file.write(encode_line(sid, f.task_finished(f"t{t}")))
                count += outputs + 2
            file.write(encode_line(sid, f.session_ended()))
            count += 1
    return count


def test_index_pages_filters_and_matches_a_full_load(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    total = write_recording(path)
    index = RecordingIndex(path)
    assert index.loading and index.progress()["records"] == 0
    index.scan(batch=7)
    progress = index.progress()
    assert progress == {
        "path": str(path),
        "loading": False,
        "bytes_read": path.stat().st_size,
        "total_bytes": path.stat().st_size,
        "records": total,
        "error": None,
    }
    hub = Hub(history_limit=None)
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        hub.publish(entry["session"], entry["record"])
    assert index.session_ids() == ["s0", "s1"]
    assert index.tasks("s1") == hub.tasks("s1")
    info = index.session_info("s1")
    assert info["kept"] == info["published"] == total // 2 and info["dropped"] == 0
    assert info["live"] is False and info["first_seq"] == 1
    # Pages come back from the file as they were written.
    everything = hub.records("s1")
    page = index.page("s1", start=100, count=50)
    assert page["total"] == len(everything) and page["records"] == everything[100:150]
    assert index.page("s1", start=len(everything) - 3, count=50)["records"] == everything[-3:]
    # Filters: by task, by kinds, both; as the hub's own paging gives them.
    key = "id:5"
    for task, kinds in [
        (key, None),
        (None, frozenset({"TaskFailed"})),
        (key, frozenset({"TaskOutput"})),
    ]:
        want = hub.page("s1", start=0, count=1000, task=task, kinds=kinds)
        got = index.page("s1", start=0, count=1000, task=task, kinds=kinds)
        assert got["total"] == want["total"] > 0 and got["records"] == want["records"]
    assert index.page("s1", task="id:9999")["total"] == 0
    assert index.control("s1") is None
    downloaded = b"".join(index.lines("s0")).decode().splitlines()
    assert [json.loads(line)["session"] for line in downloaded] == ["s0"] * (total // 2)


def test_bad_line_midway_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    f = RecordFactory("s")
    path.write_text(
        encode_line("s", f.session_started()) + "not json\n" + encode_line("s", f.session_ended())
    )
    index = RecordingIndex(path)
    index.scan()
    assert index.record_count == 1
    assert index.error is not None and ":2: not JSON" in index.error
    assert not index.loading


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    f = RecordFactory("s")
    path.write_text(encode_line("s", f.session_started()) + '{"session": "s", "rec')
    index = RecordingIndex(path)
    index.scan()
    assert index.record_count == 1 and index.error is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\n\n  \n", "only blank lines"),
        (gzip.compress(b'{"session": "s", "record": {}}\n'), "compressed with gzip"),
        (b"BZh91AY&SY", "compressed with bzip2"),
        (b"\x00\x01\x02binary", "binary data"),
        (b"\xff\xfe{}\n", "not UTF-8"),
        (b"hello\n", "not JSON"),
        (b'{"session": 1, "record": {}}\n', 'expected {"session": str'),
    ],
)
def test_check_recording_refuses_what_is_not_a_recording(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message.replace("{", r"\{")):
        check_recording(path)


def test_check_recording_refuses_fifos_directories_and_missing_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(RecordingError, match="not a regular file"):
        check_recording(fifo)  # and does not hang opening it
    with pytest.raises(RecordingError, match="is a directory"):
        check_recording(tmp_path)
    with pytest.raises(RecordingError, match="no such file"):
        check_recording(tmp_path / "missing.jsonl")
    good = tmp_path / "good.jsonl"
    write_recording(good, sessions=1, tasks=1)
    check_recording(good)


def test_recordings_are_private_and_never_overwritten_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    hub = Hub()
    f = RecordFactory("s")
    with open_recorder(hub, path):
        hub.publish("s", f.session_started())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    with pytest.raises(FileExistsError):
        open_recorder(hub, path)
    assert path.read_text() == before
    path.chmod(0o644)
    with open_recorder(hub, path, force=True, include_history=False):
        hub.publish("s", f.session_ended())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [json.loads(line)["record"]["type"] for line in path.read_text().splitlines()] == [
        "SessionEnded"
    ]
