"""Terminal rendering of a session's output stream, for a person (rich) or a program (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._core._checks import safe_repr
from .._core.handle import TaskInfo
from .._core.records import (
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskRecord,
    TaskStarted,
    TaskStuck,
    TaskTimedOut,
)
from .._session._vocabulary import describe_foreign_event
from .._session.agent_events import AudioEvent, LogEvent, SilenceEvent, TextToSpeechEvent
from .._session.records import (
    HandlerFailed,
    HandlerOutput,
    InputReceived,
    SessionEnded,
    SessionStarted,
)

__all__ = ["JsonRenderer", "TerminalRenderer", "describe_event", "describe_input"]

# The seed's debugger marks background-task events orange; the terminal does the same.
TASK_STYLE = "orange1"
_STATE_STYLE = {
    "finished": "green",
    "failed": "red",
    "cancelled": "yellow",
    "timed_out": "magenta",
    "running": "cyan",
}


def describe_event(event: Any) -> str:
    """A one-line, human description of an agent event (of either vocabulary)."""
    if isinstance(event, TextToSpeechEvent):
        return f'says "{event.text}" ({event.voice})'
    if isinstance(event, LogEvent):
        return f"log: {event.message}"
    if isinstance(event, AudioEvent):
        return f"plays {event.path}"
    if isinstance(event, SilenceEvent):
        return f"silence {event.duration} ms"
    foreign = describe_foreign_event(event)  # primfunctions events, if that SDK is in use
    if foreign is not None:
        return foreign
    return repr(event)


def describe_input(event: Any) -> str:
    """``TextEvent "place order"`` for an input carrying text (of either vocabulary), the
    class name for others."""
    text = getattr(event, "text", None)
    if text is None:
        data = getattr(event, "data", None)
        text = data.get("text") if isinstance(data, dict) else None
    name = type(event).__name__
    return f'{name} "{text}"' if isinstance(text, str) else name


class TerminalRenderer:
    """Prints records as they come: task records orange with the task's name, handler output
    plain, times relative to the session's start; :meth:`summary` prints the task table."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self._t0: float | None = None

    def _time(self, at: float) -> str:
        if self._t0 is None:
            self._t0 = at
        return f"+{at - self._t0:6.2f}s"

    def render(self, record: Record) -> None:
        """Print one record."""
        when = self._time(record.at)
        if isinstance(record, TaskRecord):
            self.console.print(
                Text.assemble(
                    (f"{when} ", "dim"),
                    (f" {record.task} ", f"bold black on {TASK_STYLE}"),
                    (" ", ""),
                    (self._task_text(record), TASK_STYLE),
                )
            )
            if isinstance(record, TaskFailed):
                self.console.print(Text(_indent(_traceback(record.error)), style="red dim"))
            return
        if isinstance(record, HandlerOutput):
            self.console.print(f"[dim]{when}[/dim] handler  {escape(describe_event(record.event))}")
        elif isinstance(record, InputReceived):
            self.console.print(
                f"[dim]{when}[/dim] [bold]user[/bold]     {escape(describe_input(record.event))}"
            )
        elif isinstance(record, HandlerFailed):
            self.console.print(
                f"[dim]{when}[/dim] [red]handler failed on {type(record.input).__name__}: "
                f"{escape(safe_repr(record.error))}[/red]"
            )
            self.console.print(Text(_indent(_traceback(record.error)), style="red dim"))
        elif isinstance(record, SessionStarted):
            self.console.print(
                f"[dim]{when}[/dim] [bold]session {escape(record.session_id or '')} started"
            )
        elif isinstance(record, SessionEnded):
            self.console.print(
                f"[dim]{when}[/dim] [bold]session {escape(record.session_id or '')} ended"
            )
        elif type(record).__name__ == "LoopBlocked":
            self.console.print(f"[dim]{when}[/dim] [bold red]{escape(_blocked_text(record))}")
        else:
            self.console.print(f"[dim]{when}[/dim] {escape(repr(record))}")

    def _task_text(self, record: TaskRecord) -> str:
        return describe_task_record(record, flavor=True)

    def summary(self, tasks: Iterable[TaskInfo]) -> None:
        """Print the table of tasks: name, state, duration, events."""
        table = Table(title="tasks", title_justify="left")
        table.add_column("task", style=TASK_STYLE)
        table.add_column("state")
        table.add_column("duration", justify="right")
        table.add_column("events", justify="right")
        for info in tasks:
            end = info.ended_at
            duration = "-" if end is None else f"{end - info.started_at:.2f}s"
            state = info.state.value
            if info.cancel_reason and state == "cancelled":
                state = f"cancelled ({info.cancel_reason})"
            style = _STATE_STYLE.get(info.state.value, "")
            table.add_row(info.name, f"[{style}]{state}[/{style}]", duration, str(info.outputs))
        self.console.print(table)


class JsonRenderer:
    """Prints one JSON object per record (``to_dict()``), and the task table as a last line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def render(self, record: Record) -> None:
        """Print one record as a JSON line."""
        self.out.write(json.dumps(record.to_dict()) + "\n")
        self.out.flush()

    def summary(self, tasks: Iterable[TaskInfo]) -> None:
        """Print ``{"type": "TaskTable", "tasks": [...]}`` as the last line."""
        line = {"type": "TaskTable", "tasks": [t.to_dict() for t in tasks]}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()


def _blocked_text(record: Any) -> str:
    """One line for a ``LoopBlocked`` record: how long, by what, where."""
    who = f"task {record.task!r}" if record.task else ("the handler" if record.handler else "?")
    where = ""
    if record.stack:
        frame = record.stack[-1]
        where = f" at {frame['file'].rsplit('/', 1)[-1]}:{frame['line']}: {frame['code']}"
    return f"loop blocked {record.duration * 1000:.0f} ms by {who}{where}"


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc)).rstrip()


def _indent(text: str) -> str:
    return "\n".join("           " + line for line in text.splitlines())


def describe_error(exc: BaseException) -> str:
    """``Type('message')``, also for an exception whose ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return f"{type(exc).__name__}({text!r})"


def describe_task_record(record: TaskRecord, *, flavor: bool = False) -> str:
    """One line for a task record, without its time or task name (terminal and transcripts).

    Never raises: results and errors with a broken ``__repr__``/``__str__`` get placeholders.
    """
    if isinstance(record, TaskStarted):
        limit = "no timeout" if record.timeout is None else f"timeout {record.timeout:g}s"
        kind = ", interruptible" if record.interruptible else ""
        return f"started ({record.flavor + ', ' if flavor else ''}{limit}{kind})"
    if isinstance(record, TaskOutput):
        return describe_event(record.event)
    if isinstance(record, TaskFinished):
        if record.result is None:
            return "finished"
        return f"finished: {safe_repr(record.result)}"
    if isinstance(record, TaskFailed):
        return f"FAILED: {describe_error(record.error)}"
    if isinstance(record, TaskCancelled):
        origin = record.origin
        return f"cancelled ({record.reason}{f' by {origin}' if origin else ''})"
    if isinstance(record, TaskTimedOut):
        after = "its deadline" if record.timeout is None else f"{record.timeout:g}s"
        return f"timed out after {after}"
    if isinstance(record, TaskStuck):
        return f"STUCK: cancelled ({record.reason}) but still running"
    return type(record).__name__
