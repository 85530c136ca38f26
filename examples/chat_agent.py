"""A chat agent to serve (``python -m taskrunner serve examples/chat_agent.py``) and to load.

It greets with the session's ``name`` parameter, answers each text at once, and streams a
"thought" from an interruptible background task (60 log lines, 0.5 s apart), as an agent
streams a long LLM answer: a barge-in or ``POST /v1/sessions/ID/interrupt`` cancels it.
``CHAT_AGENT_WORK_KB=N`` makes each step also hash N KiB, and ``CHAT_AGENT_WORK_MS=M``
makes each step also spend M ms of CPU (measured on the thread's CPU clock, so the cost is
the same whatever else the machine runs), in pieces of at most ``CHAT_AGENT_PIECE_MS`` (1)
with a yield to the event loop between pieces, as a well-behaved agent does heavy work:
CPU work, as parsing and post-processing a streamed answer is, which the serving benchmark
uses.
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
PIECE_S = float(os.environ.get("CHAT_AGENT_PIECE_MS", "1")) / 1000


def spin(seconds):
    """Spend ``seconds`` of this thread's CPU time (hashing 4 KiB at a time)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        hashlib.sha256(b"x" * 4096).digest()


async def burn(seconds):
    """Spend ``seconds`` of CPU in pieces, yielding to the event loop between them."""
    while seconds > 0:
        piece = min(seconds, PIECE_S)
        spin(piece)
        seconds -= piece
        if seconds > 0:
            await asyncio.sleep(0)


async def think(context, turn):
    for step in range(STEPS):
        await asyncio.sleep(GAP)
        if WORK:
            hashlib.sha256(WORK).digest()
        if WORK_S:
            await burn(WORK_S)
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
