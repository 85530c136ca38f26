"""Interruption: stale work is cancelled when the user speaks, protected work is not.

``suggest_products`` is interruptible: once the user says something new, its suggestions are
stale, so the ``TextEvent`` cancels it. ``charge_card`` is interruptible too, but the charge
itself runs inside ``taskrunner.uninterruptible()``: an interruption that arrives during the
charge is applied only after it completes, so a card is never half-charged.
"""

import asyncio

import taskrunner
from taskrunner import Context
from taskrunner.events import Event, LogEvent, StartEvent, TextEvent, TextToSpeechEvent


async def suggest_products(context: Context):
    for product in ("coffee", "bagel", "juice", "muffin"):
        await asyncio.sleep(1)
        yield LogEvent(f"suggesting {product}")


async def charge_card(context: Context):
    yield LogEvent("preparing payment")
    with taskrunner.uninterruptible():
        await asyncio.sleep(2)  # the charge itself: never cut in the middle
        context.set_data("charged", True)
        yield LogEvent("card charged")
    await asyncio.sleep(3)  # sending the receipt: fine to drop on interruption
    yield LogEvent("receipt sent")


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        context.create_task(suggest_products(context), name="suggest", interruptible=True)
        yield TextToSpeechEvent(text="Welcome! Let me suggest a few things.", voice="nova")
    elif isinstance(event, TextEvent):
        text = event.data.get("text", "").lower()
        if "pay" in text:
            context.create_task(charge_card(context), name="charge_card", interruptible=True)
            yield TextToSpeechEvent(text="Charging your card.", voice="nova")
        else:
            charged = context.get_data("charged", False)
            yield TextToSpeechEvent(text=f"OK. Charged so far: {charged}.", voice="nova")
