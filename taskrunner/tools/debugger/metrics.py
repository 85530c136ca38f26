"""``/metrics`` in Prometheus' text format (prometheus-client), from the debugger's hub.

Values are computed when scraped, from what the hub already keeps; nothing is added to
the agent's path.  Families (all prefixed ``taskrunner_``): ``sessions`` (live sessions),
``tasks_started_total``, ``tasks_ended_total{state}``, ``tasks_running``, ``tasks_pending``,
``records_total``, ``loop_blocked`` (1 while the agent's thread is blocked),
``loop_blocks_total``, ``loop_blocked_seconds_total``, ``feed_pending`` (records waiting
for the server thread), ``feed_dropped_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

__all__ = ["CONTENT_TYPE_LATEST", "metrics_text"]

_ENDED = {
    "TaskFinished": "finished",
    "TaskFailed": "failed",
    "TaskCancelled": "cancelled",
    "TaskTimedOut": "timed_out",
}


class _HubCollector:
    def __init__(
        self,
        source: Any,
        status: Callable[[], dict[str, Any] | None] | None,
        feed: Any,
    ) -> None:
        self._source = source
        self._status = status
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        sessions = self._source.sessions()
        kinds: dict[str, int] = {}
        for info in sessions:
            for kind, count in (info.get("kinds") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + count
        yield GaugeMetricFamily(
            "taskrunner_sessions",
            "Sessions open now",
            value=sum(1 for info in sessions if info.get("live") and not info.get("ended")),
        )
        yield CounterMetricFamily(
            "taskrunner_tasks_started", "Tasks started", value=kinds.get("TaskStarted", 0)
        )
        ended = CounterMetricFamily("taskrunner_tasks_ended", "Tasks ended", labels=["state"])
        for kind, state in _ENDED.items():
            ended.add_metric([state], kinds.get(kind, 0))
        yield ended
        yield GaugeMetricFamily(
            "taskrunner_tasks_running",
            "Tasks running now",
            value=sum(info.get("running", 0) for info in sessions),
        )
        yield GaugeMetricFamily(
            "taskrunner_tasks_pending",
            "Tasks waiting for a slot (admission limit)",
            value=sum(info.get("pending", 0) for info in sessions),
        )
        yield CounterMetricFamily(
            "taskrunner_records",
            "Records published",
            value=sum(info.get("published", 0) for info in sessions),
        )
        status = self._status() if self._status is not None else None
        if status is not None:
            yield GaugeMetricFamily(
                "taskrunner_loop_blocked",
                "1 while the agent's trio thread is blocked",
                value=1 if status.get("blocked") else 0,
            )
            yield CounterMetricFamily(
                "taskrunner_loop_blocks", "Blocks of the agent's thread", value=status["blocks"]
            )
            yield CounterMetricFamily(
                "taskrunner_loop_blocked_seconds",
                "Time the agent's thread was blocked",
                value=status["blocked_seconds"],
            )
        if self._feed is not None:
            yield GaugeMetricFamily(
                "taskrunner_feed_pending",
                "Records waiting for the debugger's thread",
                value=self._feed.pending(),
            )
            yield CounterMetricFamily(
                "taskrunner_feed_dropped",
                "Records the debugger's thread fell too far behind to take",
                value=self._feed.dropped,
            )


def metrics_text(
    source: Any,
    *,
    status: Callable[[], dict[str, Any] | None] | None = None,
    feed: Any = None,
) -> Callable[[], bytes]:
    """A function returning the current metrics of ``source`` (a hub) as Prometheus text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HubCollector(source, status, feed))

    def render() -> bytes:
        return generate_latest(registry)

    return render
