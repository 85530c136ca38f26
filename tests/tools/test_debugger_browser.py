"""The debugger page in a real headless Chromium (Debian's, driven by Playwright).

The server runs in the test's trio run (Hypercorn on 127.0.0.1, port 0); the
synchronous Playwright API runs in a thread of its own (Playwright's async API
needs asyncio), calling back into trio with ``trio.from_thread``.  Records are
published by the test into a hub with a fake SessionControl, as a real
session would.

Skipped when /usr/bin/chromium is missing, unless TASKRUNNER_REQUIRE_BROWSER=1
(CI), where that is a failure.  Writes artifacts/debugger.png (and, with
TASKRUNNER_UPDATE_DOCS_SCREENSHOT=1, docs/debugger.png for the README).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import outcome
import pytest
import trio

from taskrunner.tools.debugger import serve
from taskrunner.tools.hub import Hub
from taskrunner.tools.recorder import load_recording, open_recorder
from tools import FakeControl, RecordFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
SESSION = "demo-7f3a"
TIMEOUT_MS = 10_000


def require_browser() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing (install Debian's chromium: .ci/install-browser)"
    if os.environ.get("TASKRUNNER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def publish_scenario(hub: Hub, f: RecordFactory, start: float) -> None:
    """A session 8 s old: tasks in every state, failures, and a hostile log line."""

    def at(offset: float) -> float:
        return start + offset

    records = [
        f.session_started(at=at(0.0)),
        f.handler_output("Hi! Let me check the weather for you.", at=at(0.2)),
        f.task_started("weather_lookup", timeout=30.0, at=at(0.3)),
        f.task_output("weather_lookup", "Processing...", at=at(0.5)),
        f.task_started("long_poll", at=at(0.6)),
        f.task_started("geocode", interruptible=False, timeout=5.0, at=at(0.9)),
        f.task_output("geocode", "resolved Paris -> 48.86, 2.35", at=at(1.4)),
        f.task_finished("geocode", {"lat": 48.86, "lon": 2.35}, at=at(1.6)),
        f.task_started("evil_echo", at=at(2.0)),
        f.task_output("evil_echo", XSS, at=at(2.1)),
        f.task_finished("evil_echo", at=at(2.3)),
        f.task_started("book_table", timeout=3.0, at=at(2.5)),
        f.task_started("fetch_forecast", at=at(3.0)),
        f.task_failed("fetch_forecast", "upstream returned 503", at=at(4.2)),
        f.handler_failed("'city'", at=at(4.5)),
        f.handler_output("It's 21°C and sunny in Paris.", at=at(5.0)),
        f.task_timed_out("book_table", 3.0, at=at(5.5)),
        f.task_output("weather_lookup", "still waiting on the provider…", at=at(6.0)),
    ]
    for record in records:
        hub.publish(SESSION, record)


def rgb(css: str) -> tuple[int, int, int]:
    match = re.match(r"rgba?\((\d+), (\d+), (\d+)", css)
    assert match, css
    r, g, b = (int(x) for x in match.groups())
    return r, g, b


def is_orange(css: str) -> bool:
    r, g, b = rgb(css)
    return r >= 200 and 90 <= g <= 240 and b <= 215 and r - b >= 40 and r > g > b


@contextmanager
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """A fresh page in headless Chromium, and the list its console errors go to."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


T = TypeVar("T")

# The trio run that the browser thread calls back into (set by in_browser_thread).
_trio_token: trio.lowlevel.TrioToken | None = None


def in_trio(fn: Callable[[], T]) -> T:
    """From the browser thread: run ``fn`` in the test's trio run (where the hub lives)."""
    return trio.from_thread.run_sync(fn, trio_token=_trio_token)


async def in_browser_thread(fn: Callable[[], None], timeout: float = 60) -> None:
    """Run ``fn`` (the Playwright part) in a new thread and wait for it, trio staying live.

    A new thread rather than trio's thread cache: trio-asyncio, imported by
    other tests, swaps in its own asyncio loop policy; its override is per
    thread, so a thread of our own can use a plain asyncio loop (which sync
    Playwright needs) without touching anyone else's.
    """
    global _trio_token
    _trio_token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    result: list[outcome.Outcome[None]] = []

    def main() -> None:
        try:
            if "trio_asyncio" in sys.modules:
                asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
            result.append(outcome.capture(fn))
        finally:
            trio.from_thread.run_sync(done.set, trio_token=_trio_token)

    threading.Thread(target=main, name="playwright", daemon=True).start()
    with trio.fail_after(timeout):
        await done.wait()
    result[0].unwrap()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT_MS / 1000) -> None:
    """Poll ``predicate`` (from the browser thread) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def save_screenshot(page: Any, name: str) -> Path:
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    path = artifacts / name
    page.screenshot(path=str(path), full_page=True)
    return path


def drive_live_page(url: str, hub: Hub, f: RecordFactory, control: FakeControl) -> None:
    """Everything the person would do on the live page (runs in a worker thread)."""
    with browser_page() as (page, errors):
        page.goto(url)
        page.wait_for_selector('#events li[data-type="TaskOutput"]')
        page.wait_for_selector('#tasks tr[data-task="long_poll"] button')

        # Task records: orange background and border, with the task's name.
        style = page.eval_on_selector(
            '#events li.src-task[data-type="TaskOutput"]',
            """el => ({bg: getComputedStyle(el).backgroundColor,
                       border: getComputedStyle(el).borderTopColor,
                       who: el.querySelector('.who').textContent})""",
        )
        assert is_orange(style["bg"]), style
        assert is_orange(style["border"]), style
        assert style["who"] == "weather_lookup"
        handler_bg = page.eval_on_selector(
            '#events li[data-type="HandlerOutput"]', "el => getComputedStyle(el).backgroundColor"
        )
        assert not is_orange(handler_bg)
        assert "Hi! Let me check the weather" in page.inner_text("#events")

        # Hostile text is shown as text and never runs.
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#events img, #events script").count() == 0
        assert XSS in page.inner_text('#events li[data-type="TaskOutput"]:has-text("pwned")')

        # Failures: message, and the traceback behind a <details>.
        failed = page.locator('#events li[data-type="TaskFailed"]')
        assert "ValueError: upstream returned 503" in failed.inner_text()
        assert not failed.locator("pre.traceback").is_visible()
        failed.locator("summary").click()
        assert "line 12, in run" in failed.locator("pre.traceback").inner_text()
        assert "KeyError: 'city'" in page.inner_text('#events li[data-type="HandlerFailed"]')

        # Relative times since the session start.
        assert page.inner_text('#events li[data-type="SessionStarted"] .time') == "+0.000s"
        assert page.inner_text('#events li[data-type="TaskTimedOut"] .time') == "+5.500s"

        # The task table.
        states = page.eval_on_selector_all(
            "#tasks tbody tr", "rows => rows.map(r => [r.dataset.task, r.dataset.state])"
        )
        assert states == [
            ["weather_lookup", "running"],
            ["long_poll", "running"],
            ["geocode", "finished"],
            ["evil_echo", "finished"],
            ["book_table", "timed_out"],
            ["fetch_forecast", "failed"],
        ]
        cells = page.eval_on_selector(
            '#tasks tr[data-task="geocode"]', "r => [...r.cells].map(c => c.textContent)"
        )
        assert cells[2:6] == ["no", "5.00s", "0.70s", "1"]
        assert page.locator("#tasks tbody button").count() == 2  # unfinished tasks only
        assert page.is_visible("#interrupt")

        # The timeline: one bar per task, coloured by how it ended.
        bars = page.eval_on_selector_all(
            "#timeline rect.bar",
            "bars => bars.map(b => [b.dataset.task, getComputedStyle(b).fill])",
        )
        assert [name for name, _ in bars] == [row[0] for row in states]
        fills = dict(bars)
        assert rgb(fills["fetch_forecast"]) == (220, 38, 38)  # failed: red
        assert rgb(fills["geocode"]) == (34, 160, 107)  # finished: green

        # Live: a record published now shows up without reload.
        in_trio(
            lambda: hub.publish(
                SESSION,
                f.task_output("weather_lookup", "provider answered", at=trio.current_time()),
            )
        )
        page.wait_for_selector('#events li:has-text("provider answered")')
        page.wait_for_function(
            """() => document.querySelector('#tasks tr[data-task="weather_lookup"]')
                       .cells[5].textContent === '3'"""
        )

        # Cancel: the control is asked; the row changes when the session says so.
        page.click('#tasks tr[data-task="long_poll"] button')
        wait_until(lambda: in_trio(lambda: list(control.cancel_calls)) == ["long_poll"])
        page.wait_for_selector(
            '#tasks tr[data-task="long_poll"] button:disabled:has-text("Cancelling…")'
        )
        in_trio(lambda: hub.publish(SESSION, f.task_cancelled("long_poll", at=trio.current_time())))
        page.wait_for_selector('#tasks tr[data-task="long_poll"][data-state="cancelled"]')
        assert page.locator('#tasks tr[data-task="long_poll"] button').count() == 0
        page.wait_for_selector('#timeline rect.bar.st-cancelled[data-task="long_poll"]')

        assert page.evaluate("window.__pwned") is None
        page.evaluate("document.querySelector('#events').scrollTop = 0")
        shot = save_screenshot(page, "debugger.png")
        if os.environ.get("TASKRUNNER_UPDATE_DOCS_SCREENSHOT") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "docs" / "debugger.png")

        # A burst the page's event stream cannot keep up with: the server drops
        # records for it and says so, and the page reloads them, in order.
        reloads: list[str] = []
        page.on("request", lambda r: reloads.append(r.url) if "/records?after=" in r.url else None)

        def burst() -> None:
            for i in range(40):
                record = f.task_output("weather_lookup", f"chunk {i}", at=trio.current_time())
                hub.publish(SESSION, record)

        in_trio(burst)
        page.wait_for_selector('#events li:has-text("chunk 39")')
        assert reloads, "the page should have reloaded missed records"
        shown = page.eval_on_selector_all(
            "#events li[data-seq]", "items => items.map(li => Number(li.dataset.seq))"
        )
        assert shown == list(range(1, f.seq + 1))
        page.wait_for_function(
            """() => document.querySelector('#tasks tr[data-task="weather_lookup"]')
                       .cells[5].textContent === '43'"""
        )

        # A second session shows up in the list; the view switches and back.
        second = RecordFactory("demo-2")

        def open_second() -> None:
            hub.register("demo-2", FakeControl())
            hub.publish("demo-2", second.session_started(at=trio.current_time()))
            hub.publish("demo-2", second.handler_output("second says hi", at=trio.current_time()))

        in_trio(open_second)
        page.click('#sessions button:has-text("demo-2")')
        page.wait_for_selector('#events li:has-text("second says hi")')
        page.wait_for_selector("#no-tasks", state="visible")
        assert page.inner_text("#session-title") == "demo-2"
        page.click(f'#sessions button:has-text("{SESSION}")')
        page.wait_for_selector('#events li:has-text("chunk 39")')
        page.wait_for_selector("#interrupt")

        # Interrupt the whole session.
        page.click("#interrupt")
        page.wait_for_selector('#notice:has-text("Interrupted: 1 task(s) cancelled.")')
        assert in_trio(lambda: control.interrupts) == 1

        # The session ends: buttons go away, the history stays.
        def end() -> None:
            hub.publish(SESSION, f.session_ended(at=trio.current_time()))
            hub.unregister_control(SESSION)

        in_trio(end)
        page.wait_for_selector('#events li[data-type="SessionEnded"]')
        page.wait_for_selector("#interrupt", state="hidden")
        assert page.locator("#tasks tbody button").count() == 0
        assert errors == []


async def test_live_page_in_chromium() -> None:
    require_browser()
    # A small subscriber buffer so a burst of records overruns the page's stream.
    hub = Hub(buffer_size=4)
    control = FakeControl(running={"weather_lookup", "long_poll"})
    hub.register(SESSION, control)
    f = RecordFactory(SESSION)
    publish_scenario(hub, f, start=trio.current_time() - 8.0)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, hub, port=0))
        await in_browser_thread(partial(drive_live_page, url, hub, f, control))
        nursery.cancel_scope.cancel()
    assert control.cancel_calls == ["long_poll"]


def drive_recording_page(url: str) -> None:
    with browser_page() as (page, errors):
        page.goto(url)
        page.wait_for_selector('#events li[data-type="SessionEnded"]')
        page.wait_for_selector('#tasks tr[data-task="fetch_forecast"]')
        assert page.inner_text("#mode") == "recording · read-only"
        assert page.locator("#tasks tbody tr").count() == 6
        assert not page.is_visible("#interrupt")
        assert page.locator("#tasks tbody button").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert XSS in page.inner_text("#events")
        # Running tasks of a recording are measured up to its last record.
        elapsed = page.inner_text('#tasks tr[data-task="long_poll"] td.elapsed')
        assert elapsed == "6.40s"
        save_screenshot(page, "debugger-recording.png")
        assert errors == []


async def test_recording_page_is_read_only(tmp_path: Path) -> None:
    require_browser()
    path = tmp_path / "run.jsonl"
    live = Hub()
    live.register(SESSION, FakeControl())
    f = RecordFactory(SESSION)
    with open_recorder(live, path):
        publish_scenario(live, f, start=1000.0)
        live.publish(SESSION, f.session_ended(at=1007.0))
    hub = load_recording(path)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, hub, port=0, read_only=True))
        await in_browser_thread(partial(drive_recording_page, url))
        nursery.cancel_scope.cancel()
