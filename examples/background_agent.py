"""The background-task agent of the VoiceRun developer guide (seed 001), on taskrunner.

``background_task`` is an async generator: its two ``LogEvent``s reach the session's output
stream tagged with the task's name. The code is the seed's, unchanged but for imports.
"""

import asyncio
import random
import time

from taskrunner import Context
from taskrunner.events import Event, LogEvent, StartEvent, TextEvent, TextToSpeechEvent


# In background task
async def background_task(context: Context):
    yield LogEvent("Processing background task...")

    # Set initial state
    context.set_data("task_completed", False)

    # Do work...
    await asyncio.sleep(random.random() * 10)

    # Update state
    context.set_data("task_completed", True)
    context.set_data("completion_time", time.time())

    yield LogEvent("Background task done")


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(
            text="Hello! I'll start processing your data in the background.",
            voice="brooke"
        )

        context.create_task(background_task(context))

    if isinstance(event, TextEvent):
        user_message = event.data.get("text", "").lower()

        if context.get_data("task_completed", False):
            completion_seconds_ago = int(time.time() - context.get_data("completion_time", 0))

            yield TextToSpeechEvent(
                text=f"The data is done processing. Completion was {completion_seconds_ago} seconds ago.",
                voice="brooke"
            )

            yield TextToSpeechEvent(
                text="Starting new task...",
                voice="brooke"
            )

            context.create_task(background_task(context))
        else:
            yield TextToSpeechEvent(
                text="The data is still processing.",
                voice="brooke"
            )
