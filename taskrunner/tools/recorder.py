"""Record hub records to a JSON-lines file, and load such a recording back.

A recording has one line per record, in publish order::

    {"session": "<session id>", "record": {...record.to_dict()...}}

The recorder is a direct sink of the hub (not a buffered subscriber) because
it must not lose records: every record is written and flushed before
:meth:`~taskrunner.tools.hub.Hub.publish` returns, so a crash loses at most
the line being written.  :func:`load_recording` tolerates such a truncated
last line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from taskrunner.tools.hub import Hub, Record

__all__ = [
    "Recorder",
    "RecordingError",
    "create_private",
    "encode_line",
    "load_recording",
    "open_recorder",
    "read_recording",
]

logger = logging.getLogger(__name__)


class RecordingError(ValueError):
    """A file is not a readable recording (the message names file and line)."""


def _fallback(value: Any) -> Any:
    # Records are meant to be JSON-safe; if one is not, keep a readable
    # stand-in rather than lose the record.
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def encode_line(session_id: str, record: Record) -> str:
    """One recording line (with its newline) for a record of a session."""
    # ensure_ascii keeps lines free of U+2028 and friends, which some line
    # splitters treat as newlines.
    return json.dumps({"session": session_id, "record": record}, default=_fallback) + "\n"


class Recorder:
    """A hub sink writing every record as a JSON line, flushed after each one.

    Use :func:`open_recorder` to create one attached to a hub.  A recorder is
    a context manager that detaches and closes on exit.
    """

    def __init__(self, file: IO[str], *, close_file: bool = True) -> None:
        self._file = file
        self._close_file = close_file
        self._hubs: list[Any] = []
        self.records_written = 0
        """Number of lines written so far."""

    def __call__(self, session_id: str, record: Record) -> None:
        """Write one record; the hub calls this for every published record."""
        self._file.write(encode_line(session_id, record))
        self._file.flush()
        self.records_written += 1

    def attach(self, hub: Any, *, include_history: bool = True) -> None:
        """Start recording ``hub``.

        With ``include_history``, first write the records the hub already
        holds (for recorders attached after sessions started).
        """
        if include_history:
            for session_id in hub.session_ids():
                for record in hub.records(session_id):
                    self(session_id, record)
        hub.add_sink(self)
        self._hubs.append(hub)

    def detach(self) -> None:
        """Stop recording every hub this recorder is attached to."""
        for hub in self._hubs:
            hub.remove_sink(self)
        self._hubs.clear()

    def close(self) -> None:
        """Detach and close the file (if the recorder owns it).  Idempotent."""
        self.detach()
        if self._close_file and not self._file.closed:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_private(path: str | os.PathLike[str], *, force: bool = False) -> IO[str]:
    """Create ``path`` for writing, readable and writable by its owner only (mode 0600).

    Raises :class:`FileExistsError` if it exists, unless ``force`` (then it is truncated and
    its mode set to 0600).
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        if force:
            os.fchmod(fd, 0o600)
        return open(fd, "w", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        raise


def open_recorder(
    hub: Any,
    path: str | os.PathLike[str],
    *,
    include_history: bool = True,
    force: bool = False,
) -> Recorder:
    """Create ``path`` (owner-only, mode 0600) and record ``hub`` into it.

    ``hub`` is a :class:`Hub` or an :class:`~taskrunner.tools.feed.AgentFeed`.  An
    existing file raises :class:`FileExistsError` unless ``force``.  Typical use for
    ``--record FILE.jsonl``::

        with open_recorder(hub, args.record):
            ...  # run the sessions
    """
    # The Recorder owns the file from here on and closes it.
    file = create_private(path, force=force)
    recorder = Recorder(file)
    try:
        recorder.attach(hub, include_history=include_history)
    except BaseException:
        recorder.close()
        raise
    return recorder


def read_recording(path: str | os.PathLike[str]) -> Iterator[tuple[str, Record]]:
    """Yield ``(session_id, record)`` from a recording, in order.

    Blank lines are skipped.  An unreadable *last* line is taken to be a write
    cut short by a crash and is skipped with a warning; any other bad line
    raises :class:`RecordingError`.
    """
    name = os.fspath(path)
    with open(path, encoding="utf-8") as file:
        for lineno, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                message = f"{name}:{lineno}: not JSON ({exc})"
                if not line.endswith("\n"):
                    # Only the last line can lack its newline: a write cut short.
                    logger.warning("%s; ignoring the truncated last line", message)
                    return
                raise RecordingError(message) from None
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("session"), str)
                or not isinstance(entry.get("record"), dict)
            ):
                raise RecordingError(
                    f'{name}:{lineno}: expected {{"session": str, "record": {{...}}}}'
                )
            yield entry["session"], entry["record"]


def load_recording(path: str | os.PathLike[str], *, history_limit: int | None = None) -> Hub:
    """Load a recording into a new :class:`Hub`, for the read-only debugger view.

    Every record is replayed through :meth:`Hub.publish`, so sessions, task
    tables and histories come out as they were live.  No session has a
    control.  ``history_limit=None`` keeps every record.
    """
    hub = Hub(history_limit=history_limit)
    for session_id, record in read_recording(Path(path)):
        hub.publish(session_id, record)
    return hub
