"""The records a supervisor forwards on its stream, and their JSON form."""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from ._checks import safe_repr, safe_str

__all__ = [
    "TERMINAL_RECORDS",
    "Record",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskOutput",
    "TaskQueued",
    "TaskRecord",
    "TaskStarted",
    "TaskStuck",
    "TaskTimedOut",
    "error_to_dict",
    "jsonable",
    "register_json_converter",
]

_MAX_DEPTH = 20

# Converters for classes of optional packages (e.g. the primfunctions events), registered by
# the code that loads them; consulted by ``jsonable`` before its ``repr`` fallback.
_converters: list[tuple[type, Callable[[Any], Any]]] = []


def register_json_converter(cls: type, convert: Callable[[Any], Any]) -> None:
    """Have :func:`jsonable` turn instances of ``cls`` into ``convert(value)`` (then made
    JSON-safe itself). Registering the same class again replaces its converter."""
    _converters[:] = [(c, f) for c, f in _converters if c is not cls]
    _converters.append((cls, convert))


def error_to_dict(exc: BaseException) -> dict[str, str]:
    """Describe an exception as JSON-safe data: its type, message and formatted traceback.

    Never raises: an exception whose ``__str__`` raises is described by a placeholder.
    """
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception as err:  # a broken __str__/__repr__ deep in a chain
        tb = f"<traceback unavailable: {type(err).__name__}>"
    return {"type": type(exc).__qualname__, "message": safe_str(exc), "traceback": tb}


def jsonable(value: Any) -> Any:
    """Turn ``value`` into data ``json.dumps`` accepts, losing nothing a person would read.

    attrs and dataclass instances become dicts with a ``"type"`` key naming their class;
    exceptions become :func:`error_to_dict`; anything else unknown becomes its ``repr``.
    Linear in the size of the data: an object met twice is converted once, and a reference
    cycle becomes the string ``"<cycle: TYPE>"``. Never raises (a failing ``__repr__`` gives a
    placeholder).
    """
    return _Converter().convert(value, 0)


class _Converter:
    __slots__ = ("active", "done")

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def convert(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        key = id(value)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            return f"<cycle: {type(value).__name__}>"
        if depth >= _MAX_DEPTH:
            return safe_repr(value)
        self.active.add(key)
        try:
            out = self._convert(value, depth + 1)
        finally:
            self.active.discard(key)
        self.done[key] = out
        return out

    def _convert(self, value: Any, d: int) -> Any:
        if isinstance(value, dict):
            return {safe_str(k): self.convert(v, d) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.convert(v, d) for v in value]
        if isinstance(value, BaseException):
            return error_to_dict(value)
        if attrs.has(type(value)):
            out: dict[str, Any] = {"type": type(value).__name__}
            for f in attrs.fields(type(value)):
                out[f.name] = self.convert(getattr(value, f.name, None), d)
            return out
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {"type": type(value).__name__}
            for df in dataclasses.fields(value):
                out[df.name] = self.convert(getattr(value, df.name, None), d)
            return out
        for cls, convert in _converters:
            if isinstance(value, cls):
                try:
                    return self.convert(convert(value), d)
                except Exception:
                    return safe_repr(value)
        to_dict = getattr(type(value), "to_dict", None)
        if callable(to_dict):
            try:
                return self.convert(to_dict(value), d)
            except Exception:
                pass
        return safe_repr(value)


@attrs.define
class Record:
    """Base of every record on a supervisor's (or session's) stream.

    ``seq`` increases by one for each record of a stream; ``at`` is the trio clock when the
    record was made.

    Records are values: treat them as read-only. The task records are slotted attrs classes
    that are *not* frozen (a frozen class's ``__init__`` costs about four times as much, paid
    for every start, output and end); nothing in taskrunner changes a record once it is on the
    stream, and no code may.
    """

    seq: int
    at: float
    #: the session's id, or None for a supervisor opened without one.
    session_id: str | None = attrs.field(default=None, kw_only=True)
    #: wall-clock time (Unix seconds) when the record was made, beside ``at`` (trio clock).
    wall: float = attrs.field(default=0.0, kw_only=True)

    #: who the record is about: ``"task"``, ``"handler"`` or ``"session"``.
    source: ClassVar[str] = "session"

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-safe data, with its class name under ``"type"``."""
        out: dict[str, Any] = {
            "type": type(self).__name__,
            "source": self.source,
            "task": None,
            "task_id": None,
        }
        conv = _Converter()
        for f in attrs.fields(type(self)):
            out[f.name] = conv.convert(getattr(self, f.name), 0)
        return out


# The task records are made once or more per task, so their ``__init__`` is written out
# (attrs would generate the same assignments, with more overhead per call).


@attrs.define
class TaskRecord(Record):
    """A record about one task: ``task`` is its name, ``task_id`` its supervisor-unique id."""

    task: str
    task_id: int

    source: ClassVar[str] = "task"


@attrs.define(init=False)
class TaskStarted(TaskRecord):
    """The task was created; always the task's first record, issued by ``create_task``."""

    interruptible: bool
    timeout: float | None
    flavor: str

    def __init__(
        self,
        seq: int,
        at: float,
        task: str,
        task_id: int,
        interruptible: bool,
        timeout: float | None,
        flavor: str,
        *,
        session_id: str | None = None,
        wall: float = 0.0,
    ) -> None:
        self.seq = seq
        self.at = at
        self.task = task
        self.task_id = task_id
        self.interruptible = interruptible
        self.timeout = timeout
        self.flavor = flavor
        self.session_id = session_id
        self.wall = wall


@attrs.define
class TaskQueued(TaskRecord):
    """The task was created while its supervisor's ``limit`` of running tasks was reached: it
    waits (``TaskState.PENDING``) and its ``TaskStarted`` follows when it starts. Issued by
    ``create_task`` itself, as the task's first record."""

    interruptible: bool
    timeout: float | None
    flavor: str
    limit: int


@attrs.define(init=False)
class TaskOutput(TaskRecord):
    """An async-generator task yielded ``event``."""

    event: Any

    def __init__(
        self,
        seq: int,
        at: float,
        task: str,
        task_id: int,
        event: Any,
        *,
        session_id: str | None = None,
        wall: float = 0.0,
    ) -> None:
        self.seq = seq
        self.at = at
        self.task = task
        self.task_id = task_id
        self.event = event
        self.session_id = session_id
        self.wall = wall


@attrs.define(init=False)
class TaskFinished(TaskRecord):
    """Terminal: the task returned ``result`` (None for an async generator)."""

    result: Any

    def __init__(
        self,
        seq: int,
        at: float,
        task: str,
        task_id: int,
        result: Any,
        *,
        session_id: str | None = None,
        wall: float = 0.0,
    ) -> None:
        self.seq = seq
        self.at = at
        self.task = task
        self.task_id = task_id
        self.result = result
        self.session_id = session_id
        self.wall = wall


@attrs.define
class TaskFailed(TaskRecord):
    """Terminal: the task raised ``error``."""

    error: BaseException


@attrs.define(init=False)
class TaskCancelled(TaskRecord):
    """Terminal: the task was cancelled before it finished.

    ``reason``: ``"cancel_task"``, ``"interrupted"``, ``"cancel_all"``, ``"closed"`` or
    ``"replaced"`` (a task of the same name replaced it). ``origin`` says who asked when that is
    known (``"handler"``, ``"task:NAME"``, ``"input:TextEvent"``, ``"debugger"``...).
    ``result`` keeps what the task returned (or yielded) after the cancel was delivered, if
    anything: such a value is never forwarded as an output, but it is not lost either.
    """

    reason: str
    origin: str | None = None
    result: Any = None

    def __init__(
        self,
        seq: int,
        at: float,
        task: str,
        task_id: int,
        reason: str,
        origin: str | None = None,
        result: Any = None,
        *,
        session_id: str | None = None,
        wall: float = 0.0,
    ) -> None:
        self.seq = seq
        self.at = at
        self.task = task
        self.task_id = task_id
        self.reason = reason
        self.origin = origin
        self.result = result
        self.session_id = session_id
        self.wall = wall


@attrs.define
class TaskTimedOut(TaskRecord):
    """Terminal: the task ran past its deadline and was cancelled.

    ``timeout`` is the task's timeout in seconds (None when only a deadline set on the handle
    expired); ``result`` is as for :class:`TaskCancelled`.
    """

    timeout: float | None
    result: Any = None


@attrs.define
class TaskStuck(TaskRecord):
    """Not terminal: the task was cancelled at ``since`` (``reason``) and is still running.

    Issued after the task has ignored the cancel for the supervisor's ``stuck_after`` grace
    time, and again every ``stuck_after`` seconds while it goes on (asyncio code is cancelled
    again each time: a swallowed ``CancelledError`` gets another one). ``count`` numbers the
    reports. Its terminal record still follows if it ever ends.
    """

    reason: str
    since: float
    count: int = 1


TERMINAL_RECORDS: tuple[type[TaskRecord], ...] = (
    TaskFinished,
    TaskFailed,
    TaskCancelled,
    TaskTimedOut,
)
