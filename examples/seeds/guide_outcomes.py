"""Seed 001, "Outcomes": a conversion rate raised on purchase intent."""

from taskrunner import Context
from taskrunner.events import Event, TextEvent


async def handler(event: Event, context: Context):
  if isinstance(event, TextEvent):
      user_message = event.data.get("text", "").lower()
      # Increment conversion rate if user expresses purchase intent
      if "buy" in user_message or "purchase" in user_message:
          current_rate = context.get_outcome("conversion_rate", 0.0)
          context.set_outcome("conversion_rate", current_rate + 0.1)
