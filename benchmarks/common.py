"""Workloads shared by several groups: trivial task bodies, and a supervisor with its reader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import taskrunner

__all__ = ["count_records", "supervisor_with_reader", "trivial"]


async def trivial() -> None:
    """The body of a "trivial task": it returns at once, without a checkpoint."""


async def count_records(sup: taskrunner.Supervisor, counter: list[int]) -> None:
    """Read every record of ``sup`` until its stream ends; add their number to ``counter[0]``.

    This is how taskrunner is used: one task consumes ``sup.events()`` while tasks run, so
    records never pile up in the stream. (Counting, rather than looking at each record, keeps
    the reader's own work out of the figures: a task makes a start and an end record, plus
    one per output.)
    """
    seen = 0
    async for _ in sup.events():
        seen += 1
    counter[0] += seen


@asynccontextmanager
async def supervisor_with_reader(
    reader: bool = True, counter: list[int] | None = None, **options: Any
) -> AsyncIterator[taskrunner.Supervisor]:
    """Open a supervisor (``options`` go to ``open_supervisor``) and, if ``reader``, its reader.

    Leaving the block closes the supervisor and then waits until the reader has read the last
    record, so a timed section around the block covers every record's delivery.
    """
    counter = [0] if counter is None else counter
    async with trio.open_nursery() as outer:
        async with taskrunner.open_supervisor(**options) as sup:
            if reader:
                outer.start_soon(count_records, sup, counter)
            yield sup
