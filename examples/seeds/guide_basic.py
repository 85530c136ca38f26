"""Seed 001, "Basic Structure": every input event, TimeoutEvent included."""

from taskrunner import Context
from taskrunner.events import (
    Event,
    StartEvent,
    StopEvent,
    TextEvent,
    TextToSpeechEvent,
    TimeoutEvent,
)


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        # Handle session start
        yield TextToSpeechEvent(text="Hello!", voice="nova")

    if isinstance(event, TextEvent):
        # Handle text input
        user_message = event.data.get("text", "")
        yield TextToSpeechEvent(text=f"You said: {user_message}", voice="nova")

    if isinstance(event, TimeoutEvent):
        # Handle timeout
        yield TextToSpeechEvent(text="Are you still there?", voice="nova")

    if isinstance(event, StopEvent):
        # Handle session end
        yield TextToSpeechEvent(text="Goodbye!", voice="nova")
