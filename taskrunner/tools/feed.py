"""The thread-safe hand-off between an agent's trio thread and the debugger's own thread.

Sessions publish to an :class:`AgentFeed` exactly as to a :class:`~taskrunner.tools.hub.Hub`
(``open_session(..., hub=feed)``).  Publishing appends to a queue and, at most once per
batch, asks the server's trio run to drain it into its hub: the agent never waits for the
server, and the server keeps serving while the agent's thread is blocked.

Sinks added to the feed (the recorder) are called in the agent's thread, synchronously,
for every record, so a recording is complete even if the server falls behind.

The page's actions travel the other way through :class:`RemoteControl`: the call is handed
to the agent's trio run and the server waits for its answer for a short while; if the
agent's thread is blocked, the action stays queued and runs when it is free again.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from .hub import Hub, Record, Sink
from .stacks import FrameInfo, creation_site, task_stack

__all__ = ["DEFAULT_MAX_PENDING", "AgentBusyError", "AgentFeed", "RemoteControl"]

logger = logging.getLogger(__name__)

#: Records that may wait for the server thread before the feed starts dropping them.
DEFAULT_MAX_PENDING = 1_000_000


class AgentBusyError(Exception):
    """The agent's thread did not answer in time (it is blocked); the action is queued."""


def _accepts_origin(fn: Callable[..., Any]) -> bool:
    try:
        return "origin" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class RemoteControl:
    """A session's control, usable from the server thread; methods are async.

    ``cancel_task(name, origin=...)`` and ``interrupt()`` run in the agent's trio run.
    They wait up to ``answer_within`` seconds for the answer and raise
    :class:`AgentBusyError` past that (the call still runs once the agent is free).
    """

    def __init__(self, control: Any, agent_token: trio.lowlevel.TrioToken, answer_within: float):
        self._control = control
        self._agent_token = agent_token
        self._answer_within = answer_within
        self._cancel_takes_origin = _accepts_origin(control.cancel_task)

    async def _call(self, fn: Callable[[], Any]) -> Any:
        server_token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: dict[str, Any] = {}

        def in_agent() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the server thread
                box["error"] = exc
            try:
                server_token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        try:
            self._agent_token.run_sync_soon(in_agent)
        except trio.RunFinishedError:
            raise AgentBusyError("the agent's trio run has ended") from None
        with trio.move_on_after(self._answer_within):
            await done.wait()
        if not done.is_set():
            raise AgentBusyError(
                "the agent's thread is blocked; the action is queued and runs when it is free"
            )
        if "error" in box:
            raise box["error"]
        return box["value"]

    async def cancel_task(self, name: str, origin: str = "debugger") -> bool:
        """Cancel the task called ``name`` in the agent's run (origin ``"debugger"``)."""
        control = self._control
        if self._cancel_takes_origin:
            return bool(await self._call(lambda: control.cancel_task(name, origin=origin)))
        return bool(await self._call(lambda: control.cancel_task(name)))

    async def interrupt(self) -> int:
        """Interrupt the session in the agent's run; how many tasks were cancelled."""
        return int(await self._call(self._control.interrupt))

    def task_stack(self, name: str) -> list[FrameInfo] | None:
        """Where the running task ``name`` waits now (read from this thread; see stacks)."""
        supervisor = getattr(self._control, "supervisor", None)
        tasks = getattr(supervisor, "_tasks", None)
        handle = None if tasks is None else tasks.get(name)
        return None if handle is None else task_stack(handle)


class AgentFeed:
    """What sessions in the agent's thread publish to; drained into a hub in another thread.

    It has the hub's publishing side (``register``, ``publish``, ``unregister_control``,
    ``add_sink``/``remove_sink``), safe to call from the agent's trio run without waiting.
    :meth:`connect` is called in the server's trio run.  With ``capture_creation``, each
    ``TaskStarted`` carries where the task was created (``"created"``: frames) in the hub.
    ``watchdog`` (a :class:`~taskrunner.tools.watchdog.LoopWatchdog`) is told about each
    registered session.  With ``forward=False`` (a recording without the page) nothing is
    queued for a server: only the sinks see the records.
    """

    def __init__(
        self,
        *,
        capture_creation: bool = True,
        max_pending: int = DEFAULT_MAX_PENDING,
        answer_within: float = 1.0,
        watchdog: Any = None,
        forward: bool = True,
    ) -> None:
        self.forward = forward
        self.capture_creation = capture_creation
        self.max_pending = max_pending
        self.answer_within = answer_within
        self.watchdog = watchdog
        self._queue: deque[tuple[str, str, Any]] = deque()
        self._sinks: list[Sink] = []
        self._hub: Hub | None = None
        self._server_token: trio.lowlevel.TrioToken | None = None
        self._scheduled = False
        self._lock = threading.Lock()
        self.dropped = 0
        """Records dropped because the server thread fell ``max_pending`` behind."""

    # ------------------------------------------------------------------ agent side

    def register(self, session_id: str, control: Any = None) -> None:
        """A session opened (in the agent's trio run); ``control`` drives its buttons."""
        remote = None
        if control is not None:
            remote = RemoteControl(control, trio.lowlevel.current_trio_token(), self.answer_within)
            if self.watchdog is not None and getattr(control, "supervisor", None) is not None:
                self.watchdog.watch(control, session_id)
        self._put(("register", session_id, remote))

    def unregister_control(self, session_id: str) -> None:
        """The session ended: its buttons go."""
        self._put(("unregister", session_id, None))

    def publish(self, session_id: str, record: Record) -> None:
        """Hand one record over; sinks see it now, the server's hub soon."""
        for sink in list(self._sinks):
            try:
                sink(session_id, record)
            except Exception:
                logger.exception("feed sink %r failed; removing it", sink)
                self.remove_sink(sink)
        if not self.forward:
            return
        if self.capture_creation and record.get("type") in ("TaskStarted", "TaskQueued"):
            record = {**record, "created": creation_site(skip=2)}
        if len(self._queue) >= self.max_pending:
            self.dropped += 1
            return
        self._put(("publish", session_id, record))

    def add_sink(self, sink: Sink) -> None:
        """Call ``sink(session_id, record)`` in the agent's thread for every record."""
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop calling ``sink``; no error if it is not attached."""
        try:
            self._sinks.remove(sink)
        except ValueError:
            pass

    def session_ids(self) -> list[str]:
        """The feed keeps no history: none (for ``Recorder.attach``)."""
        return []

    def records(self, session_id: str, *, after: int | None = None) -> list[Record]:
        """The feed keeps no history: none."""
        return []

    def _put(self, item: tuple[str, str, Any]) -> None:
        if not self.forward:
            return
        self._queue.append(item)
        if not self._scheduled and self._server_token is not None:
            self._scheduled = True
            try:
                self._server_token.run_sync_soon(self._drain)
            except trio.RunFinishedError:
                self._server_token = None

    # ------------------------------------------------------------------ server side

    def connect(self, hub: Hub) -> None:
        """Drain into ``hub`` from now on; call in the server's trio run."""
        with self._lock:
            self._hub = hub
            self._server_token = trio.lowlevel.current_trio_token()
            self._scheduled = True
        self._drain()

    def disconnect(self) -> None:
        """Stop handing records to the server (it is stopping)."""
        self._server_token = None

    def pending(self) -> int:
        """Items waiting for the server thread."""
        return len(self._queue)

    def _drain(self) -> None:
        # Reset first: an item appended after this line schedules another drain.
        self._scheduled = False
        hub = self._hub
        queue = self._queue
        if hub is None:
            return
        while queue:
            kind, session_id, payload = queue.popleft()
            if kind == "publish":
                hub.publish(session_id, payload)
            elif kind == "register":
                hub.register(session_id, payload)
            else:
                hub.unregister_control(session_id)
