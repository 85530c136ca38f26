"""The harness of the real-client tests: sessions whose tasks stream through a kit's client.

An ``Agent`` is a handler that owns a kit's client: ``CustomEvent("open")`` opens it,
``CustomEvent("stream", {...})`` starts a task streaming through it, ``CustomEvent("close")``
closes it. The handler and its tasks are of the session's flavour, so the same agent runs in
asyncio and (for clients that have a trio backend) in trio.
"""

from __future__ import annotations

import gc
import json
import logging
import urllib.request
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import trio
from helpers import check_stream_invariants

import taskrunner
from taskrunner import Context
from taskrunner.events import (
    TERMINAL_RECORDS,
    CustomEvent,
    Event,
    Record,
    StartEvent,
    TaskOutput,
    TaskRecord,
)

from .conftest import LEAK_PATTERNS
from .kits import Kit


def lost_errors(log: list[logging.LogRecord]) -> list[str]:
    """The log lines in ``log`` that say something leaked or an exception was lost."""
    bad = []
    for record in log:
        text = record.getMessage()
        if any(p in text for p in LEAK_PATTERNS):
            bad.append(f"{record.name}: {text}")
    return bad


def assert_no_lost_errors(log: list[logging.LogRecord]) -> None:
    """Collect garbage now (so dropped objects warn inside the test), then check ``log``."""
    gc.collect()
    bad = lost_errors(log)
    assert not bad, "lost errors or leaks were logged:\n" + "\n".join(bad)


class Agent:
    """A handler owning one client of ``kit`` on ``target`` (see the module docstring).

    ``client`` may be handed in (a client shared with an earlier session).
    """

    def __init__(self, kit: Kit, target: str, client: Any = None) -> None:
        self.kit = kit
        self.target = target
        self.client = client

    async def handler(self, event: Event, context: Context) -> None:
        if not isinstance(event, CustomEvent):
            return
        if event.name == "open":
            self.client = await self.kit.open(self.target)
        elif event.name == "close":
            client, self.client = self.client, None
            await self.kit.close(client)
        elif event.name == "stream":
            d = event.data
            context.create_task(
                self.pieces(self.client, d["n"], d["delay"], d["name"]),
                name=d["name"],
                interruptible=d.get("interruptible", False),
                timeout=d.get("timeout", 30),
            )

    async def pieces(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[Any]:
        """The task: every piece the client streams becomes a task output."""
        async with aclosing(self.kit.stream(client, n, delay, tag)) as pieces:
            async for i in pieces:
                yield CustomEvent("piece", {"i": i})


def stream_event(
    name: str, n: int, delay: float, *, interruptible: bool = False, timeout: float = 30
) -> CustomEvent:
    """The input that makes an :class:`Agent` start task ``name`` streaming ``n`` pieces."""
    return CustomEvent(
        "stream",
        {"name": name, "n": n, "delay": delay, "interruptible": interruptible, "timeout": timeout},
    )


class Run:
    """A running session and every record it has produced so far."""

    def __init__(self, session: taskrunner.Session) -> None:
        self.session = session
        self.records: list[Record] = []

    async def _read(self) -> None:
        async for record in self.session.events():
            self.records.append(record)

    async def send(self, event: Event) -> None:
        await self.session.send(event)
        await self.session.wait_until_handled()

    async def wait_for(self, what: Any, predicate: Any, timeout: float = 5.0) -> None:
        """Poll ``predicate()`` (real time: real sockets) until true; fail after ``timeout``.

        ``what`` says what is awaited (a str, or a function making one at the failure)."""
        with trio.move_on_after(timeout):
            # Polled: pool counters and the like change with no event to wait on.
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.005)
            return
        if callable(what):
            what = what()
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; records: "
            + ", ".join(type(r).__name__ + f"({getattr(r, 'task', '')})" for r in self.records)
        )

    def of(self, task: str) -> list[TaskRecord]:
        return [r for r in self.records if isinstance(r, TaskRecord) and r.task == task]

    def pieces(self, task: str) -> list[int]:
        return [
            r.event.data["i"]
            for r in self.of(task)
            if isinstance(r, TaskOutput) and isinstance(r.event, CustomEvent)
        ]

    def terminal(self, task: str) -> TaskRecord | None:
        ends = [r for r in self.of(task) if isinstance(r, TERMINAL_RECORDS)]
        assert len(ends) <= 1, ends
        return ends[0] if ends else None

    async def wait_pieces(self, task: str, count: int) -> None:
        await self.wait_for(f"{count} pieces of {task!r}", lambda: len(self.pieces(task)) >= count)

    async def wait_end(self, task: str, timeout: float = 5.0) -> TaskRecord:
        await self.wait_for(
            f"the end of {task!r}", lambda: self.terminal(task) is not None, timeout
        )
        end = self.terminal(task)
        assert end is not None
        return end


@asynccontextmanager
async def open_run(handler: Any, **kwargs: Any) -> AsyncIterator[Run]:
    """Open a session with a reader collecting its records; the records are complete and
    checked (one start and one terminal record per task) once the block has exited."""
    run: Run | None = None
    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, **kwargs) as session:
            run = Run(session)
            nursery.start_soon(run._read)
            await run.send(StartEvent())
            yield run
    assert run is not None
    check_stream_invariants(run.records)


def server_state(base_url: str, tag: str) -> dict[str, Any]:
    """How the fake API server saw the stream tagged ``tag`` (blocking: call in a thread)."""
    try:
        with urllib.request.urlopen(f"{base_url}/streams/{tag}", timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except urllib.error.HTTPError as exc:
        exc.close()
        return {"state": "unknown", "sent": 0}


async def wait_server_ended(base_url: str, tag: str, timeout: float = 5.0) -> dict[str, Any]:
    """Wait until the server no longer streams ``tag``; its final state."""
    with trio.move_on_after(timeout):
        while True:
            state = await trio.to_thread.run_sync(server_state, base_url, tag)
            if state["state"] in ("done", "aborted"):
                return state
            await trio.sleep(0.02)
    raise AssertionError(f"the server still streams {tag!r} after {timeout} s: {state}")
