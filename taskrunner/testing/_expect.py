"""Expectations on a turn: outputs in order or by search, task lifecycles, matchers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.errors import TaskRunnerError
from .._core.records import (
    TERMINAL_RECORDS,
    Record,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskOutput,
    TaskRecord,
    TaskStarted,
    TaskTimedOut,
)
from .._session.records import HandlerFailed, HandlerOutput
from ..tools.render import describe_event

if TYPE_CHECKING:
    from ._turn import Turn

__all__ = [
    "ExpectationError",
    "Expectations",
    "Matcher",
    "TaskExpectation",
    "contains",
    "matches",
    "regex",
]

_ANY = object()


class ExpectationError(TaskRunnerError, AssertionError):
    """An expectation on a turn did not hold. The message says what was expected, what was
    found where, and shows the turn as a transcript (``->`` marks the place)."""

    __module__ = "taskrunner.testing"  # how reports name it


class Matcher:
    """A field value test: ``matcher(value) -> bool`` and a description for messages."""

    def __init__(self, test: Callable[[Any], object], description: str) -> None:
        self._test = test
        self.description = description

    def __call__(self, value: Any) -> bool:
        """True if ``value`` matches; a test that raises counts as no match."""
        try:
            return bool(self._test(value))
        except Exception:
            return False

    def __repr__(self) -> str:
        return self.description


def contains(substring: str, *, ignore_case: bool = False) -> Matcher:
    """Matches a str containing ``substring`` (``ignore_case=True``: in any case)."""
    if not isinstance(substring, str):
        raise TypeError(f"contains() takes a str, got {type(substring).__name__}: {substring!r}")
    if ignore_case:
        low = substring.casefold()
        return Matcher(
            lambda v: isinstance(v, str) and low in v.casefold(),
            f"containing {substring!r} (any case)",
        )
    return Matcher(lambda v: isinstance(v, str) and substring in v, f"containing {substring!r}")


def regex(pattern: str) -> Matcher:
    """Matches a str in which the regular expression ``pattern`` is found (``re.search``)."""
    compiled = re.compile(pattern)
    return Matcher(
        lambda v: isinstance(v, str) and compiled.search(v) is not None,
        f"matching /{pattern}/",
    )


def matches(predicate: Callable[[Any], object], description: str | None = None) -> Matcher:
    """Matches a value for which ``predicate(value)`` is true (an exception counts as false)."""
    if not callable(predicate):
        raise TypeError(f"matches() takes a callable, got {type(predicate).__name__}")
    name = description or getattr(predicate, "__name__", repr(predicate))
    return Matcher(predicate, f"satisfying {name}")


def _describe_value(expected: Any) -> str:
    return expected.description if isinstance(expected, Matcher) else f"== {expected!r}"


def _value_ok(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Matcher):
        return expected(actual)
    try:
        return bool(expected == actual)
    except Exception:
        return False


def _type_name(t: type | tuple[type, ...] | None) -> str:
    if t is None:
        return "an output"
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


class _Spec:
    """What an output must be: a type, field values, a predicate over the whole event."""

    def __init__(
        self,
        turn: Turn,
        type_: type | tuple[type, ...] | None,
        where: Callable[[Any], object] | Matcher | None,
        fields: dict[str, Any],
    ) -> None:
        if type_ is not None and not (
            isinstance(type_, type)
            or (isinstance(type_, tuple) and all(isinstance(t, type) for t in type_))
        ):
            raise TypeError(
                f"the output type must be an event class or a tuple of them, "
                f"got {type(type_).__name__}: {type_!r}"
            )
        if where is not None and not callable(where):
            raise TypeError(f"where= takes a callable, got {type(where).__name__}")
        self.turn = turn
        self.type = type_
        self.where = where if where is None or isinstance(where, Matcher) else matches(where)
        self.fields = fields

    def describe(self) -> str:
        parts = [_type_name(self.type)]
        for name, expected in self.fields.items():
            parts.append(f"{name} {_describe_value(expected)}")
        if self.where is not None:
            parts.append(self.where.description)
        return parts[0] + (" with " + ", ".join(parts[1:]) if len(parts) > 1 else "")

    def mismatch(self, event: Any) -> str | None:
        """None if ``event`` matches, else why not."""
        if self.type is not None and not isinstance(event, self.type):
            return f"it is a {type(event).__name__}, not {_type_name(self.type)}"
        for name, expected in self.fields.items():
            try:
                actual = self.turn.vocabulary.field(event, name)
            except KeyError:
                return f"it has no field {name!r}"
            if not _value_ok(expected, actual):
                return f"its {name} is {actual!r}, expected {_describe_value(expected)}"
        if self.where is not None and not self.where(event):
            return f"it is not {self.where.description}"
        return None


class Expectations:
    """``turn.expect``: checks on one turn that raise :class:`ExpectationError` with the turn's
    transcript when they fail.

    ``next_output`` walks the outputs (handler's and tasks', in order) with a cursor;
    ``any_output``/``no_output`` search them all; ``task(name)`` checks a task's records.
    Field keywords (``text=``, ``voice=``, ``message=``...) read the event's attribute or, for
    ``primfunctions`` events, its ``data`` entry; a value is compared with ``==``, a
    :func:`contains` / :func:`regex` / :func:`matches` matcher is applied.
    """

    def __init__(self, turn: Turn) -> None:
        self._turn = turn
        self._cursor = 0

    # ------------------------------------------------------------------ failing

    def _fail(self, message: str, at_output: int | None = None) -> ExpectationError:
        turn = self._turn
        outputs = turn.output_records
        marks: dict[int, str] = {}
        if at_output is not None:
            if at_output < len(outputs):
                marks[turn.records.index(outputs[at_output])] = "->"
            else:
                marks[len(turn.records)] = "->"
        return ExpectationError(f"{message}\n\n{turn.transcript(marks)}")

    # ------------------------------------------------------------------ outputs

    def next_output(
        self,
        type: type | tuple[type, ...] | None = None,
        /,
        *,
        where: Callable[[Any], object] | Matcher | None = None,
        **fields: Any,
    ) -> Any:
        """The next output (after the ones already expected) must match; returns its event.

        ``next_output(TextToSpeechEvent, text=contains("order"))``; with no type, any event
        class. The cursor moves past it.
        """
        __tracebackhide__ = True  # pytest: show the test line, not this one
        spec = _Spec(self._turn, type, where, fields)
        outputs = self._turn.output_records
        i = self._cursor
        if i >= len(outputs):
            seen = (
                f"all {len(outputs)} outputs were already expected"
                if outputs
                else ("the turn has no outputs")
            )
            raise self._fail(
                f"expected the next output to be {spec.describe()}, but there is none ({seen})",
                at_output=i,
            )
        record = outputs[i]
        why = spec.mismatch(record.event)
        if why is not None:
            raise self._fail(
                f"expected output #{i + 1} to be {spec.describe()}\n"
                f"but output #{i + 1} is {_who(record)} {describe_event(record.event)}: {why}",
                at_output=i,
            )
        self._cursor = i + 1
        return record.event

    def skip(self, count: int = 1) -> None:
        """Move the cursor past ``count`` outputs, whatever they are."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        outputs = self._turn.output_records
        if self._cursor + count > len(outputs):
            raise self._fail(
                f"cannot skip {count} output(s): only {len(outputs) - self._cursor} left",
                at_output=self._cursor,
            )
        self._cursor += count

    def any_output(
        self,
        type: type | tuple[type, ...] | None = None,
        /,
        *,
        where: Callable[[Any], object] | Matcher | None = None,
        **fields: Any,
    ) -> Any:
        """Some output of the turn (anywhere, the cursor is not moved) must match; returns
        the first that does."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        spec = _Spec(self._turn, type, where, fields)
        for record in self._turn.output_records:
            if spec.mismatch(record.event) is None:
                return record.event
        raise self._fail(f"expected an output {spec.describe()} in this turn; none matches")

    def no_output(
        self,
        type: type | tuple[type, ...] | None = None,
        /,
        *,
        where: Callable[[Any], object] | Matcher | None = None,
        **fields: Any,
    ) -> None:
        """No output of the turn may match."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        spec = _Spec(self._turn, type, where, fields)
        for i, record in enumerate(self._turn.output_records):
            if spec.mismatch(record.event) is None:
                raise self._fail(
                    f"expected no output {spec.describe()}, but output #{i + 1} is one: "
                    f"{_who(record)} {describe_event(record.event)}",
                    at_output=i,
                )

    def no_more_outputs(self) -> None:
        """Every output of the turn has been expected with ``next_output``/``skip``."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        outputs = self._turn.output_records
        if self._cursor < len(outputs):
            rest = len(outputs) - self._cursor
            record = outputs[self._cursor]
            raise self._fail(
                f"expected no more outputs, but {rest} more: the next is output "
                f"#{self._cursor + 1}, {_who(record)} {describe_event(record.event)}",
                at_output=self._cursor,
            )

    def no_failures(self) -> None:
        """Neither the handler nor any task failed in this turn."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        for record in self._turn.records:
            if isinstance(record, (HandlerFailed, TaskFailed)):
                who = (
                    "the handler"
                    if isinstance(record, HandlerFailed)
                    else (f"task {record.task!r}")
                )
                raise self._fail(
                    f"expected no failures, but {who} failed: "
                    f"{type(record.error).__name__}: {_safe_str(record.error)}"
                )

    # ------------------------------------------------------------------ tasks

    def task(self, name: str) -> TaskExpectation:
        """Expectations on the records of the task called ``name`` in this turn."""
        if not isinstance(name, str):
            raise TypeError(f"task() takes the task's name (str), got {type(name).__name__}")
        return TaskExpectation(self, name)


def _who(record: HandlerOutput | TaskOutput) -> str:
    return "the handler's" if isinstance(record, HandlerOutput) else f"task {record.task!r}'s"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<unprintable>"


class TaskExpectation:
    """``turn.expect.task(name)``: the task's records in the turn must show a lifecycle
    step. Each method returns the matching record."""

    def __init__(self, expect: Expectations, name: str) -> None:
        self._expect = expect
        self._turn = expect._turn
        self.name = name

    def _records(self) -> list[TaskRecord]:
        return [r for r in self._turn.records if isinstance(r, TaskRecord) and r.task == self.name]

    def _fail(self, message: str, mark: Record | None = None) -> ExpectationError:
        turn = self._turn
        records = self._records()
        if not records:
            names = sorted({r.task for r in turn.records if isinstance(r, TaskRecord)})
            known = ", ".join(repr(n) for n in names) if names else "none"
            message += f"\n(no record of a task named {self.name!r} in this turn; tasks: {known})"
        marks = {turn.records.index(mark): "->"} if mark is not None else None
        return ExpectationError(f"{message}\n\n{turn.transcript(marks)}")

    def _ending(self) -> TaskRecord | None:
        for r in self._records():
            if isinstance(r, TERMINAL_RECORDS):
                return r
        return None

    def _end_state(self) -> str:
        end = self._ending()
        if end is None:
            if any(isinstance(r, TaskStarted) for r in self._records()):
                return "it was still running at the end of the turn"
            return "there is no record of it ending in this turn"
        t = end.at - self._turn.t0
        if isinstance(end, TaskFinished):
            return f"it finished at +{t:.3f}s"
        if isinstance(end, TaskFailed):
            return f"it failed at +{t:.3f}s: {type(end.error).__name__}: {_safe_str(end.error)}"
        if isinstance(end, TaskCancelled):
            return f"it was cancelled at +{t:.3f}s (reason {end.reason!r})"
        if isinstance(end, TaskTimedOut):
            return f"it timed out at +{t:.3f}s (after {end.timeout:g}s)"
        return f"it ended with {type(end).__name__}"

    def started(self, *, interruptible: bool | None = None, timeout: Any = _ANY) -> TaskStarted:
        """The task was created in this turn (optionally: interruptible, with ``timeout``)."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        for r in self._records():
            if isinstance(r, TaskStarted):
                if interruptible is not None and r.interruptible != interruptible:
                    raise self._fail(
                        f"expected task {self.name!r} to start with interruptible="
                        f"{interruptible}, but it started with interruptible={r.interruptible}",
                        r,
                    )
                if timeout is not _ANY and r.timeout != timeout:
                    raise self._fail(
                        f"expected task {self.name!r} to start with timeout={timeout!r}, "
                        f"but its timeout is {r.timeout!r}",
                        r,
                    )
                return r
        raise self._fail(f"expected task {self.name!r} to start in this turn, but it did not")

    def finished(self, result: Any = _ANY) -> TaskFinished:
        """The task returned in this turn (optionally with ``result``: a value or matcher)."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        end = self._ending()
        if not isinstance(end, TaskFinished):
            raise self._fail(
                f"expected task {self.name!r} to finish in this turn, but {self._end_state()}",
                end,
            )
        if result is not _ANY and not _value_ok(result, end.result):
            raise self._fail(
                f"expected task {self.name!r} to finish with a result "
                f"{_describe_value(result)}, but it returned {end.result!r}",
                end,
            )
        return end

    def cancelled(self, reason: str | None = None) -> TaskCancelled:
        """The task was cancelled in this turn (optionally for ``reason``: ``"interrupted"``,
        ``"cancel_task"``, ``"cancel_all"``, ``"closed"``...)."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        end = self._ending()
        if not isinstance(end, TaskCancelled):
            want = "" if reason is None else f" (reason {reason!r})"
            raise self._fail(
                f"expected task {self.name!r} to be cancelled{want} in this turn, "
                f"but {self._end_state()}",
                end,
            )
        if reason is not None and end.reason != reason:
            raise self._fail(
                f"expected task {self.name!r} to be cancelled with reason {reason!r}, "
                f"but the reason was {end.reason!r}",
                end,
            )
        return end

    def timed_out(self) -> TaskTimedOut:
        """The task ran past its timeout in this turn."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        end = self._ending()
        if not isinstance(end, TaskTimedOut):
            raise self._fail(
                f"expected task {self.name!r} to time out in this turn, but {self._end_state()}",
                end,
            )
        return end

    def failed(
        self, error: type[BaseException] = BaseException, *, match: str | None = None
    ) -> TaskFailed:
        """The task raised an ``error`` (a class) in this turn; ``match``: a regular
        expression searched in the error's message."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        end = self._ending()
        if not isinstance(end, TaskFailed):
            raise self._fail(
                f"expected task {self.name!r} to fail with {error.__name__} in this turn, "
                f"but {self._end_state()}",
                end,
            )
        if not isinstance(end.error, error):
            raise self._fail(
                f"expected task {self.name!r} to fail with {error.__name__}, but it failed "
                f"with {type(end.error).__name__}: {_safe_str(end.error)}",
                end,
            )
        if match is not None and re.search(match, _safe_str(end.error)) is None:
            raise self._fail(
                f"expected task {self.name!r}'s error to match /{match}/, but its message is "
                f"{_safe_str(end.error)!r}",
                end,
            )
        return end

    def still_running(self) -> TaskStarted:
        """The task started in this turn and had not ended when the turn was over."""
        __tracebackhide__ = True  # pytest: show the test line, not this one
        start = next((r for r in self._records() if isinstance(r, TaskStarted)), None)
        end = self._ending()
        if start is None or end is not None:
            state = "it did not start in this turn" if start is None else self._end_state()
            raise self._fail(
                f"expected task {self.name!r} to be running at the end of the turn, but {state}",
                end,
            )
        return start

    @property
    def outputs(self) -> list[Any]:
        """The events the task yielded in this turn, in order."""
        return [r.event for r in self._records() if isinstance(r, TaskOutput)]
