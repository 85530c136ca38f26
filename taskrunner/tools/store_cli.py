"""``python -m taskrunner variables ...`` and ``python -m taskrunner tests``: the store from
the command line (``--store URL``, default ``$TASKRUNNER_STORE`` or ``taskrunner.db``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from .._session._stats import best_option, confidence, outcome_kind
from .._session._variables import check_variable_name
from .._store._open import default_store, open_store
from .._store._protocol import Store, StoreError, Variable

__all__ = ["add_store_option", "add_store_parsers", "parse_params", "store_from_args"]


def add_store_option(p: argparse.ArgumentParser) -> None:
    """``--store URL`` (sqlite:///file.db or postgresql://...)."""
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="sqlite:///file.db or postgresql://user@host/db "
        "(default: $TASKRUNNER_STORE, else sqlite:///taskrunner.db)",
    )


def store_from_args(args: argparse.Namespace) -> Store:
    """The store ``--store`` names, or the default; a bad URL exits with its error."""
    try:
        return default_store() if args.store is None else open_store(args.store)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: --store: {exc}") from None


def parse_params(values: list[str] | None) -> dict[str, str]:
    """``--param KEY=VALUE`` (repeatable) as a dict of str; a bad one exits with an error."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_store_parsers(sub: Any) -> None:
    """The ``variables`` and ``tests`` commands."""
    var = sub.add_parser("variables", help="org and environment variables in the store")
    vsub = var.add_subparsers(dest="action", required=True)
    vset = vsub.add_parser("set", help="create or replace a variable")
    vset.add_argument("name")
    vset.add_argument("value")
    vunset = vsub.add_parser("unset", help="delete a variable")
    vunset.add_argument("name")
    for p in (vset, vunset):
        scope = p.add_mutually_exclusive_group(required=True)
        scope.add_argument("--org", action="store_true", help="every agent of the organisation")
        scope.add_argument("--environment", metavar="ENV", help="one agent environment")
        p.add_argument("--agent", metavar="ID", default="", help="the agent (with --environment)")
        add_store_option(p)
    vset.add_argument("--masked", action="store_true", help="redact the value outside the agent")
    vlist = vsub.add_parser("list", help="every variable (masked values redacted)")
    vlist.add_argument("--json", action="store_true", help="JSON lines")
    add_store_option(vlist)

    tests = sub.add_parser("tests", help="every A/B test with its statistics")
    tests.add_argument("--agent", metavar="ID", default=None, help="only this agent's tests")
    tests.add_argument("--json", action="store_true", help="one JSON object per test")
    add_store_option(tests)


def _scope(args: argparse.Namespace) -> tuple[str, str, str]:
    if args.org:
        if args.agent:
            raise SystemExit("error: --agent goes with --environment; org variables are for all")
        return "org", "", ""
    if not args.agent:
        raise SystemExit("error: --environment needs --agent ID (the agent it belongs to)")
    return "environment", args.agent, args.environment


def run_variables(args: argparse.Namespace) -> int:
    """The ``variables`` command."""
    store = store_from_args(args)

    async def main() -> int:
        try:
            if args.action == "list":
                rows = [v.to_dict() for v in await store.list_variables()]
                if args.json:
                    for row in rows:
                        print(json.dumps(row))
                else:
                    _table(
                        ["scope", "agent", "environment", "name", "value"],
                        [[r["scope"], r["agent_id"], r["environment"], r["name"], r["value"]]
                         for r in rows],
                    )
                return 0
            try:
                name = check_variable_name(args.name)
            except ValueError as exc:
                raise SystemExit(f"error: {exc}") from None
            scope, agent, env = _scope(args)
            if args.action == "set":
                old = await store.set_variable(
                    Variable(scope, agent, env, name, args.value, args.masked)
                )
                shown = "********" if args.masked else args.value
                print(f"{'replaced' if old else 'set'} {_where(scope, agent, env)} {name}={shown}")
                return 0
            if not await store.unset_variable(scope, agent, env, name):
                print(f"error: no variable {name!r} {_where(scope, agent, env)}", file=sys.stderr)
                return 1
            print(f"unset {_where(scope, agent, env)} {name}")
            return 0
        finally:
            await store.aclose()

    return _run(main)


def _where(scope: str, agent: str, env: str) -> str:
    return "(org)" if scope == "org" else f"(agent {agent!r}, environment {env!r})"


def _run(main: Any) -> int:
    try:
        return int(trio.run(main))
    except StoreError as exc:
        raise SystemExit(f"error: {exc}") from None


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def describe_tests(store: Store, agent_id: str | None) -> list[dict[str, Any]]:
    """Every test with its statistics, as ``python -m taskrunner tests --json`` prints it."""
    out = []
    for state in await store.list_tests(agent_id):
        stats = {s.option: s for s in await store.test_stats(state.agent_id, state.name)}
        definition = state.definition
        stop = definition.get("stop", {})
        target = stop.get("target_outcome")
        listed = list(stats.values())
        options = []
        for option, weight in definition["options"].items():
            s = stats.get(option)
            options.append({
                "option": option,
                "weight": weight,
                "sessions": s.sessions if s else 0,
                "means": {k: v[1] for k, v in sorted(s.outcomes.items())} if s else {},
            })
        conf = None
        if target is not None:
            conf = confidence(listed, target, list(definition["options"]),
                              outcome_kind(listed, target))
        out.append({
            "agent_id": state.agent_id,
            "test": state.name,
            "description": definition.get("description", ""),
            "stop": stop,
            "options": options,
            "sessions": sum(o["sessions"] for o in options),
            "reserved": state.reserved,
            "target_outcome": target,
            "confidence": conf,
            "leading": best_option(listed, target) if target else None,
            "concluded": state.concluded,
            "reason": state.concluded_reason,
            "winner": state.winner,
        })
    return out


def run_tests(args: argparse.Namespace) -> int:
    """The ``tests`` command."""
    store = store_from_args(args)

    async def main() -> int:
        try:
            tests = await describe_tests(store, args.agent)
        finally:
            await store.aclose()
        if args.json:
            for t in tests:
                print(json.dumps(t))
            return 0
        if not tests:
            print(f"no A/B tests in {store.url}")
        for t in tests:
            state = (
                f"concluded ({t['reason']}): every session gets {t['winner']!r}"
                if t["concluded"] else "running"
            )
            agent = t["agent_id"] or "(no agent id)"
            print(f"{agent} / {t['test']}: {state}")
            if t["description"]:
                print(f"  {t['description']}")
            if t["stop"]:
                print(f"  stop: {json.dumps(t['stop'])}")
            outcomes = sorted({k for o in t["options"] for k in o["means"]})
            _table(
                ["  option", "weight", "sessions", *[f"mean {k}" for k in outcomes]],
                [
                    [f"  {o['option']}", f"{o['weight']:g}", o["sessions"],
                     *[f"{o['means'][k]:.4g}" if k in o["means"] else "-" for k in outcomes]]
                    for o in t["options"]
                ],
            )
            if t["target_outcome"]:
                conf = "-" if t["confidence"] is None else f"{t['confidence']:.2f}%"
                print(f"  confidence on {t['target_outcome']!r}: {conf} (leading: {t['leading']})")
            print(f"  sessions counted: {t['sessions']}, slots reserved: {t['reserved']}")
            print()
        return 0

    return _run(main)
