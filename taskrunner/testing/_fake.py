"""fake_context: a Context stand-in for unit-testing a task function without a session."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs

from .._core.records import jsonable
from .._session.context import DataChange

__all__ = ["FakeContext", "FakeTask", "fake_context", "run_asyncio"]

_FIELDS = ("session_id", "agent_id", "environment", "function_id", "variables", "data")


def _now() -> float:
    try:
        import trio

        return trio.current_time()
    except RuntimeError:  # outside a trio run (plain asyncio): no clock to read
        return 0.0


async def run_asyncio(work: Any) -> Any:
    """Run asyncio code from a trio test, on trio's clock (so ``autojump_clock`` applies):
    await the coroutine ``work`` and return its result, or iterate the async generator
    ``work`` and return what it yielded, as a list.

    Uses trio-asyncio (a loop opened for the call and closed after it). Cancelling the
    caller cancels the asyncio code.
    """
    from .._adapters.aio import trio_asyncio

    if inspect.isasyncgen(work):
        agen = work

        async def drain() -> list[Any]:
            return [event async for event in agen]

        work = drain()
    elif not inspect.iscoroutine(work):
        raise TypeError(
            f"run_asyncio() takes a coroutine or an async generator (call the function), "
            f"got {type(work).__name__}: {work!r:.80}"
        )
    async with trio_asyncio.open_loop() as loop:
        return await loop.run_aio_coroutine(work)


@attrs.define(eq=False)
class FakeTask:
    """A task the code under test asked for with ``create_task``; it is not run until
    :meth:`run` (or ``context.wait_for_all_tasks()``) runs it in the caller's flavour.

    ``state``: ``"pending"``, ``"finished"``, ``"failed"`` or ``"cancelled"``; ``outputs``
    what it yielded; ``result`` / ``error`` how it ended.
    """

    name: str
    handler: Any
    interruptible: bool
    timeout: float | None
    state: str = "pending"
    outputs: list[Any] = attrs.field(factory=list)
    result: Any = None
    error: BaseException | None = None

    async def run(self, *, asyncio: bool = False) -> list[Any]:
        """Run the task to its end here (awaiting its coroutine or iterating its generator);
        returns its outputs. ``asyncio=True`` runs asyncio code from a trio test (see
        :func:`run_asyncio`). Its exception is recorded in ``error`` and re-raised; if the
        caller is cancelled meanwhile, the task becomes ``"cancelled"`` and the cancellation
        propagates. Running it twice, or after it was cancelled, raises ``RuntimeError``."""
        if self.state != "pending":
            raise RuntimeError(f"fake task {self.name!r} is {self.state}; it runs only once")
        work = self.handler() if callable(self.handler) else self.handler
        try:
            if asyncio:
                if inspect.isasyncgen(work):
                    self.outputs.extend(await run_asyncio(work))
                else:
                    self.result = await run_asyncio(work)
            elif inspect.isasyncgen(work):
                async for event in work:
                    self.outputs.append(event)
            else:
                self.result = await work
        except Exception as exc:
            self.state, self.error = "failed", exc
            raise
        except BaseException:
            self.state = "cancelled"
            raise
        self.state = "finished"
        return self.outputs

    def close(self) -> None:
        """Drop a task that will not run (closing its coroutine or generator)."""
        if self.state == "pending":
            self.state = "cancelled"
            work = self.handler
            if inspect.iscoroutine(work):
                work.close()
            elif inspect.isasyncgen(work):
                # aclose() of a never-started generator finishes at once, with no awaiting.
                closer = work.aclose()
                try:
                    closer.send(None)
                except StopIteration:
                    pass


class FakeContext:
    """The Context surface for unit tests of task functions: ids, ``variables``, session
    ``data`` with its write trail, and ``create_task`` that records :class:`FakeTask`\\ s
    instead of starting them. Made by :func:`fake_context`."""

    def __init__(
        self,
        *,
        session_id: str,
        agent_id: str,
        environment: str,
        function_id: str,
        variables: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        self.session_id = session_id
        self.agent_id = agent_id
        self.environment = environment
        self.function_id = function_id
        self.variables = variables
        self.data: dict[str, Any] = data
        #: every create_task call, in order
        self.created: list[FakeTask] = []
        self._trail: dict[str, list[DataChange]] = {}
        self._auto = 0

    def __repr__(self) -> str:
        return f"<FakeContext session={self.session_id!r} tasks={len(self.created)}>"

    def get_data(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.data.get(key, default)

    def set_data(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (the trail records the source ``"test"``)."""
        if not isinstance(key, str):
            raise TypeError(f"data keys are str, got {type(key).__name__}: {key!r}")
        self.data[key] = value
        self._trail.setdefault(key, []).append(DataChange(key, value, _now(), "test"))

    def data_history(self, key: str) -> list[DataChange]:
        """Every write of ``key`` through :meth:`set_data`, oldest first."""
        return list(self._trail.get(key, ()))

    @property
    def tasks(self) -> dict[str, FakeTask]:
        """The tasks created, by name (the latest of a name)."""
        return {t.name: t for t in self.created}

    def create_task(
        self,
        handler: Any,
        name: str | None = None,
        interruptible: bool = False,
        timeout: float | None = 30,
        **_ignored: Any,
    ) -> FakeTask:
        """Record the request as a :class:`FakeTask` (not started) and return it."""
        if not (
            inspect.iscoroutine(handler)
            or inspect.isasyncgen(handler)
            or inspect.iscoroutinefunction(handler)
            or inspect.isasyncgenfunction(handler)
        ):
            raise TypeError(
                "create_task takes a coroutine, an async generator, or an async function "
                f"taking no arguments; got {type(handler).__name__}: {handler!r:.80}"
            )
        if name is None:
            self._auto += 1
            base = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", "task")
            name = f"{str(base).split('.')[-1]}-{self._auto}"
        task = FakeTask(name, handler, bool(interruptible), timeout)
        self.created.append(task)
        return task

    def cancel_task(self, name: str) -> bool:
        """Cancel the pending task ``name``; False if there is none."""
        task = self.tasks.get(name)
        if task is None or task.state != "pending":
            return False
        task.close()
        return True

    def cancel_interruptible_tasks(self) -> int:
        """Cancel the pending interruptible tasks; how many."""
        return self._cancel_where(lambda t: t.interruptible)

    def cancel_all_tasks(self) -> int:
        """Cancel every pending task; how many."""
        return self._cancel_where(lambda t: True)

    def _cancel_where(self, pred: Callable[[FakeTask], bool]) -> int:
        hit = [t for t in self.created if t.state == "pending" and pred(t)]
        for task in hit:
            task.close()
        return len(hit)

    def has_unfinished_tasks(self) -> bool:
        """True while some created task has not been run or cancelled."""
        return any(t.state == "pending" for t in self.created)

    async def wait_for_all_tasks(
        self, timeout: float | None = None, *, asyncio: bool = False
    ) -> bool:
        """Run every pending task (and the ones they create) to its end, in order; a failing
        task's error stays on it (``error``) and the others still run. ``asyncio=True``: as
        for :meth:`FakeTask.run`. ``timeout`` is accepted for the Context's signature and
        not applied. Returns True."""
        i = 0
        while i < len(self.created):
            task = self.created[i]
            i += 1
            if task.state == "pending":
                try:
                    await task.run(asyncio=asyncio)
                except Exception:
                    pass
        return True

    def close(self) -> None:
        """Drop every task that was not run (closing its coroutine: no "never awaited"
        warning)."""
        for task in self.created:
            task.close()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe picture: ids, variables, data, and the created tasks with state."""
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "function_id": self.function_id,
            "variables": dict(self.variables),
            "data": jsonable(self.data),
            "tasks": [
                {
                    "name": t.name,
                    "state": t.state,
                    "interruptible": t.interruptible,
                    "timeout": t.timeout,
                }
                for t in self.created
            ],
        }


def fake_context(**fields: Any) -> FakeContext:
    """A :class:`FakeContext` for a unit test of a task function alone.

    Fields: ``session_id`` (default ``"test-session"``), ``agent_id`` (``"test-agent"``),
    ``environment`` (``"test"``), ``function_id`` (``"handler"``), ``variables`` (a dict of
    str) and ``data`` (the initial session data, copied). Another name raises ``TypeError``
    naming the accepted ones.
    """
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise TypeError(
            f"fake_context() got unknown field(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(_FIELDS)}"
        )
    for name in ("session_id", "agent_id", "environment", "function_id"):
        if name in fields and not isinstance(fields[name], str):
            raise TypeError(f"{name} must be a str, got {type(fields[name]).__name__}")
    for name in ("variables", "data"):
        if name in fields and not isinstance(fields[name], dict):
            raise TypeError(f"{name} must be a dict, got {type(fields[name]).__name__}")
    return FakeContext(
        session_id=fields.get("session_id", "test-session"),
        agent_id=fields.get("agent_id", "test-agent"),
        environment=fields.get("environment", "test"),
        function_id=fields.get("function_id", "handler"),
        variables=dict(fields.get("variables", {})),
        data=dict(fields.get("data", {})),
    )
