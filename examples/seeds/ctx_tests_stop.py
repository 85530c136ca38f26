"""Seed 000, "Tests", with stop conditions (the snippet, inside a handler)."""

from taskrunner import Context
from taskrunner.events import Event, StartEvent


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        context.add_test(
            name="upsell_approach",
            options={"direct": 0.5, "subtle": 0.5},
            stop={
                "max_iterations": 1000,
                "max_confidence": 95,
                "target_outcome": "conversion_rate",
                "default": "direct",
                "stop_on": 2,
                "notify": ["analytics@company.com"]
            }
        )
