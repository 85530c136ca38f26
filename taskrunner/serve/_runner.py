"""One served session inside a worker: inputs in, records out, a checkpoint per input.

A :class:`SessionRunner` is what a backend (in memory or Redis) runs for each session it
owns. It opens a taskrunner session, feeds it the inputs the backend delivers, publishes
every record as a JSON-safe dict with a session-wide ``seq`` and ``task_id`` (so a session
taken over by another worker goes on numbering where the last one stopped), and hands the
backend a checkpoint after every handled input.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .._core.records import Record
from .._core.supervisor import Flavor
from .._session.agent_events import StartEvent, StopEvent
from .._session.records import SessionStarted
from .._session.session import AgentHandler, Session, open_session
from ._checkpoint import checkpoint_session, core_restore, restore_session
from ._inputs import event_from_json

__all__ = ["Resume", "SessionRunner", "lost_tasks"]

logger = logging.getLogger("taskrunner.serve")

_TERMINAL = frozenset({"TaskFinished", "TaskFailed", "TaskCancelled", "TaskTimedOut"})

#: ``publish(record_dict)``: synchronous, in order; the backend makes it durable.
Publish = Callable[[dict[str, Any]], None]
#: ``save(state)``: the checkpoint after an input; ordered after the records before it.
Save = Callable[[dict[str, Any]], None]


@attrs.frozen
class Resume:
    """Where a session taken over goes on from.

    ``state`` is the last saved state (None: the session never saved one, so every input is
    handled again from the first); ``seq_base`` the next ``seq`` to publish; ``task_base``
    the highest ``task_id`` published; ``lost`` the tasks that were running on the previous
    owner, as ``(task_id, name)``; ``previous_owner`` its worker id.
    """

    state: dict[str, Any] | None
    seq_base: int
    task_base: int
    lost: tuple[tuple[int, str], ...]
    previous_owner: str | None


def lost_tasks(
    state: dict[str, Any] | None, records_after: list[dict[str, Any]]
) -> tuple[tuple[tuple[int, str], ...], int]:
    """The tasks left running by a dead owner, and the highest task id it published.

    ``state`` is its last saved state (its ``running`` tasks at that moment), and
    ``records_after`` the records it published after that state, in order.
    """
    running: dict[int, str] = {}
    top = 0
    if state is not None:
        for task_id, name in state.get("running", []):
            running[int(task_id)] = str(name)
        top = int(state.get("max_task_id", 0))
    for record in records_after:
        task_id = record.get("task_id")
        if not isinstance(task_id, int):
            continue
        top = max(top, task_id)
        if record.get("type") == "TaskStarted":
            running[task_id] = str(record.get("task"))
        elif record.get("type") in _TERMINAL:
            running.pop(task_id, None)
    return tuple(sorted(running.items())), top


class SessionRunner:
    """Runs one session for a backend; see the module docstring.

    Inputs arrive through :meth:`deliver` as ``(input_id, message)`` where ``message`` is
    ``{"k": "start"}``, ``{"k": "input", "event": {...}}`` (the normal form of
    :func:`taskrunner.serve.parse_input`), ``{"k": "interrupt"}`` or ``{"k": "cancel",
    "name": ...}``. Interruptions act at once; inputs are handled one at a time, in order, and
    the state is saved after each. :meth:`run` returns when the session has ended (its
    ``StopEvent`` handled), was handed over (:meth:`hand_over`), or was aborted
    (:meth:`abort`: the lease was lost; nothing more is published).
    """

    def __init__(
        self,
        handler: AgentHandler,
        *,
        session_id: str,
        agent_id: str,
        environment: str,
        parameters: dict[str, Any],
        flavor: Flavor,
        stop_grace: float,
        owner: str,
        publish: Publish,
        save: Save,
        resume: Resume | None = None,
    ) -> None:
        self.session_id = session_id
        self.agent_id = agent_id
        self.environment = environment
        self.parameters = parameters
        self.owner = owner
        self._handler = handler
        self._flavor: Flavor = flavor
        self._stop_grace = stop_grace
        self._publish = publish
        self._save = save
        self._resume = resume
        self._send, self._recv = trio.open_memory_channel[tuple[str, dict[str, Any]]](math.inf)
        self._session: Session | None = None
        self._seq_base = resume.seq_base if resume else 0
        self._task_base = resume.task_base if resume else 0
        self.last_seq = self._seq_base - 1
        self._max_task_id = self._task_base
        self._running: dict[int, str] = {}
        self._handing_over = False
        self._aborted = False
        self._scope = trio.CancelScope()
        self.state = "starting"
        self.ended = trio.Event()

    # ------------------------------------------------------------------ control

    def deliver(self, input_id: str, message: dict[str, Any]) -> None:
        """Hand the session one input (synchronous; never blocks)."""
        if self._handing_over or self._aborted:
            return  # the next owner takes it from the input stream
        kind = message.get("k")
        session = self._session
        if kind == "interrupt":
            if session is not None:
                session.interrupt()
            return
        if kind == "cancel":
            if session is not None:
                session.cancel_task(str(message.get("name")))
            return
        if kind == "input" and session is not None and message["event"]["type"] == "text":
            # A barge-in cancels the interruptible tasks on arrival, not when its turn comes.
            session.interrupt()
        try:
            self._send.send_nowait((input_id, message))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the session has ended or is leaving: the input is not taken

    def interrupt(self) -> int:
        """Cancel the session's interruptible tasks now (the debugger's button)."""
        return self._session.interrupt() if self._session is not None else 0

    def cancel_task(self, name: str) -> bool:
        """Cancel the unfinished task ``name`` now; False if there is none."""
        return self._session.cancel_task(name) if self._session is not None else False

    def has_task(self, name: str) -> bool:
        """Whether an unfinished task called ``name`` runs in the session."""
        return name in self._running.values()

    def hand_over(self) -> None:
        """Leave after the current input: tasks are cancelled (``"closed"``), the state saved,
        and the session is left for another worker to go on with."""
        self._handing_over = True
        self._send.close()

    def abort(self) -> None:
        """Stop at once without publishing anything more (another worker owns the session)."""
        self._aborted = True
        self._scope.cancel()

    # ------------------------------------------------------------------ records

    def _record(self, kind: str, source: str, **fields: Any) -> dict[str, Any]:
        self.last_seq += 1
        out: dict[str, Any] = {
            "type": kind,
            "source": source,
            "task": None,
            "task_id": None,
            "seq": self.last_seq,
            "at": trio.current_time(),
            "session_id": self.session_id,
            "wall": time.time(),
        }
        out.update(fields)
        return out

    def _emit(self, record: dict[str, Any]) -> None:
        if self._aborted:
            return
        self._publish(record)

    def _on_record(self, record: Record) -> None:
        if self._resume is not None and isinstance(record, SessionStarted):
            return  # a resumed session published SessionResumed instead
        d = record.to_dict()
        # One numbering for the whole session, whichever worker runs it: records come here in
        # stream order, so renumbering keeps the order and leaves no gap.
        self.last_seq += 1
        d["seq"] = self.last_seq
        task_id = d.get("task_id")
        if isinstance(task_id, int):
            task_id += self._task_base
            d["task_id"] = task_id
            self._max_task_id = max(self._max_task_id, task_id)
            if d["type"] == "TaskStarted":
                self._running[task_id] = str(d.get("task"))
            elif d["type"] in _TERMINAL:
                self._running.pop(task_id, None)
        d.setdefault("session_id", self.session_id)
        d.setdefault("wall", time.time())
        if d["type"] == "SessionEnded" and self._handing_over:
            d = {**d, "type": "SessionHandedOver", "owner": self.owner}
        self._emit(d)

    def _save_state(self, input_id: str) -> None:
        if self._aborted or self._session is None:
            return
        self._save(
            {
                "session": checkpoint_session(self._session, parameters=self.parameters),
                "input_id": input_id,
                "seq": self.last_seq,
                "max_task_id": self._max_task_id,
                "running": sorted(self._running.items()),
                "owner": self.owner,
            }
        )

    # ------------------------------------------------------------------ running

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until it ends, is handed over or aborted; see the class doc.

        ``task_status.started()`` is called once the session is open (restored, or with its
        parameters in the data). Cancelling the caller cancels the session at once: its
        tasks end with reason ``"closed"``, and no state is saved after that.
        """
        try:
            with self._scope:
                await self._run(task_status)
        finally:
            self.state = "ended"
            self._send.close()
            self.ended.set()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        resume = self._resume
        if resume is not None:
            for task_id, name in resume.lost:
                self._emit(
                    self._record(
                        "TaskCancelled",
                        "task",
                        task=name,
                        task_id=task_id,
                        reason="worker_lost",
                        origin=f"worker:{resume.previous_owner}",
                    )
                )
            state = resume.state
            self._emit(
                self._record(
                    "SessionResumed",
                    "session",
                    agent_id=self.agent_id,
                    environment=self.environment,
                    owner=self.owner,
                    previous_owner=resume.previous_owner,
                    from_input=None if state is None else state.get("input_id"),
                )
            )
        async with trio.open_nursery() as nursery:
            options: dict[str, Any] = {}
            restoring = resume is not None and resume.state is not None
            if restoring:
                assert resume is not None and resume.state is not None
                saved_id = resume.state["session"].get("session_id")
                if saved_id != self.session_id:
                    raise ValueError(
                        f"checkpoint of session {saved_id!r} cannot restore "
                        f"session {self.session_id!r}"
                    )
            by_core = core_restore()
            if by_core:
                if restoring:
                    assert resume is not None and resume.state is not None
                    options["restore"] = resume.state["session"]["core"]
                else:
                    options["parameters"] = dict(self.parameters)
            try:
                async with open_session(
                    self._handler,
                    session_id=self.session_id,
                    agent_id=self.agent_id,
                    environment=self.environment,
                    flavor=self._flavor,
                    stop_grace=self._stop_grace,
                    **options,
                ) as session:
                    nursery.start_soon(self._pump, session)
                    if restoring and not by_core:
                        assert resume is not None and resume.state is not None
                        restore_session(session, resume.state["session"])
                    elif not by_core:
                        for key, value in self.parameters.items():
                            session.context.set_data(key, value)
                    self._session = session
                    self.state = "running"
                    task_status.started()
                    if not await self._feed(session):
                        # handed over: leave without a StopEvent; the tasks end ("closed")
                        raise _HandedOver
            except* _HandedOver:
                pass
        # the pump has published SessionEnded (or SessionHandedOver) by now

    async def _feed(self, session: Session) -> bool:
        """Hand the inputs over one at a time; True once a StopEvent was handled."""
        async for input_id, message in self._recv:
            kind = message.get("k")
            if kind == "start":
                event: Any = StartEvent(data=dict(self.parameters))
            else:
                event = event_from_json(message["event"])
            if isinstance(event, StopEvent):
                self.state = "stopping"
            try:
                await session.send(event)
            except RuntimeError:
                logger.warning("session %s: input %s after stop ignored", self.session_id, input_id)
                continue
            await session.wait_until_handled()
            self._save_state(input_id)
            if isinstance(event, StopEvent):
                return True
        return False

    async def _pump(self, session: Session) -> None:
        async for record in session.events():
            self._on_record(record)


class _HandedOver(Exception):
    """Raised inside the session block to leave it without a StopEvent."""
