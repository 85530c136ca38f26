"""sessions: S sessions x 10 idle tasks in one process, memory per session.

Kinds of "session", each started as one task of one outer nursery, holding 10 tasks parked
forever, nobody reading its stream (its start records stay buffered, as they would until a
client reads them):

* ``raw``: a trio nursery with 10 ``trio.sleep_forever`` tasks: the floor;
* ``supervisor``: ``open_supervisor()`` with 10 ``create_task(trio.sleep_forever)``;
* ``session (trio)``: ``open_session(handler, flavor="trio")`` with 10
  ``session.context.create_task(trio.sleep_forever)``;
* ``session (asyncio)``: ``open_session(handler)`` in its default asyncio flavour, with 10
  asyncio tasks waiting on an ``asyncio.Event`` (the sessions share their trio run's one
  trio-asyncio loop).

Memory is measured as in the ``memory`` benchmark, each figure in a fresh child. The issue
sets no target here: the rows compare each kind with the raw floor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from bench_memory import METHODS, Method, growth, method_tag
from harness import Figure, Group, Row, Settings, child_exit, run_children

from taskrunner import Flavor

__all__ = ["GROUP", "KINDS", "sessions_child"]

TASKS_PER_SESSION = 10
SESSIONS = 10_000
#: asyncio-flavoured sessions share one trio-asyncio loop per trio run (a loop per session
#: held a socket pair each, and 10,000 of them ran out of file descriptors), so they are
#: measured at the same count as the others.
ASYNCIO_SESSIONS = SESSIONS


async def _raw(ready: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS_PER_SESSION):
            nursery.start_soon(trio.sleep_forever)
        ready()


async def _supervisor(ready: Callable[[], None]) -> None:
    import taskrunner

    async with taskrunner.open_supervisor() as sup:
        for _ in range(TASKS_PER_SESSION):
            sup.create_task(trio.sleep_forever, timeout=None)
        ready()
        await trio.sleep_forever()


async def _handler(event: Any, context: Any) -> None:
    """The sessions' handler: never called, since no input is sent."""


async def _asyncio_idle() -> None:
    await asyncio.Event().wait()


def _session(flavor: Flavor) -> Callable[[Callable[[], None]], Awaitable[None]]:
    async def one(ready: Callable[[], None]) -> None:
        import taskrunner

        async with taskrunner.open_session(_handler, flavor=flavor) as session:
            idle = trio.sleep_forever if flavor == "trio" else _asyncio_idle
            for _ in range(TASKS_PER_SESSION):
                session.context.create_task(idle, timeout=None)
            ready()
            await trio.sleep_forever()

    return one


#: kind -> (label, the body of one session task). A new kind of session is one more entry.
KINDS: dict[str, tuple[str, Callable[[Callable[[], None]], Awaitable[None]]]] = {
    "raw": ("trio nursery + 10 tasks", _raw),
    "supervisor": ("open_supervisor() + 10 create_task", _supervisor),
    "session-trio": ('open_session(flavor="trio") + 10 context.create_task', _session("trio")),
    "session-asyncio": (
        "open_session() (asyncio, the default) + 10 context.create_task",
        _session("asyncio"),
    ),
}


def sessions_child(kind: str, sessions: int, method: Method) -> None:
    """In a child: print the bytes per session of ``kind``; the process ends right after."""
    body = KINDS[kind][1]

    async def main() -> None:
        started = [0]

        def ready() -> None:
            started[0] += 1

        async with trio.open_nursery() as nursery:

            def spawn() -> None:
                for _ in range(sessions):
                    nursery.start_soon(body, ready)

            grown = await growth(method, spawn)
            if started[0] != sessions:
                raise RuntimeError(f"{started[0]} of {sessions} sessions started")
            child_exit(grown / sessions)

    trio.run(main)


def run(settings: Settings) -> list[Row]:
    """10,000 sessions (quick: 100), both ways of counting; asyncio ones capped, see above."""
    sessions = settings.pick(SESSIONS, 100)

    def count(kind: str) -> int:
        return min(sessions, ASYNCIO_SESSIONS) if kind == "session-asyncio" else sessions

    jobs = [(m, k) for m in METHODS for k in KINDS]
    values = run_children(
        [
            ("bench_sessions:sessions_child", {"kind": k, "sessions": count(k), "method": m})
            for m, k in jobs
        ]
    )
    fig: dict[tuple[Method, str], Figure] = {}
    for (m, k), v in zip(jobs, values, strict=True):
        label = f"{KINDS[k][0]} ({method_tag(m)})"
        if count(k) < sessions:
            label += f", {count(k):,} sessions"
        fig[m, k] = Figure(label, v, "B/session", (v,))
    return [
        Row(
            "sessions",
            f"{sessions:,} x {TASKS_PER_SESSION} tasks, {method_tag(m)}",
            fig[m, k],
            fig[m, "raw"],
        )
        for m in METHODS
        for k in KINDS
        if k != "raw"
    ]


GROUP = Group("sessions", "memory per session (S sessions x 10 idle tasks)", run)
