"""The SQL both backends share: schema, queries, and the worker-thread plumbing.

A backend supplies a DB-API connection and a few dialect details; every query runs in a
worker thread (``trio.to_thread.run_sync``), one at a time per store object, each write in
one transaction. Exact counts across processes come from the database: a slot reservation
reads and bumps ``reserved`` inside one write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import trio

from .._core._flavored import in_asyncio
from ._fenced import FENCED_DDL
from ._protocol import MemoryHit, OptionStats, SessionResult, StoreError, TestState, Variable

__all__ = ["SQLStore"]

T = TypeVar("T")

_TABLES = [
    """CREATE TABLE IF NOT EXISTS tr_variables (
        scope TEXT NOT NULL, agent_id TEXT NOT NULL, environment TEXT NOT NULL,
        name TEXT NOT NULL, value TEXT NOT NULL, masked INTEGER NOT NULL,
        PRIMARY KEY (scope, agent_id, environment, name))""",
    """CREATE TABLE IF NOT EXISTS tr_tests (
        agent_id TEXT NOT NULL, name TEXT NOT NULL, definition TEXT NOT NULL,
        reserved INTEGER NOT NULL DEFAULT 0, concluded_reason TEXT, winner TEXT,
        concluded_wall DOUBLE PRECISION, created_wall DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (agent_id, name))""",
    """CREATE TABLE IF NOT EXISTS tr_assignments (
        agent_id TEXT NOT NULL, test TEXT NOT NULL, session_id TEXT NOT NULL,
        option TEXT NOT NULL, counted INTEGER NOT NULL, wall DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (agent_id, test, session_id))""",
    """CREATE TABLE IF NOT EXISTS tr_outcomes (
        agent_id TEXT NOT NULL, session_id TEXT NOT NULL, name TEXT NOT NULL,
        type TEXT NOT NULL, value TEXT NOT NULL, num DOUBLE PRECISION,
        PRIMARY KEY (agent_id, session_id, name))""",
    """CREATE TABLE IF NOT EXISTS tr_checkpoints (
        session_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, body TEXT NOT NULL,
        wall DOUBLE PRECISION NOT NULL)""",
    *FENCED_DDL,
]

_WORD = re.compile(r"\w+", re.UNICODE)


def _test_state(row: tuple[Any, ...]) -> TestState:
    agent_id, name, definition, reserved, reason, winner, wall = row
    try:
        parsed = json.loads(definition)
    except ValueError as exc:
        raise StoreError(f"test {name!r} of agent {agent_id!r} has a corrupt definition") from exc
    return TestState(agent_id, name, parsed, int(reserved), reason, winner, wall)


_TEST_COLUMNS = (
    "agent_id, name, definition, reserved, concluded_reason, winner, concluded_wall"
)


async def _to_thread(fn: Callable[[], None]) -> None:
    if in_asyncio():
        from .._adapters.aio import run_trio_from_asyncio

        await run_trio_from_asyncio(trio.to_thread.run_sync, fn)
    else:
        await trio.to_thread.run_sync(fn)


def query_words(query: str) -> list[str]:
    """The words of a memory search, as both backends' full-text queries take them."""
    return [w.lower() for w in _WORD.findall(query)]


class SQLStore:
    """Shared implementation of :class:`taskrunner.Store` over a DB-API connection.

    Subclasses set :attr:`url`, implement :meth:`_connect`, :meth:`_write` (a context
    manager around one write transaction), :meth:`_memory_schema`, :meth:`_memory_add`
    and :meth:`_memory_search`, and may change :attr:`_ph` (the placeholder) and
    :attr:`_lock_row` (appended to the SELECT that reads a test before reserving).
    """

    url: str = ""
    _ph = "?"
    _lock_row = ""

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ------------------------------------------------------------ plumbing

    def _connect(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _write(self, conn: Any) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def _memory_schema(self, conn: Any) -> None:
        raise NotImplementedError

    def _memory_add(self, cur: Any, row: tuple[str, str, str, str, float]) -> None:
        raise NotImplementedError

    def _memory_search(
        self, conn: Any, namespace: str, words: list[str], limit: int
    ) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text if self._ph == "?" else text.replace("?", self._ph)

    def _schema(self, conn: Any) -> None:
        with self._write(conn) as cur:
            for ddl in _TABLES:
                cur.execute(ddl)
        self._memory_schema(conn)

    def _run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` holding the store's connection (opened on first use)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.url}: the store is closed")
            if self._conn is None:
                conn = self._connect()
                try:
                    self._schema(conn)
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
            try:
                return fn(self._conn)
            except self._driver_errors() as exc:
                # The transaction was rolled back; a broken connection is opened anew next time.
                try:
                    self._conn.close()
                finally:
                    self._conn = None
                raise StoreError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    async def _call(self, fn: Callable[[Any], T]) -> T:
        """``fn(conn)`` in a worker thread, awaited from trio or from asyncio-flavoured code."""
        if in_asyncio():
            from .._adapters.aio import run_trio_from_asyncio

            result: T = await run_trio_from_asyncio(
                trio.to_thread.run_sync, partial(self._run, fn)
            )
            return result
        return await trio.to_thread.run_sync(partial(self._run, fn))

    def _fetchall(self, conn: Any, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        cur = conn.cursor()
        try:
            cur.execute(self._sql(sql), args)
            return list(cur.fetchall())
        finally:
            cur.close()

    def close_sync(self) -> None:
        """Close the connection (from a worker thread or outside trio)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def aclose(self) -> None:
        """Give back the unused test slots this process reserved, then close the connection;
        later calls raise :class:`StoreError`."""
        from .._session._abtests import release_unused_slots

        await release_unused_slots(self)
        await _to_thread(self.close_sync)

    # ------------------------------------------------------------ variables

    async def list_variables(self) -> list[Variable]:
        """Every stored variable, org scope first, then by agent, environment and name."""
        rows = await self._call(
            lambda c: self._fetchall(
                c,
                "SELECT scope, agent_id, environment, name, value, masked FROM tr_variables "
                "ORDER BY CASE scope WHEN 'org' THEN 0 ELSE 1 END, agent_id, environment, name",
            )
        )
        return [Variable(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    async def set_variable(self, variable: Variable) -> Variable | None:
        """Create or replace a variable; returns the one it replaced, if any."""
        v = variable

        def op(conn: Any) -> Variable | None:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "SELECT value, masked FROM tr_variables WHERE scope = ? AND "
                        "agent_id = ? AND environment = ? AND name = ?"
                    ),
                    (v.scope, v.agent_id, v.environment, v.name),
                )
                old = cur.fetchone()
                cur.execute(
                    self._sql(
                        "INSERT INTO tr_variables VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                        "(scope, agent_id, environment, name) DO UPDATE SET "
                        "value = excluded.value, masked = excluded.masked"
                    ),
                    (v.scope, v.agent_id, v.environment, v.name, v.value, int(v.masked)),
                )
            if old is None:
                return None
            return Variable(v.scope, v.agent_id, v.environment, v.name, old[0], bool(old[1]))

        return await self._call(op)

    async def unset_variable(
        self, scope: str, agent_id: str, environment: str, name: str
    ) -> bool:
        """Delete a variable; False if there was none."""

        def op(conn: Any) -> bool:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "DELETE FROM tr_variables WHERE scope = ? AND agent_id = ? AND "
                        "environment = ? AND name = ?"
                    ),
                    (scope, agent_id, environment, name),
                )
                return bool(cur.rowcount)

        return await self._call(op)

    async def variables_for(self, agent_id: str, environment: str) -> list[Variable]:
        """The org variables, then ``agent_id``'s variables in ``environment``."""
        rows = await self._call(
            lambda c: self._fetchall(
                c,
                "SELECT scope, agent_id, environment, name, value, masked FROM tr_variables "
                "WHERE scope = 'org' OR (scope = 'environment' AND agent_id = ? AND "
                "environment = ?) ORDER BY CASE scope WHEN 'org' THEN 0 ELSE 1 END, name",
                (agent_id, environment),
            )
        )
        return [Variable(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    # ------------------------------------------------------------ tests

    async def load_tests(self, agent_id: str) -> list[TestState]:
        """Every test of ``agent_id``."""
        rows = await self._call(
            lambda c: self._fetchall(
                c,
                f"SELECT {_TEST_COLUMNS} FROM tr_tests WHERE agent_id = ? ORDER BY name",
                (agent_id,),
            )
        )
        return [_test_state(r) for r in rows]

    async def list_tests(self, agent_id: str | None = None) -> list[TestState]:
        """Every test (of ``agent_id`` if given), by agent and name."""
        if agent_id is not None:
            return await self.load_tests(agent_id)
        rows = await self._call(
            lambda c: self._fetchall(
                c, f"SELECT {_TEST_COLUMNS} FROM tr_tests ORDER BY agent_id, name"
            )
        )
        return [_test_state(r) for r in rows]

    def _read_test(self, cur: Any, agent_id: str, name: str, lock: bool) -> TestState | None:
        cur.execute(
            self._sql(
                f"SELECT {_TEST_COLUMNS} FROM tr_tests WHERE agent_id = ? AND name = ?"
                + (self._lock_row if lock else "")
            ),
            (agent_id, name),
        )
        row = cur.fetchone()
        return None if row is None else _test_state(row)

    async def define_test(
        self, agent_id: str, name: str, definition: dict[str, Any]
    ) -> TestState:
        """Create the test, or replace its definition (counts and conclusion are kept)."""
        body = json.dumps(definition, sort_keys=True)

        def op(conn: Any) -> TestState:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO tr_tests (agent_id, name, definition, created_wall) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, name) DO UPDATE SET "
                        "definition = excluded.definition"
                    ),
                    (agent_id, name, body, time.time()),
                )
                state = self._read_test(cur, agent_id, name, False)
            assert state is not None
            return state

        return await self._call(op)

    async def reserve_slots(
        self, agent_id: str, name: str, limit: int, want: int
    ) -> tuple[int, TestState]:
        """Atomically reserve up to ``want`` of the ``limit`` slots of a test."""

        def op(conn: Any) -> tuple[int, TestState]:
            with self._write(conn) as cur:
                state = self._read_test(cur, agent_id, name, True)
                if state is None:
                    raise StoreError(f"test {name!r} of agent {agent_id!r} is not defined")
                grant = 0 if state.concluded else max(0, min(want, limit - state.reserved))
                if grant:
                    cur.execute(
                        self._sql(
                            "UPDATE tr_tests SET reserved = reserved + ? "
                            "WHERE agent_id = ? AND name = ?"
                        ),
                        (grant, agent_id, name),
                    )
                    state = TestState(
                        state.agent_id,
                        state.name,
                        state.definition,
                        state.reserved + grant,
                        state.concluded_reason,
                        state.winner,
                        state.concluded_wall,
                    )
            return grant, state

        return await self._call(op)

    async def release_slots(self, agent_id: str, name: str, count: int) -> None:
        """Give back ``count`` reserved slots that no session used."""

        def op(conn: Any) -> None:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "UPDATE tr_tests SET reserved = CASE WHEN reserved > ? "
                        "THEN reserved - ? ELSE 0 END WHERE agent_id = ? AND name = ?"
                    ),
                    (count, count, agent_id, name),
                )

        await self._call(op)

    async def conclude_test(
        self, agent_id: str, name: str, reason: str, winner: str | None
    ) -> bool:
        """Mark the test concluded; True only for the one call that concluded it."""

        def op(conn: Any) -> bool:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "UPDATE tr_tests SET concluded_reason = ?, winner = ?, "
                        "concluded_wall = ? WHERE agent_id = ? AND name = ? "
                        "AND concluded_reason IS NULL"
                    ),
                    (reason, winner, time.time(), agent_id, name),
                )
                return bool(cur.rowcount == 1)

        return await self._call(op)

    async def record_session(self, result: SessionResult) -> None:
        """Store a session's assignments and outcome values (replacing its earlier ones)."""
        now = time.time()
        assignments = [
            (result.agent_id, test, result.session_id, option, int(counted), now)
            for test, option, counted in result.assignments
        ]
        outcomes = []
        for name, type_, value in result.outcomes:
            num = None if type_ == "string" else float(value)
            outcomes.append(
                (result.agent_id, result.session_id, name, type_, json.dumps(value), num)
            )

        def op(conn: Any) -> None:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql("DELETE FROM tr_assignments WHERE agent_id = ? AND session_id = ?"),
                    (result.agent_id, result.session_id),
                )
                cur.execute(
                    self._sql("DELETE FROM tr_outcomes WHERE agent_id = ? AND session_id = ?"),
                    (result.agent_id, result.session_id),
                )
                if assignments:
                    cur.executemany(
                        self._sql("INSERT INTO tr_assignments VALUES (?, ?, ?, ?, ?, ?)"),
                        assignments,
                    )
                if outcomes:
                    cur.executemany(
                        self._sql("INSERT INTO tr_outcomes VALUES (?, ?, ?, ?, ?, ?)"), outcomes
                    )

        await self._call(op)

    async def test_stats(self, agent_id: str, name: str) -> list[OptionStats]:
        """Per option of the test: sessions assigned at random and their outcome figures."""

        def op(conn: Any) -> list[OptionStats]:
            counts = self._fetchall(
                conn,
                "SELECT option, COUNT(*) FROM tr_assignments WHERE agent_id = ? AND test = ? "
                "AND counted = 1 GROUP BY option ORDER BY option",
                (agent_id, name),
            )
            figures = self._fetchall(
                conn,
                "SELECT a.option, o.name, MAX(o.type), COUNT(o.num), AVG(o.num), "
                "SUM(o.num * o.num) "
                "FROM tr_assignments a JOIN tr_outcomes o ON o.agent_id = a.agent_id "
                "AND o.session_id = a.session_id WHERE a.agent_id = ? AND a.test = ? "
                "AND a.counted = 1 AND o.num IS NOT NULL GROUP BY a.option, o.name",
                (agent_id, name),
            )
            per: dict[str, dict[str, tuple[int, float, float]]] = {}
            kinds: dict[str, dict[str, str]] = {}
            for option, outcome, kind, n, mean, sumsq in figures:
                n, mean, sumsq = int(n), float(mean), float(sumsq)
                var = max(0.0, (sumsq - n * mean * mean) / (n - 1)) if n > 1 else 0.0
                per.setdefault(option, {})[outcome] = (n, mean, var)
                kinds.setdefault(option, {})[outcome] = kind
            return [
                OptionStats(o, int(n), per.get(o, {}), kinds.get(o, {})) for o, n in counts
            ]

        return await self._call(op)

    # ------------------------------------------------------------ memory

    async def add_memory(self, namespace: str, content: str, metadata: dict[str, Any]) -> str:
        """Store one memory; returns its id."""
        memory_id = uuid.uuid4().hex
        row = (memory_id, namespace, content, json.dumps(metadata), time.time())

        def op(conn: Any) -> None:
            with self._write(conn) as cur:
                self._memory_add(cur, row)

        await self._call(op)
        return memory_id

    async def search_memory(self, namespace: str, query: str, limit: int) -> list[MemoryHit]:
        """Full-text search of ``namespace``'s memories (any word of ``query``), best first."""
        words = query_words(query)
        if not words:
            return []
        rows = await self._call(lambda c: self._memory_search(c, namespace, words, limit))
        return [MemoryHit(r[0], r[1], json.loads(r[2]), float(r[3])) for r in rows]

    async def delete_memory(self, namespace: str, memory_id: str) -> bool:
        """Delete one memory; False if there was none."""

        def op(conn: Any) -> bool:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql("DELETE FROM tr_memory WHERE namespace = ? AND memory_id = ?"),
                    (namespace, memory_id),
                )
                return bool(cur.rowcount)

        deleted: bool = await self._call(op)
        return deleted

    # ------------------------------------------------------------ checkpoints

    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` (from ``Context.checkpoint()``) under its session id."""
        session_id = checkpoint.get("session_id")
        if not isinstance(session_id, str):
            raise ValueError(
                f"a checkpoint has a str 'session_id' (from Context.checkpoint()), "
                f"got {session_id!r}"
            )
        body = json.dumps(checkpoint)
        agent_id = str(checkpoint.get("agent_id", ""))

        def op(conn: Any) -> None:
            with self._write(conn) as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO tr_checkpoints VALUES (?, ?, ?, ?) ON CONFLICT "
                        "(session_id) DO UPDATE SET agent_id = excluded.agent_id, "
                        "body = excluded.body, wall = excluded.wall"
                    ),
                    (session_id, agent_id, body, time.time()),
                )

        await self._call(op)

    async def load_checkpoint(self, session_id: str) -> dict[str, Any] | None:
        """The last checkpoint saved for ``session_id``, or None."""
        rows = await self._call(
            lambda c: self._fetchall(
                c, "SELECT body FROM tr_checkpoints WHERE session_id = ?", (session_id,)
            )
        )
        if not rows:
            return None
        body: dict[str, Any] = json.loads(rows[0][0])
        return body
