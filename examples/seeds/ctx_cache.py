"""Seed 000, "Cache"."""

from taskrunner import Context
from taskrunner.events import Event


async def handler(event: Event, context: Context):
    # Cache primitive values
    context.cache_set("last_query", "weather in NYC")
    context.cache_set("query_count", 5)
    # Retrieve cached values
    last_query = context.cache_get("last_query")
    count = context.cache_get("query_count")
    context.set_data("cached", [last_query, count])
