"""The Context a handler receives: the seeds' whole surface, backed by a supervisor and a store.

Identity and variables; session data with an audit trail; completion messages and the cache;
A/B tests, outcomes and testing metadata (:mod:`._abtests`); background tasks; memory;
checkpoints; phases. Everything synchronous works from what the session holds in memory;
what goes to the store is done off the trio thread.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import attrs
import trio

from .._core._flavored import flavored
from .._core.handle import TaskHandle
from .._core.records import jsonable
from .._core.supervisor import Flavor, Supervisor, TaskHandler, current_task
from .._store._open import known_to_exist, resolve_store, store_exists
from .._store._protocol import CheckpointNotFoundError, MemoryHit, Store
from ._abtests import Testing
from ._checkpoint import apply_checkpoint, make_checkpoint
from ._conversation import Cache, Conversation
from ._data import DataChange
from ._memory import MemoryProvider, StoreMemory
from ._notify import Notifier
from ._variables import MASK, Redactor, merge_variables, redactor

if TYPE_CHECKING:
    from typing_extensions import TypeVar as DefaultTypeVar

    from .session import Session

    #: ``Context[T]``: the type of ``context.userdata`` (Any when not given).
    T = DefaultTypeVar("T", default=Any)
else:
    T = TypeVar("T")

__all__ = ["Context", "DataChange", "current_context", "current_phase",
           "current_session"]

logger = logging.getLogger("taskrunner.context")

_current_context: ContextVar[Context[Any] | None] = ContextVar(
    "taskrunner.current_context", default=None
)
_current_phase: ContextVar[str | None] = ContextVar("taskrunner.current_phase", default=None)


def current_context() -> Context[Any] | None:
    """The session's :class:`Context` from anywhere in the call stack of its handler or tasks.

    None outside any session. Carried by context variables, so it follows into tasks of both
    flavours and into code they call.
    """
    return _current_context.get()


def current_session() -> Session | None:
    """The :class:`taskrunner.Session` whose handler or task is running, else None."""
    ctx = _current_context.get()
    return None if ctx is None else ctx._session


def current_phase() -> str | None:
    """The label of the innermost ``with context.phase(label):`` around the caller, also
    inside tasks created within it; None outside any phase."""
    return _current_phase.get()


class Context(Generic[T]):
    """What a handler receives as ``context``: the seeds' surface.

    Identity: ``agent_id``, ``environment``, ``session_id``, ``function_id``; ``variables``
    (org then environment scope, then ``open_session(variables=)``); ``data`` with
    :meth:`get_data` / :meth:`set_data` and its trail; completion messages; the cache; A/B
    tests and outcomes (also through ``context.testing``); background tasks shared with the
    session's supervisor; memory; :meth:`checkpoint`; :meth:`phase`; ``userdata``.

    ``store`` is the session's :class:`taskrunner.Store`, ``memory`` its memory provider,
    ``testing`` its tests-and-outcomes manager.
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
        store: Store | str | None = None,
        writable_keys: frozenset[str] | None = None,
        userdata: T = None,  # type: ignore[assignment]
        memory: MemoryProvider | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._sup = sup
        self.session_id = session_id
        self.agent_id = agent_id
        self.environment = environment
        self.function_id = function_id
        #: ``dict[str, str]``: masked values are real here, redacted everywhere else.
        self.variables = variables
        self._given_variables = dict(variables)
        self._masked: frozenset[str] = frozenset()
        self._redact = Redactor(())
        #: The session data store; write through :meth:`set_data` so writes are recorded.
        self.data: dict[str, Any] = {}
        self._trail: dict[str, deque[DataChange]] = {}
        self._history_per_key = history_per_key
        self._on_interrupt = on_interrupt
        self._writable = writable_keys
        #: The typed per-session object given as ``open_session(userdata=...)``.
        self.userdata: T = userdata
        self.store: Store = resolve_store(store)
        self.memory: MemoryProvider = (
            memory if memory is not None else StoreMemory(self.store, agent_id or "default")
        )
        self._conversation = Conversation()
        self._cache = Cache()
        #: The tests-and-outcomes manager (seed 000's ``context.testing``).
        self.testing = Testing(
            self.store,
            agent_id=agent_id,
            session_id=session_id,
            spawn=sup.start_job,
            emit=self._emit,
            notifier=notifier,
        )
        self._session: Session | None = None
        self._task_phase: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<Context session={self.session_id!r} agent={self.agent_id!r}>"

    def _emit(self, make: Callable[[int, float], Any]) -> None:
        sup = self._sup
        at = trio.current_time()
        sup.emit(attrs.evolve(make(sup.next_seq(), at), **sup.stamp(at)))

    # ------------------------------------------------------------------ data

    def get_data(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.data.get(key, default)

    def set_data(self, key: str, value: Any, source: str | None = None) -> None:
        """Store ``value`` under ``key``, recording the time and who wrote it (``source``,
        else inferred: ``"handler"``, the task's name, or ``"external"``).

        With ``open_session(writable_keys=...)``, another key raises ``KeyError`` naming the
        allowed ones, and nothing changes.
        """
        if not isinstance(key, str):
            raise TypeError(f"data keys are str, got {type(key).__name__}: {key!r}")
        if source is not None and (not isinstance(source, str) or not source):
            raise TypeError(f"set_data source is a non-empty str or None, got {source!r}")
        if self._writable is not None and key not in self._writable:
            raise KeyError(
                f"set_data({key!r}): this session may write only the keys "
                f"{sorted(self._writable)} (open_session(writable_keys=...))"
            )
        self._write(key, value, source or self._infer_source())

    def _infer_source(self) -> str:
        task = current_task()
        if task is not None and task._sup is self._sup:
            return task.name
        if _current_context.get() is self:
            return "handler"
        return "external"

    def _write(self, key: str, value: Any, source: str, deleted: bool = False) -> None:
        if deleted:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        trail = self._trail.get(key)
        if trail is None:
            trail = self._trail[key] = deque(maxlen=self._history_per_key)
        trail.append(DataChange(key, value, trio.current_time(), source, deleted))

    def data_history(self, key: str) -> list[DataChange]:
        """Every recorded write of ``key``, oldest first (the last ``history_per_key`` kept)."""
        return list(self._trail.get(key, ()))

    def data_keys(self) -> list[str]:
        """The keys of the session data, in the order they were first set."""
        return list(self.data)

    def clear_data(self, source: str | None = None) -> None:
        """Remove every key; each removal is recorded in the trail (``deleted=True``).

        With ``writable_keys``, refused with ``KeyError`` (nothing removed) if any key present
        is not writable.
        """
        if self._writable is not None:
            locked = sorted(k for k in self.data if k not in self._writable)
            if locked:
                raise KeyError(
                    f"clear_data(): the keys {locked} are not writable in this session "
                    f"(writable: {sorted(self._writable)}); nothing was removed"
                )
        who = source or self._infer_source()
        for key in list(self.data):
            self._write(key, None, who, deleted=True)

    # ------------------------------------------------------------------ conversation, cache

    def get_completion_messages(self) -> list[dict[str, Any]]:
        """The conversation history (a copy), as a list of dicts in order."""
        return self._conversation.get()

    def add_completion_message(self, message: Any) -> None:
        """Append a message: a dict, or an object whose ``serialize()`` returns a dict
        (stored as a copy of that dict). Anything else: ``TypeError``."""
        self._conversation.add(message)

    def set_completion_messages(self, messages: Any) -> None:
        """Replace the history with ``messages`` (dicts and serializable messages mixed).
        Every one is checked first: on a ``TypeError`` the history is unchanged."""
        self._conversation.set(messages)

    def cache_set(self, key: str, value: Any) -> None:
        """Cache ``value`` for the session: str, int, float, bool, None, a dict of JSON data,
        or a cachable entity (``to_cache() -> dict`` and classmethod ``from_cache``),
        stored as a copy. Any other type: ``TypeError``, and the cache is unchanged."""
        self._cache.set(key, value)

    def cache_get(self, key: str, entity_type: type | None = None) -> Any:
        """The cached value (None if missing); with ``entity_type``, the stored dict is
        revived with ``entity_type.from_cache(dict)``."""
        return self._cache.get(key, entity_type)

    # ------------------------------------------------------------------ tests and outcomes

    def add_test(
        self,
        name: str,
        options: dict[str, Any],
        description: str = "",
        stop: dict[str, Any] | None = None,
    ) -> str:
        """Add an A/B test and return this session's option (the same for the rest of the
        session). Returns at once, without I/O.

        ``options`` maps each option (str) to a weight > 0 (they need not sum to 1).
        ``stop``: ``max_iterations`` (sessions counted across every process sharing the
        store, never exceeded), ``max_confidence`` (0-100) with ``target_outcome``,
        ``stop_on`` (1: either ends the test, 2: both), ``default`` (what every session gets
        once concluded), ``notify`` (addresses told when it concludes). Bad input raises
        ``TypeError``/``ValueError`` naming what is accepted.
        """
        return self.testing.add_test(name, options, description, stop)

    def add_tests(self, tests: list[dict[str, Any]]) -> dict[str, str]:
        """Add several tests (dicts with ``name``, ``options``, ``description``, ``stop``);
        all are checked before any is added. Returns each test's option."""
        return self.testing.add_tests(tests)

    def get_test(self, name: str) -> str:
        """This session's option in test ``name``; ``KeyError`` (naming the session's tests)
        if it was not added."""
        return self.testing.get_test(name)

    def add_outcome(self, name: str, type: str, description: str = "") -> None:
        """Track an outcome: ``type`` is ``"boolean"`` (default False), ``"integer"`` (0),
        ``"float"`` (0.0) or ``"string"`` (""). Adding it again keeps its value."""
        self.testing.outcomes.add(name, type, description)

    def add_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Add several outcomes (dicts with ``name``, ``type``, ``description``); all are
        checked before any is added."""
        self.testing.outcomes.add_many(outcomes)

    def get_outcome(self, name: str, default: Any = None) -> Any:
        """The outcome's current value, or ``default`` if the session has no such outcome."""
        return self.testing.outcomes.get(name, default)

    def set_outcome(self, name: str, value: Any) -> Any:
        """Set an outcome (of its type: ``TypeError`` otherwise); returns the previous value.
        An outcome not added yet is added with the type of ``value``."""
        return self.testing.outcomes.set(name, value)

    def trigger_outcome(self, name: str) -> Any:
        """Boolean: set True; integer: add 1; other types ``TypeError``, unknown ``KeyError``.
        Returns the previous value."""
        return self.testing.outcomes.trigger(name)

    def reset_outcome(self, name: str) -> Any:
        """Back to the type's default; returns the previous value."""
        return self.testing.outcomes.reset(name)

    def set_testing_metadata(self, key: str, value: Any) -> None:
        """Store a metadata value about this testing session."""
        if not isinstance(key, str):
            raise TypeError(f"testing metadata keys are str, got {type(key).__name__}")
        self.testing.metadata[key] = value

    def get_testing_metadata(self, key: str, default: Any = None) -> Any:
        """A metadata value, or ``default``."""
        return self.testing.metadata.get(key, default)

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

        As the seeds' runtime does, a name held by a running task replaces it: that task is
        cancelled (reason ``"replaced"``) and the new one starts under the name. ``timeout``
        defaults to the session's ``default_timeout`` (30 s). The task sees this context
        through :func:`current_context`, and the phase it was created in through
        :func:`current_phase`; the flavour defaults to the session's.
        """
        token = _current_context.set(self)
        try:
            handle = self._sup.create_task(
                handler, name, interruptible, timeout, flavor=flavor, on_duplicate="replace"
            )
        finally:
            _current_context.reset(token)
        phase = _current_phase.get()
        if phase is not None:
            self._task_phase[handle.id] = phase
        return handle

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

    # ------------------------------------------------------------------ call stack, playout

    @contextmanager
    def phase(self, label: str) -> Iterator[str]:
        """Tag what happens inside: tasks created in the block carry ``label`` (in
        :meth:`snapshot` and in the records published to the debugger and recordings), and
        :func:`current_phase` returns it, also inside those tasks. Phases nest."""
        if not isinstance(label, str) or not label:
            raise TypeError(f"a phase label is a non-empty str, got {label!r}")
        token = _current_phase.set(label)
        try:
            yield label
        finally:
            _current_phase.reset(token)

    def task_phase(self, task_id: int) -> str | None:
        """The phase the task ``task_id`` was created in, if any."""
        return self._task_phase.get(task_id)

    def wait_for_playout(self) -> Awaitable[None]:
        """``await`` it: returns once every output the handler has yielded so far has been
        read from the session's stream (``session.events()``). Works from both flavours;
        cancelling the wait changes nothing else. With nobody reading, it waits until
        someone does."""
        session = self._session
        if session is None:
            raise RuntimeError("wait_for_playout() needs the context of an open session")
        return flavored(session._wait_for_playout)

    # ------------------------------------------------------------------ memory

    def search_memory(self, query: str, limit: int = 5) -> Awaitable[list[MemoryHit]]:
        """``await`` it: the memories best matching ``query`` (``MemoryHit``: ``memory_id``,
        ``content``, ``metadata``, ``score``), at most ``limit``."""
        if not isinstance(query, str):
            raise TypeError(f"search_memory query is a str, got {type(query).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"search_memory limit is an int >= 1, got {limit!r}")
        return flavored(self.memory.search, query, limit)

    def add_memory(self, text: str, metadata: dict[str, Any] | None = None) -> Awaitable[str]:
        """``await`` it: store ``text`` (with JSON ``metadata``) in long-term memory; its id."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"add_memory text is a non-empty str, got {text!r:.80}")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise TypeError(f"add_memory metadata is a dict, got {type(metadata).__name__}")
        from ._conversation import _json_copy

        return flavored(self.memory.add, text, _json_copy(metadata, "add_memory metadata"))

    def delete_memory(self, memory_id: str) -> Awaitable[bool]:
        """``await`` it: delete a memory; False if there was none."""
        if not isinstance(memory_id, str):
            raise TypeError(f"delete_memory takes a memory id (str), got {memory_id!r}")
        return flavored(self.memory.delete, memory_id)

    # ------------------------------------------------------------------ inspecting

    def redact(self, value: Any) -> Any:
        """``value`` with every occurrence of a masked variable's value replaced by
        ``********`` in the strings inside it (dicts, lists, tuples, attrs instances such as
        events and records are rebuilt; ``value`` itself is not changed)."""
        return self._redact(value)

    def _public_variables(self) -> dict[str, str]:
        return {k: (MASK if k in self._masked else v) for k, v in self.variables.items()}

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe picture of the session: ids, variables and data (masked values
        redacted), tests, outcomes, and every task with its state and phase."""
        tasks = []
        for info in self._sup.snapshot():
            d = info.to_dict()
            d["phase"] = self._task_phase.get(info.id)
            tasks.append(d)
        out = {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "function_id": self.function_id,
            "variables": self._public_variables(),
            "data": jsonable(self.data),
            "tests": {n: a.option for n, a in self.testing.assignments.items()},
            "outcomes": {n: o.value for n, o in self.testing.outcomes.items.items()},
            "tasks": tasks,
        }
        redacted: dict[str, Any] = self._redact(out)
        return redacted

    def checkpoint(self) -> dict[str, Any]:
        """The session's state as JSON-safe data, for ``open_session(restore=...)``: data and
        its trail, completion messages, cache, test assignments, outcomes, testing metadata,
        and the variables that are not masked (masked values are redacted wherever they
        appear). Values that are not JSON become their repr."""
        return make_checkpoint(self)

    # ------------------------------------------------------------------ session life

    async def _start(self, parameters: dict[str, Any], restore: Any) -> None:
        """Session opening: variables from the store, the restored state, the parameters,
        the tests (before the StartEvent)."""
        # One stat of the SQLite file, on this thread: a session that keeps nothing must not
        # make the first use of a store (or a worker thread) just to learn there is no file.
        exists = known_to_exist(self.store) or store_exists(self.store)
        if exists:
            stored = await self.store.variables_for(self.agent_id, self.environment)
            merged, self._masked = merge_variables(stored, self._given_variables)
            self.variables.clear()
            self.variables.update(merged)
            self._redact = redactor(self.variables, self._masked)
        if isinstance(restore, str):
            loaded = await self.store.load_checkpoint(restore)
            if loaded is None:
                raise CheckpointNotFoundError(
                    f"restore={restore!r}: {self.store.url} has no checkpoint of it"
                )
            restore = loaded
        if restore is not None:
            apply_checkpoint(self, restore)
        for key, value in parameters.items():
            self._write(key, value, "parameters")
        await self.testing.start(exists)

    async def _finish(self) -> None:
        try:
            await self.testing.finish()
        except Exception:
            logger.exception("session %r: could not record its tests and outcomes", self.session_id)
