"""A recording opened for the debugger page without loading it into memory.

:class:`RecordingIndex` reads a ``--record`` file once, keeping per record only its byte
offset, its kind and its task (a few bytes each), plus each session's task table and
counts; the page then asks for pages of records, which are read back from the file.  A
recording of a million records opens in a few seconds and some tens of megabytes, and
while it is being read the page already shows what has been read and how far it got.

:func:`check_recording` refuses what is not a recording with one clear message
(missing, a directory or FIFO, empty, compressed, binary, not UTF-8, not JSON lines).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from array import array
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .hub import Record, _Session, task_key
from .recorder import RecordingError

__all__ = ["RecordingIndex", "check_recording"]

_COMPRESSED = {
    b"\x1f\x8b": "gzip (gunzip it first)",
    b"BZh": "bzip2 (bunzip2 it first)",
    b"\xfd7zXZ\x00": "xz (unxz it first)",
    b"\x28\xb5\x2f\xfd": "zstd (unzstd it first)",
    b"PK\x03\x04": "a zip archive (unzip it first)",
}


def _parse_line(name: str, lineno: int, raw: bytes) -> tuple[str, Record]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{name}:{lineno}: not UTF-8 text ({exc.reason})") from None
    try:
        entry = json.loads(text)
    except ValueError as exc:
        raise RecordingError(f"{name}:{lineno}: not JSON ({exc})") from None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("session"), str)
        or not isinstance(entry.get("record"), dict)
    ):
        raise RecordingError(f'{name}:{lineno}: expected {{"session": str, "record": {{...}}}}')
    return entry["session"], entry["record"]


def check_recording(path: str | os.PathLike[str]) -> None:
    """Raise :class:`RecordingError` (or ``OSError``) unless ``path`` looks like a recording.

    Checks without blocking: a FIFO or device is refused before it is opened; the first
    line must be a recording line.
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise RecordingError(f"{name}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{name}: cannot read it ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise RecordingError(f"{name}: is a directory, not a recording")
    if not stat.S_ISREG(info.st_mode):
        raise RecordingError(f"{name}: not a regular file (a FIFO or device?); save it to a file")
    if info.st_size == 0:
        raise RecordingError(f"{name}: empty file, not a recording")
    try:
        with open(name, "rb") as file:
            head = file.read(65536)
    except OSError as exc:
        raise RecordingError(f"{name}: cannot read it ({exc.strerror})") from None
    for magic, what in _COMPRESSED.items():
        if head.startswith(magic):
            raise RecordingError(f"{name}: compressed with {what}")
    if b"\x00" in head:
        raise RecordingError(f"{name}: binary data, not a JSON-lines recording")
    first = next((line for line in head.split(b"\n") if line.strip()), b"")
    if not first:
        raise RecordingError(f"{name}: holds only blank lines, not a recording")
    if b"\n" in head or len(head) < 65536:
        _parse_line(name, 1, first)


class _Indexed:
    """One session of an indexed recording."""

    def __init__(self, session_id: str) -> None:
        self.summary = _Session(session_id=session_id, history=deque(maxlen=0), task_limit=None)
        self.offsets = array("q")
        self.kinds = array("B")
        self.by_task: dict[str, array[int]] = {}
        self.first_seq: int | None = None


class RecordingIndex:
    """A recording file, indexed for paging; read-only hub-like API for the debugger app.

    Call :meth:`scan` (in a worker thread: it reads the whole file) after creating it; the
    query methods may be called from another thread meanwhile and answer with what has
    been read so far.  :attr:`error` is set if the file turns out bad midway.
    """

    read_only = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.total_bytes = os.stat(self.path).st_size
        self.bytes_read = 0
        self.record_count = 0
        self.loading = True
        self.error: str | None = None
        self._lock = threading.Lock()
        self._sessions: dict[str, _Indexed] = {}
        self._kind_codes: dict[str, int] = {}
        self._kind_names: list[str] = []
        self._filter_cache: tuple[Any, array[int]] | None = None

    # ------------------------------------------------------------------ reading

    def _code(self, kind: str) -> int:
        code = self._kind_codes.get(kind)
        if code is None:
            code = len(self._kind_names)
            if code > 255:
                code = 255  # more than 255 kinds: the rest share one code
            else:
                self._kind_codes[kind] = code
                self._kind_names.append(kind)
        return code

    def scan(self, batch: int = 2000) -> None:
        """Read the file to its end, indexing every record; sets :attr:`error` on a bad line."""
        name = os.fspath(self.path)
        offset = 0
        pending: list[tuple[int, int, str, Record]] = []
        try:
            with open(self.path, "rb") as file:
                lineno = 0
                for raw in file:
                    lineno += 1
                    start = offset
                    offset += len(raw)
                    if not raw.strip():
                        continue
                    try:
                        session_id, record = _parse_line(name, lineno, raw)
                    except RecordingError:
                        if not raw.endswith(b"\n"):
                            break  # a last line cut short by a crash
                        raise
                    pending.append((start, lineno, session_id, record))
                    if len(pending) >= batch:
                        self._apply(pending, offset)
                        pending = []
                self._apply(pending, offset)
        except RecordingError as exc:
            self._apply(pending, offset)
            self.error = str(exc)
        except OSError as exc:
            self.error = f"{name}: cannot read it ({exc.strerror})"
        finally:
            self.loading = False

    def _apply(self, batch: list[tuple[int, int, str, Record]], offset: int) -> None:
        with self._lock:
            for start, _lineno, session_id, record in batch:
                indexed = self._sessions.get(session_id)
                if indexed is None:
                    indexed = self._sessions[session_id] = _Indexed(session_id)
                index = len(indexed.offsets)
                indexed.offsets.append(start)
                indexed.kinds.append(self._code(str(record.get("type"))))
                if record.get("task") is not None:
                    indexed.by_task.setdefault(task_key(record), array("i")).append(index)
                seq = record.get("seq")
                if indexed.first_seq is None and isinstance(seq, int):
                    indexed.first_seq = seq
                indexed.summary.apply(record)
            self.record_count += len(batch)
            self.bytes_read = offset

    def _read(self, offsets: list[int]) -> list[Record]:
        out: list[Record] = []
        with open(self.path, "rb") as file:
            for offset in offsets:
                file.seek(offset)
                out.append(json.loads(file.readline())["record"])
        return out

    # ------------------------------------------------------------------ hub-like API

    def progress(self) -> dict[str, Any]:
        """How much of the file has been read: bytes, records, done or not, error."""
        return {
            "path": os.fspath(self.path),
            "loading": self.loading,
            "bytes_read": self.bytes_read,
            "total_bytes": self.total_bytes,
            "records": self.record_count,
            "error": self.error,
        }

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def session_ids(self) -> list[str]:
        """Ids of the sessions read so far, in file order."""
        return list(self._sessions)

    def session_info(self, session_id: str) -> dict[str, Any]:
        """As :meth:`Hub.session_info`; every record is kept (it is in the file)."""
        with self._lock:
            indexed = self._sessions[session_id]
            info = indexed.summary.info()
            info.update(
                kept=indexed.summary.published,
                dropped=0,
                first_seq=indexed.first_seq,
                live=False,
            )
            return info

    def sessions(self) -> list[dict[str, Any]]:
        """:meth:`session_info` of every session."""
        return [self.session_info(session_id) for session_id in self.session_ids()]

    def tasks(self, session_id: str) -> list[dict[str, Any]]:
        """The task table of a session, as :meth:`Hub.tasks`."""
        with self._lock:
            return [row.to_dict() for row in self._sessions[session_id].summary.tasks.values()]

    def control(self, session_id: str) -> None:
        """Recordings have no controls."""
        return None

    def _matching(self, indexed: _Indexed, task: str | None, kinds: frozenset[str] | None) -> Any:
        if task is None and kinds is None:
            return range(len(indexed.offsets))
        key = (id(indexed), task, kinds, len(indexed.offsets))
        cached = self._filter_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        candidates: Any = range(len(indexed.offsets))
        if task is not None:
            candidates = indexed.by_task.get(task, array("i"))
        if kinds is not None:
            codes = {self._kind_codes[k] for k in kinds if k in self._kind_codes}
            kind_of = indexed.kinds
            result = array("i", (i for i in candidates if kind_of[i] in codes))
        else:
            result = array("i", candidates)
        self._filter_cache = (key, result)
        return result

    def page(
        self,
        session_id: str,
        *,
        start: int = 0,
        count: int = 200,
        task: str | None = None,
        kinds: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """A page of matching records, as :meth:`Hub.page`, read back from the file."""
        with self._lock:
            indexed = self._sessions[session_id]
            matching = self._matching(indexed, task, kinds)
            total = len(matching)
            wanted = [indexed.offsets[i] for i in matching[max(start, 0) : start + count]]
        return {"total": total, "start": start, "records": self._read(wanted)}

    def records(self, session_id: str, *, after: int | None = None) -> list[Record]:
        """The first page of records (recordings are paged, not streamed whole)."""
        records: list[Record] = self.page(session_id, count=500)["records"]
        return records

    def lines(self, session_id: str) -> Iterator[bytes]:
        """The recording lines of one session, as in the file (for a download)."""
        with self._lock:
            offsets = list(self._sessions[session_id].offsets)
        with open(self.path, "rb") as file:
            for offset in offsets:
                file.seek(offset)
                line = file.readline()
                yield line if line.endswith(b"\n") else line + b"\n"
