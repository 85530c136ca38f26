"""Admission control: a cap on running tasks, shared by one or several supervisors."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._checks import check_count

if TYPE_CHECKING:
    from .handle import TaskHandle

__all__ = ["Limiter"]


class Limiter:
    """At most ``limit`` tasks run at once among the supervisors (and sessions) that share it.

    Pass ``limit=Limiter(n)`` to several ``open_supervisor`` / ``open_session`` calls to cap a
    process-wide resource (a rate-limited LLM or TTS API); ``limit=n`` gives a supervisor a
    limiter of its own. Tasks over the limit wait in ``TaskState.PENDING``, first come, first
    started. It belongs to the trio run (thread) that uses it.
    """

    __slots__ = ("_limit", "_queue", "_running")

    def __init__(self, limit: int) -> None:
        self._limit = check_count(limit, "Limiter(limit)")
        self._running = 0
        self._queue: deque[TaskHandle] = deque()

    def __repr__(self) -> str:
        return f"<Limiter {self._running}/{self._limit} running, {len(self._queue)} waiting>"

    @property
    def limit(self) -> int:
        """How many tasks may run at once."""
        return self._limit

    @property
    def running(self) -> int:
        """How many tasks hold a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """How many pending tasks wait for a slot (cancelled ones leave at once)."""
        return len(self._queue)

    def _try_acquire(self) -> bool:
        if self._running < self._limit and not self._queue:
            self._running += 1
            return True
        return False

    def _enqueue(self, handle: TaskHandle) -> None:
        self._queue.append(handle)

    def _forget(self, handle: TaskHandle) -> None:
        """A pending task was cancelled: it leaves the queue."""
        try:
            self._queue.remove(handle)
        except ValueError:
            pass

    def _release(self) -> None:
        """A running task ended: start waiting tasks while there is room."""
        self._running -= 1
        while self._queue and self._running < self._limit:
            handle = self._queue.popleft()
            self._running += 1
            handle._sup._start_pending(handle)
