"""The agent of the PostgreSQL checkpoint tests: what it says depends on a counter in the
session data and on the conversation history, so a takeover that lost either shows."""

import asyncio

from taskrunner.events import LogEvent, StartEvent, TextEvent, TextToSpeechEvent


async def _work(context):
    yield LogEvent("working")
    await asyncio.sleep(60)


async def handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"hello {context.get_data('name', '?')}", voice="nova")
    elif isinstance(event, TextEvent):
        turns = context.get_data("turns", 0) + 1
        context.set_data("turns", turns)
        context.add_completion_message({"role": "user", "content": event.data["text"]})
        heard = " / ".join(m["content"] for m in context.get_completion_messages())
        context.create_task(_work(context), name=f"work-{turns}", interruptible=True, timeout=120)
        yield TextToSpeechEvent(text=f"turn {turns}: {heard}", voice="nova")


async def _trio_work(context):
    import trio

    yield LogEvent("working")
    await trio.sleep(60)


async def trio_handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"hello {context.get_data('name', '?')}", voice="nova")
    elif isinstance(event, TextEvent):
        turns = context.get_data("turns", 0) + 1
        context.set_data("turns", turns)
        context.add_completion_message({"role": "user", "content": event.data["text"]})
        heard = " / ".join(m["content"] for m in context.get_completion_messages())
        context.create_task(
            _trio_work(context), name=f"work-{turns}", interruptible=True, timeout=120
        )
        yield TextToSpeechEvent(text=f"turn {turns}: {heard}", voice="nova")
