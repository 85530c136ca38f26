"""Sessions in this process, records in memory (the default of ``serve``)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import trio

from .._core.supervisor import Flavor
from .._session.session import AgentHandler
from ..tools.hub import Hub
from ._backend import Deliver, new_session_id, worker_name
from ._errors import ConflictError, NotFoundError, UnavailableError
from ._runner import SessionRunner

__all__ = ["LocalBackend"]


class LocalBackend:
    """Runs every session in this process; records are kept in ``hub`` (bounded per session
    by the hub's ``history_limit``), where the debugger page reads them too.

    ``keep_ended`` ended sessions stay listed (the oldest are dropped from the listing
    past that); past ``max_sessions`` running ones, new sessions are refused
    (503). Use :meth:`run` in a nursery (``await nursery.start(backend.run)``); it
    returns after :meth:`drain` once every session has ended.
    """

    def __init__(
        self,
        handler: AgentHandler,
        *,
        agent_id: str,
        hub: Hub,
        flavor: Flavor = "asyncio",
        stop_grace: float = 0.0,
        keep_ended: int = 10_000,
        max_sessions: int = 10_000,
    ) -> None:
        self.worker_id = worker_name()
        self.agent_id = agent_id
        self.hub = hub
        self._handler = handler
        self._flavor: Flavor = flavor
        self._stop_grace = stop_grace
        self._keep_ended = keep_ended
        self._max_sessions = max_sessions
        self._runners: dict[str, SessionRunner] = {}
        self._info: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._inputs = 0
        self._nursery: trio.Nursery | None = None
        self._draining = False
        self._checkpoints: dict[str, dict[str, Any]] = {}

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the sessions until :meth:`drain` has ended them all (or cancellation, which
        cancels every session at once)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def drain(self) -> None:
        """Take no new sessions; stop the running ones after their current input (their
        ``StopEvent`` is handled and tasks get ``stop_grace``), and wait until they end."""
        self._draining = True
        for session_id, runner in list(self._runners.items()):
            if self._info[session_id]["state"] == "running":
                self._info[session_id]["state"] = "stopping"
                self._inputs += 1
                runner.deliver(str(self._inputs), {"k": "input", "event": {"type": "stop"}})
        for runner in list(self._runners.values()):
            await runner.ended.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ API

    async def start_session(self, environment: str, parameters: dict[str, Any]) -> str:
        """See :class:`taskrunner.serve.Backend`."""
        if self._draining or self._nursery is None:
            raise UnavailableError("this server is shutting down and takes no new sessions")
        if len(self._runners) >= self._max_sessions:
            raise UnavailableError(
                f"this server runs {self._max_sessions} sessions, its --max-sessions; "
                "try again later"
            )
        session_id = new_session_id()
        runner = SessionRunner(
            self._handler,
            session_id=session_id,
            agent_id=self.agent_id,
            environment=environment,
            parameters=parameters,
            flavor=self._flavor,
            stop_grace=self._stop_grace,
            owner=self.worker_id,
            publish=lambda record: self.hub.publish(session_id, record),
            save=lambda state: self._checkpoints.__setitem__(session_id, state),
        )
        self._runners[session_id] = runner
        self._info[session_id] = {
            "session_id": session_id,
            "agent_id": self.agent_id,
            "environment": environment,
            "state": "running",
            "owner": self.worker_id,
            "created": time.time(),
        }
        self.hub.register(session_id, runner)
        await self._nursery.start(self._host, runner)
        runner.deliver("0", {"k": "start"})
        self._forget_old()
        return session_id

    async def _host(self, runner: SessionRunner, task_status: trio.TaskStatus[None]) -> None:
        try:
            await runner.run(task_status)
        finally:
            self.hub.unregister_control(runner.session_id)
            self._info[runner.session_id]["state"] = "ended"
            self._runners.pop(runner.session_id, None)
            self._checkpoints.pop(runner.session_id, None)

    def _forget_old(self) -> None:
        ended = [sid for sid, info in self._info.items() if info["state"] == "ended"]
        for session_id in ended[: max(0, len(ended) - self._keep_ended)]:
            del self._info[session_id]

    def _live(self, session_id: str) -> SessionRunner:
        info = self._info.get(session_id)
        if info is None:
            raise NotFoundError(f"no session {session_id!r}")
        runner = self._runners.get(session_id)
        if runner is None or info["state"] != "running":
            raise ConflictError(f"session {session_id!r} has {info['state']}: it takes no input")
        return runner

    async def send_input(self, session_id: str, event: dict[str, Any]) -> str:
        """See :class:`taskrunner.serve.Backend`."""
        runner = self._live(session_id)
        if event["type"] == "stop":
            self._info[session_id]["state"] = "stopping"
        self._inputs += 1
        input_id = str(self._inputs)
        runner.deliver(input_id, {"k": "input", "event": event})
        await trio.lowlevel.checkpoint()
        return input_id

    async def interrupt(self, session_id: str) -> None:
        """See :class:`taskrunner.serve.Backend`."""
        self._live(session_id).deliver("", {"k": "interrupt"})
        await trio.lowlevel.checkpoint()

    async def cancel_task(self, session_id: str, name: str) -> None:
        """See :class:`taskrunner.serve.Backend`; an unknown task name is a 404 here."""
        info = self._info.get(session_id)
        runner = self._runners.get(session_id)
        if info is None:
            raise NotFoundError(f"no session {session_id!r}")
        if runner is None or not runner.has_task(name):
            raise NotFoundError(f"session {session_id!r} has no unfinished task {name!r}")
        runner.deliver("", {"k": "cancel", "name": name})
        await trio.lowlevel.checkpoint()

    def _known(self, session_id: str) -> None:
        if session_id not in self._info or session_id not in self.hub:
            raise NotFoundError(f"no session {session_id!r}")

    async def records(
        self, session_id: str, after: int | None, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        """See :class:`taskrunner.serve.Backend`."""
        self._known(session_id)
        with self.hub.subscribe(session_id, buffer_size=1) as subscription:
            found = self.hub.records(session_id, after=after)
            if not found and wait > 0 and self._info[session_id]["state"] != "ended":
                with trio.move_on_after(wait):
                    async for _ in subscription:
                        break
                found = self.hub.records(session_id, after=after)
        await trio.lowlevel.checkpoint()
        return found[:limit]

    async def follow(self, session_id: str, after: int | None, deliver: Deliver) -> None:
        """See :class:`taskrunner.serve.Backend`."""
        self._known(session_id)
        last = after
        with self.hub.subscribe(session_id) as subscription:
            while True:
                for record in self.hub.records(session_id, after=last):
                    await deliver(record)
                    last = record["seq"]
                    if record["type"] == "SessionEnded":
                        return
                if self._info[session_id]["state"] == "ended":
                    return
                # wait for news (a record or a notice of missed ones), then reread the history
                async for _ in subscription:
                    break
                else:
                    return

    async def session_info(self, session_id: str) -> dict[str, Any]:
        """See :class:`taskrunner.serve.Backend`."""
        info = self._info.get(session_id)
        if info is None:
            raise NotFoundError(f"no session {session_id!r}")
        await trio.lowlevel.checkpoint()
        return dict(info)

    async def sessions(self, limit: int) -> list[dict[str, Any]]:
        """See :class:`taskrunner.serve.Backend`."""
        await trio.lowlevel.checkpoint()
        return [dict(info) for info in reversed(self._info.values())][:limit]

    def debugger_used(self) -> None:
        """See :class:`taskrunner.serve.Backend`: every session is here, nothing to read."""

    async def health(self) -> dict[str, Any]:
        """See :class:`taskrunner.serve.Backend`."""
        await trio.lowlevel.checkpoint()
        return {
            "worker": self.worker_id,
            "backend": "memory",
            "sessions": len(self._runners),
            "draining": self._draining,
        }
