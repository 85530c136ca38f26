"""The records a supervisor forwards on its stream, and their JSON form."""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

__all__ = [
    "TERMINAL_RECORDS",
    "Record",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskOutput",
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
    """Describe an exception as JSON-safe data: its type, message and formatted traceback."""
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn ``value`` into data ``json.dumps`` accepts, losing nothing a person would read.

    attrs and dataclass instances become dicts with a ``"type"`` key naming their class;
    exceptions become :func:`error_to_dict`; anything else unknown becomes its ``repr``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth >= _MAX_DEPTH:
        return repr(value)
    d = _depth + 1
    if isinstance(value, dict):
        return {str(k): jsonable(v, d) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, d) for v in value]
    if isinstance(value, BaseException):
        return error_to_dict(value)
    if attrs.has(type(value)):
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in attrs.fields(type(value)):
            out[f.name] = jsonable(getattr(value, f.name), d)
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        for df in dataclasses.fields(value):
            out[df.name] = jsonable(getattr(value, df.name), d)
        return out
    if isinstance(value, bytes):
        return repr(value)
    for cls, convert in _converters:
        if isinstance(value, cls):
            return jsonable(convert(value), d)
    return repr(value)


@attrs.frozen
class Record:
    """Base of every record on a supervisor's (or session's) stream.

    ``seq`` increases by one for each record of a stream; ``at`` is the trio clock when the
    record was made.
    """

    seq: int
    at: float

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
        for f in attrs.fields(type(self)):
            out[f.name] = jsonable(getattr(self, f.name))
        return out


@attrs.frozen
class TaskRecord(Record):
    """A record about one task: ``task`` is its name, ``task_id`` its supervisor-unique id."""

    task: str
    task_id: int

    source: ClassVar[str] = "task"


@attrs.frozen
class TaskStarted(TaskRecord):
    """The task was created; always the task's first record, issued by ``create_task``."""

    interruptible: bool
    timeout: float | None
    flavor: str


@attrs.frozen
class TaskOutput(TaskRecord):
    """An async-generator task yielded ``event``."""

    event: Any


@attrs.frozen
class TaskFinished(TaskRecord):
    """Terminal: the task returned ``result`` (None for an async generator)."""

    result: Any


@attrs.frozen
class TaskFailed(TaskRecord):
    """Terminal: the task raised ``error``."""

    error: BaseException


@attrs.frozen
class TaskCancelled(TaskRecord):
    """Terminal: the task was cancelled before it finished.

    ``reason``: ``"cancel_task"``, ``"interrupted"``, ``"cancel_all"`` or ``"closed"``.
    """

    reason: str


@attrs.frozen
class TaskTimedOut(TaskRecord):
    """Terminal: the task ran past ``timeout`` seconds and was cancelled."""

    timeout: float


@attrs.frozen
class TaskStuck(TaskRecord):
    """Not terminal: the task was cancelled at ``since`` (``reason``) and is still running.

    Issued once per task, after it has ignored the cancel for the supervisor's
    ``stuck_after`` grace time. Its terminal record still follows if it ever ends.
    """

    reason: str
    since: float


TERMINAL_RECORDS: tuple[type[TaskRecord], ...] = (
    TaskFinished,
    TaskFailed,
    TaskCancelled,
    TaskTimedOut,
)
