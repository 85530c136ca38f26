"""A/B tests' stop conditions, counted across sessions and processes, on both backends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from context_support import converse, make_store
from smtp_sink import smtp_sink

import taskrunner
from taskrunner.events import StartEvent, TestConcluded


def capped_handler(limit: int, **stop: Any) -> Any:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_test("t", {"a": 1, "b": 1}, stop={"max_iterations": limit, **stop})

    return handler


async def counted(store: taskrunner.Store, name: str = "t", agent: str = "") -> int:
    return sum(s.sessions for s in await store.test_stats(agent, name))


async def test_max_iterations_across_sessions(store: taskrunner.Store, flavor: str) -> None:
    handler = capped_handler(5, default="b")
    got, concluded = [], []
    for _ in range(12):
        ran = await converse(handler, [StartEvent()], store=store, flavor=flavor)
        got.append(ran.context.testing.assignments["t"])
        concluded += ran.of(TestConcluded)
        # the last session of the process gave back every slot it did not use
        [state] = await store.list_tests()
        assert state.reserved == sum(a.counted for a in got)
    assert await counted(store) == 5
    assert sum(a.counted for a in got) == 5
    # the first session met a test new to the store: the default, not counted
    assert got[0].option == "b" and not got[0].counted
    [record] = concluded
    assert (record.test, record.reason, record.winner, record.sessions) == (
        "t", "max_iterations", "b", 5
    )
    after = got[[a.counted for a in got].index(True) + 5 :]
    assert after and all(a.option == "b" and not a.counted for a in after)
    [state] = await store.list_tests()
    assert state.concluded_reason == "max_iterations" and state.winner == "b"


async def test_max_iterations_with_concurrent_sessions(store: taskrunner.Store) -> None:
    handler = capped_handler(3)
    await converse(handler, [StartEvent()], store=store)  # defines the test
    results: list[Any] = []

    async def one() -> None:
        results.append(await converse(handler, [StartEvent()], store=store))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert await counted(store) == 3
    assert sum(r.context.testing.assignments["t"].counted for r in results) == 3
    assert len([r for ran in results for r in ran.of(TestConcluded)]) == 1


def satisfied_handler(**stop: Any) -> Any:
    """Option "a" always converts, "b" never: the confidence grows fast."""

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_outcome("converted", "boolean")
            option = context.add_test(
                "t", {"a": 0.5, "b": 0.5},
                stop={"max_confidence": 90, "target_outcome": "converted", **stop},
            )
            if option == "a":
                context.trigger_outcome("converted")

    return handler


async def run_until_concluded(
    handler: Any, store: taskrunner.Store, bound: int = 80, flavor: str = "asyncio"
) -> Any:
    for i in range(bound):
        ran = await converse(handler, [StartEvent()], store=store, flavor=flavor)
        if ran.of(TestConcluded):
            return i + 1, ran.of(TestConcluded)[0]
    raise AssertionError(f"the test did not conclude in {bound} sessions")


async def test_max_confidence(store: taskrunner.Store, flavor: str) -> None:
    _, record = await run_until_concluded(satisfied_handler(), store, flavor=flavor)
    assert record.reason == "max_confidence" and record.winner == "a"
    assert record.confidence >= 90
    stats = {s.option: s for s in await store.test_stats("", "t")}
    assert stats["a"].outcomes["converted"][:2] == (stats["a"].sessions, 1.0)
    assert stats["b"].outcomes["converted"][:2] == (stats["b"].sessions, 0.0)
    assert min(stats["a"].sessions, stats["b"].sessions) >= 2
    later = await converse(satisfied_handler(), [StartEvent()], store=store)
    assert later.context.get_test("t") == "a"
    assert not later.context.testing.assignments["t"].counted
    assert not later.of(TestConcluded)


async def test_stop_on_both_needs_both(store: taskrunner.Store) -> None:
    n, record = await run_until_concluded(
        satisfied_handler(max_iterations=12, stop_on=2, default="b"), store
    )
    assert record.reason == "max_iterations+max_confidence"
    assert record.sessions >= 12 and record.confidence >= 90
    assert record.winner == "b"  # the default wins once concluded, as the seed says
    assert n >= 12


async def test_stop_on_either(sqlite_store: taskrunner.Store) -> None:
    n, record = await run_until_concluded(
        satisfied_handler(max_iterations=400, stop_on=1), sqlite_store
    )
    assert record.reason == "max_confidence" and n < 400


async def test_notify_by_smtp(store: taskrunner.Store) -> None:
    handler = capped_handler(1, notify=["analytics@company.com", "ops@company.com"])
    with smtp_sink() as (port, received):
        notifier = taskrunner.SMTPNotifier("127.0.0.1", port, sender="runner@company.com")
        records = []
        for _ in range(4):
            ran = await converse(handler, [StartEvent()], store=store, notifier=notifier)
            records += ran.of(TestConcluded)
    [record] = records
    assert record.notified == ("analytics@company.com", "ops@company.com")
    assert record.notify_error is None
    [mail] = received
    assert mail.sender == "runner@company.com"
    assert mail.recipients == ("analytics@company.com", "ops@company.com")
    assert "'t'" in mail.message["Subject"] and "max_iterations" in mail.message.get_payload()


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class _FailingNotifier:
    async def notify(self, addresses: Any, subject: str, body: str) -> None:
        raise _Unprintable()


async def test_failing_notifier_is_reported(flavor: str, sqlite_store: taskrunner.Store) -> None:
    handler = capped_handler(1, notify=["a@b.c"])
    records = []
    for _ in range(3):
        ran = await converse(handler, [StartEvent()], store=sqlite_store, flavor=flavor,
                             notifier=_FailingNotifier())
        records += ran.of(TestConcluded)
    [record] = records
    assert record.notified == () and record.notify_error.startswith("_Unprintable")


async def test_notify_without_notifier_is_reported(sqlite_store: taskrunner.Store) -> None:
    handler = capped_handler(1, notify=["a@b.c"])
    records = []
    for _ in range(3):
        records += (await converse(handler, [StartEvent()], store=sqlite_store)).of(TestConcluded)
    assert "no notifier" in records[0].notify_error


_WORKER = """
import sys, trio, taskrunner
from taskrunner.events import StartEvent

async def handler(event, context):
    if isinstance(event, StartEvent):
        context.add_test("t", {"a": 1, "b": 1}, stop={"max_iterations": 10})

async def main():
    store = taskrunner.open_store(sys.argv[1])
    await store.list_tests()  # connected and ready
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start together
    counted = concluded = 0
    for _ in range(int(sys.argv[2])):
        async with taskrunner.open_session(handler, store=store) as s:
            await s.send(StartEvent())
            async def drain():
                nonlocal concluded
                async for r in s.events():
                    concluded += type(r).__name__ == "TestConcluded"
        await drain()
        counted += s.context.testing.assignments["t"].counted
    await store.aclose()
    print(counted, concluded)

trio.run(main)
"""


def test_two_processes_share_one_store(tmp_path: Path, store_url: str) -> None:
    """Two processes, one SQLite file (or one PostgreSQL database)."""
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, str(worker), store_url, "25"], stdout=subprocess.PIPE,
                         stdin=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    for p in procs:  # both go at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.close()
    outs = []
    for p in procs:
        assert p.stdout is not None
        outs.append(p.stdout.read())
        p.wait(120)
    assert all(p.returncode == 0 for p in procs), outs
    counts = [tuple(map(int, o.split())) for o in outs]
    print("counted and concluded per process:", counts)
    total = sum(c for c, _ in counts)
    assert total <= 10  # never exceeded

    async def check() -> None:
        s = make_store(store_url)
        assert await counted(s) == total
        [state] = await s.list_tests()
        assert state.concluded == (total == 10)
        assert sum(n for _, n in counts) == int(state.concluded)
        await s.aclose()

    trio.run(check)
    assert total >= 8  # both processes ran 25 sessions: at least one full block was used


@pytest.mark.parametrize(
    ("options", "stop", "error", "match"),
    [
        ({}, None, ValueError, "options is empty"),
        ([("a", 1)], None, TypeError, "options is a dict"),
        ({"a": 0}, None, ValueError, "weights are numbers > 0"),
        ({"a": -1, "b": 2}, None, ValueError, "'a' has weight -1"),
        ({"a": True}, None, ValueError, "weight True"),
        ({1: 1.0}, None, TypeError, "options are str"),
        ({"a": 1}, {"max_iters": 3}, ValueError, r"unknown stop condition.*max_iterations"),
        ({"a": 1}, {"max_iterations": 0}, ValueError, "max_iterations is an int >= 1"),
        ({"a": 1}, {"max_confidence": 95}, ValueError, "needs target_outcome"),
        ({"a": 1}, {"max_confidence": 101, "target_outcome": "x"}, ValueError, r"\(0, 100\]"),
        ({"a": 1}, {"stop_on": 3}, ValueError, "stop_on is 1"),
        ({"a": 1}, {"default": "z"}, ValueError, "not one of the options"),
        ({"a": 1}, {"notify": "a@b.c"}, ValueError, "list of email addresses"),
        ({"a": 1}, "soon", TypeError, "stop is a dict"),
    ],
)
async def test_add_test_refuses_bad_input(
    sqlite_store: taskrunner.Store, options: Any, stop: Any, error: type, match: str
) -> None:
    caught = []

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_test("kept", {"x": 1})
            try:
                context.add_test("t", options, stop=stop)
            except Exception as exc:
                caught.append(exc)
            with pytest.raises(KeyError, match=r"no test 't'.*'kept'"):
                context.get_test("t")

    ran = await converse(handler, [StartEvent()], store=sqlite_store, flavor="trio")
    [exc] = caught
    assert isinstance(exc, error)
    assert re.search(match, str(exc)), str(exc)
    assert ran.context.get_test("kept") == "x"  # nothing stored was lost


async def test_add_tests_is_all_or_nothing(flavor: str, sqlite_store: taskrunner.Store) -> None:
    seen: dict[str, Any] = {}

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            with pytest.raises(ValueError, match="item 1"):
                context.add_tests([{"name": "a", "options": {"x": 1}}, {"name": "b"}])
            with pytest.raises(KeyError):
                context.get_test("a")
            seen.update(context.add_tests([
                {"name": "a", "options": {"x": 1}},
                {"name": "b", "options": {"y": 2}, "description": "d", "stop": {"default": "y"}},
            ]))

    ran = await converse(handler, [StartEvent()], store=sqlite_store, flavor=flavor)
    assert seen == {"a": "x", "b": "y"}
    assert ran.context.get_test("b") == "y"
    assert json.dumps(ran.context.checkpoint()["tests"])  # JSON-safe


async def test_a_store_failing_at_the_start_refuses_the_session(tmp_path: Path) -> None:
    from taskrunner._session._abtests import _pools_for

    class Flaky(taskrunner.SQLiteStore):
        fail = True

        async def load_tests(self, agent_id: str) -> Any:
            if self.fail:
                raise taskrunner.StoreError("database unreachable")
            return await super().load_tests(agent_id)

    s = Flaky(tmp_path / "f.db")
    handler = capped_handler(2)
    await converse(handler, [StartEvent()], store=s)  # no file yet: nothing loaded
    with pytest.raises(taskrunner.StoreError, match="unreachable"):
        await converse(handler, [StartEvent()], store=s)
    assert _pools_for(s).users == 0
    s.fail = False
    ran = await converse(handler, [StartEvent()], store=s)
    assert ran.context.testing.assignments["t"].counted
    assert _pools_for(s).users == 0 and not any(_pools_for(s).counts.values())
    await s.aclose()


async def test_a_restored_draw_counts_once(store: taskrunner.Store) -> None:
    handler = capped_handler(3)
    await converse(handler, [StartEvent()], store=store)  # defines the test
    first = await converse(handler, [StartEvent()], store=store)
    assert first.context.testing.assignments["t"].counted
    cp = first.context.checkpoint()
    same = await converse(handler, [StartEvent()], store=store, restore=cp)
    other = await converse(handler, [StartEvent()], store=store, restore=cp, session_id="copy")
    assert same.context.get_test("t") == other.context.get_test("t") == first.context.get_test("t")
    assert same.context.testing.assignments["t"].counted
    assert not other.context.testing.assignments["t"].counted
    assert await counted(store) == 1


async def test_a_concluded_test_whose_options_changed(sqlite_store: taskrunner.Store) -> None:
    await sqlite_store.define_test("", "t", {"options": {"old": 1.0}, "stop": {}})
    assert await sqlite_store.conclude_test("", "t", "max_iterations", "old")

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_test("t", {"new": 1, "newer": 3})

    ran = await converse(handler, [StartEvent()], store=sqlite_store)
    assert ran.context.get_test("t") == "newer"  # the heaviest, as the old winner is gone
