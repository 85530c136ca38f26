"""The Store protocol: what outlives a session or is shared between sessions.

Variables, A/B tests (definitions, reserved ``max_iterations`` slots, conclusions), each
session's test assignments and outcome values, long-term memory, and checkpoints. Every
method is a trio coroutine; the shipped backends do their I/O in a worker thread
(``trio.to_thread``), never on the trio thread. Cancelling a call waits for the database
call under way to end (its transaction commits or rolls back whole), then raises
``trio.Cancelled``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

from .._core.errors import TaskRunnerError

__all__ = [
    "CheckpointNotFoundError",
    "MemoryHit",
    "OptionStats",
    "SessionResult",
    "Store",
    "StoreError",
    "TestState",
    "Variable",
]


class StoreError(TaskRunnerError, RuntimeError):
    """The store could not be opened or a stored value could not be read back."""


class CheckpointNotFoundError(TaskRunnerError, LookupError):
    """``open_session(restore=SESSION_ID)``: the store has no checkpoint of that session."""


@attrs.frozen
class Variable:
    """One stored variable. ``scope`` is ``"org"`` (every agent; ``agent_id`` and
    ``environment`` are ``""``) or ``"environment"`` (sessions of ``agent_id`` in
    ``environment``). ``masked`` values reach the handler but are redacted elsewhere."""

    scope: str
    agent_id: str
    environment: str
    name: str
    value: str
    masked: bool = False

    def __attrs_post_init__(self) -> None:
        if self.scope not in ("org", "environment"):
            raise ValueError(
                f"a variable's scope is 'org' or 'environment', got {self.scope!r}"
            )
        for field in ("agent_id", "environment", "name", "value"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"Variable.{field} is a str, got {getattr(self, field)!r}")
        if self.scope == "org" and (self.agent_id or self.environment):
            raise ValueError(
                "an org variable is for every agent: agent_id and environment must be ''"
            )
        if self.scope == "environment" and not self.agent_id:
            raise ValueError("an environment variable needs the agent_id it belongs to")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(
                f"a variable name is a non-empty str without spaces, got {self.name!r}"
            )

    def to_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """JSON-safe form; a masked value is shown as ``"********"`` unless ``reveal``."""
        return {
            "scope": self.scope,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "name": self.name,
            "value": self.value if (reveal or not self.masked) else "********",
            "masked": self.masked,
        }


@attrs.frozen
class TestState:
    """An A/B test as the store holds it.

    ``definition`` is ``{"options": {...}, "description": str, "stop": {...}}`` as last
    given to ``add_test``; ``reserved`` counts the ``max_iterations`` slots handed to
    processes; ``concluded_reason`` is None while the test runs, else ``"max_iterations"``,
    ``"max_confidence"`` or ``"max_iterations+max_confidence"``, with ``winner`` the
    option every later session gets.
    """

    agent_id: str
    name: str
    definition: dict[str, Any]
    reserved: int
    concluded_reason: str | None
    winner: str | None
    concluded_wall: float | None

    @property
    def concluded(self) -> bool:
        """True once the test has concluded."""
        return self.concluded_reason is not None


@attrs.frozen
class OptionStats:
    """Figures of one option of a test: sessions assigned at random (``sessions``), and for
    each numeric outcome recorded by those sessions ``(count, mean, variance)`` (sample
    variance, 0.0 below two values)."""

    option: str
    sessions: int
    outcomes: dict[str, tuple[int, float, float]]
    #: each outcome's type (``"boolean"``, ``"integer"``, ``"float"``)
    kinds: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class SessionResult:
    """What a session leaves to the tests' statistics when it ends.

    ``assignments``: ``(test, option, counted)``; ``counted`` is False for a session that got
    the concluded value instead of a random draw. ``outcomes``: ``(name, type, value)``.
    """

    agent_id: str
    session_id: str
    assignments: tuple[tuple[str, str, bool], ...]
    outcomes: tuple[tuple[str, str, Any], ...]


@attrs.frozen
class MemoryHit:
    """One memory found by a search: its id, text, metadata and a relevance score
    (higher is better; comparable only within one search)."""

    memory_id: str
    content: str
    metadata: dict[str, Any]
    score: float


@runtime_checkable
class Store(Protocol):
    """Persistent, shared state behind sessions: see the module docstring.

    ``url`` names the store (``sqlite:///path`` or ``postgresql://...``; passwords hidden).
    """

    url: str

    async def aclose(self) -> None:
        """Release what the store holds: unused reserved slots go back, connections close."""

    # variables
    async def list_variables(self) -> list[Variable]:
        """Every stored variable, org scope first, then by agent, environment and name."""

    async def set_variable(self, variable: Variable) -> Variable | None:
        """Create or replace a variable; returns the one it replaced, if any."""

    async def unset_variable(
        self, scope: str, agent_id: str, environment: str, name: str
    ) -> bool:
        """Delete a variable; False if there was none."""

    async def variables_for(self, agent_id: str, environment: str) -> list[Variable]:
        """The org variables and ``agent_id``'s variables in ``environment``."""

    # tests
    async def load_tests(self, agent_id: str) -> list[TestState]:
        """Every test of ``agent_id``."""

    async def define_test(
        self, agent_id: str, name: str, definition: dict[str, Any]
    ) -> TestState:
        """Create the test, or replace its definition (counts and conclusion are kept)."""

    async def reserve_slots(
        self, agent_id: str, name: str, limit: int, want: int
    ) -> tuple[int, TestState]:
        """Atomically reserve up to ``want`` of the ``limit`` slots of a test; returns how
        many were granted (0 once all are handed out) and the test's state after."""

    async def release_slots(self, agent_id: str, name: str, count: int) -> None:
        """Give back ``count`` reserved slots that no session used."""

    async def conclude_test(
        self, agent_id: str, name: str, reason: str, winner: str | None
    ) -> bool:
        """Mark the test concluded; True only for the one call that concluded it."""

    async def record_session(self, result: SessionResult) -> None:
        """Store a session's assignments and outcome values (replacing its earlier ones)."""

    async def test_stats(self, agent_id: str, name: str) -> list[OptionStats]:
        """Per option of the test: sessions assigned at random and their outcome figures."""

    async def list_tests(self, agent_id: str | None = None) -> list[TestState]:
        """Every test (of ``agent_id`` if given), by agent and name."""

    # memory
    async def add_memory(
        self, namespace: str, content: str, metadata: dict[str, Any]
    ) -> str:
        """Store one memory; returns its id."""

    async def search_memory(self, namespace: str, query: str, limit: int) -> list[MemoryHit]:
        """Full-text search of ``namespace``'s memories, best first."""

    async def delete_memory(self, namespace: str, memory_id: str) -> bool:
        """Delete one memory; False if there was none."""

    # checkpoints
    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` (from ``Context.checkpoint()``) under its session id."""

    async def load_checkpoint(self, session_id: str) -> dict[str, Any] | None:
        """The last checkpoint saved for ``session_id``, or None."""
