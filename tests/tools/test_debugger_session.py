"""The debugger page on a real session: the demo agent, in headless Chromium.

Unlike test_debugger_browser (which publishes hand-made records), the records here come from
a real ``open_session(..., hub=hub)``: the demo order agent, plus a long-running task to cancel
from the page and a task whose log line is hostile HTML. The page's Cancel button reaches the
real supervisor, and the task ends as cancelled (reason ``cancel_task``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import trio

import taskrunner
from taskrunner.events import LogEvent, Record, StartEvent, TaskCancelled, TextEvent
from taskrunner.tools import demo_agent
from taskrunner.tools.debugger import serve
from taskrunner.tools.hub import Hub
from tools.test_debugger_browser import (
    XSS,
    browser_page,
    in_browser_thread,
    is_orange,
    require_browser,
    save_screenshot,
)

SESSION = "demo-session"


async def long_lookup() -> None:
    await asyncio.sleep(600)  # asyncio code, as the session's default flavour is


async def echo_user(text: str) -> AsyncIterator[LogEvent]:
    yield LogEvent(text)


def drive(url: str) -> None:
    with browser_page() as (page, errors):
        page.goto(url)
        page.wait_for_selector('#events li[data-type="TaskOutput"]:has-text("pwned")')
        page.wait_for_selector('#tasks tr[data-task="long_lookup"] button')

        # The demo's task records are orange and carry the task's name.
        row = '#events li.src-task[data-type="TaskStarted"]:has-text("order_processing")'
        page.wait_for_selector(row)
        style = page.eval_on_selector(
            row,
            """el => ({bg: getComputedStyle(el).backgroundColor,
                       border: getComputedStyle(el).borderTopColor,
                       who: el.querySelector('.who').textContent})""",
        )
        assert is_orange(style["bg"]) and is_orange(style["border"]), style
        assert style["who"] == "order_processing"

        # The injected markup is text, and it did not run.
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#events img, #events script").count() == 0
        assert XSS in page.inner_text("#events")

        # Cancel the running task from the page: the real supervisor cancels it.
        page.click('#tasks tr[data-task="long_lookup"] button')
        page.wait_for_selector('#tasks tr[data-task="long_lookup"][data-state="cancelled"]')
        page.wait_for_selector('#events li[data-type="TaskCancelled"]:has-text("long_lookup")')
        save_screenshot(page, "debugger-session.png")
        assert errors == []


async def test_page_during_a_demo_session_cancels_a_real_task() -> None:
    require_browser()
    hub = Hub()
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, hub, port=0))
        async with taskrunner.open_session(
            demo_agent.handler, session_id=SESSION, hub=hub
        ) as session:

            async def read() -> None:
                async for record in session.events():
                    records.append(record)

            nursery.start_soon(read)
            await session.send(StartEvent())
            await session.send(TextEvent.from_text("place order"))
            await session.wait_until_handled()
            session.context.create_task(long_lookup, name="long_lookup", timeout=None)
            session.context.create_task(echo_user(XSS), name="echo_user")
            await in_browser_thread(partial(drive, url))
        nursery.cancel_scope.cancel()
    ends: dict[str, Any] = {r.task: r for r in records if isinstance(r, TaskCancelled)}
    assert ends["long_lookup"].reason == "cancel_task"
