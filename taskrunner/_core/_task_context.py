"""What a running task knows about itself: its handle, its protected sections, its runner.

Shared by the supervisor and the flavour runners, so neither imports the other's module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

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

_current_task: ContextVar[TaskHandle | None] = ContextVar("taskrunner.current_task", default=None)
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

    Works in both flavours (asyncio-flavoured tasks see the handle through context variables).
    """
    return _current_task.get()


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Protect a section of a task from interruption.

    Inside the block, ``cancel_interruptible_tasks()`` does not cancel this task: the
    interruption is remembered and applied when the outermost such block exits (blocks nest),
    so it is deferred, never lost. ``cancel_task``, ``cancel_all_tasks``, the task's timeout
    and closing the supervisor are not deferred.

    Raises ``RuntimeError`` when used outside a supervised task.
    """
    handle = _current_task.get()
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

