"""Seed 000, "Outcomes"."""

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextEvent, TextToSpeechEvent


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        # Define outcomes
        context.add_outcome("message_count", "integer", "Total messages")
        context.add_outcome("user_satisfied", "boolean", "User expressed satisfaction")
        context.add_outcome("order_value", "float", "Total order value")
    if isinstance(event, TextEvent):
        user_message = event.data.get("text", "N/A").lower()
        # Increment counter
        context.trigger_outcome("message_count")
        # Set boolean
        if "thank you" in user_message or "great" in user_message:
            context.trigger_outcome("user_satisfied")
        # Set numeric value
        if "order" in user_message:
            context.set_outcome("order_value", 29.99)
        # Get current values
        count = context.get_outcome("message_count")
        yield TextToSpeechEvent(
            text=f"This is message number {count}.",
            voice="nova"
        )
