"""A turn of a conversation under test: its input, its records, and a readable transcript."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._core.records import (
    Record,
    TaskOutput,
    TaskRecord,
)
from .._session._vocabulary import Vocabulary
from .._session.records import HandlerFailed, HandlerOutput, SessionEnded, SessionStarted
from ..tools.render import describe_error, describe_event, describe_task_record

if TYPE_CHECKING:
    from ._expect import Expectations

__all__ = ["Turn", "describe_input", "describe_record", "format_transcript"]


def describe_input(event: Any, vocabulary: Vocabulary) -> str:
    """``TextEvent "place order"`` for a text input, the class name for others."""
    name = type(event).__name__
    try:
        text = vocabulary.field(event, "text")
    except KeyError:
        return name
    return f"{name} {text!r}" if isinstance(text, str) else name


def describe_record(record: Record, vocabulary: Vocabulary | None = None) -> str:
    """One line for one record, without its time."""
    if type(record).__name__ == "InputReceived" and vocabulary is not None:
        return f"> {describe_input(getattr(record, 'event', None), vocabulary)}"
    if isinstance(record, TaskRecord):
        return f"[{record.task}] {describe_task_record(record)}"
    if isinstance(record, HandlerOutput):
        return f"handler {describe_event(record.event)}"
    if isinstance(record, HandlerFailed):
        return f"handler FAILED on {type(record.input).__name__}: {describe_error(record.error)}"
    if isinstance(record, SessionStarted):
        return f"session {record.session_id} started"
    if isinstance(record, SessionEnded):
        return f"session {record.session_id} ended"
    return type(record).__name__


def format_transcript(
    records: Sequence[Record],
    *,
    t0: float,
    title: str = "",
    input_line: str | None = None,
    input_at: float | None = None,
    marks: dict[int, str] | None = None,
    numbered: Sequence[Record] = (),
    vocabulary: Vocabulary | None = None,
) -> str:
    """The records as lines ``+1.500s  handler says "..."``, times relative to ``t0``.

    ``marks`` maps a record's position to a short marker (``"->"``) shown before it;
    records in ``numbered`` (the outputs) get their 1-based number.
    """
    marks = marks or {}
    numbers = {id(r): i for i, r in enumerate(numbered, 1)}
    lines = [title] if title else []
    if input_line is not None:
        at = input_at if input_at is not None else t0
        lines.append(f"        +{at - t0:8.3f}s  > {input_line}")
    for i, record in enumerate(records):
        mark = marks.get(i, "")
        number = numbers.get(id(record))
        num = f"{number:>3}" if number is not None else "   "
        line = describe_record(record, vocabulary)
        lines.append(f"{mark:>3} {num} +{record.at - t0:8.3f}s  {line}")
    if len(marks) and max(marks) >= len(records):
        lines.append(f"{marks[max(marks)]:>3}     (end of turn)")
    if not records and input_line is None:
        lines.append("        (no records)")
    return "\n".join(lines)


class Turn:
    """What happened in one turn: the input sent (None for :meth:`Agent.advance`), every
    record from the moment it was sent until the turn was over, and expectations on them.

    ``records`` are the session's records of the turn, in order; ``outputs`` the events the
    handler and the tasks yielded (in order); ``expect`` the :class:`Expectations` (one
    cursor per turn). ``unfinished`` names the tasks the turn started that were still
    running when the wait ended at its bound (``max_wait``).
    """

    __slots__ = (
        "_expect",
        "ended_at",
        "index",
        "input",
        "records",
        "sent_at",
        "t0",
        "unfinished",
        "vocabulary",
    )

    def __init__(
        self,
        *,
        index: int,
        input: Any,
        records: Sequence[Record],
        vocabulary: Vocabulary,
        t0: float,
        sent_at: float,
        ended_at: float,
        unfinished: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.input = input
        self.records: tuple[Record, ...] = tuple(records)
        self.vocabulary = vocabulary
        self.t0 = t0
        self.sent_at = sent_at
        self.ended_at = ended_at
        self.unfinished = tuple(unfinished)
        self._expect: Expectations | None = None

    def __repr__(self) -> str:
        return f"<Turn {self.index} {self.title()!r} records={len(self.records)}>"

    @property
    def output_records(self) -> list[HandlerOutput | TaskOutput]:
        """The records carrying an output event, handler's and tasks', in order."""
        return [r for r in self.records if isinstance(r, (HandlerOutput, TaskOutput))]

    @property
    def outputs(self) -> list[Any]:
        """The events yielded in the turn, by the handler and by tasks, in order."""
        return [r.event for r in self.output_records]

    @property
    def tts_texts(self) -> list[str]:
        """The texts of the turn's text-to-speech events, in order."""
        texts = (self.vocabulary.tts_text(e) for e in self.outputs)
        return [t for t in texts if t is not None]

    @property
    def expect(self) -> Expectations:
        """Expectations on this turn; ``next_output`` moves one cursor through the outputs."""
        if self._expect is None:
            from ._expect import Expectations

            self._expect = Expectations(self)
        return self._expect

    def title(self) -> str:
        """``turn 2: TextEvent 'place order'`` (or ``advance`` for clock moves)."""
        what = "advance" if self.input is None else describe_input(self.input, self.vocabulary)
        return f"turn {self.index}: {what}"

    def transcript(self, marks: dict[int, str] | None = None) -> str:
        """The turn as readable lines: the input, then every record with its time (seconds
        since the session started) and the outputs numbered."""
        span = f"  (+{self.sent_at - self.t0:.3f}s .. +{self.ended_at - self.t0:.3f}s)"
        # A session that records its inputs (an ``InputReceived`` record) shows them itself.
        has_input = any(type(r).__name__ == "InputReceived" for r in self.records)
        tail = ""
        if self.unfinished:
            tail = "\n    (stopped waiting; still running: " + ", ".join(self.unfinished) + ")"
        return (
            format_transcript(
                self.records,
                t0=self.t0,
                title=self.title() + span,
                input_line=None
                if self.input is None or has_input
                else describe_input(self.input, self.vocabulary),
                input_at=self.sent_at,
                marks=marks,
                numbered=self.output_records,
                vocabulary=self.vocabulary,
            )
            + tail
        )
