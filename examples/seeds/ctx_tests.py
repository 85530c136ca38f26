"""Seed 000, "Tests (A/B Testing)"."""

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextEvent, TextToSpeechEvent


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        # Simple A/B test
        greeting = context.add_test(
            name="greeting_style",
            options={
                "Hello! How can I help you today?": 0.5,
                "Hi there! What can I do for you?": 0.3,
                "Welcome! How may I assist you?": 0.2
            }
        )
        yield TextToSpeechEvent(text=greeting, voice="nova")
    if isinstance(event, TextEvent):
        # Get the same greeting value (consistent within session)
        greeting = context.get_test("greeting_style")
        context.set_data("greeting", greeting)
