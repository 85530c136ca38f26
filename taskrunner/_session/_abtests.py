"""A/B tests: ``add_test`` and its stop conditions, counted across sessions and processes.

``add_test`` is synchronous and never does I/O: it works from what the session loaded when
it opened (the agent's tests, with a block of reserved ``max_iterations`` slots per running
test in this process's pool). Store writes happen in background jobs of the session
(defining a new test, refilling a pool) and when the session ends (its assignments and
outcome values, then the conclusion checks).

How exact each figure is: a session is *counted* only when it drew its option with a slot
reserved by an atomic store transaction, so counted assignments never exceed
``max_iterations`` across every process sharing the store. A session that finds no slot in
its process's pool (the first session of a test new to the store, or a pool being
refilled) gets the fallback option (``default``, else the heaviest option) and is not
counted. Slots a process reserved and did not use go back when its last session on that
store ends (or at ``store.aclose()``). The test concludes on ``max_iterations`` when a
session ends and the counted sessions of the store reach it; a process that dies holding
slots keeps them from the others (sessions then get the fallback, uncounted). Statistics
count the sessions that have ended.
"""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import trio

from .._core.records import Record
from .._store._protocol import SessionResult, Store, TestState
from ._notify import Notifier
from ._outcomes import Outcomes
from ._stats import best_option, confidence, outcome_kind
from ._testdefs import TestConcluded, capped, fallback, validate_test

__all__ = ["BLOCK", "TestConcluded", "Testing", "release_unused_slots", "validate_test"]

logger = logging.getLogger("taskrunner.context")

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]], str], None]

#: How many ``max_iterations`` slots a process reserves at a time.
BLOCK = 8


#: One generator for every session's draws (a Mersenne Twister state is 2.5 KB).
_RNG = random.Random()


@attrs.define
class _Pools:
    counts: dict[tuple[str, str], int] = attrs.Factory(dict)
    #: the refills under way, set when each is done
    refilling: dict[tuple[str, str], trio.Event] = attrs.Factory(dict)
    users: int = 0

    def begin_refill(self, key: tuple[str, str]) -> bool:
        """True if the caller must refill ``key`` (no refill under way)."""
        if key in self.refilling:
            return False
        self.refilling[key] = trio.Event()
        return True

    def end_refill(self, key: tuple[str, str]) -> None:
        done = self.refilling.pop(key, None)
        if done is not None:
            done.set()


_pools: weakref.WeakKeyDictionary[Any, _Pools] = weakref.WeakKeyDictionary()


def _pools_for(store: Store) -> _Pools:
    pools = _pools.get(store)
    if pools is None:
        pools = _pools[store] = _Pools()
    return pools


async def release_unused_slots(store: Store) -> None:
    """Give back the slots this process reserved on ``store`` and did not use."""
    pools = _pools.get(store)
    if pools is None:
        return
    held = [(k, n) for k, n in pools.counts.items() if n > 0]
    pools.counts.clear()
    for (agent_id, name), count in held:
        await store.release_slots(agent_id, name, count)


@attrs.define
class Assignment:
    """A session's option in one test; ``counted`` when drawn with a reserved slot."""

    option: str
    counted: bool
    definition: dict[str, Any]


class Testing:
    """The tests-and-outcomes manager of a session (``context.testing``).

    Holds the session's test assignments, its outcomes and its testing metadata; the
    Context's ``add_test`` ... ``get_testing_metadata`` methods call it.
    """

    def __init__(
        self,
        store: Store,
        *,
        agent_id: str,
        session_id: str,
        spawn: Spawn,
        emit: Callable[[Callable[[int, float], Record]], None],
        notifier: Notifier | None,
    ) -> None:
        self.store = store
        self.agent_id = agent_id
        self.session_id = session_id
        self._spawn = spawn
        self._emit = emit
        self._notifier = notifier
        self._rng = _RNG
        self.known: dict[str, TestState] = {}
        self.assignments: dict[str, Assignment] = {}
        self.outcomes = Outcomes()
        self.metadata: dict[str, Any] = {}
        self._pools = _pools_for(store)
        self._started = False

    def __repr__(self) -> str:
        return f"<Testing session={self.session_id!r} tests={list(self.assignments)}>"

    # ------------------------------------------------------------ session life

    async def start(self, exists: bool) -> None:
        """Load the agent's tests and fill this process's slot pools (session opening);
        ``exists`` is False for a store with nothing in it yet (no file). If it fails, the
        session does not count as a user of the store."""
        self._started = True
        self._pools.users += 1
        try:
            if exists:
                await self._load()
        except BaseException:
            self._started = False
            self._pools.users -= 1
            raise

    async def _load(self) -> None:
        for state in await self.store.load_tests(self.agent_id):
            self.known[state.name] = state
            key = (self.agent_id, state.name)
            limit = capped(state.definition)
            if limit is None or state.concluded or self._pools.counts.get(key, 0) > 0:
                continue
            under_way = self._pools.refilling.get(key)
            if under_way is not None:
                await under_way.wait()  # another session of this process is reserving
            elif self._pools.begin_refill(key):
                await self._refill(state.name, state.definition)

    async def finish(self) -> None:
        """Record the session's assignments and outcomes, then check the stop conditions."""
        if not self._started:
            return
        self._started = False
        try:
            if self.assignments or self.outcomes.items:
                await self.store.record_session(
                    SessionResult(
                        self.agent_id,
                        self.session_id,
                        tuple((n, a.option, a.counted) for n, a in self.assignments.items()),
                        tuple((o.name, o.type, o.value) for o in self.outcomes.items.values()),
                    )
                )
                for name, a in self.assignments.items():
                    state = self.known.get(name)
                    if a.definition["stop"] and not (state is not None and state.concluded):
                        await self._check(name, a.definition)
        finally:
            self._pools.users -= 1
            if self._pools.users == 0:
                # a reservation still under way would add slots after the release below
                for under_way in list(self._pools.refilling.values()):
                    await under_way.wait()
                if self._pools.users == 0:
                    await release_unused_slots(self.store)

    # ------------------------------------------------------------ the handler's calls

    def add_test(
        self, name: str, options: dict[str, Any], description: str = "", stop: Any = None
    ) -> str:
        """See :meth:`taskrunner.Context.add_test`."""
        definition = validate_test(name, options, description, stop)
        return self._assign(name, definition)

    def _assign(self, name: str, definition: dict[str, Any]) -> str:
        done = self.assignments.get(name)
        if done is not None:
            return done.option
        state = self.known.get(name)
        key = (self.agent_id, name)
        limit = capped(definition)
        if state is not None and state.concluded:
            winner = state.winner
            if winner is None or winner not in definition["options"]:  # options changed
                winner = fallback(definition)
            option, counted = winner, False
        elif limit is not None:
            if self._pools.counts.get(key, 0) > 0:
                self._pools.counts[key] -= 1
                option, counted = self._draw(definition), True
            else:
                option, counted = fallback(definition), False
            if self._pools.counts.get(key, 0) < BLOCK // 2 and self._pools.begin_refill(key):
                self._spawn(lambda: self._refill(name, definition), f"taskrunner.refill:{name}")
        else:
            option, counted = self._draw(definition), True
            if state is None or state.definition != definition:
                self._spawn(lambda: self._define(name, definition), f"taskrunner.define:{name}")
        self.assignments[name] = Assignment(option, counted, definition)
        return option

    def add_tests(self, tests: Any) -> dict[str, str]:
        """See :meth:`taskrunner.Context.add_tests`: all checked first, then added."""
        if not isinstance(tests, (list, tuple)):
            raise TypeError(
                f"add_tests takes a list of dicts {{'name', 'options', 'description'?, "
                f"'stop'?}}, got {type(tests).__name__}"
            )
        checked = []
        for i, spec in enumerate(tests):
            if not isinstance(spec, dict):
                raise TypeError(f"add_tests: item {i} is not a dict: {spec!r:.80}")
            extra = sorted(set(spec) - {"name", "options", "description", "stop"})
            if extra or "name" not in spec or "options" not in spec:
                raise ValueError(
                    f"add_tests: item {i} takes keys 'name', 'options', 'description', 'stop'; "
                    f"got {sorted(spec)}"
                )
            checked.append(
                (
                    spec["name"],
                    validate_test(
                        spec["name"], spec["options"], spec.get("description", ""),
                        spec.get("stop"),
                    ),
                )
            )
        return {name: self._assign(name, definition) for name, definition in checked}

    def get_test(self, name: str) -> str:
        """The option this session got in test ``name``."""
        try:
            return self.assignments[name].option
        except (KeyError, TypeError):
            known = ", ".join(repr(n) for n in self.assignments) or "none yet"
            raise KeyError(
                f"no test {name!r} in this session (add it with add_test; tests: {known})"
            ) from None

    def _draw(self, definition: dict[str, Any]) -> str:
        options: dict[str, float] = definition["options"]
        return self._rng.choices(list(options), weights=list(options.values()))[0]

    # ------------------------------------------------------------ background work

    async def _define(self, name: str, definition: dict[str, Any]) -> None:
        try:
            self.known[name] = await self.store.define_test(self.agent_id, name, definition)
        except Exception:
            logger.exception("session %r: could not store test %r", self.session_id, name)

    async def _refill(self, name: str, definition: dict[str, Any]) -> None:
        key = (self.agent_id, name)
        try:
            state = self.known.get(name)
            if state is None or state.definition != definition:
                state = self.known[name] = await self.store.define_test(
                    self.agent_id, name, definition
                )
            limit = capped(definition)
            if state.concluded or limit is None:
                return
            grant, state = await self.store.reserve_slots(self.agent_id, name, limit, BLOCK)
            self.known[name] = state
            self._pools.counts[key] = self._pools.counts.get(key, 0) + grant
        except Exception:
            logger.exception(
                "session %r: could not reserve slots of test %r", self.session_id, name
            )
        finally:
            self._pools.end_refill(key)

    async def _check(self, name: str, definition: dict[str, Any]) -> None:
        stop = definition["stop"]
        stats = await self.store.test_stats(self.agent_id, name)
        sessions = sum(s.sessions for s in stats)
        met: list[str] = []
        wanted = 0
        if "max_iterations" in stop:
            wanted += 1
            if sessions >= stop["max_iterations"]:
                met.append("max_iterations")
        conf = None
        target = stop.get("target_outcome")
        if "max_confidence" in stop:
            wanted += 1
            kind = outcome_kind(stats, target)
            conf = confidence(stats, target, list(definition["options"]), kind)
            if conf is not None and conf >= stop["max_confidence"]:
                met.append("max_confidence")
        if met and (stop["stop_on"] == 1 or len(met) == wanted):
            await self._conclude(name, definition, "+".join(met), conf, sessions, stats)

    async def _conclude(
        self,
        name: str,
        definition: dict[str, Any],
        reason: str,
        conf: float | None,
        sessions: int,
        stats: list[Any],
    ) -> None:
        stop = definition["stop"]
        winner = stop.get("default")
        if winner is None and "target_outcome" in stop:
            winner = best_option(stats, stop["target_outcome"])
        if winner is None:
            winner = fallback(definition)
        won = await self.store.conclude_test(self.agent_id, name, reason, winner)
        old = self.known.get(name)
        if old is not None:
            self.known[name] = attrs.evolve(old, concluded_reason=reason, winner=winner)
        if not won:
            return
        addresses = tuple(stop.get("notify", ()))
        error = None
        if addresses:
            if self._notifier is None:
                error = "no notifier configured (open_session(notifier=...))"
            else:
                try:
                    await self._notifier.notify(
                        addresses,
                        f"A/B test {name!r} of agent {self.agent_id!r} concluded: {winner}",
                        _report(name, self.agent_id, reason, winner, conf, sessions, definition),
                    )
                except Exception as exc:
                    error = _describe(exc)
        if error is not None:
            logger.warning("test %r concluded; notifying %s failed: %s", name, addresses, error)
        else:
            logger.info(
                "test %r of agent %r concluded (%s): %s", name, self.agent_id, reason, winner
            )
        self._emit(
            lambda seq, at: TestConcluded(
                seq,
                at,
                name,
                self.agent_id,
                reason,
                winner,
                conf,
                sessions,
                addresses if error is None else (),
                error,
            )
        )


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<str() of the exception raised>"
    return f"{type(exc).__name__}: {text}"


def _report(
    name: str,
    agent_id: str,
    reason: str,
    winner: str,
    conf: float | None,
    sessions: int,
    definition: dict[str, Any],
) -> str:
    lines = [
        f"The A/B test {name!r} of agent {agent_id!r} has concluded.",
        "",
        f"Reason: {reason}",
        f"Every later session gets: {winner}",
        f"Sessions counted: {sessions}",
        f"Confidence: {'-' if conf is None else f'{conf:.2f}%'}",
        f"Options: {', '.join(definition['options'])}",
    ]
    if definition.get("description"):
        lines.insert(1, definition["description"])
    return "\n".join(lines) + "\n"

