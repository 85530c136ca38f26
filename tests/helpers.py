"""Shared helpers for the test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import taskrunner
from taskrunner.events import TERMINAL_RECORDS, Record, TaskRecord


async def _read(sup: taskrunner.Supervisor, into: list[Record]) -> None:
    async for record in sup.events():
        into.append(record)


@asynccontextmanager
async def supervised(**kwargs: Any) -> AsyncIterator[tuple[taskrunner.Supervisor, list[Record]]]:
    """Open a supervisor with a reader that collects every record into a list.

    The list is complete once the ``async with`` block has exited.
    """
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_supervisor(**kwargs) as sup:
            nursery.start_soon(_read, sup, records)
            yield sup, records


def of_task(records: list[Record], name: str) -> list[TaskRecord]:
    """The records of the task called ``name``, in stream order."""
    return [r for r in records if isinstance(r, TaskRecord) and r.task == name]


def kinds(records: list[Any]) -> list[str]:
    """Class names of ``records``."""
    return [type(r).__name__ for r in records]


def check_stream_invariants(records: list[Record]) -> None:
    """Per task: started first, exactly one terminal record, nothing after it; seq increasing."""
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    by_id: dict[int, list[TaskRecord]] = {}
    for r in records:
        if isinstance(r, TaskRecord):
            by_id.setdefault(r.task_id, []).append(r)
    for task_id, recs in by_id.items():
        assert type(recs[0]).__name__ == "TaskStarted", (task_id, kinds(recs))
        terminal = [i for i, r in enumerate(recs) if isinstance(r, TERMINAL_RECORDS)]
        assert len(terminal) == 1, (task_id, kinds(recs))
        tail = recs[terminal[0] + 1 :]
        assert not tail, (task_id, kinds(recs))
