"""Seed 001, "Outbound Calling": session parameters read with ``context.get_data("key")``.

Run it: ``python -m taskrunner run examples/seeds/guide_outbound.py --param
phoneNumber=+15550100``.
"""

from taskrunner import Context
from taskrunner.events import Event, StartEvent, TextToSpeechEvent


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        number = context.get_data("phoneNumber")
        yield TextToSpeechEvent(text=f"Calling {number}.", voice="nova")
