"""The debugger page on real sessions, in headless Chromium, served from its own thread.

The records come from real ``open_session(..., hub=feed)`` sessions through the thread
hand-off, as with ``--ui``: the demo agent plus a task to cancel from the page (a real
cancel with origin "debugger"), the current stack of a waiting task in both flavours, the
watchdog's banner while a task blocks the agent's thread (the page keeps answering), and
the exposure rules of a server bound off loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio

import taskrunner
from taskrunner.events import LogEvent, Record, StartEvent, TaskCancelled, TextEvent
from taskrunner.tools import demo_agent
from taskrunner.tools.debugger import DebuggerThread
from taskrunner.tools.feed import AgentFeed
from taskrunner.tools.watchdog import LoopBlocked, open_watchdog
from tools.test_debugger_browser import (
    XSS,
    browser_page,
    in_browser_thread,
    is_orange,
    require_browser,
    row,
    save_screenshot,
    wait_until,
)

SESSION = "demo-session"


async def long_lookup() -> None:
    await asyncio.sleep(600)  # asyncio code, as the session's default flavour is


async def trio_lookup() -> None:
    await trio.sleep(600)


async def echo_user(text: str) -> AsyncIterator[LogEvent]:
    yield LogEvent(text)


def drive(url: str, blocked: list[bool]) -> None:
    with browser_page() as (page, errors):
        page.goto(url)
        page.wait_for_selector('#events .ev[data-type="TaskOutput"]:has-text("pwned")')
        page.wait_for_selector(f"{row('long_lookup')} button.cancel")

        # The demo's task records are orange and carry the task's name.
        record = '#events .ev.src-task[data-type="TaskStarted"]:has-text("order_processing")'
        page.wait_for_selector(record)
        style = page.eval_on_selector(
            record,
            "el => ({bg: getComputedStyle(el).backgroundColor, who: el.children[1].textContent})",
        )
        assert is_orange(style["bg"]) and style["who"] == "order_processing", style
        # What the user said is a record of its own.
        page.wait_for_selector('#events .ev[data-type="InputReceived"]:has-text("place order")')
        assert page.locator("#timeline-axis .marker").count() >= 2

        # The injected markup is text, and it did not run.
        assert page.evaluate("window.__pwned") is None
        assert XSS in page.inner_text("#events")

        # Where each task waits now, both flavours, and where it was created.
        for name, code in [
            ("long_lookup", "asyncio.sleep(600)"),
            ("trio_lookup", "trio.sleep(600)"),
        ]:
            page.click(row(name))
            page.wait_for_function(
                f"() => document.querySelector('#tv-stack').textContent.includes({code!r})"
            )
            assert "create_task(" in page.inner_text("#tv-created")
            page.click("#tv-close")

        # The watchdog: a task blocks the agent's thread; the page, in its own thread,
        # still answers and says so, naming the task.
        blocked.append(True)
        page.wait_for_selector(
            "#agent-status.blocked:has-text(\"task 'sync_sleeper'\")", timeout=5000
        )
        assert "time.sleep(2)" in page.inner_text("#agent-status")
        page.wait_for_selector("#agent-status:not(.blocked)", timeout=10_000)
        page.wait_for_selector('#events .ev[data-type="LoopBlocked"]:has-text("sync_sleeper")')

        # Cancel the running task from the page: the real supervisor cancels it.
        page.click(f"{row('long_lookup')} button.cancel")
        page.wait_for_selector(f'{row("long_lookup")}[data-state="cancelled"]')
        page.wait_for_selector('#events .ev[data-type="TaskCancelled"]:has-text("by debugger")')
        save_screenshot(page, "debugger-session.png")
        assert errors == []


async def test_page_during_a_demo_session() -> None:
    require_browser()
    records: list[Record] = []
    blocked: list[bool] = []
    async with open_watchdog(0.1) as watchdog:
        feed = AgentFeed(watchdog=watchdog)
        with DebuggerThread(feed=feed, port=0, status=watchdog.status) as server:
            async with trio.open_nursery() as nursery:
                async with taskrunner.open_session(
                    demo_agent.handler, session_id=SESSION, hub=feed
                ) as session:

                    async def read() -> None:
                        async for record in session.events():
                            records.append(record)

                    async def block_when_asked() -> None:
                        while not blocked:  # noqa: ASYNC110 -- set from the browser's thread
                            await trio.sleep(0.05)
                        time.sleep(2)  # noqa: ASYNC251 -- the mistake the watchdog reports

                    nursery.start_soon(read)
                    await session.send(StartEvent())
                    await session.send(TextEvent.from_text("place order"))
                    await session.wait_until_handled()
                    session.context.create_task(long_lookup, name="long_lookup", timeout=None)
                    session.supervisor.create_task(
                        trio_lookup, name="trio_lookup", timeout=None, flavor="trio"
                    )
                    session.context.create_task(echo_user(XSS), name="echo_user")
                    session.supervisor.create_task(
                        block_when_asked, name="sync_sleeper", timeout=None, flavor="trio"
                    )
                    await in_browser_thread(partial(drive, server.url or "", blocked))
                nursery.cancel_scope.cancel()
    ends: dict[str, Any] = {r.task: r for r in records if isinstance(r, TaskCancelled)}
    assert ends["long_lookup"].reason == "cancel_task" and ends["long_lookup"].origin == "debugger"
    assert [r.task for r in records if isinstance(r, LoopBlocked)] == ["sync_sleeper"]


# ---- exposure -------------------------------------------------------------------------


def drive_exposed(url: str, token: str) -> None:
    with browser_page() as (page, errors):
        # Without the token: the page asks for it, and no data comes.
        page.goto(url)
        page.wait_for_selector("#token-form:not([hidden])")
        assert page.get_attribute('meta[name="taskrunner-token"]', "content") == ""
        assert page.locator("#sessions li").count() == 0
        # With it in the fragment (never sent to the server): everything works.
        page.goto(f"{url}#token={token}")
        page.reload()
        page.wait_for_selector('#events .ev:has-text("exposed hello")')
        assert "token" not in page.url  # taken out of the address bar
        assert [e for e in errors if "401" not in e] == []


async def test_off_loopback_every_request_needs_the_token() -> None:
    require_browser()
    token = "a-long-secret-token"

    async def handler(event: Any, context: Any) -> Any:
        yield LogEvent("exposed hello")

    feed = AgentFeed()
    with pytest.raises(ValueError, match="needs a token"):
        DebuggerThread(feed=AgentFeed(), host="0.0.0.0", port=0).start()
    with DebuggerThread(feed=feed, host="0.0.0.0", port=0, token=token) as server:
        port = (server.url or "").rsplit(":", 1)[1].rstrip("/")
        url = f"http://127.0.0.1:{port}/"
        async with taskrunner.open_session(
            handler, session_id="exposed", flavor="trio", hub=feed
        ) as s:
            await s.send(StartEvent())
            await s.wait_until_handled()
            async with httpx.AsyncClient(base_url=url) as client:
                page = await client.get("/")
                assert page.status_code == 200 and token not in page.text
                for path in [
                    "/api/sessions",
                    "/api/status",
                    "/api/sessions/exposed/records",
                    "/api/sessions/exposed/stream",
                    "/api/sessions/exposed/download",
                ]:
                    answer = await client.get(path)
                    assert answer.status_code == 401, path
                    wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
                    assert wrong.status_code == 401, path
                ok = await client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
                assert ok.status_code == 200
                # Off loopback the Host is not checked (a proxy or Docker's name is fine).
                other = await client.get(
                    "/api/sessions",
                    headers={"Authorization": f"Bearer {token}", "Host": "agent.internal"},
                )
                assert other.status_code == 200
            await in_browser_thread(partial(drive_exposed, url, token))


async def test_stream_clients_are_limited() -> None:
    feed = AgentFeed()
    token = "limit-token"
    auth = {"Authorization": f"Bearer {token}"}

    async def handler(event: Any, context: Any) -> Any:
        if False:
            yield

    with DebuggerThread(feed=feed, port=0, token=token, max_stream_clients=2) as server:
        async with taskrunner.open_session(handler, session_id="lim", flavor="trio", hub=feed):
            async with httpx.AsyncClient(base_url=server.url or "", headers=auth, timeout=5) as c:
                wait_until(lambda: True)
                await trio.sleep(0.2)
                async with (
                    c.stream("GET", "/api/sessions/lim/stream"),
                    c.stream("GET", "/api/sessions/lim/stream"),
                ):
                    third = await c.get("/api/sessions/lim/stream")
                    assert third.status_code == 503
                    assert "at most 2" in third.json()["error"]
                # Closed streams free their places.
                for _ in range(50):
                    async with c.stream("GET", "/api/sessions/lim/stream") as again:
                        if again.status_code == 200:
                            break
                    await trio.sleep(0.05)
                assert again.status_code == 200
