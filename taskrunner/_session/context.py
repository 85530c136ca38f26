"""The Context a handler receives: session identity, data with an audit trail, tasks."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal

import attrs
import trio

from .._core.handle import TaskHandle
from .._core.records import jsonable
from .._core.supervisor import Flavor, Supervisor, TaskHandler, current_task

__all__ = ["Context", "DataChange", "current_context"]

_current_context: ContextVar[Context | None] = ContextVar(
    "taskrunner.current_context", default=None
)

_MISSING = object()


def current_context() -> Context | None:
    """The session's :class:`Context` from anywhere in the call stack of its handler or tasks.

    None outside any session. Carried by context variables, so it follows into tasks of both
    flavours and into code they call.
    """
    return _current_context.get()


@attrs.frozen
class DataChange:
    """One write of session data: ``value`` set under ``key`` at ``at`` by ``source``.

    ``source`` is ``"handler"``, the name of the task that wrote it, or ``"external"`` for
    code outside the handler and its tasks.
    """

    key: str
    value: Any
    at: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "key": self.key,
            "value": jsonable(self.value),
            "at": self.at,
            "source": self.source,
        }


class Context:
    """What a handler receives as ``context``: the seeds' surface, backed by a supervisor.

    Identity: ``agent_id``, ``environment``, ``session_id``, ``function_id``; configuration:
    ``variables`` (a dict of str); session data: ``data`` with :meth:`get_data` /
    :meth:`set_data`, every write recorded (:meth:`data_history`); background tasks:
    :meth:`create_task` and the cancel and wait methods, shared with the session's supervisor.
    """

    def __init__(
        self,
        sup: Supervisor,
        *,
        session_id: str,
        agent_id: str,
        environment: str,
        function_id: str,
        variables: dict[str, str],
        history_per_key: int,
        on_interrupt: Callable[[], int],
    ) -> None:
        self._sup = sup
        self.session_id = session_id
        self.agent_id = agent_id
        self.environment = environment
        self.function_id = function_id
        self.variables = variables
        #: The session data store; write through :meth:`set_data` so writes are recorded.
        self.data: dict[str, Any] = {}
        self._trail: dict[str, deque[DataChange]] = {}
        self._history_per_key = history_per_key
        self._on_interrupt = on_interrupt

    def __repr__(self) -> str:
        return f"<Context session={self.session_id!r} agent={self.agent_id!r}>"

    # ------------------------------------------------------------------ data

    def get_data(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.data.get(key, default)

    def set_data(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, recording the time and who wrote it."""
        if not isinstance(key, str):
            raise TypeError(f"data keys are str, got {type(key).__name__}: {key!r}")
        self.data[key] = value
        task = current_task()
        if task is not None and task._sup is self._sup:
            source = task.name
        elif _current_context.get() is self:
            source = "handler"
        else:
            source = "external"
        trail = self._trail.get(key)
        if trail is None:
            trail = self._trail[key] = deque(maxlen=self._history_per_key)
        trail.append(DataChange(key, value, trio.current_time(), source))

    def data_history(self, key: str) -> list[DataChange]:
        """Every recorded write of ``key``, oldest first (the last ``history_per_key`` kept)."""
        return list(self._trail.get(key, ()))

    # ------------------------------------------------------------------ tasks

    def create_task(
        self,
        handler: TaskHandler,
        name: str | None = None,
        interruptible: bool = False,
        timeout: float | Literal["default"] | None = "default",
        *,
        flavor: Flavor | None = None,
    ) -> TaskHandle:
        """Start a background task; see :meth:`taskrunner.Supervisor.create_task`.

        As in the seeds' runtime, a name held by a running task replaces that task (it is
        cancelled with reason ``"replaced"``). ``timeout`` defaults to the session's
        ``default_timeout`` (30 s). The task sees this context through
        :func:`current_context`, and the flavour defaults to the session's (asyncio unless
        the session said otherwise).
        """
        token = _current_context.set(self)
        try:
            return self._sup.create_task(
                handler, name, interruptible, timeout, flavor=flavor, on_duplicate="replace"
            )
        finally:
            _current_context.reset(token)

    def cancel_task(self, name: str) -> bool:
        """Cancel the unfinished task ``name``; False if there is none."""
        return self._sup.cancel_task(name)

    def cancel_interruptible_tasks(self) -> int:
        """Cancel the interruptible tasks (reason ``"interrupted"``), as a user barge-in does."""
        task = current_task()
        origin = f"task:{task.name}" if task is not None and task._sup is self._sup else "handler"
        return self._sup.cancel_interruptible_tasks(origin=origin)

    def cancel_all_tasks(self) -> int:
        """Cancel every task but the calling one (reason ``"cancel_all"``)."""
        return self._sup.cancel_all_tasks()

    def has_unfinished_tasks(self) -> bool:
        """True while any task of the session is still running."""
        return self._sup.has_unfinished_tasks()

    def wait_for_all_tasks(self, timeout: float | None = None) -> Awaitable[bool]:
        """Wait until every task (but the calling one) has ended; False if ``timeout`` passed.

        Works from trio and asyncio code alike; cancelling the wait affects no task."""
        return self._sup.wait_for_all_tasks(timeout)

    # ------------------------------------------------------------------ inspecting

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe picture of the session: ids, data, and every task with its state."""
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "function_id": self.function_id,
            "variables": dict(self.variables),
            "data": jsonable(self.data),
            "tasks": [info.to_dict() for info in self._sup.snapshot()],
        }
