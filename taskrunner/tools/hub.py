"""In-process hub that fans session records out to debugging tools.

Sessions publish one JSON-safe dict per record (``record.to_dict()``) with
:meth:`Hub.publish`.  The hub

* keeps a bounded history per session (the last ``history_limit`` records,
  10,000 by default) so that a page opened late, or a subscriber that fell
  behind, can reload what it has not seen;
* keeps a small per-task summary per session (the task table: state,
  interruptible, timeout, start/end times, number of output events), updated
  on every record, so the table stays right even once early records have been
  evicted from the history;
* hands every record to *sinks* (synchronous callables, e.g. the recorder)
  that must see every record;
* hands every record to *subscribers* (:class:`Subscription`, an async
  iterator) through a bounded buffer each.  A subscriber that falls behind
  loses records rather than slowing the session down, and is told so by a
  ``Missed`` item once it catches up.

Everything here runs inside one trio run on one thread: :meth:`Hub.publish`
is synchronous, never blocks and never raises because of a subscriber or a
sink.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import trio

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_HISTORY_LIMIT",
    "TERMINAL_STATES",
    "Hub",
    "HubItem",
    "MissedItem",
    "Record",
    "RecordItem",
    "SessionControl",
    "Sink",
    "Subscription",
    "task_key",
]

logger = logging.getLogger(__name__)

#: A record as carried by the hub: the JSON-safe dict from ``record.to_dict()``.
Record = dict[str, Any]

#: A synchronous callable that sees every record, in publish order.
Sink = Callable[[str, Record], None]

#: Records kept per session unless told otherwise.
DEFAULT_HISTORY_LIMIT = 10_000

#: Items a subscriber may have waiting before it starts missing records.
DEFAULT_BUFFER_SIZE = 1_000

#: Record type -> task state, for the records that end a task.
TERMINAL_STATES: dict[str, str] = {
    "TaskFinished": "finished",
    "TaskFailed": "failed",
    "TaskCancelled": "cancelled",
    "TaskTimedOut": "timed_out",
}

_TASK_TYPES = frozenset(
    {"TaskQueued", "TaskStarted", "TaskOutput", "TaskStuck", *TERMINAL_STATES}
)

# Longest result preview kept in the task table; results can be arbitrarily large.
_DETAIL_LIMIT = 200


@runtime_checkable
class SessionControl(Protocol):
    """What a running session offers to the debugger's Cancel/Interrupt buttons.

    Both methods are called synchronously from the server's trio task and must
    not block.
    """

    def cancel_task(self, name: str) -> bool:
        """Cancel the task called ``name``; return whether such a task was running."""
        ...

    def interrupt(self) -> int:
        """Interrupt the session (cancel interruptible tasks); return how many were cancelled."""
        ...


class RecordItem(TypedDict):
    """A subscriber item carrying one record of one session."""

    type: Literal["Record"]
    session: str
    record: Record


class MissedItem(TypedDict):
    """A subscriber item saying ``count`` records of ``session`` were dropped.

    ``first_seq``/``last_seq`` are the ``seq`` of the first and last dropped
    record (``None`` if the records carried none).  The dropped records can be
    reloaded from :meth:`Hub.records` while they are still in the history.
    """

    type: Literal["Missed"]
    session: str
    count: int
    first_seq: int | None
    last_seq: int | None


#: What iterating a :class:`Subscription` yields.
HubItem = RecordItem | MissedItem


def task_key(record: Record) -> str:
    """Return the key that identifies a record's task within its session.

    The ``task_id`` when there is one (names may be reused by later tasks),
    else the task name.
    """
    task_id = record.get("task_id")
    if task_id is not None:
        return f"id:{task_id}"
    return f"name:{record.get('task')}"


def _preview(value: Any) -> str:
    """Short JSON text of a task result for the table (never fails)."""
    try:
        text = json.dumps(value, default=repr)
    except ValueError:  # circular structures
        text = repr(value)
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "\u2026"
    return text


@dataclass
class _TaskRow:
    """One line of the task table, built from the task's records."""

    task_id: int | None
    name: str
    state: str = "running"
    interruptible: bool | None = None
    timeout: float | None = None
    flavor: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    events: int = 0
    detail: str | None = None
    stuck: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    reason: str | None = None
    origin: str | None = None
    created: Any = None
    blocked: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": f"id:{self.task_id}" if self.task_id is not None else f"name:{self.name}",
            "reason": self.reason,
            "origin": self.origin,
            "created": self.created,
            "blocked": self.blocked,
            "task_id": self.task_id,
            "name": self.name,
            "state": self.state,
            "interruptible": self.interruptible,
            "timeout": self.timeout,
            "flavor": self.flavor,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "events": self.events,
            "detail": self.detail,
            "stuck": self.stuck,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


@dataclass
class _Session:
    """Everything the hub knows about one session."""

    session_id: str
    history: deque[Record]
    task_limit: int | None
    control: SessionControl | None = None
    agent_id: Any = None
    environment: Any = None
    started_at: float | None = None
    ended_at: float | None = None
    ended: bool = False
    published: int = 0
    last_seq: int | None = None
    tasks: dict[str, _TaskRow] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    inputs: int = 0
    blocked: float = 0.0

    def apply(self, record: Record) -> None:
        """Update the session summary and task table from one record."""
        self.published += 1
        seq = record.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        kind = record.get("type")
        at = record.get("at")
        self.kinds[str(kind)] += 1
        if kind == "LoopBlocked":
            duration = record.get("duration")
            if isinstance(duration, int | float):
                self.blocked += duration
                key = task_key(record) if record.get("task") is not None else None
                blocked_row = None if key is None else self.tasks.get(key)
                if blocked_row is not None:
                    blocked_row.blocked += duration
            return
        if kind == "SessionStarted":
            self.agent_id = record.get("agent_id")
            self.environment = record.get("environment")
            self.started_at = at
        elif kind == "SessionEnded":
            self.ended = True
            self.ended_at = at
        if kind not in _TASK_TYPES:
            return
        key = task_key(record)
        row = self.tasks.get(key)
        if row is None:
            row = _TaskRow(task_id=record.get("task_id"), name=str(record.get("task")))
            self.tasks[key] = row
            self._evict_tasks()
        if row.first_seq is None and isinstance(seq, int):
            row.first_seq = seq
        if isinstance(seq, int):
            row.last_seq = seq
        if kind == "TaskQueued":
            row.state = "pending"
            row.interruptible = record.get("interruptible")
            row.timeout = record.get("timeout")
            row.flavor = record.get("flavor")
            row.started_at = at
            row.created = record.get("created")
        elif kind == "TaskStarted":
            row.state = "running"
            row.interruptible = record.get("interruptible")
            row.timeout = record.get("timeout")
            row.flavor = record.get("flavor")
            row.started_at = at
            row.created = record.get("created") or row.created
        elif kind == "TaskOutput":
            row.events += 1
        elif kind == "TaskStuck":
            row.stuck = str(record.get("reason"))
        elif isinstance(kind, str) and kind in TERMINAL_STATES:
            row.state = TERMINAL_STATES[kind]
            row.ended_at = at
            row.stuck = None
            if kind == "TaskFailed":
                error = record.get("error") or {}
                row.detail = f"{error.get('type', 'Error')}: {error.get('message', '')}"
            elif kind == "TaskCancelled":
                row.reason = str(record.get("reason"))
                origin = record.get("origin")
                row.origin = None if origin is None else str(origin)
                row.detail = row.reason if origin is None else f"{row.reason} by {origin}"
            elif kind == "TaskTimedOut":
                row.detail = f"timed out after {record.get('timeout')}s"
            else:
                result = record.get("result")
                row.detail = None if result is None else _preview(result)
        if row.started_at is None and at is not None:
            # First record seen for this task was not TaskStarted (evicted or
            # lost); its time is the best start estimate we have.
            row.started_at = at

    def _evict_tasks(self) -> None:
        # The table is bounded like the history: drop the oldest finished
        # task first, or the oldest task at all if none has finished.
        if self.task_limit is None or len(self.tasks) <= self.task_limit:
            return
        victim = next(
            (key for key, row in self.tasks.items() if row.state != "running"),
            next(iter(self.tasks)),
        )
        del self.tasks[victim]

    def info(self) -> dict[str, Any]:
        first_seq = self.history[0].get("seq") if self.history else None
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "ended": self.ended,
            "live": self.control is not None,
            "published": self.published,
            "kept": len(self.history),
            "dropped": self.published - len(self.history),
            "first_seq": first_seq,
            "last_seq": self.last_seq,
            "tasks": len(self.tasks),
            "running": sum(1 for row in self.tasks.values() if row.state == "running"),
            "pending": sum(1 for row in self.tasks.values() if row.state == "pending"),
            "kinds": dict(self.kinds),
            "blocked_seconds": self.blocked,
        }


@dataclass
class _Missed:
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


class Subscription:
    """A subscriber's view of the hub: an async iterator of :data:`HubItem`.

    Created by :meth:`Hub.subscribe`; use it as a (synchronous) context manager
    so it is detached from the hub when the consumer goes away::

        with hub.subscribe(session_id) as sub:
            async for item in sub:
                ...

    Items come in publish order.  At most ``buffer_size`` items wait in the
    buffer; records published while it is full are dropped and counted, and a
    :class:`MissedItem` per affected session takes their place in the order,
    so the consumer learns about the gap exactly where it happened.
    """

    def __init__(self, hub: Hub, session_id: str | None, buffer_size: int) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self._hub = hub
        self.session_id = session_id
        self.buffer_size = buffer_size
        self._buffer: deque[HubItem] = deque()
        self._missed: dict[str, _Missed] = {}
        self._wakeup = trio.Event()
        self._closed = False  # consumer is gone: stop now
        self._finished = False  # hub closed: stop once drained
        self.missed_total = 0
        """Records dropped for this subscriber so far."""

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Detach from the hub; iteration stops at once.  Idempotent."""
        self._closed = True
        self._buffer.clear()
        self._missed.clear()
        self._hub._detach(self)
        self._wakeup.set()

    def pending(self) -> int:
        """Number of items waiting in the buffer."""
        return len(self._buffer)

    def __aiter__(self) -> Subscription:
        return self

    def receive_nowait(self) -> HubItem:
        """The next item if one is ready.

        Raises :class:`trio.WouldBlock` if none is, and
        :class:`trio.EndOfChannel` once the subscription has ended.
        """
        if self._closed:
            raise trio.EndOfChannel
        if self._buffer:
            return self._buffer.popleft()
        if self._missed:
            # Caught up: now tell about what was dropped.
            return self._pop_missed()
        if self._finished:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def __anext__(self) -> HubItem:
        # Always a checkpoint, like any trio receive, so a consumer that is
        # never starved still lets other tasks (and cancellation) in.
        await trio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    # -- called by the hub --------------------------------------------------

    def _offer(self, session_id: str, record: Record) -> None:
        if self._closed or self._finished:
            return
        if self._missed and len(self._buffer) < self.buffer_size:
            # Room again: queue the notice before any newer record so the gap
            # shows up where it happened.
            while self._missed:
                self._buffer.append(self._pop_missed())
        if len(self._buffer) >= self.buffer_size:
            missed = self._missed.setdefault(session_id, _Missed())
            seq = record.get("seq")
            seq = seq if isinstance(seq, int) else None
            if missed.count == 0:
                missed.first_seq = seq
            missed.last_seq = seq
            missed.count += 1
            self.missed_total += 1
        else:
            self._buffer.append({"type": "Record", "session": session_id, "record": record})
        self._wakeup.set()

    def _finish(self) -> None:
        self._finished = True
        self._wakeup.set()

    def _pop_missed(self) -> MissedItem:
        session_id = next(iter(self._missed))
        missed = self._missed.pop(session_id)
        return {
            "type": "Missed",
            "session": session_id,
            "count": missed.count,
            "first_seq": missed.first_seq,
            "last_seq": missed.last_seq,
        }


class Hub:
    """In-process fan-out of session records; see the module docstring.

    ``history_limit`` is how many of the most recent records are kept per
    session (``None``: all, e.g. for a loaded recording); the task table of a
    session is bounded by the same number of tasks.  ``buffer_size`` is the
    default subscriber buffer.  ``ended_limit`` is how many ended sessions stay
    viewable (``None``: all); past it the oldest ended session is forgotten, so a
    long-running process that serves many sessions holds a bounded history.
    """

    def __init__(
        self,
        *,
        history_limit: int | None = DEFAULT_HISTORY_LIMIT,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        ended_limit: int | None = 1000,
    ) -> None:
        if history_limit is not None and history_limit < 1:
            raise ValueError("history_limit must be at least 1 or None")
        if ended_limit is not None and ended_limit < 0:
            raise ValueError("ended_limit must be at least 0 or None")
        self.history_limit = history_limit
        self.ended_limit = ended_limit
        self._ended: deque[str] = deque()
        self.buffer_size = buffer_size
        self._sessions: dict[str, _Session] = {}
        self._subscribers: list[Subscription] = []
        self._sinks: list[Sink] = []
        self._closed = False

    # -- sessions -------------------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = _Session(
                session_id=session_id,
                history=deque(maxlen=self.history_limit),
                task_limit=self.history_limit,
            )
            self._sessions[session_id] = session
        return session

    def register(self, session_id: str, control: SessionControl | None = None) -> None:
        """Make a session known to the hub, with the control for its buttons.

        Call when the session opens.  Registering again replaces the control.
        Publishing to an unregistered session registers it without control.
        """
        self._session(session_id).control = control

    def unregister_control(self, session_id: str) -> None:
        """Forget a session's control (it has ended); its history stays viewable until
        ``ended_limit`` later sessions have ended."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.control = None
            self._ended.append(session_id)
            while self.ended_limit is not None and len(self._ended) > self.ended_limit:
                old = self._ended.popleft()
                gone = self._sessions.get(old)
                if gone is not None and gone.control is None:
                    del self._sessions[old]

    def publish(self, session_id: str, record: Record) -> None:
        """Record one record of a session and hand it to every sink and subscriber.

        Synchronous and non-blocking.  A sink that raises is logged and removed
        (so a full disk does not also flood the log); a subscriber that is full
        is marked as having missed the record.
        """
        session = self._session(session_id)
        session.history.append(record)
        session.apply(record)
        for sink in list(self._sinks):
            try:
                sink(session_id, record)
            except Exception:
                logger.exception("hub sink %r failed; removing it", sink)
                self.remove_sink(sink)
        for subscriber in list(self._subscribers):
            if subscriber.session_id is None or subscriber.session_id == session_id:
                subscriber._offer(session_id, record)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def session_ids(self) -> list[str]:
        """Ids of all known sessions, in the order they became known."""
        return list(self._sessions)

    def session_info(self, session_id: str) -> dict[str, Any]:
        """JSON-safe summary of a session.

        Keys: ``session_id``, ``agent_id``, ``environment``, ``started_at``,
        ``ended_at``, ``ended``, ``live`` (a control is registered),
        ``published`` (records ever), ``kept``, ``dropped`` (evicted from the
        history), ``first_seq``/``last_seq``, ``tasks``, ``running``.
        Raises :class:`KeyError` for an unknown session.
        """
        return self._sessions[session_id].info()

    def sessions(self) -> list[dict[str, Any]]:
        """:meth:`session_info` of every session, in the order they became known."""
        return [session.info() for session in self._sessions.values()]

    def records(self, session_id: str, *, after: int | None = None) -> list[Record]:
        """Kept records of a session, oldest first; only those with ``seq > after`` if given.

        Raises :class:`KeyError` for an unknown session.
        """
        history = self._sessions[session_id].history
        if after is None:
            return list(history)
        # Usually only a few recent records are wanted: scan from the end.
        newer: list[Record] = []
        for record in reversed(history):
            seq = record.get("seq")
            if isinstance(seq, int) and seq <= after:
                break
            newer.append(record)
        newer.reverse()
        return newer

    def page(
        self,
        session_id: str,
        *,
        start: int = 0,
        count: int = 200,
        task: str | None = None,
        kinds: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """A page of the kept records of a session that match a filter.

        ``task`` is a task key (:func:`task_key`), ``kinds`` a set of record types; the
        answer is ``{"total": matching records, "start": start, "records": [...]}``, with
        ``start`` counted among the matching records, oldest first.  Raises
        :class:`KeyError` for an unknown session.
        """
        history = self._sessions[session_id].history
        if task is None and kinds is None:
            total = len(history)
            chosen = list(islice(history, max(start, 0), max(start, 0) + max(count, 0)))
            return {"total": total, "start": start, "records": chosen}
        matching = [
            record
            for record in history
            if (kinds is None or record.get("type") in kinds)
            and (task is None or (record.get("task") is not None and task_key(record) == task))
        ]
        return {
            "total": len(matching),
            "start": start,
            "records": matching[max(start, 0) : start + count],
        }

    def tasks(self, session_id: str) -> list[dict[str, Any]]:
        """The task table of a session, in start order.

        Each row: ``task_id``, ``name``, ``state`` (running, finished, failed,
        cancelled, timed_out), ``interruptible``, ``timeout``, ``flavor``,
        ``started_at``, ``ended_at``, ``events`` (TaskOutput count),
        ``detail`` (error, cancel reason or result preview), ``stuck`` (reason
        while stuck), ``first_seq``, ``last_seq``.
        Raises :class:`KeyError` for an unknown session.
        """
        return [row.to_dict() for row in self._sessions[session_id].tasks.values()]

    def control(self, session_id: str) -> SessionControl | None:
        """The registered control of a session, or ``None`` (ended, read-only or unknown)."""
        session = self._sessions.get(session_id)
        return None if session is None else session.control

    # -- sinks and subscribers -------------------------------------------------

    def add_sink(self, sink: Sink) -> None:
        """Call ``sink(session_id, record)`` for every record published from now on."""
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop calling ``sink``; no error if it is not attached."""
        try:
            self._sinks.remove(sink)
        except ValueError:
            pass

    def subscribe(
        self, session_id: str | None = None, *, buffer_size: int | None = None
    ) -> Subscription:
        """Subscribe to records published from now on.

        ``session_id=None`` subscribes to every session.  ``buffer_size``
        defaults to the hub's.  Subscribing to a closed hub gives a
        subscription that ends at once.
        """
        size = self.buffer_size if buffer_size is None else buffer_size
        subscription = Subscription(self, session_id, size)
        if self._closed:
            subscription._finish()
        else:
            self._subscribers.append(subscription)
        return subscription

    def _detach(self, subscription: Subscription) -> None:
        try:
            self._subscribers.remove(subscription)
        except ValueError:
            pass

    def subscriber_count(self) -> int:
        """Number of attached subscriptions (for tests and diagnostics)."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription once it has drained its buffer.

        Publishing still records history and feeds sinks afterwards.
        """
        self._closed = True
        subscribers, self._subscribers = self._subscribers, []
        for subscription in subscribers:
            subscription._finish()
