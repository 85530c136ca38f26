"""Retrying a call to a shared service (Redis, PostgreSQL) while it is down.

One implementation for every such service a worker uses: back off from 0.1 s, doubling to
5 s; log the outage once and the recovery once; keep when it began, for ``/v1/health`` and
for the worker to stop claiming sessions meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

__all__ = ["Outage"]

logger = logging.getLogger("taskrunner.serve")

T = TypeVar("T")


class Outage:
    """The state of one service for one worker; ``service`` names it in the log lines."""

    def __init__(self, service: str, worker_id: str) -> None:
        self.service = service
        self.worker_id = worker_id
        #: ``time.monotonic()`` when the service became unreachable, None while it answers.
        self.since: float | None = None

    async def retrying(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        errors: type[BaseException] | tuple[type[BaseException], ...],
    ) -> T:
        """``await call()``, again with backoff while it raises one of ``errors``.

        Any other exception propagates. Cancellation stops the waiting at once (the call
        under way is cancelled as the call itself allows).
        """
        delay = 0.1
        while True:
            try:
                result = await call()
            except errors as exc:
                if self.since is None:
                    self.since = time.monotonic()
                    logger.warning(
                        "worker %s: %s unreachable (%s: %s); retrying with backoff, not "
                        "claiming sessions meanwhile",
                        self.worker_id,
                        self.service,
                        type(exc).__name__,
                        exc,
                    )
                else:
                    logger.debug("%s: %s still unreachable: %s", what, self.service, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.since is not None:
                logger.warning(
                    "worker %s: %s reachable again after %.1f s",
                    self.worker_id,
                    self.service,
                    time.monotonic() - self.since,
                )
                self.since = None
            return result
