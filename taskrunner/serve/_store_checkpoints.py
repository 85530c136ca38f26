"""Checkpoints of served sessions in PostgreSQL (``serve --checkpoints postgresql://...``).

A Redis worker keeps each session's checkpoint in Redis by default. With this option every
worker keeps them in one PostgreSQL database instead, through :class:`taskrunner.PostgresStore`
(its own connection, in a worker thread): a worker claiming a session bumps the session's
epoch there and reads the last checkpoint in the same statement, and every later write
carries that epoch and is refused once another worker has claimed the session (see
``taskrunner/_store/_fenced.py``). While PostgreSQL cannot be reached, calls are retried with
backoff (0.1 s doubling to 5 s), the outage and the recovery are logged once each, and the
worker claims no session meanwhile; nothing is dropped and the worker keeps running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .._store._fenced import claim_session_checkpoint, write_session_checkpoints
from .._store._postgres import PostgresStore, _hide_password
from .._store._protocol import StoreError
from ._retry import Outage

__all__ = ["CHECKPOINT_SCHEMES", "StoreCheckpoints", "check_checkpoints_option"]

T = TypeVar("T")

#: Seconds a checkpoint statement may take on the server before it counts as a failure.
STATEMENT_TIMEOUT = 10.0

#: URL schemes ``--checkpoints`` takes besides ``redis``.
CHECKPOINT_SCHEMES = ("postgresql://", "postgres://")


def check_checkpoints_option(value: str) -> str | None:
    """The PostgreSQL DSN ``--checkpoints`` names, or None for ``redis``.

    Raises ``ValueError`` naming the value and what is accepted.
    """
    if value == "redis":
        return None
    if value.startswith(CHECKPOINT_SCHEMES) and value.split("://", 1)[1]:
        return value
    raise ValueError(
        f"--checkpoints takes 'redis' (the default) or a PostgreSQL URL "
        f"postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, got {_hide_password(value)!r}"
    )


class StoreCheckpoints:
    """The checkpoints of one worker's sessions in PostgreSQL; see the module docstring.

    ``worker_id`` names the claims; ``retention`` is how long an ended session's row is
    kept (rows older than that are dropped when later sessions end).
    """

    def __init__(self, dsn: str, *, worker_id: str, retention: float) -> None:
        # A checkpoint statement is small: one stuck for 10 s is an outage, retried.
        self.store = PostgresStore(dsn, statement_timeout=STATEMENT_TIMEOUT)
        self.url = self.store.url
        self.worker_id = worker_id
        self.retention = retention
        self._outage = Outage("PostgreSQL checkpoints", worker_id)

    @property
    def down_since(self) -> float | None:
        """``time.monotonic()`` when PostgreSQL became unreachable, None while it answers."""
        return self._outage.since

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, again with backoff while the store fails (``StoreError``); the
        outage and the recovery are logged once each (see :class:`Outage`). Cancellation
        waits for the database call under way (see :class:`taskrunner.Store`), then raises
        ``trio.Cancelled``."""
        return await self._outage.retrying(what, call, StoreError)

    async def connect(self) -> None:
        """Wait (retrying) until PostgreSQL answers and the table exists."""
        await self.retrying("connect", lambda: self.store._call(lambda conn: None))

    async def claim(self, session_id: str) -> tuple[int, dict[str, Any] | None]:
        """Claim the session (hold its lease first): ``(epoch, last checkpoint or None)``."""
        epoch, body = await self.retrying(
            "claim", lambda: claim_session_checkpoint(self.store, session_id, self.worker_id)
        )
        return epoch, None if body is None else json.loads(body)

    async def write(
        self, saves: dict[str, tuple[int, dict[str, Any]]], ends: dict[str, int]
    ) -> set[str]:
        """Save ``{session_id: (epoch, checkpoint)}`` and mark ``{session_id: epoch}``
        ended, in one transaction (retried while PostgreSQL is down); returns the session
        ids whose write was refused because another worker claimed them since."""
        rows = [(sid, epoch, json.dumps(state, default=repr)) for sid, (epoch, state) in
                saves.items()]
        return await self.retrying(
            "checkpoints",
            lambda: write_session_checkpoints(
                self.store, rows, list(ends.items()), self.retention
            ),
        )

    def describe(self) -> str:
        """``/v1/health``'s ``checkpoints``: where they go and whether it answers."""
        if self.down_since is None:
            return f"{self.url}: ok"
        return f"{self.url}: unreachable for {time.monotonic() - self.down_since:.1f} s"

    async def aclose(self) -> None:
        """Close the connection (in a worker thread)."""
        await trio.to_thread.run_sync(self.store.close_sync)
