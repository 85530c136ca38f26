"""OpenTelemetry traces and metrics for sessions and tasks (the ``otel`` extra).

:class:`Telemetry` turns a session's records into a span per session, a child span per
task (outputs as span events) and metrics.  Give its sink to a session::

    telemetry = Telemetry()  # global tracer and meter providers unless given
    async with open_session(handler, on_record=telemetry.sink()) as session:
        telemetry.track(session.supervisor)  # for the unread-records gauge
        ...

Spans: ``taskrunner.session`` (``taskrunner.session.id``, ``taskrunner.agent.id``,
``taskrunner.environment``; inputs as ``taskrunner.input`` events, blocks of the trio
thread as ``taskrunner.loop_blocked`` events) and its child ``taskrunner.task`` per task
(``taskrunner.task.name``, ``.id``, ``.flavor``, ``.interruptible``, ``.timeout``,
``.state``, ``.cancel.reason``, ``.cancel.origin``; ``error.type`` and an ERROR status for
failures and timeouts, as OpenTelemetry's conventions say; each output a
``taskrunner.task.output`` event).  Metrics: ``taskrunner.tasks.started``,
``taskrunner.tasks.ended`` (``taskrunner.task.state``, ``taskrunner.task.cancel.reason``),
``taskrunner.tasks.running``, ``taskrunner.tasks.pending``,
``taskrunner.interruption.latency`` (seconds from the input that interrupted to each
cancelled task's end), ``taskrunner.records.unread`` and ``taskrunner.loop.blocked_time``.

The sink runs synchronously where records are made and only calls the OpenTelemetry API:
with no SDK installed, its calls are no-ops.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = ["Telemetry"]

_TERMINAL = {
    "TaskFinished": "finished",
    "TaskFailed": "failed",
    "TaskCancelled": "cancelled",
    "TaskTimedOut": "timed_out",
}


def _get(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, dict):
        return record.get(name, default)
    return getattr(record, name, default)


def _kind(record: Any) -> str:
    if isinstance(record, dict):
        return str(record.get("type"))
    return type(record).__name__


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "object"))
    return type(value).__name__


def _event_attributes(event: Any) -> dict[str, str]:
    attributes = {"taskrunner.event.type": _type_name(event)}
    for field in ("text", "message", "path", "name"):
        value = event.get(field) if isinstance(event, dict) else getattr(event, field, None)
        if isinstance(value, str):
            attributes["taskrunner.event.text"] = value[:1000]
            break
    return attributes


def _error_type(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("type", "Error"))
    return type(error).__qualname__


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", ""))
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: str() failed>"


def _now_ns(record: Any) -> int:
    wall = _get(record, "wall")
    if isinstance(wall, int | float):
        return int(wall * 1e9)
    return time.time_ns()


class _SessionState:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.tasks: dict[Any, Span] = {}
        self.queued: set[Any] = set()
        self.last_input_at: float | None = None


class Telemetry:
    """Spans and metrics from session records; see the module docstring.

    ``tracer_provider`` and ``meter_provider`` default to OpenTelemetry's global ones.
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("taskrunner", tracer_provider=tracer_provider)
        meter = metrics.get_meter("taskrunner", meter_provider=meter_provider)
        self._started = meter.create_counter(
            "taskrunner.tasks.started", unit="{task}", description="Tasks started"
        )
        self._ended = meter.create_counter(
            "taskrunner.tasks.ended", unit="{task}", description="Tasks ended, by state"
        )
        self._running = meter.create_up_down_counter(
            "taskrunner.tasks.running", unit="{task}", description="Tasks running now"
        )
        self._pending = meter.create_up_down_counter(
            "taskrunner.tasks.pending", unit="{task}", description="Tasks waiting for a slot"
        )
        self._latency = meter.create_histogram(
            "taskrunner.interruption.latency",
            unit="s",
            description="From the input that interrupted to the end of each cancelled task",
        )
        self._blocked = meter.create_counter(
            "taskrunner.loop.blocked_time",
            unit="s",
            description="Time the trio thread ran no other task (blocked)",
        )
        self._supervisors: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_gauge(
            "taskrunner.records.unread",
            callbacks=[self._observe_unread],
            unit="{record}",
            description="Records waiting for the stream's reader",
        )
        self._sessions: dict[str, _SessionState] = {}

    # ------------------------------------------------------------------ public

    def sink(self, session_id: str | None = None) -> Callable[[Any], None]:
        """A callable for ``on_record=`` (Record objects) or a hub sink's records (dicts).

        ``session_id`` names the session when records do not carry it themselves.
        """

        def on_record(record: Any) -> None:
            self.record(record, session_id)

        return on_record

    def track(self, supervisor: Any) -> None:
        """Count ``supervisor``'s unread records in ``taskrunner.records.unread``."""
        self._supervisors.add(supervisor)

    def record(self, record: Any, session_id: str | None = None) -> None:
        """Process one record (a ``Record`` or its ``to_dict()``) of session ``session_id``."""
        sid = _get(record, "session_id") or session_id or "?"
        kind = _kind(record)
        if kind == "SessionStarted":
            self._session_started(sid, record)
            return
        state = self._sessions.get(sid)
        if state is None:  # records of a session whose start was not seen
            state = self._session_started(sid, record)
        if kind == "SessionEnded":
            self._session_ended(sid, state, record)
        elif kind == "InputReceived":
            state.last_input_at = _get(record, "at")
            event = _get(record, "event")
            state.span.add_event(
                "taskrunner.input", _event_attributes(event), timestamp=_now_ns(record)
            )
        elif kind == "LoopBlocked":
            duration = float(_get(record, "duration", 0.0))
            self._blocked.add(duration)
            attributes: dict[str, Any] = {"taskrunner.loop_blocked.duration": duration}
            task = _get(record, "task")
            if task is not None:
                attributes["taskrunner.task.name"] = str(task)
            state.span.add_event("taskrunner.loop_blocked", attributes, timestamp=_now_ns(record))
        elif kind == "TaskQueued":
            state.queued.add(self._task_key(record))
            self._pending.add(1)
        elif kind == "TaskStarted":
            self._task_started(state, record)
        elif kind == "TaskOutput":
            span = state.tasks.get(self._task_key(record))
            if span is not None:
                span.add_event(
                    "taskrunner.task.output",
                    _event_attributes(_get(record, "event")),
                    timestamp=_now_ns(record),
                )
        elif kind == "TaskStuck":
            span = state.tasks.get(self._task_key(record))
            if span is not None:
                span.add_event(
                    "taskrunner.task.stuck",
                    {"taskrunner.task.cancel.reason": str(_get(record, "reason"))},
                    timestamp=_now_ns(record),
                )
        elif kind in _TERMINAL:
            self._task_ended(state, record, _TERMINAL[kind])

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _task_key(record: Any) -> Any:
        task_id = _get(record, "task_id")
        return task_id if task_id is not None else _get(record, "task")

    def _session_started(self, sid: str, record: Any) -> _SessionState:
        span = self._tracer.start_span(
            "taskrunner.session",
            kind=SpanKind.INTERNAL,
            attributes={
                "taskrunner.session.id": sid,
                "taskrunner.agent.id": str(_get(record, "agent_id") or ""),
                "taskrunner.environment": str(_get(record, "environment") or ""),
            },
            start_time=_now_ns(record),
        )
        state = _SessionState(span)
        self._sessions[sid] = state
        return state

    def _session_ended(self, sid: str, state: _SessionState, record: Any) -> None:
        end = _now_ns(record)
        for span in state.tasks.values():  # never left open, whatever was missed
            span.end(end)
        state.span.end(end)
        del self._sessions[sid]

    def _task_started(self, state: _SessionState, record: Any) -> None:
        key = self._task_key(record)
        if key in state.queued:
            state.queued.discard(key)
            self._pending.add(-1)
        timeout = _get(record, "timeout")
        attributes: dict[str, Any] = {
            "taskrunner.task.name": str(_get(record, "task")),
            "taskrunner.task.id": int(_get(record, "task_id") or 0),
            "taskrunner.task.flavor": str(_get(record, "flavor")),
            "taskrunner.task.interruptible": bool(_get(record, "interruptible")),
        }
        if isinstance(timeout, int | float):
            attributes["taskrunner.task.timeout"] = float(timeout)
        context = trace.set_span_in_context(state.span)
        state.tasks[key] = self._tracer.start_span(
            "taskrunner.task",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_now_ns(record),
        )
        self._started.add(1, {"taskrunner.task.flavor": attributes["taskrunner.task.flavor"]})
        self._running.add(1)

    def _task_ended(self, state: _SessionState, record: Any, terminal: str) -> None:
        span = state.tasks.pop(self._task_key(record), None)
        labels: dict[str, str] = {"taskrunner.task.state": terminal}
        if terminal == "cancelled":
            reason = str(_get(record, "reason"))
            labels["taskrunner.task.cancel.reason"] = reason
            at = _get(record, "at")
            if reason == "interrupted" and state.last_input_at is not None and at is not None:
                self._latency.record(max(0.0, float(at) - state.last_input_at))
        self._ended.add(1, labels)
        if span is None:
            return
        self._running.add(-1)
        span.set_attribute("taskrunner.task.state", terminal)
        if terminal == "cancelled":
            span.set_attribute(
                "taskrunner.task.cancel.reason", labels["taskrunner.task.cancel.reason"]
            )
            origin = _get(record, "origin")
            if origin is not None:
                span.set_attribute("taskrunner.task.cancel.origin", str(origin))
        elif terminal == "failed":
            error = _get(record, "error")
            span.set_attribute("error.type", _error_type(error))
            message = _error_message(error)
            if isinstance(error, BaseException):
                try:
                    span.record_exception(error)
                except Exception:  # an exception whose __str__ raises
                    span.add_event("exception", {"exception.type": _error_type(error)})
            span.set_status(Status(StatusCode.ERROR, message or None))
        elif terminal == "timed_out":
            span.set_attribute("error.type", "timeout")
            span.set_status(Status(StatusCode.ERROR, "timed out"))
        span.end(_now_ns(record))

    def _observe_unread(self, options: CallbackOptions) -> Iterable[Observation]:
        total = 0
        for supervisor in list(self._supervisors):
            stream = getattr(supervisor, "_stream", None)
            if stream is not None:
                total += len(stream)
        yield Observation(total)
