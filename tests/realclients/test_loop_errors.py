"""Issue 8, finding 3: what asyncio reports through its loop's exception handler.

Plain asyncio logs these lines ("Task exception was never retrieved", "Future exception was
never retrieved", "Unclosed client session", asyncpg's "unexpected connection_lost() call"
after a cancelled connect) and goes on. Under taskrunner they must be logged on the
``taskrunner`` logger, and no session may suffer: neither the one whose code caused it, nor
another session running at the same time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from taskrunner import Context
from taskrunner.events import CustomEvent, Event, TaskCancelled, TaskFinished

from .support import Run, open_run

# Failed before the core rework (2c9c2cb): TrioInternalError, every session of the run died.
pytestmark = pytest.mark.loop_errors_expected


async def fire_and_forget_task(target: str, seen: Callable[[], bool]) -> None:
    async def fails() -> None:
        raise ValueError("the fire-and-forget task failed")

    asyncio.get_running_loop().create_task(fails())  # nobody keeps or awaits it
    await asyncio.sleep(0.05)
    gc.collect()


async def unretrieved_future(target: str, seen: Callable[[], bool]) -> None:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(ValueError("nobody retrieves this"))
    del future
    gc.collect()


async def unclosed_aiohttp_session(target: str, seen: Callable[[], bool]) -> None:
    import aiohttp

    session = aiohttp.ClientSession()
    del session
    gc.collect()


async def asyncpg_reset_in_transaction(target: str, seen: Callable[[], bool]) -> None:
    """Resets a connection inside a transaction it started by hand: asyncpg reports that
    through the loop's exception handler ("Resetting connection with an active transaction"),
    as it does when a pool takes back such a connection."""
    import asyncpg

    conn = await asyncpg.connect(target)
    try:
        await conn.transaction().start()
        await conn.reset()
    finally:
        await conn.close()


Provocation = Callable[[str, Callable[[], bool]], Awaitable[None]]

PROVOCATIONS: dict[str, tuple[Provocation, str, str | None]] = {
    # name: (provocation, what asyncio's message says, target fixture)
    "fire_and_forget_task": (fire_and_forget_task, "Task exception was never retrieved", None),
    "unretrieved_future": (unretrieved_future, "Future exception was never retrieved", None),
    "unclosed_aiohttp_session": (unclosed_aiohttp_session, "Unclosed client session", None),
    "asyncpg_reset_in_transaction": (
        asyncpg_reset_in_transaction,
        "Resetting connection with an active transaction",
        "postgres_dsn",
    ),
}

PARAMS = [
    pytest.param(
        name,
        id=name,
        # aiohttp also warns (ResourceWarning) before it calls the exception handler; that
        # warning is what it is meant to do, the handler's line is what is checked here.
        marks=[pytest.mark.filterwarnings("ignore:Unclosed client session:ResourceWarning")]
        if name == "unclosed_aiohttp_session"
        else [],
    )
    for name in PROVOCATIONS
]


def taskrunner_lines(log: list[logging.LogRecord], text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in log
        if (r.name == "taskrunner" or r.name.startswith("taskrunner.")) and text in r.getMessage()
    ]


async def steady(count: int) -> AsyncIterator[Event]:
    for i in range(count):
        await asyncio.sleep(0.02)
        yield CustomEvent("piece", {"i": i})


def agent(provoke: Provocation, target: str, seen: Callable[[], bool]) -> Any:
    async def handler(event: Event, context: Context) -> None:
        if isinstance(event, CustomEvent):
            if event.name == "provoke":
                context.create_task(provoke(target, seen), name="provoke", timeout=20)
            elif event.name == "steady":
                context.create_task(steady(event.data["n"]), name=event.data["name"])

    return handler


async def quiet(event: Event, context: Context) -> None:
    if isinstance(event, CustomEvent) and event.name == "steady":
        context.create_task(steady(event.data["n"]), name=event.data["name"])


def pieces(run: Run, name: str) -> list[int]:
    return [r.event.data["i"] for r in run.of(name) if type(r).__name__ == "TaskOutput"]


@pytest.mark.parametrize("kind", PARAMS)
async def test_loop_exception_handler_error_is_logged_and_harms_no_session(
    kind: str, request: pytest.FixtureRequest, loop_log: list[logging.LogRecord]
) -> None:
    provoke, message, fixture = PROVOCATIONS[kind]
    target = request.getfixturevalue(fixture) if fixture else ""
    async with open_run(quiet) as bystander:
        # Another session, busy in asyncio code while the fault happens.
        await bystander.send(CustomEvent("steady", {"name": "other", "n": 100_000}))
        await bystander.wait_pieces("other", 1)

        def seen() -> bool:
            return bool(taskrunner_lines(loop_log, message))

        async with open_run(agent(provoke, target, seen)) as run:
            await run.send(CustomEvent("provoke"))
            assert isinstance(await run.wait_end("provoke", timeout=20), TaskFinished)
            await run.wait_for(f"{message!r} on the taskrunner logger", seen)
            # The session that caused it goes on.
            await run.send(CustomEvent("steady", {"name": "after", "n": 3}))
            assert isinstance(await run.wait_end("after"), TaskFinished)
            assert pieces(run, "after") == [0, 1, 2]
        # The other session's task still runs, undisturbed.
        assert bystander.terminal("other") is None
        before = len(pieces(bystander, "other"))
        await bystander.wait_pieces("other", before + 3)
        assert bystander.session.cancel_task("other")
        end = await bystander.wait_end("other")
        assert isinstance(end, TaskCancelled) and end.reason == "cancel_task", end
        got = pieces(bystander, "other")
        assert got == list(range(len(got)))
    lines = taskrunner_lines(loop_log, message)
    assert all(r.levelno >= logging.ERROR for r in lines), lines
