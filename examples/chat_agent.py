"""A chat agent to serve (``python -m taskrunner serve examples/chat_agent.py``) and to load.

It greets with the session's ``name`` parameter, answers each text at once, and streams a
"thought" from an interruptible background task (60 log lines, 0.5 s apart), as an agent
streams a long LLM answer: a barge-in or ``POST /v1/sessions/ID/interrupt`` cancels it.
``CHAT_AGENT_WORK_KB=N`` makes each step also hash N KiB, and ``CHAT_AGENT_WORK_MS=M``
makes each step also spend M ms of CPU (measured on the thread's CPU clock, so the cost is
the same whatever else the machine runs): CPU work, as parsing and post-processing a
streamed answer is, which the serving benchmark uses.
"""

import asyncio
import hashlib
import os
import time

from taskrunner.events import LogEvent, StartEvent, StopEvent, TextEvent, TextToSpeechEvent

STEPS = 60
GAP = 0.5
WORK = bytes(1024 * int(os.environ.get("CHAT_AGENT_WORK_KB", "0")))
WORK_S = float(os.environ.get("CHAT_AGENT_WORK_MS", "0")) / 1000


def burn(seconds):
    """Spend ``seconds`` of this thread's CPU time (hashing, in small pieces)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        hashlib.sha256(b"x" * 4096).digest()


async def think(context, turn):
    for step in range(STEPS):
        await asyncio.sleep(GAP)
        if WORK:
            hashlib.sha256(WORK).digest()
        if WORK_S:
            burn(WORK_S)
        yield LogEvent(f"thought {turn}.{step}")
    context.set_data("last_thought", turn)


async def handler(event, context):
    if isinstance(event, StartEvent):
        yield TextToSpeechEvent(text=f"Hello {context.get_data('name', 'there')}!", voice="nova")
    elif isinstance(event, TextEvent):
        turn = context.get_data("turns", 0) + 1
        context.set_data("turns", turn)
        context.create_task(
            think(context, turn), name=f"think-{turn}", interruptible=True, timeout=60
        )
        yield TextToSpeechEvent(text=f"You said: {event.data.get('text', '')}", voice="nova")
    elif isinstance(event, StopEvent):
        yield TextToSpeechEvent(text="Goodbye!", voice="nova")
