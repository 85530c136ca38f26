"""What a running task knows about itself: its handle, its protected sections, its runner.

Shared by the supervisor and the flavour runners, so neither imports the other's module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import CodeType
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .handle import TaskHandle

if TYPE_CHECKING:
    pass

__all__ = [
    "APPENDED",
    "FULL",
    "STALE",
    "FlavorRunner",
    "Lifecycle",
    "current_task",
    "uninterruptible",
]

# The handle of the asyncio-flavoured task whose code runs (set in the task's trio context,
# inherited by its asyncio task). Trio-flavoured tasks bind nothing: see _trio_task_handle.
_current_task: ContextVar[TaskHandle | None] = ContextVar("taskrunner.current_task", default=None)
# The code of the coroutine each task's trio task runs (TaskRunning._run), registered by
# _running (which imports this module).
_run_code: list[CodeType] = []
# Coroutine objects handed to create_task that have not started yet (by id): the same object
# must not become two tasks.
_claimed: set[int] = set()

#: What :meth:`Supervisor.offer` says about an output.
APPENDED, FULL, STALE = 0, 1, 2


class Lifecycle(enum.Enum):
    """A supervisor's (or session's) state: ``OPEN`` takes work; ``STOPPING`` finishes the
    stop sequence (no interruptible task may start; non-interruptible tasks may still start
    non-interruptible ones, covered by the grace time); ``CLOSED`` refuses everything."""

    OPEN = "open"
    STOPPING = "stopping"
    CLOSED = "closed"


class FlavorRunner(Protocol):
    """Runs the body of a task of one flavour inside the task's trio task.

    The trio runner is the supervisor itself; the asyncio runner lives in
    ``taskrunner._adapters.aio``. A runner forwards generator outputs only through
    :meth:`Supervisor.offer` / :meth:`Supervisor.put_output`.
    """

    async def run_task(self, sup: Any, handle: TaskHandle, body: Any, is_gen: bool) -> Any:
        """Run ``body`` to its end and return its result (None for a generator)."""

    def cancel_again(self, handle: TaskHandle) -> None:
        """Deliver the task's cancellation once more (its code swallowed the last one)."""


def current_task() -> TaskHandle | None:
    """Return the handle of the supervised task this code runs in, or None outside any task.

    Works in both flavours, and in trio tasks started in a nursery the task opened (they
    belong to it).
    """
    try:
        task = trio.lowlevel.current_task()
    except RuntimeError:  # not in a trio run: asyncio code outside trio, or a thread
        return _current_task.get()
    handle = _trio_task_handle(task)
    return _current_task.get() if handle is None else handle


def _trio_task_handle(task: trio.lowlevel.Task) -> TaskHandle | None:
    """The handle of the supervised trio task ``task`` is, or belongs to (through the
    nurseries it runs in); None when it belongs to none (asyncio code runs in trio-asyncio's
    own trio task, and finds its handle in the context variable).

    Each task's trio task runs ``TaskRunning._run(handle)``; its handle is read from that
    frame only when asked for, so a task binds no context variable (a binding costs 136
    bytes per idle task).
    """
    if not _run_code:  # no supervisor module loaded: no task can exist
        return None
    code = _run_code[0]
    at: trio.lowlevel.Task | None = task
    while at is not None:
        coro = at.coro
        if getattr(coro, "cr_code", None) is code:
            frame = coro.cr_frame
            if frame is not None:
                found = frame.f_locals.get("handle")
                if isinstance(found, TaskHandle):
                    return found
            return None
        nursery = at.parent_nursery
        at = nursery.parent_task if nursery is not None else None
    return None


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Protect a section of a task from interruption.

    Inside the block, ``cancel_interruptible_tasks()`` does not cancel this task: the
    interruption is remembered and applied when the outermost such block exits (blocks nest),
    so it is deferred, never lost. ``cancel_task``, ``cancel_all_tasks``, the task's timeout
    and closing the supervisor are not deferred.

    Raises ``RuntimeError`` when used outside a supervised task.
    """
    handle = current_task()
    if handle is None:
        raise RuntimeError(
            "uninterruptible() protects a section of a supervised task; "
            "it was used outside any task (call it inside a task's code)"
        )
    handle._shield_depth += 1
    try:
        yield
    finally:
        handle._shield_depth -= 1
        if handle._shield_depth == 0 and handle._pending_interrupt:
            handle._pending_interrupt = False
            handle._sup._cancel(handle, "interrupted", handle.cancel_origin)

