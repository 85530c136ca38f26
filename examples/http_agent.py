"""A background task making a long-running API call with a real asyncio HTTP client (httpx).

``lifespan`` starts a slow pricing service on 127.0.0.1 (Starlette on Hypercorn's trio
worker, in the same trio run) and hands its address to the session as a variable. The agent:

* "price of coffee": a quote request that is not interruptible; the conversation goes on
  while it runs and the answer arrives later;
* "search cheaper coffee": an interruptible request; whatever the user says next cancels it
  mid-request (the HTTP request is cancelled with it);
* "slow price of tea": the service takes longer than the task's timeout: the task ends as
  timed out (a ``TaskTimedOut`` record naming the task and its timeout).

Run it: ``python -m taskrunner run examples/http_agent.py --say "price of coffee" --say "hi"
--wait 3 --say "search cheaper coffee" --say "never mind" --say "slow price of tea" --wait 6``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from taskrunner import Context
from taskrunner.events import Event, LogEvent, TextEvent, TextToSpeechEvent

PRICES = {"coffee": 3.5, "tea": 2.0, "cheaper coffee": 2.5}


async def quote(request: Request) -> JSONResponse:
    """The slow pricing service: answers after ``delay`` seconds."""
    delay = float(request.query_params.get("delay", "2"))
    item = request.query_params.get("item", "")
    await trio.sleep(delay)
    return JSONResponse({"item": item, "price": PRICES.get(item)})


service = Starlette(routes=[Route("/quote", quote)])


@asynccontextmanager
async def lifespan() -> AsyncIterator[dict[str, str]]:
    """Serve the pricing service on a free port of 127.0.0.1 while the session runs."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, service, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
        )
        yield {"PRICING_API": binds[0]}
        nursery.cancel_scope.cancel()


async def fetch_price(context: Context, item: str, delay: float) -> AsyncIterator[Event]:
    """Ask the pricing service; asyncio code, as the agents' HTTP clients are."""
    yield LogEvent(f"asking the pricing service about {item}")
    async with httpx.AsyncClient(base_url=context.variables["PRICING_API"]) as client:
        response = await client.get("/quote", params={"item": item, "delay": delay})
        response.raise_for_status()
    data: dict[str, Any] = response.json()
    context.set_data(f"price:{item}", data["price"])
    yield LogEvent(f"{item} costs {data['price']}")


async def handler(event: Event, context: Context) -> AsyncIterator[Event]:
    """Start price lookups in the background and keep talking."""
    if not isinstance(event, TextEvent):
        return
    text = event.data.get("text", "").lower()
    if text.startswith("price of "):
        item = text.removeprefix("price of ")
        context.create_task(fetch_price(context, item, 2), name=f"price {item}", timeout=10)
        yield TextToSpeechEvent(text=f"Let me check the price of {item}.", voice="nova")
    elif text.startswith("search "):
        item = text.removeprefix("search ")
        context.create_task(
            fetch_price(context, item, 5), name=f"search {item}", interruptible=True, timeout=10
        )
        yield TextToSpeechEvent(text=f"Searching for {item}.", voice="nova")
    elif text.startswith("slow price of "):
        item = text.removeprefix("slow price of ")
        context.create_task(fetch_price(context, item, 60), name=f"slow {item}", timeout=5)
        yield TextToSpeechEvent(text=f"Checking {item}; that service is slow.", voice="nova")
    else:
        known = {
            k.removeprefix("price:"): v for k, v in context.data.items() if k.startswith("price:")
        }
        yield TextToSpeechEvent(text=f"Prices I know so far: {known or 'none'}.", voice="nova")
