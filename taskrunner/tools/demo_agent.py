"""The agent behind ``python -m taskrunner demo``: the seed's order agent, showing every kind of
task record (outputs, an interruption, a timeout, a result)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from .._session.agent_events import Event, LogEvent, StartEvent, TextEvent, TextToSpeechEvent
from .._session.context import Context

__all__ = ["SCRIPT", "handler"]

#: The demo conversation: ("say", text) sends a TextEvent, ("wait", seconds) lets time pass.
SCRIPT: list[tuple[str, str]] = [
    ("wait", "2.5"),
    ("say", "what do you have?"),
    ("wait", "1.5"),
    ("say", "place order"),
    ("say", "check status"),
    ("wait", "6"),
    ("say", "check status"),
]


async def suggest_extras(context: Context) -> AsyncGenerator[Event, None]:
    """Interruptible: suggestions go stale as soon as the user says something."""
    for item in ("a cookie", "a juice", "a muffin", "a bagel"):
        await asyncio.sleep(1)
        yield LogEvent(f"suggesting {item}")


async def process_order(context: Context) -> AsyncGenerator[Event, None]:
    """The seed's order task, as an async generator so the debugger shows its progress."""
    yield LogEvent("Starting order processing...")
    await asyncio.sleep(5)
    context.set_data("order_status", "completed")
    yield LogEvent("Order processing complete")


async def notify_kitchen(context: Context) -> str:
    """A call to a slow service: it takes longer than its timeout allows."""
    await asyncio.sleep(3)
    return "kitchen notified"


async def handler(event: Event, context: Context) -> AsyncIterator[Event]:
    """The order agent: order in the background, answer status questions meanwhile."""
    if isinstance(event, StartEvent):
        context.create_task(suggest_extras(context), name="suggest_extras", interruptible=True)
        yield TextToSpeechEvent(text="Hi! What would you like to order?", voice="nova")
    elif isinstance(event, TextEvent):
        user_message = event.data.get("text", "N/A").lower()
        if "place order" in user_message:
            context.create_task(process_order(context), name="order_processing", timeout=60)
            context.create_task(notify_kitchen(context), name="notify_kitchen", timeout=2)
            yield TextToSpeechEvent(text="Processing your order in the background.", voice="nova")
        elif "check status" in user_message:
            status = context.get_data("order_status", "pending")
            yield TextToSpeechEvent(text=f"Your order status is: {status}", voice="nova")
        else:
            yield TextToSpeechEvent(text="We have coffee and sandwiches.", voice="nova")
