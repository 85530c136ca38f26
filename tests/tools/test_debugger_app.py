"""Tests of the debugger's Starlette app (every route) and of serve() on Hypercorn.

Plain routes go through ``httpx.ASGITransport``.  That transport collects the
whole body before answering, so the server-sent-event stream is tested by
driving the ASGI app directly (deterministic, works with the autojump clock)
and once end-to-end through a real Hypercorn server on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from taskrunner.tools.debugger import TOKEN_HEADER, create_app, serve
from taskrunner.tools.debugger.app import STATIC_DIR, json_dumps
from taskrunner.tools.debugger.server import is_loopback
from taskrunner.tools.hub import Hub
from tools import FakeControl, RecordFactory

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_hub(control: FakeControl | None = None) -> tuple[Hub, RecordFactory]:
    hub = Hub()
    f = RecordFactory("s1", start=50.0)
    hub.register("s1", control)
    hub.publish("s1", f.session_started(at=50.0))
    hub.publish("s1", f.handler_output("Hello!", at=50.5))
    hub.publish("s1", f.task_started("weather", timeout=10.0, at=51.0))
    hub.publish("s1", f.task_output("weather", "Processing...", at=51.5))
    return hub, f


def client_for(app: Any, *, auth: bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers=AUTH if auth else None,
    )


# ---- page and JSON routes ------------------------------------------------------


async def test_page_embeds_token_and_mode() -> None:
    hub, _ = make_hub()
    async with client_for(create_app(hub, token='t"<&>')) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<meta name="taskrunner-token" content="t&quot;&lt;&amp;&gt;">' in response.text
    assert '<meta name="taskrunner-read-only" content="0">' in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"

    async with client_for(create_app(hub, token=TOKEN, read_only=True)) as client:
        response = await client.get("/")
    assert '<meta name="taskrunner-read-only" content="1">' in response.text


async def test_static_files_are_served() -> None:
    hub, _ = make_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        script = await client.get("/static/app.js")
        style = await client.get("/static/style.css")
        missing = await client.get("/static/nope.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache" and script.headers["etag"]
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]
    assert missing.status_code == 404


def test_page_script_never_parses_data_as_html() -> None:
    # The XSS guarantee rests on the script only using textContent & co.
    script = (STATIC_DIR / "app.js").read_text()
    code = re.sub(r"//[^\n]*", "", script)  # comments may mention innerHTML
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink
    html = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in html and " on" not in re.sub(r"<!--.*?-->", "", html, flags=re.S)
    assert "http://" not in html and "https://" not in html  # nothing from the internet


async def test_sessions_route() -> None:
    hub, _ = make_hub(FakeControl())
    async with client_for(create_app(hub, token=TOKEN)) as client:
        data = (await client.get("/api/sessions")).json()
    assert data["read_only"] is False
    assert isinstance(data["now"], float)
    (session,) = data["sessions"]
    assert session["session_id"] == "s1"
    assert session["live"] is True
    assert session["published"] == 4
    assert session["running"] == 1

    async with client_for(create_app(hub, token=TOKEN, read_only=True)) as client:
        data = (await client.get("/api/sessions")).json()
    assert data["read_only"] is True and data["now"] is None


async def test_records_route() -> None:
    hub, _ = make_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        full = (await client.get("/api/sessions/s1/records")).json()
        tail = (await client.get("/api/sessions/s1/records", params={"after": 2})).json()
        unknown = await client.get("/api/sessions/nope/records")
        bad = await client.get("/api/sessions/s1/records", params={"after": "x"})
    assert [r["seq"] for r in full["records"]] == [1, 2, 3, 4]
    assert full["session"]["session_id"] == "s1"
    (task,) = full["tasks"]
    assert task["name"] == "weather" and task["state"] == "running" and task["events"] == 1
    assert [r["seq"] for r in tail["records"]] == [3, 4]
    assert unknown.status_code == 404
    assert bad.status_code == 400


async def test_records_with_non_finite_numbers_stay_parseable() -> None:
    hub = Hub()
    f = RecordFactory("s1")
    hub.publish("s1", f.task_finished("t", result={"x": float("nan"), "y": [float("inf")]}))
    async with client_for(create_app(hub, token=TOKEN)) as client:
        response = await client.get("/api/sessions/s1/records")
    assert response.json()["records"][0]["result"] == {"x": "nan", "y": ["inf"]}
    assert json_dumps({"a": 1}) == '{"a":1}'


# ---- actions -----------------------------------------------------------------


async def test_cancel_needs_the_token() -> None:
    control = FakeControl(running={"weather"})
    hub, _ = make_hub(control)
    async with client_for(create_app(hub, token=TOKEN), auth=False) as client:
        url = "/api/sessions/s1/tasks/weather/cancel"
        missing = await client.post(url)
        wrong = await client.post(url, headers={TOKEN_HEADER: "Bearer nope"})
        bare = await client.post(url, headers={TOKEN_HEADER: TOKEN})  # no "Bearer"
        get = await client.get(url, headers=AUTH)
        assert control.cancel_calls == []
        ok = await client.post(url, headers=AUTH)
        again = await client.post(url, headers=AUTH)
    assert missing.status_code == wrong.status_code == bare.status_code == 401
    assert get.status_code == 405
    assert ok.status_code == 200 and ok.json() == {"cancelled": True}
    assert again.json() == {"cancelled": False}
    assert control.cancel_calls == ["weather", "weather"]


async def test_cancel_task_names_with_slashes_and_spaces() -> None:
    control = FakeControl(running={"fetch/weather now"})
    hub, _ = make_hub(control)
    async with client_for(create_app(hub, token=TOKEN)) as client:
        response = await client.post(
            "/api/sessions/s1/tasks/fetch%2Fweather%20now/cancel", headers=AUTH
        )
    assert response.json() == {"cancelled": True}
    assert control.cancel_calls == ["fetch/weather now"]


async def test_interrupt() -> None:
    control = FakeControl(running={"a", "b"})
    hub, _ = make_hub(control)
    async with client_for(create_app(hub, token=TOKEN)) as client:
        denied = await client.post("/api/sessions/s1/interrupt", headers={TOKEN_HEADER: ""})
        ok = await client.post("/api/sessions/s1/interrupt")
        unknown = await client.post("/api/sessions/zz/interrupt")
    assert denied.status_code == 401
    assert ok.json() == {"cancelled": 2}
    assert control.interrupts == 1
    assert unknown.status_code == 404


async def test_actions_refused_when_read_only_or_ended() -> None:
    control = FakeControl(running={"weather"})
    hub, _ = make_hub(control)
    headers = AUTH
    async with client_for(create_app(hub, token=TOKEN, read_only=True)) as client:
        cancel = await client.post("/api/sessions/s1/tasks/weather/cancel", headers=headers)
        interrupt = await client.post("/api/sessions/s1/interrupt", headers=headers)
    assert cancel.status_code == 403 and interrupt.status_code == 403
    assert "read-only" in cancel.json()["error"]
    hub.unregister_control("s1")
    async with client_for(create_app(hub, token=TOKEN)) as client:
        cancel = await client.post("/api/sessions/s1/tasks/weather/cancel", headers=headers)
        interrupt = await client.post("/api/sessions/s1/interrupt", headers=headers)
    assert cancel.status_code == 409 and interrupt.status_code == 409
    assert control.cancel_calls == [] and control.interrupts == 0


async def test_failing_control_gives_500() -> None:
    class Broken(FakeControl):
        def cancel_task(self, name: str) -> bool:
            raise RuntimeError("boom")

        def interrupt(self) -> int:
            raise RuntimeError("boom")

    hub, _ = make_hub(Broken())
    headers = AUTH
    async with client_for(create_app(hub, token=TOKEN)) as client:
        cancel = await client.post("/api/sessions/s1/tasks/weather/cancel", headers=headers)
        interrupt = await client.post("/api/sessions/s1/interrupt", headers=headers)
    assert cancel.status_code == 500 and interrupt.status_code == 500


async def test_allowed_hosts_blocks_dns_rebinding() -> None:
    hub, _ = make_hub()
    app = create_app(hub, token=TOKEN, allowed_hosts=["127.0.0.1", "localhost"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765", headers=AUTH
    ) as client:
        assert (await client.get("/api/sessions")).status_code == 200
        evil = await client.get("/api/sessions", headers={"Host": "evil.example:8765"})
    assert evil.status_code == 400


def test_create_app_needs_a_token() -> None:
    with pytest.raises(ValueError):
        create_app(Hub(), token="")


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("[::1]") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")


# ---- event stream, driven at the ASGI level ----------------------------------------


class SSEClient:
    """One GET to the ASGI app; parses the server-sent events as they are sent."""

    def __init__(self, receive_channel: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        self._messages = receive_channel
        self._text = ""
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.finished = False
        self.disconnect = trio.Event()

    async def next_block(self) -> str:
        """The next blank-line-terminated block (event, comment or retry)."""
        while "\n\n" not in self._text:
            message = await self._messages.receive()
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = dict(message["headers"])
            else:
                self._text += message.get("body", b"").decode()
                if not message.get("more_body", False):
                    self.finished = True
                    if "\n\n" not in self._text:
                        raise EOFError
        block, self._text = self._text.split("\n\n", 1)
        return block

    async def next_event(self) -> tuple[str, dict[str, Any]]:
        """The next ``(event name, parsed data)``, skipping comments and retry."""
        while True:
            fields: dict[str, str] = {}
            for line in (await self.next_block()).split("\n"):
                name, _, value = line.partition(":")
                if name:
                    fields[name] = value.removeprefix(" ")
            if "data" in fields:
                return fields.get("event", "message"), json.loads(fields["data"])


@asynccontextmanager
async def sse(
    app: Any, path: str, query: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = ()
) -> AsyncIterator[SSEClient]:
    # Unbuffered: the app's send blocks until the test reads, like a slow browser.
    send_channel, receive_channel = trio.open_memory_channel[dict[str, Any]](0)
    client = SSEClient(receive_channel)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            *headers,
        ],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 40000),
    }
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await client.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await send_channel.send(message)

    async def run() -> None:
        async with send_channel:
            await app(scope, receive, send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield client
        client.disconnect.set()
        # Let the app see the disconnect and finish.
        async for _ in receive_channel:
            pass


async def test_stream_replays_after_seq_then_sends_live_records() -> None:
    hub, f = make_hub()
    app = create_app(hub, token=TOKEN)
    async with sse(app, "/api/sessions/s1/stream", b"after=2") as client:
        assert await client.next_block() == "retry: 2000"
        assert client.status == 200
        assert client.headers[b"content-type"].startswith(b"text/event-stream")
        assert b"content-length" not in client.headers
        assert [(await client.next_event())[1]["seq"] for _ in range(2)] == [3, 4]
        await trio.testing.wait_all_tasks_blocked()
        hub.publish("s1", f.task_output("weather", "<script>x</script>"))
        hub.publish("s2", RecordFactory("s2").session_started())  # other session: not sent
        hub.publish("s1", f.task_finished("weather", 21))
        event, record = await client.next_event()
        assert event == "record" and record["seq"] == 5
        assert record["event"]["message"] == "<script>x</script>"
        assert (await client.next_event())[1]["type"] == "TaskFinished"
        assert hub.subscriber_count() == 1
    assert hub.subscriber_count() == 0  # released when the client went away


async def test_stream_without_after_sends_whole_history_and_ids() -> None:
    hub, _ = make_hub()
    async with sse(create_app(hub, token=TOKEN), "/api/sessions/s1/stream") as client:
        await client.next_block()
        block = await client.next_block()
        assert block.startswith("event: record\nid: 1\ndata: ")


async def test_stream_resumes_from_last_event_id() -> None:
    hub, _ = make_hub()
    app = create_app(hub, token=TOKEN)
    headers = [(b"last-event-id", b"3")]
    async with sse(app, "/api/sessions/s1/stream", b"after=0", headers) as client:
        assert (await client.next_event())[1]["seq"] == 4


async def test_stream_reports_missed_records_to_a_slow_client() -> None:
    hub = Hub(buffer_size=2)
    f = RecordFactory("s1")
    hub.publish("s1", f.session_started())
    async with sse(create_app(hub, token=TOKEN), "/api/sessions/s1/stream", b"after=1") as client:
        await client.next_block()
        await trio.testing.wait_all_tasks_blocked()
        # Published in one go while the client reads nothing: 2 fit the buffer.
        for i in range(10):
            hub.publish("s1", f.handler_output(str(i)))
        assert [(await client.next_event())[1]["seq"] for _ in range(2)] == [2, 3]
        event, missed = await client.next_event()
        assert event == "missed"
        assert missed == {
            "type": "Missed",
            "session": "s1",
            "count": 8,
            "first_seq": 4,
            "last_seq": 11,
        }


async def test_stream_heartbeat(autojump_clock: trio.abc.Clock) -> None:
    hub, _ = make_hub()
    app = create_app(hub, token=TOKEN, heartbeat=15)
    async with sse(app, "/api/sessions/s1/stream", b"after=4") as client:
        await client.next_block()
        start = trio.current_time()
        assert await client.next_block() == ": keepalive"
        assert trio.current_time() - start == pytest.approx(15)


async def test_stream_ends_when_hub_closes() -> None:
    hub, _ = make_hub()
    async with sse(create_app(hub, token=TOKEN), "/api/sessions/s1/stream", b"after=4") as client:
        await client.next_block()
        await trio.testing.wait_all_tasks_blocked()
        hub.close()
        with pytest.raises(EOFError):
            await client.next_block()
        assert client.finished


async def test_stream_errors() -> None:
    hub, _ = make_hub()
    async with client_for(create_app(hub, token=TOKEN)) as client:
        assert (await client.get("/api/sessions/nope/stream")).status_code == 404
        bad = await client.get("/api/sessions/s1/stream", params={"after": "soon"})
        assert bad.status_code == 400


# ---- the real server ---------------------------------------------------------------


async def test_serve_on_hypercorn_end_to_end() -> None:
    control = FakeControl(running={"weather"})
    hub, f = make_hub(control)
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(partial(serve, hub, port=0, token=TOKEN))
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        async with httpx.AsyncClient(base_url=url, timeout=5, headers=AUTH) as client:
            page = await client.get("/")
            assert page.status_code == 200 and TOKEN in page.text
            # Bound to loopback: other Host names are refused (DNS rebinding).
            evil = await client.get("/", headers={"Host": "attacker.example"})
            assert evil.status_code == 400
            async with client.stream("GET", "/api/sessions/s1/stream?after=4") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert await anext(lines) == "retry: 2000"
                hub.publish("s1", f.task_output("weather", "live!"))
                data = [line async for line in _until_data(lines)]
                assert json.loads(data[-1].removeprefix("data: "))["event"]["message"] == "live!"
                cancel = await client.post("/api/sessions/s1/tasks/weather/cancel", headers=AUTH)
                assert cancel.json() == {"cancelled": True}
            # Stopping with a stream still open must be prompt.
            async with client.stream("GET", "/api/sessions/s1/stream") as stream:
                assert await anext(stream.aiter_lines()) == "retry: 2000"
                stop_requested = trio.current_time()
                nursery.cancel_scope.cancel()
    assert trio.current_time() - stop_requested < 2
    assert control.cancel_calls == ["weather"]


async def _until_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    with trio.fail_after(5):
        async for line in lines:
            yield line
            if line.startswith("data: "):
                return


async def test_serve_reports_port_in_use() -> None:
    hub = Hub()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(partial(serve, hub, port=0))
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        with pytest.raises(OSError):
            await nursery.start(partial(serve, hub, port=port))
        nursery.cancel_scope.cancel()


async def test_serve_on_another_loopback_address() -> None:
    hub, _ = make_hub()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(partial(serve, hub, host="127.0.0.2", port=0, token=TOKEN))
        assert url.startswith("http://127.0.0.2:")
        async with httpx.AsyncClient(base_url=url, timeout=5, headers=AUTH) as client:
            assert (await client.get("/api/sessions")).status_code == 200
        nursery.cancel_scope.cancel()
