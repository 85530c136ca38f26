"""Issue 8, finding 4: an interrupt while a task awaits ``asyncio.to_thread`` or
``loop.run_in_executor``.

The thread cannot be stopped, but the task must not wait for it: it ends CANCELLED at once
(the thread's late result is dropped), and no ``TaskStuck`` blames the task's code.
Before the core rework (2c9c2cb) the task waited for the thread, ended FINISHED, and a
``TaskStuck`` blamed it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from taskrunner import Context
from taskrunner.events import CustomEvent, Event, TaskCancelled, TaskStuck

from .support import assert_no_lost_errors, open_run


@pytest.mark.parametrize(
    ("how", "cancel"),
    [("to_thread", "interrupt"), ("run_in_executor", "interrupt"), ("to_thread", "cancel_task")],
)
async def test_cancel_during_executor_work_ends_the_task_at_once(
    how: str, cancel: str, loop_log: list[logging.LogRecord]
) -> None:
    entered = threading.Event()
    release = threading.Event()
    left = threading.Event()

    def blocking() -> str:
        entered.set()
        try:
            release.wait(10)
            return "late result"
        finally:
            left.set()

    async def work() -> Any:
        if how == "to_thread":
            return await asyncio.to_thread(blocking)
        return await asyncio.get_running_loop().run_in_executor(None, blocking)

    async def handler(event: Event, context: Context) -> None:
        if isinstance(event, CustomEvent) and event.name == "go":
            context.create_task(work(), name="work", interruptible=True)

    async with open_run(handler, stuck_after=0.5) as run:
        try:
            await run.send(CustomEvent("go"))
            await run.wait_for("the thread to start", entered.is_set)
            if cancel == "interrupt":
                assert run.session.interrupt() == 1
                reason = "interrupted"
            else:
                assert run.session.cancel_task("work")
                reason = "cancel_task"
            # The thread is still blocked: the task must end without it.
            end = await run.wait_end("work")
            assert isinstance(end, TaskCancelled) and end.reason == reason, end
            assert not left.is_set()
        finally:
            release.set()  # also when failing: the session's close may wait for the thread
        await run.wait_for("the thread to return", left.is_set)
    # The late result changed nothing: one terminal record (checked by open_run), no stuck.
    assert isinstance(run.terminal("work"), TaskCancelled)
    assert not [r for r in run.records if isinstance(r, TaskStuck)]
    assert_no_lost_errors(loop_log)
