"""The order-processing agent of the VoiceRun Context reference (seed 000), on taskrunner.

The task code is the seed's, unchanged but for imports: ``process_order`` is asyncio code
(``asyncio.sleep``), which is why sessions default to the asyncio flavour.

Run it: ``python -m taskrunner run examples/order_agent.py --say "place order" --say "check
status" --wait 6 --say "check status"``.
"""

import asyncio
import logging

from taskrunner import Context
from taskrunner.events import Event, TextEvent, TextToSpeechEvent

logger = logging.getLogger("order_agent")


async def process_order(context: Context):
    """Background task that yields events."""
    logger.info("Starting order processing...")

    # Simulate processing
    await asyncio.sleep(5)

    context.set_data("order_status", "completed")
    logger.info("Order processing complete")


async def handler(event: Event, context: Context):
    if isinstance(event, TextEvent):
        user_message = event.data.get("text", "N/A").lower()

        if "place order" in user_message:
            # Start background task
            context.create_task(
                process_order(context),
                name="order_processing",
                timeout=60
            )

            yield TextToSpeechEvent(
                text="Processing your order in the background.",
                voice="nova"
            )

        elif "check status" in user_message:
            status = context.get_data("order_status", "pending")
            yield TextToSpeechEvent(
                text=f"Your order status is: {status}",
                voice="nova"
            )
