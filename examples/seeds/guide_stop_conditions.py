"""Seed 001, "Stop Conditions"."""

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextToSpeechEvent


# Configure a test with stop conditions for confidence and iterations
async def handler(event: Event, context: Context):
      if isinstance(event, StartEvent):
          context.add_test(
              "button_color",
              {
                  "red": 0.5,
                  "blue": 0.5
              },
              stop={
                  "max_iterations": 1000,
                  "max_confidence": 95,
                  "target_outcome": "conversion_rate",
                  "default": "blue"
              }
          )
          variant = context.get_test("button_color")
          if variant == "red":
              yield TextToSpeechEvent(text="The button is red.", voice="nova")
          else:
              yield TextToSpeechEvent(text="The button is blue.", voice="nova")
