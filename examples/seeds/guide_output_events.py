"""Seed 001, "Event Example" and "Custom Events" (the snippets, inside a handler)."""

from taskrunner import Context
from taskrunner.events import (
    AudioEvent,
    CustomEvent,
    Event,
    SilenceEvent,
    StartEvent,
    TextToSpeechEvent,
)


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        # Speak text with specific voice
        yield TextToSpeechEvent(
            text="Hello, how can I help you?",
            voice="nova",
            cache=True, # optional, defaults to True
            interruptable=True # optional, defaults to True
        )

        # Play audio file
        yield AudioEvent(path="/path/to/audio.mp3")

        # Wait for 2 seconds
        yield SilenceEvent(duration=2000)

    # Create custom event
    custom_event = CustomEvent("payment_processed", {"amount": 100.00})
    context.set_data("custom_event", custom_event)

    # Handle custom events
    if isinstance(event, CustomEvent):
        if event.name == "payment_processed":
            payment_amt = event.data["amount"]
            yield TextToSpeechEvent(text=f"Payment of {payment_amt} processed", voice="nova")
