"""Seed 000, "Data Management"; seed 001, "Context"."""

from taskrunner import Context
from taskrunner.events import Event


async def handler(event: Event, context: Context):
    # Store session data
    context.set_data("user_name", "John")
    context.set_data("order_items", ["coffee", "sandwich"])
    context.set_data("order_total", 15.99)
    # Retrieve session data
    user_name = context.get_data("user_name", "Guest")
    items = context.get_data("order_items", [])

    # Access session variables
    user_name = context.get_data("user_name", "Guest")

    # Set session variables
    context.set_data("user_name", "John")

    # Access environment/organization variables
    api_key = context.variables.get("OPENAI_API_KEY")
    context.set_data("read", [user_name, items, api_key])
