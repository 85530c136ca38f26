"""Shared fixtures and helpers of the Context and store tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import taskrunner
from taskrunner.events import Event, HandlerOutput, Record

__all__ = ["Ran", "converse", "make_store", "outputs"]


@attrs.define
class Ran:
    """What a conversation left: every record, the session and its context."""

    records: list[Record]
    session: taskrunner.Session

    @property
    def context(self) -> taskrunner.Context:
        return self.session.context

    def of(self, kind: type) -> list[Any]:
        return [r for r in self.records if isinstance(r, kind)]


def outputs(ran: Ran) -> list[Any]:
    """The events the handler yielded, in order."""
    return [r.event for r in ran.records if isinstance(r, HandlerOutput)]


async def converse(
    handler: Any, inputs: Sequence[Event], *, after: float = 0.0, **kwargs: Any
) -> Ran:
    """Open a session, send each input (waiting until it is handled), let ``after`` seconds
    pass, leave the block; every record is read. An error of ``open_session`` (or of the
    block) propagates as itself, not in an exception group."""
    records: list[Record] = []
    try:
        async with trio.open_nursery() as nursery:
            async with taskrunner.open_session(handler, **kwargs) as session:

                async def read() -> None:
                    async for record in session.events():
                        records.append(record)

                nursery.start_soon(read)
                for event in inputs:
                    await session.send(event)
                    await session.wait_until_handled()
                if after:
                    await trio.sleep(after)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return Ran(records, session)


def _pg_database(dsn: str) -> Iterator[str]:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = dsn.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        yield from _pg_database(dsn)


def make_store(url: str) -> taskrunner.Store:
    """A new store object for ``url`` (not the process-wide one of ``open_store``)."""
    if url.startswith("sqlite:///"):
        return taskrunner.SQLiteStore(url[len("sqlite:///") :])
    return taskrunner.PostgresStore(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[taskrunner.Store]:
    """A store object on each backend, closed after the test."""
    s = make_store(store_url)
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[taskrunner.Store]:
    """A SQLite store in the test's temporary directory."""
    s = taskrunner.SQLiteStore(tmp_path / "store.db")
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture(params=["trio", "asyncio"])
def flavor(request: pytest.FixtureRequest) -> str:
    """Each test in both flavours."""
    return str(request.param)
