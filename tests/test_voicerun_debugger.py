"""A VoiceRun agent's session in the debugger page (headless Chromium): its events are
shown with their text, and a background task's output orange with the task's name."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import trio
from primfunctions import events as pf
from tools.test_debugger_browser import (
    browser_page,
    in_browser_thread,
    is_orange,
    require_browser,
)

import taskrunner
from taskrunner.tools.debugger import serve
from taskrunner.tools.hub import Hub

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voicerun"


def template_handler() -> Any:
    spec = importlib.util.spec_from_file_location("dbg_template", FIXTURES / "template_handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


async def lookup() -> AsyncIterator[Any]:
    yield pf.LogEvent("looking up the booking")
    await asyncio.sleep(600)


def drive(url: str) -> None:
    with browser_page() as (page, errors):
        page.goto(url)
        said = '#events .ev[data-type="HandlerOutput"]:has-text("I heard you say: table for two")'
        page.wait_for_selector(said)
        row = '#events .ev.src-task[data-type="TaskOutput"]:has-text("looking up the booking")'
        page.wait_for_selector(row)
        style = page.eval_on_selector(
            row,
            """el => ({bg: getComputedStyle(el).backgroundColor,
                       who: el.querySelector('.who').textContent})""",
        )
        assert is_orange(style["bg"]) and style["who"] == "lookup", style
        # One line per event: the type, then the spoken text itself (not the event's JSON).
        assert page.inner_text(f"{said} .etype") == "TextToSpeechEvent"
        assert page.inner_text(f"{said} .etext") == "I heard you say: table for two"
        assert page.inner_text(f"{row} .etext") == "looking up the booking"
        assert errors == []


async def test_voicerun_session_in_the_debugger_page() -> None:
    require_browser()
    hub = Hub()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, hub, port=0))
        async with taskrunner.open_session(
            template_handler(), events="primfunctions", session_id="voicerun", hub=hub
        ) as session:
            await session.send(pf.StartEvent())
            await session.send(pf.TextEvent(source="speech", text="table for two"))
            await session.wait_until_handled()
            session.context.create_task(lookup, name="lookup", timeout=None)
            nursery.start_soon(drain, session)
            await in_browser_thread(partial(drive, url))
        nursery.cancel_scope.cancel()


async def drain(session: taskrunner.Session) -> None:
    async for _ in session.events():
        pass
