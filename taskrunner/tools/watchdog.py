"""A watchdog for the one mistake that stalls every session: blocking the trio thread.

A task or handler that calls ``time.sleep``, a synchronous HTTP client or heavy CPU work
without a checkpoint stops every other task and session of the process.  The watchdog
notices: a small trio task beats every ``block_threshold / 2`` seconds, and a thread of its
own checks the beat four times per threshold.  When the beat is older than
``block_threshold`` (100 ms by default) and the same task (or handler) was seen running at
every look for half that time, the thread logs a warning naming it, with its stack at that
moment, and the page's status shows it at once (a scheduler busy with many short tasks is
not a block).
When the trio thread runs again, a :class:`LoopBlocked` record with the duration goes on the
stream of the session whose task blocked (so the terminal, ``--json``, recordings and the
page show it).

Cost when nothing blocks: one trio wake-up per ``block_threshold / 2`` and one thread
wake-up per ``block_threshold / 4`` (``benchmarks/bench_watchdog.py`` measures it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import traceback
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._core.records import Record
from .stacks import FrameInfo, describe_frames, find_owner, thread_frames

__all__ = ["DEFAULT_BLOCK_THRESHOLD", "LoopBlocked", "LoopWatchdog", "open_watchdog"]

logger = logging.getLogger("taskrunner.watchdog")

# trio's and asyncio's own frames (the scheduler), skipped to find the code that runs.
_SCHEDULER_DIRS = tuple(os.path.dirname(module.__file__ or "") for module in (trio, asyncio))

#: Seconds without a checkpoint after which the trio thread counts as blocked.
DEFAULT_BLOCK_THRESHOLD = 0.1


@attrs.frozen
class LoopBlocked(Record):
    """The trio thread ran no other task for ``duration`` seconds (about; an upper bound).

    ``task``/``task_id`` name the task that was running when the block was noticed (None
    when it was the handler, ``handler`` is then True, or unknown code); ``stack`` is where
    it was then (outermost frame first).  Issued once the thread runs again.
    """

    duration: float = attrs.field(kw_only=True)
    task: str | None = attrs.field(kw_only=True, default=None)
    task_id: int | None = attrs.field(kw_only=True, default=None)
    handler: bool = attrs.field(kw_only=True, default=False)
    stack: tuple[FrameInfo, ...] = attrs.field(kw_only=True, default=())


@attrs.define
class _Block:
    last_beat: float
    detected: float
    wall: float
    owner: str
    task: str | None
    task_id: int | None
    session_id: str | None
    handler: bool
    stack: list[FrameInfo]
    supervisor: Any


def _format_stack(stack: list[FrameInfo]) -> str:
    lines = traceback.StackSummary.from_list(
        [(f["file"], f["line"], f["function"], f["code"]) for f in stack]
    ).format()
    return "".join(lines).rstrip()


class LoopWatchdog:
    """Watches one trio run for blocking; made by :func:`open_watchdog`.

    :meth:`status` may be called from any thread (the debugger's server thread does).
    ``on_report(record, session_id)`` is called in the trio thread for each
    :class:`LoopBlocked` (it must not block).
    """

    def __init__(
        self,
        block_threshold: float = DEFAULT_BLOCK_THRESHOLD,
        *,
        on_report: Callable[[LoopBlocked, str | None], None] | None = None,
    ) -> None:
        if isinstance(block_threshold, bool) or not isinstance(block_threshold, int | float):
            raise TypeError(
                f"block_threshold must be a number of seconds, got "
                f"{type(block_threshold).__name__}: {block_threshold!r}"
            )
        if not (math.isfinite(block_threshold) and block_threshold > 0):
            raise ValueError(f"block_threshold must be > 0 and finite, got {block_threshold!r}")
        self.block_threshold = float(block_threshold)
        # The heartbeat every half threshold; the thread looks four times per threshold.
        self._interval = self.block_threshold / 2
        self._check_interval = self.block_threshold / 4
        self._candidate: tuple[Any, float] | None = None
        self._on_report = on_report
        self._beat = time.perf_counter()
        self._block: _Block | None = None
        self._thread_id: int | None = None
        self._stop = threading.Event()
        self._supervisors: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
        self._handlers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.blocks = 0
        """Blocks noticed so far."""
        self.blocked_seconds = 0.0
        """Total time the trio thread was blocked (blocks that have ended)."""
        self.last_block: dict[str, Any] | None = None
        """The last ended block: ``duration``, ``task``, ``session_id``, ``wall``."""

    def watch(self, target: Any, session_id: str | None = None) -> None:
        """Tell the watchdog about a session (or a supervisor of session ``session_id``).

        Trio tasks, trio handlers and asyncio generator tasks are named without this; asyncio
        coroutine tasks and asyncio handlers are named only for watched sessions, and only
        watched sessions get their id in the report.  Sessions published to the debugger's
        feed are watched automatically.
        """
        supervisor = getattr(target, "supervisor", target)
        self._supervisors[supervisor] = session_id or getattr(target, "session_id", None)
        handler = getattr(getattr(target, "_handler", None), "__code__", None)
        if handler is not None:
            self._handlers[target] = handler

    def status(self) -> dict[str, Any]:
        """JSON-safe picture: ``blocked`` now, for how long, by what; totals so far."""
        block = self._block
        now = time.perf_counter()
        out: dict[str, Any] = {
            "threshold": self.block_threshold,
            "blocked": block is not None,
            "blocks": self.blocks,
            "blocked_seconds": self.blocked_seconds,
            "last_block": self.last_block,
        }
        if block is not None:
            out.update(
                blocked_for=now - block.last_beat,
                since_wall=block.wall,
                task=block.task,
                task_id=block.task_id,
                session_id=block.session_id,
                handler=block.handler,
                owner=block.owner,
                stack=block.stack,
            )
        return out

    # ------------------------------------------------------------------ the watch thread

    def _owner_key(self, frames: list[Any], owner: tuple[str, Any, int] | None) -> Any:
        """What identifies the code running now: the task or session, else its root frame.

        The object itself, not its id: the candidate keeps it alive, so a new task's frame
        cannot take the id of an old one's.
        """
        if owner is not None:
            return owner[1]
        for frame in frames:
            if not frame.f_code.co_filename.startswith(_SCHEDULER_DIRS):
                return frame
        return None

    def _check(self) -> None:
        now = time.perf_counter()
        beat = self._beat
        lag = now - beat
        if self._block is not None or self._stop.is_set():
            return
        if lag <= self._interval * 1.2:  # the heartbeat is on time
            self._candidate = None
            return
        frames = thread_frames(self._thread_id) if self._thread_id is not None else []
        watched = dict(self._supervisors.items())
        handles = [h for sup in watched for h in list(sup._tasks.values())]
        owner = find_owner(frames, handles, dict(self._handlers.items()))
        # Blocked means one task running all along, not a scheduler busy with many short
        # tasks: the same code must have been seen running for half the threshold at least.
        key = self._owner_key(frames, owner)
        candidate = self._candidate
        if candidate is None or candidate[0] is not key or candidate[1] < beat:
            self._candidate = (key, now)
            return
        if lag <= self.block_threshold or now - candidate[1] < self.block_threshold / 2:
            return
        task = task_id = session_id = sup = None
        handler = False
        if owner is None:
            what, stack = "unknown code", describe_frames(frames[-12:])
        else:
            kind, obj, index = owner
            stack = describe_frames(frames[index + 1 :])
            if kind == "task":
                task, task_id, sup = obj.name, obj.id, obj._sup
                what = f"task {task!r}"
            else:
                handler, sup = True, obj._sup
                what = "the handler"
            session_id = getattr(obj, "session_id", None) or watched.get(sup)
            if session_id:
                what += f" of session {session_id}"
        self._candidate = None  # holds a frame or task alive: not longer than needed
        self.blocks += 1
        self._block = _Block(
            last_beat=beat,
            detected=now,
            wall=time.time() - (now - beat),
            owner=what,
            task=task,
            task_id=task_id,
            session_id=session_id,
            handler=handler,
            stack=stack,
            supervisor=sup,
        )
        logger.warning(
            "the trio thread has run no other task for %.0f ms: %s is blocking it "
            "(a synchronous call or long computation without await). It is at:\n%s",
            (now - beat) * 1000,
            what,
            _format_stack(stack) or "  (no Python frames)",
        )

    def _watch(self) -> None:
        while not self._stop.wait(self._check_interval):
            try:
                self._check()
            except Exception:  # never let the watchdog die of a frame it could not read
                logger.exception("watchdog check failed")

    # ------------------------------------------------------------------ the trio side

    def _ended(self, block: _Block, now: float) -> None:
        duration = now - block.last_beat
        self.blocked_seconds += duration
        self.last_block = {
            "duration": duration,
            "task": block.task,
            "session_id": block.session_id,
            "handler": block.handler,
            "wall": block.wall,
        }
        logger.info("the trio thread runs again after %.0f ms (%s)", duration * 1000, block.owner)
        sup = block.supervisor
        record: LoopBlocked | None = None
        if sup is not None and not sup._stream.closed:
            at = trio.current_time()
            stamp = getattr(sup, "stamp", None)
            record = LoopBlocked(
                sup.next_seq(),
                at,
                **(stamp(at) if stamp is not None else {}),
                duration=duration,
                task=block.task,
                task_id=block.task_id,
                handler=block.handler,
                stack=tuple(block.stack),
            )
            sup.emit(record)
        if self._on_report is not None:
            if record is None:
                record = LoopBlocked(
                    0, trio.current_time(), duration=duration, stack=tuple(block.stack)
                )
            try:
                self._on_report(record, block.session_id)
            except Exception:
                logger.exception("watchdog on_report callback failed")

    async def _heartbeat(self) -> None:
        while True:
            now = time.perf_counter()
            self._beat = now
            block = self._block
            if block is not None:
                self._ended(block, now)
                self._block = None
            await trio.sleep(self._interval)


@asynccontextmanager
async def open_watchdog(
    block_threshold: float = DEFAULT_BLOCK_THRESHOLD,
    *,
    on_report: Callable[[LoopBlocked, str | None], None] | None = None,
) -> AsyncIterator[LoopWatchdog]:
    """Watch the current trio run for blocking for the duration of the block.

    Starts the heartbeat task and the watch thread; leaving the block (or cancelling it)
    stops both and joins the thread.  See the module docstring for what is reported.
    """
    watchdog = LoopWatchdog(block_threshold, on_report=on_report)
    watchdog._thread_id = threading.get_ident()
    thread = threading.Thread(target=watchdog._watch, name="taskrunner-watchdog", daemon=True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog._heartbeat)
            thread.start()
            try:
                yield watchdog
            finally:
                # Stop watching before the heartbeat stops, or its silence looks like a block.
                watchdog._stop.set()
                nursery.cancel_scope.cancel()
    finally:
        watchdog._stop.set()
        if thread.is_alive():
            thread.join()
