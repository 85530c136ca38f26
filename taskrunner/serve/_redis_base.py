"""What a Redis worker's two halves share: the connection, keys, scripts, the retrying of
calls while Redis is down, and the blocking reader over many streams."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import coredis
import coredis.exceptions
import trio
from coredis.tokens import PureToken

from .._core.supervisor import Flavor
from .._session.session import AgentHandler
from ..tools.hub import Hub
from . import _redis_scripts as scripts
from ._backend import worker_name
from ._errors import UnavailableError
from ._redis_pool import take_free_connections_at_once
from ._retry import Outage
from ._runner import SessionRunner

if TYPE_CHECKING:
    from ._store_checkpoints import StoreCheckpoints

__all__ = ["BLOCK_MS", "GROUP", "REDIS_DOWN", "RedisBase", "Tail", "seq_of"]

T = TypeVar("T")

#: What counts as "Redis cannot be reached" (retried with backoff) rather than a bug.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    coredis.exceptions.ConnectionError,
    OSError,
    TimeoutError,
)

#: The consumer group of the new-session stream.
GROUP = "workers"
#: How long one blocking read waits, in milliseconds.
BLOCK_MS = 2000


def seq_of(entry_id: str) -> int:
    """The record ``seq`` of a record stream entry id (``0-(seq+1)``)."""
    return int(entry_id.split("-", 1)[1]) - 1


class Tail:
    """One blocking ``XREAD`` over many streams for this worker, started again whenever the
    set of streams changes (woken through the worker's wake stream)."""

    def __init__(self, backend: RedisBase, name: str) -> None:
        self._backend = backend
        self._name = name
        self.wake_key = backend._key("w", backend.worker_id, f"wake-{name}")
        self._wake_id = "0-0"
        self.positions: dict[str, str] = {}
        self.handlers: dict[str, Callable[[list[Any]], None]] = {}
        self._dirty = False

    def watch(self, key: str, after: str, handler: Callable[[list[Any]], None]) -> None:
        """Read ``key`` from after entry ``after`` on, handing each batch to ``handler``."""
        self.positions[key] = after
        self.handlers[key] = handler
        self._dirty = True

    def unwatch(self, key: str) -> None:
        """Stop reading ``key``."""
        self.positions.pop(key, None)
        self.handlers.pop(key, None)

    async def wake(self) -> None:
        """Make the blocking read start again with the current streams."""
        if self._dirty:
            self._dirty = False
            async with self._backend._client.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    self.wake_key,
                    {"w": "1"},
                    trim_strategy=PureToken.MAXLEN,
                    threshold=10,
                    trim_operator=PureToken.APPROXIMATELY,
                )
                pipe.expire(self.wake_key, 3600)

    async def run(self) -> None:
        client = self._backend._client
        while True:
            streams = {self.wake_key: self._wake_id, **self.positions}
            result = await self._backend._retrying(
                f"{self._name} reader",
                partial(client.xread, streams, count=200, block=BLOCK_MS),
            )
            for key, entries in (result or {}).items():
                if not entries:
                    continue
                if key == self.wake_key:
                    self._wake_id = entries[-1].identifier
                    continue
                if key not in self.positions:
                    continue
                self.positions[key] = entries[-1].identifier
                handler = self.handlers.get(key)
                if handler is not None:
                    handler(list(entries))


class Feed:
    """The record entries this worker's record reader saw for one follower, kept until it
    takes them: a follower gets each new batch from the reader's own ``XREAD`` instead of
    reading it again. Past ``LIMIT`` waiting entries (a slow client) they are dropped and the
    follower reads from Redis where it is (``overflowed``), so memory stays bounded."""

    __slots__ = ("entries", "news", "overflowed")

    #: entries kept waiting for one follower at most
    LIMIT: ClassVar[int] = 2_000

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.news = trio.Event()
        self.overflowed = False

    def push(self, entries: list[Any]) -> None:
        """Add a batch the reader got (called by the reader, never blocks)."""
        if self.overflowed or len(self.entries) + len(entries) > self.LIMIT:
            self.entries.clear()
            self.overflowed = True
        else:
            self.entries.extend(entries)
        self.news.set()

    def take(self) -> tuple[list[Any], bool]:
        """The entries waiting and whether some were dropped; the feed starts empty again."""
        entries, overflowed = self.entries, self.overflowed
        self.entries, self.overflowed = [], False
        if self.news.is_set():
            self.news = trio.Event()
        return entries, overflowed


class RedisBase:
    """The state and helpers both halves of :class:`taskrunner.serve.RedisBackend` use."""

    def __init__(
        self,
        handler: AgentHandler,
        *,
        agent_id: str,
        hub: Hub,
        redis_url: str,
        flavor: Flavor = "asyncio",
        stop_grace: float = 0.0,
        lease: float = 10.0,
        max_records: int = 10_000,
        max_sessions: int = 10_000,
        prefix: str = "taskrunner",
        retention: float = 24 * 3600,
        mirror: int = 100,
        checkpoints: str | None = None,
    ) -> None:
        self.worker_id = worker_name()
        self.agent_id = agent_id
        self.hub = hub
        self._handler = handler
        self._flavor: Flavor = flavor
        self._stop_grace = stop_grace
        self._lease = lease
        self._max_records = max_records
        self._max_sessions = max_sessions
        self._prefix = prefix
        self._retention = int(retention)
        self._mirror = mirror
        self._client: Any = coredis.Redis.from_url(
            redis_url, decode_responses=True, connect_timeout=2.0, stream_timeout=10.0
        )
        take_free_connections_at_once(self._client)
        self._runners: dict[str, SessionRunner] = {}
        #: the checkpoint epoch of each session run here (0 with checkpoints in Redis)
        self._epochs: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self._draining = False
        self._queue: deque[tuple[str, str, Any]] = deque()
        self._queue_wakeup = trio.Event()
        # with checkpoints in PostgreSQL: what waits for them (checkpoints, ends, hand-overs)
        self._after: list[tuple[str, str, Any]] = []
        self._after_wakeup = trio.Event()
        self._after_busy = 0
        self._after_idle = trio.Event()
        self._flushed = trio.Event()
        self._redis_outage = Outage("Redis", self.worker_id)
        self._last_renewal = time.monotonic()
        #: per record stream watched here, the feeds of the requests following it
        self._feeds: dict[str, list[Feed]] = {}
        self._scripts: dict[str, Any] = {}
        self._inputs = Tail(self, "inputs")
        self._records = Tail(self, "records")
        self._checkpoints: StoreCheckpoints | None = None
        if checkpoints is not None:
            from ._store_checkpoints import StoreCheckpoints

            self._checkpoints = StoreCheckpoints(
                checkpoints, worker_id=self.worker_id, retention=self._retention
            )

    @property
    def _cut_off(self) -> bool:
        """Whether Redis, or PostgreSQL holding the checkpoints, cannot be reached now
        (then the worker claims no session)."""
        store = self._checkpoints
        return self._down_since is not None or (store is not None and store.down_since is not None)

    # ------------------------------------------------------------------ keys

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _skey(self, session_id: str, what: str) -> str:
        return self._key("s", session_id, what)

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(getattr(scripts, name))
        return script

    def _queue_script(self, pipe: Any, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Queue the script ``name`` on ``pipe`` as a bare ``EVALSHA``: a pipeline of
        registered scripts first asks ``SCRIPT EXISTS``, a round trip per flush. The scripts
        are loaded at start-up; a Redis that lost them (restarted) answers ``NOSCRIPT``,
        and the caller loads them (:meth:`_load_scripts`) and sends the pipeline again."""
        return pipe.evalsha(self._script(name).sha, keys, args)

    async def _load_scripts(self) -> None:
        for name in scripts.__all__:
            await self._client.script_load(getattr(scripts, name))

    # ------------------------------------------------------------------ faults

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, again with backoff (0.1 s doubling to 5 s) while Redis is down;
        the outage and the recovery are logged once each (see :class:`Outage`)."""
        return await self._redis_outage.retrying(what, call, REDIS_DOWN)

    @property
    def _down_since(self) -> float | None:
        """When Redis became unreachable (``time.monotonic()``), None while it answers."""
        return self._redis_outage.since

    async def _api_call(self, call: Callable[[], Awaitable[T]]) -> T:
        """A call made for an API request: fails fast with 503 while Redis is down."""
        try:
            return await call()
        except REDIS_DOWN as exc:
            raise UnavailableError(f"Redis is unreachable ({type(exc).__name__}: {exc})") from None
