"""SQLiteStore: the embedded default, one file shared safely by several processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._protocol import StoreError
from ._sql import SQLStore

__all__ = ["SQLiteStore"]

#: How long a writer waits for another process's write transaction (seconds).
BUSY_TIMEOUT = 30.0


class SQLiteStore(SQLStore):
    """A :class:`taskrunner.Store` in one SQLite file (created if missing).

    Safe for several processes and threads at once: the file is in WAL mode (readers never
    wait for the writer), every write is one ``BEGIN IMMEDIATE`` transaction (writers queue
    for up to 30 s instead of failing), so counts such as reserved test slots are exact.
    Memory search uses SQLite's FTS5 full-text index. All I/O runs in worker threads.
    """

    def __init__(self, path: str | os.PathLike[str] = "taskrunner.db") -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"SQLiteStore(path) takes a file path (str or os.PathLike), "
                f"got {type(path).__name__}: {path!r}"
            )
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.url = f"sqlite:///{self.path}"

    def _connect(self) -> Any:
        import sqlite3  # here, so that `import taskrunner` stays cheap

        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database
            # is locked" at once (without its busy wait) when another process is switching it
            # too: two processes opening a new store together. Retry for the busy timeout.
            deadline = time.monotonic() + BUSY_TIMEOUT
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from exc
        return conn

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import sqlite3

        return (sqlite3.Error,)

    @contextmanager
    def _write(self, conn: Any) -> Iterator[Any]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            cur.close()

    def _memory_schema(self, conn: Any) -> None:
        with self._write(conn) as cur:
            cur.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS tr_memory USING fts5("
                "memory_id UNINDEXED, namespace UNINDEXED, content, metadata UNINDEXED, "
                "created UNINDEXED)"
            )

    def _memory_add(self, cur: Any, row: tuple[str, str, str, str, float]) -> None:
        cur.execute("INSERT INTO tr_memory VALUES (?, ?, ?, ?, ?)", row)

    def _memory_search(
        self, conn: Any, namespace: str, words: list[str], limit: int
    ) -> list[tuple[Any, ...]]:
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        return self._fetchall(
            conn,
            "SELECT memory_id, content, metadata, -bm25(tr_memory) FROM tr_memory "
            "WHERE tr_memory MATCH ? AND namespace = ? ORDER BY bm25(tr_memory), created "
            "LIMIT ?",
            (match, namespace, limit),
        )
