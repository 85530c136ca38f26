"""An agent written in trio: run it with ``--flavor trio`` (or ``open_session(flavor="trio")``).

The handler and its tasks use trio directly: ``trio.sleep``, nurseries, cancel scopes.
"""

import trio

from taskrunner import Context
from taskrunner.events import Event, LogEvent, StartEvent, TextEvent, TextToSpeechEvent

FLAVOR = "trio"  # read by `python -m taskrunner run` as the session's default flavour


async def lookup(query: str):
    """Look a query up in two 'backends' at once; the first answer wins."""
    async with trio.open_nursery() as nursery:
        answers: list[str] = []

        async def ask(backend: str, delay: float) -> None:
            await trio.sleep(delay)
            answers.append(f"{backend}: {query!r} found")
            nursery.cancel_scope.cancel()

        nursery.start_soon(ask, "cache", 1.5)
        nursery.start_soon(ask, "database", 3.0)
    yield LogEvent(answers[0])


async def heartbeat():
    while True:
        await trio.sleep(2)
        yield LogEvent("still here")


async def handler(event: Event, context: Context):
    if isinstance(event, StartEvent):
        context.create_task(heartbeat, name="heartbeat", timeout=None)
        yield TextToSpeechEvent(text="Hi from trio.", voice="nova")
    elif isinstance(event, TextEvent):
        text = event.data.get("text", "")
        context.create_task(lookup(text), name=f"lookup {text}", interruptible=True, timeout=10)
        yield TextToSpeechEvent(text=f"Looking up {text}.", voice="nova")
