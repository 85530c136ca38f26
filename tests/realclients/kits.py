"""The clients under test, each behind the same small interface (a "kit").

A kit opens a long-lived client on a target (a URL or DSN), streams ``n`` numbered pieces
``delay`` seconds apart through it (yielding the piece numbers 0, 1, ...), tells how many of
its pooled connections are busy, and closes it. Every call is asyncio code, except where a kit
says it also runs in trio (``flavors``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import sniffio

_NUMBER = re.compile(r"(\d+)")


async def close_shielded(aclose: Callable[[], Awaitable[None]]) -> None:
    """Close a streamed HTTP response so that a cancel cannot interrupt the close half-way.

    The mitigation docs/asyncio-clients.md gives for httpcore's close race (encode/httpcore
    #1115, in httpcore2 too): a native asyncio cancel landing inside httpcore's close (its
    anyio shield does not stop ``Task.cancel()``) leaves the request counted in the pool
    for good. Under asyncio the close runs in its own task, which the caller's cancellation
    does not reach; under trio, httpcore's own shield holds.
    """
    if sniffio.current_async_library() == "asyncio":
        await asyncio.shield(asyncio.ensure_future(aclose()))
    else:
        await aclose()


def _numbers(text: str) -> list[int]:
    return [int(m) for m in _NUMBER.findall(text)]


class Kit:
    """One client library: override every method."""

    name = "?"
    #: The flavours its client runs in.
    flavors: tuple[str, ...] = ("asyncio",)
    #: Which fixture gives the target: "fake_api", "redis_url" or "postgres_dsn".
    target = "fake_api"
    #: True when the fake API server serves its streams (and knows how each ended).
    http = True
    #: ``filterwarnings`` specs for known warnings of the library itself in trio flavour.
    trio_warning_filters: tuple[str, ...] = ()

    async def open(self, target: str) -> Any:
        raise NotImplementedError

    def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        """Yield 0..n-1, one piece every ``delay`` seconds; ``tag`` names the stream to the
        fake API server (``GET /streams/<tag>`` tells how it ended on the server's side)."""
        raise NotImplementedError

    def busy(self, client: Any) -> int:
        """How many pooled connections are checked out (0 when the pool is idle)."""
        raise NotImplementedError

    def describe(self, client: Any) -> str:
        """The pool's state, for failure messages."""
        return f"{self.busy(client)} busy"

    async def close(self, client: Any) -> None:
        raise NotImplementedError


class AiohttpKit(Kit):
    name = "aiohttp"

    async def open(self, target: str) -> Any:
        import aiohttp

        return aiohttp.ClientSession(base_url=target)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        async with client.get("/stream", params={"n": n, "delay": delay, "tag": tag}) as response:
            response.raise_for_status()
            async for line in response.content:
                for i in _numbers(line.decode()):
                    yield i

    def busy(self, client: Any) -> int:
        return len(client.connector._acquired)

    async def close(self, client: Any) -> None:
        await client.close()


class HttpxKit(Kit):
    name = "httpx"
    flavors = ("asyncio", "trio")
    # httpx's response iterators nest async generators (aiter_lines > aiter_text >
    # aiter_bytes > aiter_raw > the client's, the transport's, the pool's and the
    # connection's streams) and close only the outer one when the consumer stops early;
    # trio's finalizer then warns about the inner ones. Upstream hygiene, harmless (trio
    # closes them); only generators of httpx/httpcore (and the 2 forks) are allowed.
    trio_warning_filters = (
        r"ignore:Async generator 'httpx2?\.:ResourceWarning",
        r"ignore:Async generator 'httpcore2?\.:ResourceWarning",
    )

    async def open(self, target: str) -> Any:
        import httpx

        return httpx.AsyncClient(base_url=target)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        params = {"n": n, "delay": delay, "tag": tag}
        async with client.stream("GET", "/stream", params=params) as response:
            try:
                response.raise_for_status()
                async with aclosing(response.aiter_lines()) as lines:
                    async for line in lines:
                        for i in _numbers(line):
                            yield i
            finally:
                await close_shielded(response.aclose)

    def busy(self, client: Any) -> int:
        return _httpcore_busy(client._transport._pool)

    def describe(self, client: Any) -> str:
        pool = client._transport._pool
        return f"{pool!r} {pool.connections!r}"

    async def close(self, client: Any) -> None:
        await client.aclose()


class Httpx2Kit(HttpxKit):
    """pydantic's fork of httpx (the one the openai and anthropic SDKs use)."""

    name = "httpx2"

    async def open(self, target: str) -> Any:
        import httpx2

        return httpx2.AsyncClient(base_url=target)


def _httpcore_busy(pool: Any) -> int:
    """Requests in flight plus connections neither idle nor closed (httpcore / httpcore2)."""
    active = [c for c in pool.connections if not (c.is_idle() or c.is_closed())]
    return len(pool._requests) + len(active)


class OpenAIKit(Kit):
    name = "openai"

    async def open(self, target: str) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=target + "/v1", api_key="test", max_retries=0)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        stream = await client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            max_tokens=n,
            extra_headers={"x-fake-delay": str(delay), "x-fake-tag": tag},
        )
        async with stream:
            try:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        for i in _numbers(chunk.choices[0].delta.content):
                            yield i
            finally:
                await close_shielded(stream.close)

    def busy(self, client: Any) -> int:
        return _httpcore_busy(client._client._transport._pool)

    def describe(self, client: Any) -> str:
        pool = client._client._transport._pool
        return f"{pool!r} {pool.connections!r}"

    async def close(self, client: Any) -> None:
        await client.close()


class AnthropicKit(Kit):
    name = "anthropic"

    async def open(self, target: str) -> Any:
        from anthropic import AsyncAnthropic

        return AsyncAnthropic(base_url=target, api_key="test", max_retries=0)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        async with client.messages.stream(
            model="fake-model",
            max_tokens=n,
            messages=[{"role": "user", "content": "count"}],
            extra_headers={"x-fake-delay": str(delay), "x-fake-tag": tag},
        ) as stream:
            try:
                async for text in stream.text_stream:
                    for i in _numbers(text):
                        yield i
            finally:
                await close_shielded(stream.close)

    def busy(self, client: Any) -> int:
        return _httpcore_busy(client._client._transport._pool)

    def describe(self, client: Any) -> str:
        pool = client._client._transport._pool
        return f"{pool!r} {pool.connections!r}"

    async def close(self, client: Any) -> None:
        await client.close()


class RedisKit(Kit):
    """redis-py's asyncio client; each piece is a BLPOP that blocks ``delay`` seconds in the
    server (on a key nobody pushes to), then an INCR: a cancel lands on a call in flight."""

    name = "redis"
    target = "redis_url"
    http = False

    async def open(self, target: str) -> Any:
        import redis.asyncio

        # A blocking pool: 200 concurrent tasks wait for one of 32 connections.
        pool = redis.asyncio.BlockingConnectionPool.from_url(target, max_connections=32)
        return redis.asyncio.Redis.from_pool(pool)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        key = f"taskrunner-test:{uuid.uuid4().hex}"
        for i in range(n):
            if i:
                await client.blpop([key + ":empty"], timeout=delay)
            await client.incr(key)
            yield i
        await client.delete(key)

    def busy(self, client: Any) -> int:
        return len(client.connection_pool._in_use_connections)

    async def close(self, client: Any) -> None:
        await client.aclose()


class AsyncpgKit(Kit):
    """asyncpg's pool; the pieces are rows of a server-side cursor that sleeps per row."""

    name = "asyncpg"
    target = "postgres_dsn"
    http = False

    async def open(self, target: str) -> Any:
        import asyncpg

        return await asyncpg.create_pool(target, min_size=1, max_size=16)

    async def stream(self, client: Any, n: int, delay: float, tag: str) -> AsyncIterator[int]:
        async with client.acquire() as conn, conn.transaction():
            query = (
                "SELECT i, pg_sleep(CASE WHEN i = 0 THEN 0 ELSE $2::float8 END) "
                "FROM generate_series(0, $1::int - 1) AS i"
            )
            async for row in conn.cursor(query, n, delay, prefetch=1):
                yield int(row["i"])

    def busy(self, client: Any) -> int:
        return int(client.get_size() - client.get_idle_size())

    async def close(self, client: Any) -> None:
        await client.close()


KITS: dict[str, Kit] = {
    kit.name: kit
    for kit in (
        AiohttpKit(),
        HttpxKit(),
        Httpx2Kit(),
        OpenAIKit(),
        AnthropicKit(),
        RedisKit(),
        AsyncpgKit(),
    )
}
