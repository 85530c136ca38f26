"""The debugger server in a thread of its own, with its own trio run.

The agent's trio thread only appends to an :class:`~taskrunner.tools.feed.AgentFeed`; the
server's thread drains it into its hub and serves the page.  A task that blocks the
agent's thread therefore does not freeze the page, which keeps answering and shows that
the agent is blocked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import outcome
import trio

from taskrunner.tools.hub import Hub

from .app import DEFAULT_MAX_STREAM_CLIENTS
from .server import DEFAULT_HOST, DEFAULT_PORT, serve

__all__ = ["DebuggerThread"]


class DebuggerThread:
    """Serve the debugger page from a thread, for a feed (live) or a recording index.

    Use as a context manager, or :meth:`start` / :meth:`stop`.  With ``feed``, a hub is made
    in the server's thread and fed from it; with ``source`` (a hub owned by nobody else, or
    a :class:`~taskrunner.tools.recording_index.RecordingIndex`) that is served instead.
    ``scan`` (for a recording index) runs in a worker thread of the server while it serves.
    Other arguments are as for :func:`~taskrunner.tools.debugger.server.serve`.
    """

    def __init__(
        self,
        *,
        feed: Any = None,
        source: Any = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        read_only: bool = False,
        status: Callable[[], dict[str, Any] | None] | None = None,
        metrics: bool = False,
        max_stream_clients: int = DEFAULT_MAX_STREAM_CLIENTS,
        scan: Callable[[], None] | None = None,
    ) -> None:
        if (feed is None) == (source is None):
            raise ValueError("give exactly one of feed= (live sessions) or source= (a hub)")
        self.feed = feed
        self.hub: Any = source if source is not None else Hub()
        self._serve_kwargs = dict(
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            status=status,
            feed=feed,
            metrics=metrics,
            max_stream_clients=max_stream_clients,
        )
        self._scan = scan
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._started = threading.Event()
        self._result: outcome.Outcome[str] | None = None
        self.url: str | None = None
        """The page's address once started."""

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    url: str = await nursery.start(partial(serve, self.hub, **self._serve_kwargs))
                    if self.feed is not None:
                        self.feed.connect(self.hub)
                    if self._scan is not None:
                        nursery.start_soon(
                            partial(trio.to_thread.run_sync, self._scan, abandon_on_cancel=True)
                        )
                    self._result = outcome.Value(url)
                    self._started.set()
        except BaseException as exc:
            if self._result is None:
                # A failure to start (port in use, no token) comes out plain, not grouped.
                while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]
                self._result = outcome.Error(exc)
                self._started.set()
                return
            raise
        finally:
            if self.feed is not None:
                self.feed.disconnect()
            self._close_hub()

    def _close_hub(self) -> None:
        close = getattr(self.hub, "close", None)
        if close is not None:
            close()

    def _run(self) -> None:
        trio.run(self._main)

    def start(self) -> str:
        """Start the thread and return the page's address once it is bound.

        Raises what binding raised (``OSError`` for a port in use, ``ExposureError``).
        """
        self._thread = threading.Thread(target=self._run, name="taskrunner-debugger", daemon=True)
        self._thread.start()
        self._started.wait()
        assert self._result is not None
        url: str = self._result.unwrap()
        self.url = url
        return url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        if self._token is not None and self._scope is not None:
            scope = self._scope
            try:
                self._token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> DebuggerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
