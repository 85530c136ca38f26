"""OpenTelemetry spans and metrics from real sessions, through the SDK's in-memory exporters."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import taskrunner
from taskrunner.events import LogEvent, TextEvent

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from taskrunner.tools.otel import Telemetry


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@pytest.fixture(params=["trio", "asyncio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_telemetry() -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return telemetry, exporter, reader


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def make_handler(flavor: str) -> Any:
    if flavor == "trio":

        async def wait_long() -> None:
            await trio.sleep(100)

        async def chatty() -> Any:
            yield LogEvent("one")
            yield LogEvent("two")

        async def broken() -> None:
            raise BadStr()

        async def slow() -> None:
            await trio.sleep(100)

    else:
        import asyncio

        async def wait_long() -> None:
            await asyncio.sleep(100)

        async def chatty() -> Any:
            yield LogEvent("one")
            yield LogEvent("two")

        async def broken() -> None:
            raise BadStr()

        async def slow() -> None:
            await asyncio.sleep(100)

    async def handler(event: Any, context: Any) -> Any:
        if isinstance(event, TextEvent) and event.data["text"] == "go":
            context.create_task(wait_long(), name="listener", interruptible=True, timeout=None)
            context.create_task(chatty(), name="chatty")
            context.create_task(broken(), name="broken")
            context.create_task(slow(), name="slow", timeout=5)
        if False:
            yield

    return handler


async def test_spans_and_metrics_of_a_session(flavor: str, autojump_clock: Any) -> None:
    telemetry, exporter, reader = make_telemetry()
    async with taskrunner.open_session(
        make_handler(flavor), session_id="s-otel", flavor=flavor, on_record=telemetry.sink("s-otel")
    ) as session:  # fmt: skip
        telemetry.track(session.supervisor)
        await session.send(TextEvent.from_text("go"))
        await session.wait_until_handled()
        await trio.sleep(1)
        mid = metric_points(reader)
        assert mid["taskrunner.tasks.running"][0].value == 2  # listener and slow
        assert mid["taskrunner.records.unread"][0].value > 0  # nobody reads the stream
        await session.send(TextEvent.from_text("stop it"))  # interrupts the listener
        await trio.sleep(10)  # slow times out
    spans = {span.name + ":" + str(span.attributes.get("taskrunner.task.name", "")): span
             for span in exporter.get_finished_spans()}  # fmt: skip
    session_span = spans["taskrunner.session:"]
    assert session_span.attributes["taskrunner.session.id"] == "s-otel"
    tasks = {k.split(":", 1)[1]: v for k, v in spans.items() if k.startswith("taskrunner.task:")}
    assert set(tasks) == {"listener", "chatty", "broken", "slow"}
    for span in tasks.values():
        assert span.parent is not None and span.parent.span_id == session_span.context.span_id
        assert span.attributes["taskrunner.task.flavor"] == flavor
    listener = tasks["listener"]
    assert listener.attributes["taskrunner.task.state"] == "cancelled"
    assert listener.attributes["taskrunner.task.cancel.reason"] == "interrupted"
    assert listener.attributes["taskrunner.task.interruptible"] is True
    assert "taskrunner.task.timeout" not in listener.attributes  # timeout=None
    chatty = tasks["chatty"]
    assert [e.attributes["taskrunner.event.text"] for e in chatty.events] == ["one", "two"]
    assert chatty.attributes["taskrunner.task.state"] == "finished"
    broken = tasks["broken"]
    assert broken.attributes["error.type"] == "BadStr"  # its __str__ raises
    assert broken.status.status_code is StatusCode.ERROR
    slow = tasks["slow"]
    assert slow.attributes["taskrunner.task.state"] == "timed_out"
    assert slow.attributes["taskrunner.task.timeout"] == 5.0
    assert slow.status.status_code is StatusCode.ERROR
    points = metric_points(reader)
    assert sum(p.value for p in points["taskrunner.tasks.started"]) == 4
    ended = {
        (p.attributes["taskrunner.task.state"], p.attributes.get("taskrunner.task.cancel.reason")):
        p.value for p in points["taskrunner.tasks.ended"]
    }  # fmt: skip
    assert ended == {
        ("cancelled", "interrupted"): 1,
        ("finished", None): 1,
        ("failed", None): 1,
        ("timed_out", None): 1,
    }
    assert points["taskrunner.tasks.running"][0].value == 0


async def test_records_as_dicts_and_loop_blocked() -> None:
    telemetry, exporter, reader = make_telemetry()
    sink = telemetry.sink("s2")
    sink({"type": "SessionStarted", "seq": 1, "at": 0.0, "session_id": "s2", "agent_id": "a"})
    sink({"type": "InputReceived", "seq": 2, "at": 1.0, "event": {"type": "TextEvent"}})
    sink({"type": "TaskQueued", "seq": 2, "at": 1.0, "task": "t", "task_id": 1})
    assert metric_points(reader)["taskrunner.tasks.pending"][0].value == 1
    sink({"type": "TaskStarted", "seq": 3, "at": 1.0, "task": "t", "task_id": 1,
          "interruptible": True, "timeout": None, "flavor": "trio"})  # fmt: skip
    sink({"type": "LoopBlocked", "seq": 4, "at": 1.5, "duration": 0.25, "task": "t"})
    sink({"type": "TaskCancelled", "seq": 5, "at": 1.75, "task": "t", "task_id": 1,
          "reason": "interrupted", "origin": "input:TextEvent"})  # fmt: skip
    sink({"type": "SessionEnded", "seq": 6, "at": 2.0, "session_id": "s2"})
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["taskrunner.task"].attributes["taskrunner.task.cancel.origin"] == "input:TextEvent"
    assert [e.name for e in spans["taskrunner.session"].events] == [
        "taskrunner.input",
        "taskrunner.loop_blocked",
    ]
    points = metric_points(reader)
    assert points["taskrunner.tasks.pending"][0].value == 0
    assert points["taskrunner.loop.blocked_time"][0].value == 0.25
    latency = points["taskrunner.interruption.latency"][0]
    assert latency.count == 1 and latency.sum == pytest.approx(0.75)


def test_failure_whose_str_raises_still_ends_its_span() -> None:
    from taskrunner.events import SessionEnded, SessionStarted, TaskFailed, TaskStarted

    telemetry, exporter, _ = make_telemetry()
    sink = telemetry.sink("s3")
    sink(SessionStarted(1, 0.0, "agent", "env", session_id="s3"))
    sink(TaskStarted(2, 0.0, "bad", 1, False, 30.0, "trio"))
    sink(TaskFailed(3, 0.5, "bad", 1, BadStr()))
    sink(SessionEnded(4, 1.0, session_id="s3"))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    task = spans["taskrunner.task"]
    assert task.attributes["error.type"] == "BadStr"
    assert task.status.status_code is StatusCode.ERROR
    assert task.status.description == "<BadStr: str() failed>"
