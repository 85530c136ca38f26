"""Seed 000, "Testing Metadata" (the snippet, inside a handler)."""

from taskrunner import Context
from taskrunner.events import Event


async def handler(event: Event, context: Context):
    # Store metadata about the test session
    context.set_testing_metadata("segment", "returning_customer")
    context.set_testing_metadata("source", "phone")
    # Retrieve metadata
    segment = context.get_testing_metadata("segment")
    context.set_data("segment", segment)
