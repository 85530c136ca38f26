"""The agent the serve tests run: a greeting from the start parameters, a counter in the
session data, and one long interruptible task per turn (asyncio and trio flavours)."""

import asyncio

import trio

from taskrunner.events import CustomEvent, LogEvent, StartEvent, TextEvent, TextToSpeechEvent


def _turn(event, context):
    turns = context.get_data("turns", 0) + 1
    context.set_data("turns", turns)
    return turns


async def _work(context):
    yield LogEvent("working")
    await asyncio.sleep(60)
    yield LogEvent("done")


async def handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"hello {context.get_data('name', '?')}", voice="nova")
    elif isinstance(event, TextEvent):
        turns = _turn(event, context)
        context.create_task(_work(context), name=f"work-{turns}", interruptible=True, timeout=120)
        yield TextToSpeechEvent(text=f"turn {turns}: {event.data['text']}", voice="nova")
    elif isinstance(event, CustomEvent):
        yield LogEvent(f"custom {event.name} {event.data}")


async def _trio_work(context):
    yield LogEvent("working")
    await trio.sleep(60)
    yield LogEvent("done")


async def trio_handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"hello {context.get_data('name', '?')}", voice="nova")
    elif isinstance(event, TextEvent):
        turns = _turn(event, context)
        context.create_task(
            _trio_work(context), name=f"work-{turns}", interruptible=True, timeout=120
        )
        yield TextToSpeechEvent(text=f"turn {turns}: {event.data['text']}", voice="nova")
    elif isinstance(event, CustomEvent):
        yield LogEvent(f"custom {event.name} {event.data}")
