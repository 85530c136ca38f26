"""Fenced checkpoints of served sessions (``serve --checkpoints postgresql://...``).

One row per session in ``tr_serve_checkpoints``: the last checkpoint a worker saved (JSON
text), and the **epoch** of the claim it was saved under. A worker that claims a session
bumps the epoch in one atomic upsert that also returns the last checkpoint; every later
write of that worker carries its epoch and is refused (nothing written) once another worker
has claimed the session since. So a worker cut off past its lease cannot overwrite the new
owner's checkpoint, the way the lease check of the Redis scripts fences the Redis path.

The functions take a :class:`SQLStore` (the PostgreSQL store, or SQLite: the SQL is
portable) and run in its worker thread like every store call; a database failure raises
:class:`StoreError`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._sql import SQLStore

__all__ = [
    "FENCED_DDL",
    "claim_session_checkpoint",
    "read_session_checkpoint",
    "write_session_checkpoints",
]

#: Created with the store's other tables.
FENCED_DDL = [
    """CREATE TABLE IF NOT EXISTS tr_serve_checkpoints (
        session_id TEXT PRIMARY KEY, epoch BIGINT NOT NULL, owner TEXT NOT NULL,
        body TEXT, wall DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS tr_serve_checkpoints_ended ON tr_serve_checkpoints (ended)",
]


async def claim_session_checkpoint(
    store: SQLStore, session_id: str, owner: str
) -> tuple[int, str | None]:
    """Claim ``session_id`` for ``owner``: bump its epoch (1 for a session never claimed)
    and return ``(epoch, body)``, ``body`` the last checkpoint saved (JSON text) or None.

    Call it only while holding the session's lease, so claims happen in lease order.
    """

    def op(conn: Any) -> tuple[int, str | None]:
        with store._write(conn) as cur:
            cur.execute(
                store._sql(
                    "INSERT INTO tr_serve_checkpoints (session_id, epoch, owner, body, wall) "
                    "VALUES (?, 1, ?, NULL, ?) ON CONFLICT (session_id) DO UPDATE SET "
                    "epoch = tr_serve_checkpoints.epoch + 1, owner = excluded.owner, "
                    "ended = NULL RETURNING epoch, body"
                ),
                (session_id, owner, time.time()),
            )
            row = cur.fetchone()
        return int(row[0]), row[1]

    return await store._call(op)


async def write_session_checkpoints(
    store: SQLStore,
    saves: list[tuple[str, int, str]],
    ends: list[tuple[str, int]],
    retention: float,
) -> set[str]:
    """In one transaction: save each ``(session_id, epoch, body)`` and mark each
    ``(session_id, epoch)`` ended, each only if the epoch is still the session's; then drop
    the rows of sessions ended more than ``retention`` seconds ago. Returns the session ids
    whose write was refused (claimed by another worker since, or no row)."""

    def op(conn: Any) -> set[str]:
        refused: set[str] = set()
        now = time.time()
        with store._write(conn) as cur:
            for session_id, epoch, body in saves:
                cur.execute(
                    store._sql(
                        "UPDATE tr_serve_checkpoints SET body = ?, wall = ? "
                        "WHERE session_id = ? AND epoch = ?"
                    ),
                    (body, now, session_id, epoch),
                )
                if cur.rowcount != 1:
                    refused.add(session_id)
            for session_id, epoch in ends:
                cur.execute(
                    store._sql(
                        "UPDATE tr_serve_checkpoints SET ended = ?, wall = ? "
                        "WHERE session_id = ? AND epoch = ?"
                    ),
                    (now, now, session_id, epoch),
                )
                if cur.rowcount != 1:
                    refused.add(session_id)
            if ends:
                cur.execute(
                    store._sql("DELETE FROM tr_serve_checkpoints WHERE ended < ?"),
                    (now - retention,),
                )
        return refused

    return await store._call(op)


async def read_session_checkpoint(
    store: SQLStore, session_id: str
) -> tuple[int, str, str | None, float | None] | None:
    """``(epoch, owner, body, ended)`` of ``session_id``'s row, or None (for inspection)."""
    rows = await store._call(
        lambda c: store._fetchall(
            c,
            "SELECT epoch, owner, body, ended FROM tr_serve_checkpoints WHERE session_id = ?",
            (session_id,),
        )
    )
    if not rows:
        return None
    epoch, owner, body, ended = rows[0]
    return int(epoch), str(owner), body, ended
