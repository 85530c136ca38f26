"""``python -m taskrunner loadtest URL``: start sessions over the API, converse, interrupt,
and report latencies, errors and lost records.

Each session: ``POST .../sessions/start``; a follower receives its records, either
(``--follow ws``, the default) on the session's WebSocket ``WS .../ws?after=-1``, over which
the text inputs, the interruptions (``{"control": "interrupt"}``) and the stop are also
sent, as a realtime client does, or (``--follow poll``) by long-polling
``GET .../events?wait=``, the inputs going by ``POST .../input`` and the interruptions by
``POST .../interrupt``. ``--turns`` times: send a text input and time until the handler's
first output for it arrives (input-to-first-output), wait ``--think`` seconds, and after
every ``--interrupt-every``-th turn interrupt and time until the ``TaskCancelled`` (reason
``"interrupted"``) arrives. Then a stop, and a check over HTTP: every record the follower
saw must still be there, identical, and the session's ``seq`` must run without a gap
(``lost records`` counts what is missing). Sessions start at ``--rate`` per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import httpx
import trio

__all__ = ["FOLLOW_MODES", "LoadReport", "LoadSpec", "main_loadtest", "run_load"]

Record = dict[str, Any]

#: How a session's records reach the load generator: its WebSocket, or long-polled HTTP.
FOLLOW_MODES = ("ws", "poll")


def _follow_mode(instance: Any, attribute: Any, value: str) -> None:
    if value not in FOLLOW_MODES:
        accepted = " or ".join(repr(m) for m in FOLLOW_MODES)
        raise ValueError(f"LoadSpec.follow takes {accepted}, got {value!r}")


@attrs.frozen
class LoadSpec:
    """What to run; see the module docstring."""

    url: str
    agent_id: str
    sessions: int = 100
    rate: float = 20.0
    turns: int = 5
    think: float = 1.0
    interrupt_every: int = 2
    text: str = "hello"
    api_key: str | None = None
    timeout: float = 30.0
    follow: str = attrs.field(default="ws", validator=_follow_mode)


@attrs.define
class LoadReport:
    """What a run measured. Latencies are in seconds."""

    sessions: int = 0
    completed: int = 0
    elapsed: float = 0.0
    peak_active: int = 0
    first_output: list[float] = attrs.field(factory=list)
    #: the first-output latency in two parts, from the output record's ``wall`` time (the
    #: worker's clock: meaningful when the load generator runs on the same machine): from
    #: sending the text until the handler's output was recorded, and from then until it
    #: reached the client.
    to_output: list[float] = attrs.field(factory=list)
    to_client: list[float] = attrs.field(factory=list)
    interruption: list[float] = attrs.field(factory=list)
    #: the interruption latency in the same two parts, at the ``TaskCancelled`` record
    interruption_to_record: list[float] = attrs.field(factory=list)
    interruption_to_client: list[float] = attrs.field(factory=list)
    errors: Counter[str] = attrs.field(factory=Counter)
    records: int = 0
    lost_records: int = 0

    def percentile(self, values: list[float], q: float) -> float:
        """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (latencies in milliseconds)."""

        def ms(values: list[float], q: float) -> float | None:
            value = self.percentile(values, q)
            return None if math.isnan(value) else round(value * 1000, 2)

        def latency(values: list[float]) -> dict[str, Any]:
            return {"n": len(values), "p50": ms(values, 0.5), "p99": ms(values, 0.99)}

        return {
            "sessions": self.sessions,
            "completed": self.completed,
            "elapsed_s": round(self.elapsed, 2),
            "sessions_per_s": round(self.completed / self.elapsed, 2) if self.elapsed else None,
            "peak_active_sessions": self.peak_active,
            "first_output_ms": latency(self.first_output),
            "to_output_ms": latency(self.to_output),
            "to_client_ms": latency(self.to_client),
            "interruption_ms": latency(self.interruption),
            "interruption_to_record_ms": latency(self.interruption_to_record),
            "interruption_to_client_ms": latency(self.interruption_to_client),
            "errors": dict(self.errors),
            "records": self.records,
            "lost_records": self.lost_records,
        }  # fmt: skip


class _SessionFailed(Exception):
    pass


class _Follower:
    """Receives one session's records and wakes whoever waits for one. This base class
    long-polls ``GET .../events`` and sends inputs with ``POST .../input``."""

    def __init__(self, client: httpx.AsyncClient, session_id: str, spec: LoadSpec) -> None:
        self.client = client
        self.session_id = session_id
        self.spec = spec
        self.records: list[Record] = []
        self.arrived: list[float] = []
        self.ended = False
        self._news = trio.Event()

    def _add(self, record: Record, now: float) -> None:
        self.records.append(record)
        self.arrived.append(now)
        if record["type"] == "SessionEnded":
            self.ended = True

    def _wake(self) -> None:
        self._news.set()
        self._news = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow until ``SessionEnded``; ready (``task_status``) once inputs can be sent."""
        task_status.started()
        after = -1
        while not self.ended:
            response = await self.client.get(
                f"v1/sessions/{self.session_id}/events",
                params={"after": after, "wait": 10, "limit": 1000},
            )
            if response.status_code != 200:
                raise _SessionFailed(f"events {response.status_code}")
            now = trio.current_time()
            for record in response.json()["records"]:
                self._add(record, now)
                after = record["seq"]
            self._wake()

    async def send(self, event: Record) -> None:
        """Send one input event to the session."""
        await _post(self.client, f"v1/sessions/{self.session_id}/input", event, 202)

    async def interrupt(self) -> None:
        """Interrupt the session (``POST .../interrupt``)."""
        await _post(self.client, f"v1/sessions/{self.session_id}/interrupt", None, 202)

    async def wait_for(
        self, check: Callable[[Record], bool], start: int, timeout: float, what: str
    ) -> float:
        """Arrival time of the first record from index ``start`` on that satisfies ``check``."""
        return (await self.wait_for_record(check, start, timeout, what))[0]

    async def wait_for_record(
        self, check: Callable[[Record], bool], start: int, timeout: float, what: str
    ) -> tuple[float, Record]:
        """The first record from index ``start`` on that satisfies ``check``, with its
        arrival time."""
        index = start
        with trio.move_on_after(timeout):
            while True:
                while index < len(self.records):
                    if check(self.records[index]):
                        return self.arrived[index], self.records[index]
                    index += 1
                if self.ended:
                    break
                await self._news.wait()
        raise _SessionFailed(f"timeout waiting for {what}")


class _SocketFollower(_Follower):
    """Receives the records on the session's WebSocket (one connection, no request per
    record) and sends the inputs over it too. An ``{"error": ...}`` frame (a refused
    input) or a socket closed before ``SessionEnded`` fails the session."""

    _socket: Any = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow until ``SessionEnded``; ready (``task_status``) once the socket is open."""
        import trio_websocket

        base = str(self.client.base_url)
        url = "ws" + base.removeprefix("http") + f"v1/sessions/{self.session_id}/ws?after=-1"
        headers = [(k.encode(), v.encode()) for k, v in self.client.headers.items()
                   if k.lower() == "authorization"]  # fmt: skip
        try:
            async with trio_websocket.open_websocket_url(
                url, extra_headers=headers, connect_timeout=self.spec.timeout
            ) as socket:
                self._socket = socket
                task_status.started()
                while not self.ended:
                    message = json.loads(await socket.get_message())
                    if "error" in message:
                        raise _SessionFailed(f"ws input {message.get('status', 'error')}")
                    self._add(message, trio.current_time())
                    self._wake()
                # The server closes the socket after SessionEnded: let it, rather than
                # closing from both ends at once.
                with trio.move_on_after(self.spec.timeout):
                    try:
                        while True:
                            await socket.get_message()
                    except trio_websocket.ConnectionClosed:
                        pass
        except trio_websocket.ConnectionRejected as exc:
            raise _SessionFailed(f"ws {exc.status_code}") from None
        except trio_websocket.ConnectionClosed as exc:
            raise _SessionFailed(_closed(exc)) from None
        except (trio_websocket.HandshakeError, OSError) as exc:
            raise _SessionFailed(f"ws {type(exc).__name__}") from None

    async def send(self, event: Record) -> None:
        """Send one input event as a text frame on the socket."""
        import trio_websocket

        try:
            await self._socket.send_message(json.dumps(event))
        except trio_websocket.ConnectionClosed as exc:
            raise _SessionFailed(_closed(exc)) from None


    async def interrupt(self) -> None:
        """Interrupt the session with a control frame on the socket."""
        await self.send({"control": "interrupt"})


def _closed(exc: Any) -> str:
    code = exc.reason.code if exc.reason is not None else "?"
    return f"ws closed ({code}) before SessionEnded"


async def _post(client: httpx.AsyncClient, path: str, body: Any, status: int) -> Any:
    response = await client.post(path, json=body)
    if response.status_code != status:
        raise _SessionFailed(f"{path.split('/')[-1]} {response.status_code}")
    return response.json()


async def _check(client: httpx.AsyncClient, follower: _Follower, report: LoadReport) -> None:
    """Compare what the follower saw with what the server now holds."""
    stored: list[Record] = []
    after = -1
    while True:
        response = await client.get(
            f"v1/sessions/{follower.session_id}/events", params={"after": after, "limit": 10000}
        )
        page = response.json()["records"]
        if not page:
            break
        stored += page
        after = page[-1]["seq"]
    by_seq = {r["seq"]: r for r in stored}
    seen_missing = sum(1 for r in follower.records if by_seq.get(r["seq"]) != r)
    top = max(by_seq, default=-1)
    gaps = sum(1 for seq in range(top + 1) if seq not in by_seq)
    report.records += len(stored)
    report.lost_records += max(seen_missing, gaps)


def _type(kind: str) -> Callable[[Record], bool]:
    return lambda record: bool(record["type"] == kind)


def _answer_to(text: str) -> Callable[[Record], bool]:
    def check(record: Record) -> bool:
        given = (record.get("input") or {}).get("data", {})
        return bool(record["type"] == "HandlerOutput" and given.get("text") == text)

    return check


async def _session(
    client: httpx.AsyncClient, spec: LoadSpec, report: LoadReport, active: list[int]
) -> None:
    active[0] += 1
    report.peak_active = max(report.peak_active, active[0])
    try:
        body = {"parameters": {"name": "load"}}
        started = await _post(client, f"v1/agents/{spec.agent_id}/sessions/start", body, 201)
        sid = started["session_id"]
        follower = (_SocketFollower if spec.follow == "ws" else _Follower)(client, sid, spec)
        async with trio.open_nursery() as nursery:
            await nursery.start(follower.run)
            for turn in range(spec.turns):
                text = f"{spec.text} {turn}"
                mark = len(follower.records)
                sent = trio.current_time()
                sent_wall = time.time()
                await follower.send({"type": "text", "text": text})
                arrived, answer = await follower.wait_for_record(
                    _answer_to(text), mark, spec.timeout, "output"
                )
                report.first_output.append(arrived - sent)
                made = answer.get("wall")
                if isinstance(made, (int, float)):
                    report.to_output.append(made - sent_wall)
                    report.to_client.append(arrived - sent - (made - sent_wall))
                await trio.sleep(spec.think)
                if spec.interrupt_every and (turn + 1) % spec.interrupt_every == 0:
                    mark = len(follower.records)
                    sent = trio.current_time()
                    sent_wall = time.time()
                    await follower.interrupt()
                    arrived, cancelled = await follower.wait_for_record(
                        lambda r: r["type"] == "TaskCancelled" and r.get("reason") == "interrupted",
                        mark,
                        spec.timeout,
                        "interruption",
                    )
                    report.interruption.append(arrived - sent)
                    made = cancelled.get("wall")
                    if isinstance(made, (int, float)):
                        report.interruption_to_record.append(made - sent_wall)
                        report.interruption_to_client.append(arrived - sent - (made - sent_wall))
            await follower.send({"type": "stop"})
            ended = _type("SessionEnded")
            await follower.wait_for(ended, 0, spec.timeout, "SessionEnded")
        await _check(client, follower, report)
        report.completed += 1
    except* _SessionFailed as group:
        report.errors[str(group.exceptions[0])] += 1
    except* httpx.HTTPError as group:
        report.errors[type(group.exceptions[0]).__name__] += 1
    finally:
        active[0] -= 1


async def run_load(
    spec: LoadSpec, *, progress: Callable[[LoadReport], None] | None = None
) -> LoadReport:
    """Run the load described by ``spec`` against a server; see the module docstring."""
    report = LoadReport(sessions=spec.sessions)
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    limits = httpx.Limits(max_connections=2 * spec.sessions + 10, max_keepalive_connections=None)
    base = spec.url if spec.url.endswith("/") else spec.url + "/"
    active = [0]
    start = trio.current_time()
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=spec.timeout + 15
    ) as client:
        async with trio.open_nursery() as nursery:
            if progress is not None:

                async def tick() -> None:
                    while True:
                        report.elapsed = trio.current_time() - start
                        progress(report)
                        await trio.sleep(0.5)

                nursery.start_soon(tick)
            async with trio.open_nursery() as sessions:
                for i in range(spec.sessions):
                    await trio.sleep_until(start + i / spec.rate)
                    sessions.start_soon(_session, client, spec, report, active)
            nursery.cancel_scope.cancel()
    report.elapsed = trio.current_time() - start
    if progress is not None:
        progress(report)
    return report


def _print(report: LoadReport) -> None:
    from rich.console import Console
    from rich.table import Table

    d = report.to_dict()
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    fo, it = d["first_output_ms"], d["interruption_ms"]
    to, tc = d["to_output_ms"], d["to_client_ms"]
    ir, ic = d["interruption_to_record_ms"], d["interruption_to_client_ms"]
    rows = [
        ("sessions", f"{d['completed']:,} completed of {d['sessions']:,}"),
        ("elapsed", f"{d['elapsed_s']:.2f} s"),
        ("sessions / s", f"{d['sessions_per_s']}"),
        ("peak active sessions", f"{d['peak_active_sessions']:,}"),
        ("input to first output p50 / p99", f"{fo['p50']} ms / {fo['p99']} ms (n={fo['n']})"),
        ("  until recorded (worker's clock)", f"{to['p50']} ms / {to['p99']} ms"),
        ("  then until received", f"{tc['p50']} ms / {tc['p99']} ms"),
        ("interruption p50 / p99", f"{it['p50']} ms / {it['p99']} ms (n={it['n']})"),
        ("  until recorded (worker's clock)", f"{ir['p50']} ms / {ir['p99']} ms"),
        ("  then until received", f"{ic['p50']} ms / {ic['p99']} ms"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in d["errors"].items()) or "0"),
        ("records checked", f"{d['records']:,}"),
        ("lost records", f"{d['lost_records']:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def main_loadtest(args: argparse.Namespace) -> int:
    """Run ``loadtest`` from parsed arguments; exits 1 on errors or lost records."""
    spec = LoadSpec(
        url=args.url,
        agent_id=args.agent_id,
        sessions=args.sessions,
        rate=args.rate,
        turns=args.turns,
        think=args.think,
        interrupt_every=args.interrupt_every,
        text=args.text,
        api_key=args.api_key or os.environ.get("TASKRUNNER_API_KEY") or None,
        timeout=args.timeout,
        follow=args.follow,
    )
    progress: Callable[[LoadReport], None] | None = None
    bar: Any = None
    if not args.no_progress and not args.json:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("sessions", total=spec.sessions)

        def progress(report: LoadReport) -> None:
            bar.update(task, completed=report.completed + sum(report.errors.values()))

        bar.start()
    try:
        report = trio.run(partial(run_load, spec, progress=progress))
    finally:
        if bar is not None:
            bar.stop()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print(report)
    return 1 if report.errors or report.lost_records else 0

