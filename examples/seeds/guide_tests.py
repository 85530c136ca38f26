"""Seed 001, "Tests": an A/B/C test of the greeting style."""

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextToSpeechEvent


async def handler(event: Event, context: Context):
  if isinstance(event, StartEvent):
      # Configure A/B/C test for greeting style
      context.add_test("greeting_variant", {
          "formal": 0.33,
          "casual": 0.33,
          "friendly": 0.34
      }, stop={
          "max_iterations": 500,
          "max_confidence": 95,
          "target_outcome": "user_satisfied",
          "default": "friendly"
      })

      variant = context.get_test("greeting_variant")

      if variant == "formal":
          yield TextToSpeechEvent(text="Good day! How may I assist you?", voice="nova")
      elif variant == "casual":
          yield TextToSpeechEvent(text="Hey there! What's up?", voice="nova")
      else:  # friendly
          yield TextToSpeechEvent(text="Hi! I'm here to help!", voice="nova")
