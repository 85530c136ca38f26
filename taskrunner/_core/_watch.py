"""The stuck-task watch: reports tasks that go on running after their cancel or timeout.

Timeouts are the tasks' own cancel-scope deadlines (trio delivers them, and code inside the
task sees them). This watch only has to notice, ``stuck_after`` seconds later, a task still
running after its cancel. It keeps no reference to tasks (so a finished task's result is
never held here): entries are ``(due, name, id, reports)`` looked up among the running tasks,
``reports`` counting the ``TaskStuck`` reports made of that task so far.

* cancels go into one FIFO (due = cancel time + grace: monotonic, so FIFO order is due order);
* timeouts go into one FIFO per distinct timeout value (the default 30 s tasks all share
  one, and deadlines of equal timeouts come in start order), plus a heap for deadlines moved
  by hand. Entries of tasks that ended are dropped lazily, and all of them are swept out once
  they outnumber the running tasks, so memory stays proportional to the running tasks.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import ParkingLot

if TYPE_CHECKING:
    from .handle import TaskHandle

__all__ = ["StuckWatch"]

Entry = tuple[float, str, int, int]


class StuckWatch:
    """One per supervisor; its clock task runs in the supervisor's nursery when needed."""

    __slots__ = (
        "_cancels",
        "_grace",
        "_lookup",
        "_lot",
        "_moved",
        "_nursery",
        "_report",
        "_scope",
        "_stale",
        "_timeouts",
        "_wait",
    )

    def __init__(
        self,
        nursery: trio.Nursery,
        grace: float,
        lookup: Callable[[str, int], TaskHandle | None],
        report: Callable[[TaskHandle, int], None],
    ) -> None:
        self._nursery = nursery
        self._grace = grace
        self._lookup = lookup
        self._report = report
        self._cancels: deque[Entry] = deque()
        self._timeouts: dict[float, deque[Entry]] = {}
        self._moved: list[Entry] = []
        self._stale = 0
        self._lot = ParkingLot()
        self._scope: trio.CancelScope | None = None
        self._wait: trio.CancelScope | None = None

    # ------------------------------------------------------------------ adding entries

    def cancelled(self, handle: TaskHandle, at: float, reports: int = 0) -> None:
        """``handle`` was cancelled at ``at``: check on it at ``at + grace`` (``reports``: how
        many times it was already reported stuck)."""
        due = at + self._grace
        self._cancels.append((due, handle.name, handle.id, reports))
        self._wake(due)

    def deadline(self, handle: TaskHandle, deadline: float, timeout: float | None) -> None:
        """``handle`` times out at ``deadline``; ``timeout`` set for a regular start."""
        if deadline == math.inf:
            return
        due = deadline + self._grace
        entry = (due, handle.name, handle.id, 0)
        if timeout is not None:
            fifo = self._timeouts.get(timeout)
            if fifo is None:
                fifo = self._timeouts[timeout] = deque()
            fifo.append(entry)
        else:
            heapq.heappush(self._moved, entry)
        self._wake(due)

    def ended(self, had_deadline: bool, running: int) -> None:
        """A task with a watched deadline ended; sweep when stale entries dominate."""
        if had_deadline:
            self._stale += 1
            if self._stale > 64 and self._stale > running:
                self._sweep()

    def _sweep(self) -> None:
        lookup = self._lookup
        for timeout, fifo in list(self._timeouts.items()):
            kept = deque(e for e in fifo if lookup(e[1], e[2]) is not None)
            if kept:
                self._timeouts[timeout] = kept
            else:
                del self._timeouts[timeout]
        self._moved = [e for e in self._moved if lookup(e[1], e[2]) is not None]
        heapq.heapify(self._moved)
        self._stale = 0

    # ------------------------------------------------------------------ the clock task

    def _wake(self, when: float) -> None:
        if self._scope is None:
            self._scope = trio.CancelScope()
            self._nursery.start_soon(self._run, name="taskrunner.stuck-watch")
        elif self._wait is not None and when < self._wait.deadline:
            self._wait.deadline = when

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _next_due(self) -> float:
        due = self._cancels[0][0] if self._cancels else math.inf
        for fifo in self._timeouts.values():
            if fifo[0][0] < due:
                due = fifo[0][0]
        if self._moved and self._moved[0][0] < due:
            due = self._moved[0][0]
        return due

    def _check(self, entry: Entry, now: float, from_timeout: bool) -> None:
        handle = self._lookup(entry[1], entry[2])
        if handle is None:
            if from_timeout:
                self._stale -= 1
            return
        if from_timeout:
            # Still running past its deadline + grace: stuck, unless the deadline moved
            # (then a newer entry watches it) or an explicit cancel is already watched.
            deadline = handle.deadline
            if deadline + self._grace != entry[0] or (
                handle._cancel_at is not None and handle._cancel_at != deadline
            ):
                return
            handle._cancel_at = deadline
        reports = entry[3] + 1
        self._report(handle, reports)
        self.cancelled(handle, now, reports)  # report again after another grace period

    async def _run(self) -> None:
        assert self._scope is not None
        with self._scope:
            while True:
                now = trio.current_time()
                cancels = self._cancels
                while cancels and cancels[0][0] <= now:
                    self._check(cancels.popleft(), now, False)
                for timeout, fifo in list(self._timeouts.items()):
                    while fifo and fifo[0][0] <= now:
                        self._check(fifo.popleft(), now, True)
                    if not fifo:
                        del self._timeouts[timeout]
                moved = self._moved
                while moved and moved[0][0] <= now:
                    self._check(heapq.heappop(moved), now, True)
                with trio.CancelScope(deadline=self._next_due()) as self._wait:
                    await self._lot.park()
                self._wait = None
