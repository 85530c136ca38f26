"""PostgresStore: the same store on a PostgreSQL server, for several machines.

The driver is psycopg 3 (the ``postgres`` extra), used synchronously in a worker thread
through ``trio.to_thread``, like the SQLite backend: one code path and one transaction
model for both stores, nothing on the trio thread, and no dependence on the asyncio loop
(asyncpg would need trio-asyncio even for trio-flavoured sessions, and its calls would run
on the asyncio side of every session).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._protocol import StoreError
from ._sql import _TABLES, SQLStore

__all__ = ["PostgresStore"]


def _hide_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


#: Connection settings every PostgresStore connection gets unless its URL sets them: a
#: connect gives up after 10 s, and a peer silent for about 25 s is detected (keepalives).
_LIVENESS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class PostgresStore(SQLStore):
    """A :class:`taskrunner.Store` on PostgreSQL (``postgresql://user@host:port/db``).

    Same schema and behaviour as :class:`SQLiteStore`: each write is one transaction, slot
    reservations lock the test's row (``SELECT ... FOR UPDATE``), memory search uses
    PostgreSQL's full-text search (``tsvector``, ``simple`` configuration). The tables are
    created on first use (``tr_*``). Needs ``pip install 'taskrunner[postgres]'``.

    Every connection gives up connecting after 10 s and detects a silent server within
    about 25 s (TCP keepalives), unless the URL sets those itself. ``statement_timeout``
    (seconds) bounds each statement on the server; one cut short raises
    :class:`StoreError`, as any failed call does.
    """

    _ph = "%s"
    _lock_row = " FOR UPDATE"

    def __init__(self, dsn: str, *, statement_timeout: float | None = None) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"PostgresStore(dsn) takes a URL 'postgresql://user[:password]@host[:port]/db', "
                f"got {dsn!r}"
            )
        if statement_timeout is not None and not (
            isinstance(statement_timeout, (int, float))
            and not isinstance(statement_timeout, bool)
            and 0 < statement_timeout < math.inf
        ):
            raise ValueError(
                f"PostgresStore(statement_timeout=) takes finite seconds > 0 or None, "
                f"got {statement_timeout!r}"
            )
        super().__init__()
        self.dsn = dsn
        self.url = _hide_password(dsn)
        self.statement_timeout = statement_timeout

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the extra is in dev
            raise StoreError(
                "PostgresStore needs psycopg 3: pip install 'taskrunner[postgres]'"
            ) from exc
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            params = conninfo_to_dict(self.dsn)
            # A server that stops answering (a partition, a host gone without a reset) must
            # become an error, not a worker thread blocked for ever: bounded connects, TCP
            # keepalives, and the statement timeout asked for. The URL's own settings win.
            for name, value in _LIVENESS.items():
                params.setdefault(name, value)
            if self.statement_timeout is not None:
                ms = max(1, round(self.statement_timeout * 1000))
                params["options"] = f"{params.get('options', '')} -c statement_timeout={ms}"
            return psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.url}: {exc}") from exc

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    @contextmanager
    def _write(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def _schema(self, conn: Any) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog: one
        # transaction-scoped advisory lock serialises the schema creation of all processes.
        with self._write(conn) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(7406125)")
            for ddl in _TABLES:
                cur.execute(ddl)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS tr_memory (memory_id TEXT PRIMARY KEY, "
                "namespace TEXT NOT NULL, content TEXT NOT NULL, metadata TEXT NOT NULL, "
                "created DOUBLE PRECISION NOT NULL, tsv tsvector GENERATED ALWAYS AS "
                "(to_tsvector('simple', content)) STORED)"
            )
            cur.execute("CREATE INDEX IF NOT EXISTS tr_memory_tsv ON tr_memory USING GIN (tsv)")

    def _memory_schema(self, conn: Any) -> None:  # created with the rest in _schema
        pass

    def _memory_add(self, cur: Any, row: tuple[str, str, str, str, float]) -> None:
        cur.execute(
            "INSERT INTO tr_memory (memory_id, namespace, content, metadata, created) "
            "VALUES (%s, %s, %s, %s, %s)",
            row,
        )

    def _memory_search(
        self, conn: Any, namespace: str, words: list[str], limit: int
    ) -> list[tuple[Any, ...]]:
        query = " || ".join("plainto_tsquery('simple', %s)" for _ in words)
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT memory_id, content, metadata, ts_rank(tsv, q) FROM tr_memory, "
                f"(SELECT {query} AS q) AS qs WHERE namespace = %s AND tsv @@ q "
                f"ORDER BY 4 DESC, created LIMIT %s",
                (*words, namespace, limit),
            )
            return list(cur.fetchall())
