"""What the HTTP API needs from where sessions run: in this process, or spread over Redis."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["Backend", "Deliver", "new_session_id", "worker_name"]

#: ``await deliver(record)``: hands one record to a follower (a WebSocket).
Deliver = Callable[[dict[str, Any]], Awaitable[None]]


def worker_name() -> str:
    """A worker id readable in listings: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_session_id() -> str:
    """A fresh, unguessable session id."""
    return f"session-{os.urandom(9).hex()}"


class Backend(Protocol):
    """The API's view of the sessions. Every method raises a
    :class:`taskrunner.serve.ServeError` subclass for a request it refuses, and changes
    nothing then."""

    worker_id: str
    agent_id: str

    async def start_session(self, environment: str, parameters: dict[str, Any]) -> str:
        """Start a session (its ``StartEvent`` is its first input); return its id."""
        ...

    async def send_input(self, session_id: str, event: dict[str, Any]) -> str:
        """Queue an input (normal form of ``parse_input``) for the session; return its id."""
        ...

    async def interrupt(self, session_id: str) -> None:
        """Cancel the session's interruptible tasks (reason ``"interrupted"``)."""
        ...

    async def cancel_task(self, session_id: str, name: str) -> None:
        """Cancel the session's unfinished task ``name``."""
        ...

    async def records(
        self, session_id: str, after: int | None, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` kept records with ``seq > after``, in order; with ``wait`` > 0,
        waits up to that many seconds for the first one if there is none yet."""
        ...

    async def follow(self, session_id: str, after: int | None, deliver: Deliver) -> None:
        """Deliver the records after ``after``, then live ones, until the session ends."""
        ...

    async def session_info(self, session_id: str) -> dict[str, Any]:
        """``session_id``, ``agent_id``, ``environment``, ``state``, ``owner``, ``created``."""
        ...

    async def sessions(self, limit: int) -> list[dict[str, Any]]:
        """:meth:`session_info` of up to ``limit`` sessions, the newest first."""
        ...

    async def health(self) -> dict[str, Any]:
        """This worker's id, its sessions, whether it is draining or cut off."""
        ...

    def debugger_used(self) -> None:
        """The debugger page was requested (what it shows beyond this worker's own
        sessions may be read only while it is in use)."""
        ...
