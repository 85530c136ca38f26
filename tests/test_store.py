"""The Store protocol on both backends: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from context_support import converse, make_store, outputs

import taskrunner
from taskrunner import SessionResult, Variable
from taskrunner.events import StartEvent


async def test_variables(store: taskrunner.Store) -> None:
    assert await store.set_variable(Variable("org", "", "", "REGION", "eu")) is None
    await store.set_variable(Variable("org", "", "", "KEY", "org-key", masked=True))
    await store.set_variable(Variable("environment", "shop", "prod", "KEY", "prod-key", True))
    await store.set_variable(Variable("environment", "shop", "staging", "KEY", "stg-key"))
    await store.set_variable(Variable("environment", "other", "prod", "KEY", "x"))
    old = await store.set_variable(Variable("org", "", "", "REGION", "us"))
    assert old == Variable("org", "", "", "REGION", "eu")
    names = [(v.scope, v.agent_id, v.environment, v.name) for v in await store.list_variables()]
    assert names[:2] == [("org", "", "", "KEY"), ("org", "", "", "REGION")]
    assert len(names) == 5
    got = await store.variables_for("shop", "prod")
    assert [(v.scope, v.value) for v in got] == [
        ("org", "org-key"), ("org", "us"), ("environment", "prod-key")
    ]
    assert got[2].to_dict()["value"] == "********" and got[2].to_dict(reveal=True)["value"]
    assert await store.unset_variable("environment", "shop", "prod", "KEY") is True
    assert await store.unset_variable("environment", "shop", "prod", "KEY") is False
    assert len(await store.list_variables()) == 4


async def test_session_variables_scopes_and_masking(
    store: taskrunner.Store, flavor: str
) -> None:
    await store.set_variable(Variable("org", "", "", "API_KEY", "org-secret-1", masked=True))
    await store.set_variable(Variable("org", "", "", "api_key", "lower"))
    await store.set_variable(
        Variable("environment", "shop", "prod", "API_KEY", "env-secret-2", True)
    )
    await store.set_variable(Variable("org", "", "", "SUPPORT", "help@acme.com"))

    async def handler(event: Any, context: taskrunner.Context) -> Any:
        if isinstance(event, StartEvent):
            from taskrunner.events import LogEvent

            yield LogEvent(f"using {context.variables['API_KEY']}")

    from taskrunner.tools.hub import Hub

    hub = Hub()
    ran = await converse(handler, [StartEvent()], store=store, flavor=flavor, agent_id="shop",
                         environment="prod", hub=hub)
    ctx = ran.context
    assert ctx.variables == {
        "API_KEY": "env-secret-2", "api_key": "lower", "SUPPORT": "help@acme.com"
    }
    snap = ctx.snapshot()
    assert snap["variables"]["API_KEY"] == "********" and snap["variables"]["api_key"] == "lower"
    assert "API_KEY" not in ctx.checkpoint()["variables"]
    published = repr(hub.records(ran.session.session_id))
    assert "env-secret-2" not in published and "using ********" in published
    # the handler's own output keeps the real value for the application
    [said] = outputs(ran)
    assert said.message == "using env-secret-2"


async def test_reservations_are_exact_under_contention(store_url: str) -> None:
    stores = [make_store(store_url) for _ in range(5)]
    await stores[0].define_test("agent", "t", {"options": {"a": 1.0}, "stop": {}})
    granted: list[int] = []

    async def worker(s: taskrunner.Store) -> None:
        for want in (1, 3, 2, 5, 4, 1, 2, 3, 8, 1):
            n, _ = await s.reserve_slots("agent", "t", 37, want)
            granted.append(n)

    async with trio.open_nursery() as nursery:
        for s in stores:
            nursery.start_soon(worker, s)
    assert sum(granted) == 37
    [state] = await stores[0].list_tests("agent")
    assert state.reserved == 37
    await stores[1].release_slots("agent", "t", 5)
    assert (await stores[2].reserve_slots("agent", "t", 37, 10))[0] == 5
    wins = []

    async def conclude(s: taskrunner.Store) -> None:
        wins.append(await s.conclude_test("agent", "t", "max_iterations", "a"))

    async with trio.open_nursery() as nursery:
        for s in stores:
            nursery.start_soon(conclude, s)
    assert sorted(wins) == [False] * 4 + [True]
    assert (await stores[3].reserve_slots("agent", "t", 99, 5))[0] == 0  # concluded
    for s in stores:
        await s.aclose()


async def test_statistics(store: taskrunner.Store) -> None:
    await store.define_test("ag", "t", {"options": {"a": 1.0, "b": 1.0}, "stop": {}})
    values = {"a": [1.0, 2.0, 6.0], "b": [4.0, 4.0]}
    i = 0
    for option, xs in values.items():
        for x in xs:
            i += 1
            await store.record_session(SessionResult(
                "ag", f"s{i}", (("t", option, True),),
                (("score", "float", x), ("ok", "boolean", x > 3), ("tag", "string", "z")),
            ))
    # a session recorded again replaces its earlier figures; uncounted ones are left out
    await store.record_session(SessionResult("ag", "s1", (("t", "a", True),),
                                             (("score", "float", 3.0),)))
    await store.record_session(SessionResult("ag", "s9", (("t", "a", False),),
                                             (("score", "float", 100.0),)))
    stats = {s.option: s for s in await store.test_stats("ag", "t")}
    assert stats["a"].sessions == 3 and stats["b"].sessions == 2
    n, mean, var = stats["a"].outcomes["score"]
    assert (n, mean) == (3, pytest.approx(11 / 3)) and var == pytest.approx(4.3333333, rel=1e-6)
    assert stats["b"].outcomes["score"] == (2, 4.0, 0.0)
    assert stats["a"].outcomes["ok"][:2] == (2, 0.5)  # s1's new figures have no "ok"
    assert "tag" not in stats["a"].outcomes


async def test_memory(store: taskrunner.Store, flavor: str) -> None:
    found: dict[str, Any] = {}

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            first = await context.add_memory("Pipeline had 5% error rate at 07:30",
                                             metadata={"severity": "warning"})
            await context.add_memory("The customer prefers oat milk")
            await context.add_memory("error budget reviewed; error rate fine")
            found["hits"] = await context.search_memory("error rate", limit=3)
            found["none"] = await context.search_memory("'\"; DROP TABLE tr_memory; --")
            found["deleted"] = await context.delete_memory(first)
            found["again"] = await context.delete_memory(first)
            found["after"] = await context.search_memory("pipeline")

    await converse(handler, [StartEvent()], store=store, flavor=flavor, agent_id="ops")
    hits = found["hits"]
    assert len(hits) == 2 and {h.content for h in hits} == {
        "Pipeline had 5% error rate at 07:30", "error budget reviewed; error rate fine"
    }
    assert hits[0].score >= hits[1].score
    assert next(h for h in hits if h.content.startswith("Pipeline")).metadata == {
        "severity": "warning"
    }
    assert found["none"] == [] and found["deleted"] is True and found["again"] is False
    assert found["after"] == []
    # another agent's memories are apart
    assert await store.search_memory("other", "milk", 5) == []
    assert [h.content for h in await store.search_memory("ops", "milk", 5)] == [
        "The customer prefers oat milk"
    ]


async def test_checkpoints_in_the_store(store: taskrunner.Store, flavor: str) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.set_data("step", 2)
            await context.store.save_checkpoint(context.checkpoint())  # from either flavour
            assert (await context.store.load_checkpoint("call-1"))["data"] == {"step": 2}

    ran = await converse(handler, [StartEvent()], store=store, session_id="call-1",
                         flavor=flavor)
    assert not ran.of(taskrunner.events.HandlerFailed)
    assert (await store.load_checkpoint("call-1"))["data"] == {"step": 2}
    assert await store.load_checkpoint("nope") is None
    resumed = await converse(handler, [], store=store, restore="call-1", flavor=flavor)
    assert resumed.context.session_id == "call-1" and resumed.context.get_data("step") == 2
    with pytest.raises(taskrunner.CheckpointNotFoundError, match="no checkpoint"):
        await converse(handler, [], store=store, restore="missing")
    with pytest.raises(ValueError, match="session_id"):
        await store.save_checkpoint({"data": {}})
    assert ran.context.get_data("step") == 2


async def test_store_io_never_runs_on_the_trio_thread(tmp_path: Path) -> None:
    threads: list[int] = []

    class Watched(taskrunner.SQLiteStore):
        def _connect(self) -> Any:
            threads.append(threading.get_ident())
            return super()._connect()

        def _run(self, fn: Any) -> Any:
            threads.append(threading.get_ident())
            return super()._run(fn)

    s = Watched(tmp_path / "w.db")

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_test("t", {"a": 1}, stop={"max_iterations": 3})
            context.add_outcome("o", "integer")

    for _ in range(3):
        await converse(handler, [StartEvent()], store=s)
    await s.aclose()
    assert threads and threading.get_ident() not in threads


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = taskrunner.open_store("sqlite:///rel.db")
    assert isinstance(rel, taskrunner.SQLiteStore) and rel.path == str(tmp_path / "rel.db")
    assert taskrunner.open_store("sqlite:///rel.db") is rel
    absolute = taskrunner.open_store(f"sqlite:///{tmp_path / 'abs.db'}")
    assert absolute.path == str(tmp_path / "abs.db")
    pg = taskrunner.open_store("postgresql://me:secret@127.0.0.1:5/db")
    assert isinstance(pg, taskrunner.PostgresStore) and "secret" not in pg.url
    with pytest.raises(ValueError, match="unknown store URL 'mysql://x'.*sqlite:///"):
        taskrunner.open_store("mysql://x")
    with pytest.raises(ValueError, match="names no file"):
        taskrunner.open_store("sqlite://")
    with pytest.raises(TypeError, match="a store URL is a str"):
        taskrunner.open_store(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="postgresql://"):
        taskrunner.PostgresStore("localhost")
    with pytest.raises(TypeError, match="file path"):
        taskrunner.SQLiteStore(5)  # type: ignore[arg-type]


async def test_default_store_is_a_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKRUNNER_STORE", raising=False)

    async def plain(event: Any, context: taskrunner.Context) -> None:
        context.set_data("x", 1)

    await converse(plain, [StartEvent()])
    assert not (tmp_path / "taskrunner.db").exists()  # nothing to keep: no file

    async def testing(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_test("t", {"a": 1})

    ran = await converse(testing, [StartEvent()])
    assert (tmp_path / "taskrunner.db").exists()
    assert ran.context.store.url == f"sqlite:///{tmp_path / 'taskrunner.db'}"
    monkeypatch.setenv("TASKRUNNER_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    ran = await converse(testing, [StartEvent()])
    assert ran.context.store.url.endswith("env.db")
    assert await trio.Path(tmp_path / "env.db").exists()


async def test_bad_stores(tmp_path: Path) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        pass

    with pytest.raises(TypeError, match="store must be a taskrunner.Store"):
        await converse(handler, [], store=42)
    closed = taskrunner.SQLiteStore(tmp_path / "c.db")
    await closed.aclose()
    with pytest.raises(taskrunner.StoreError, match="closed"):
        await closed.list_variables()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(taskrunner.StoreError, match="cannot open"):
        await taskrunner.SQLiteStore(tmp_path / "dir.db").list_variables()
    down = taskrunner.PostgresStore("postgresql://nobody@127.0.0.1:1/db")
    with pytest.raises(taskrunner.StoreError, match="cannot connect"):
        await down.list_tests()


async def test_a_refused_write_loses_nothing(store_url: str) -> None:
    base = type(make_store(store_url))

    class Refusing(base):  # type: ignore[valid-type, misc]
        refuse = False

        @contextmanager
        def _write(self, conn: Any) -> Iterator[Any]:
            with super()._write(conn) as cur:
                yield cur
                if self.refuse:
                    raise RuntimeError("refused before commit")

    s = Refusing(store_url[len("sqlite:///"):] if store_url.startswith("sqlite") else store_url)
    await s.define_test("ag", "t", {"options": {"a": 1.0}, "stop": {}})
    await s.record_session(SessionResult("ag", "s1", (("t", "a", True),),
                                         (("score", "float", 2.0),)))
    await s.set_variable(Variable("org", "", "", "KEY", "kept"))
    s.refuse = True
    with pytest.raises(RuntimeError, match="refused"):
        await s.record_session(SessionResult("ag", "s1", (("t", "a", True),),
                                             (("score", "float", 99.0),)))
    with pytest.raises(RuntimeError, match="refused"):
        await s.set_variable(Variable("org", "", "", "KEY", "lost?"))
    with pytest.raises(RuntimeError, match="refused"):
        await s.reserve_slots("ag", "t", 10, 5)
    s.refuse = False
    [stats] = await s.test_stats("ag", "t")
    assert stats.outcomes["score"][:2] == (1, 2.0)  # the first figures, whole
    assert [v.value for v in await s.list_variables()] == ["kept"]
    assert (await s.list_tests("ag"))[0].reserved == 0
    # a write the database itself refuses is a StoreError, and loses nothing either
    with pytest.raises(taskrunner.StoreError, match="IntegrityError|UniqueViolation"):
        await s.record_session(SessionResult("ag", "s1", (("t", "a", True), ("t", "a", True)),
                                             ()))
    [stats] = await s.test_stats("ag", "t")
    assert stats.outcomes["score"][:2] == (1, 2.0)
    await s.aclose()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("global", "", "", "K", "v"), ValueError, "'org' or 'environment'"),
        (("org", "shop", "", "K", "v"), ValueError, "for every agent"),
        (("environment", "", "prod", "K", "v"), ValueError, "needs the agent_id"),
        (("org", "", "", "A B", "v"), ValueError, "without spaces"),
        (("org", "", "", "K", 5), TypeError, "value is a str"),
    ],
)
def test_bad_variables(args: tuple[Any, ...], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Variable(*args)


async def test_postgres_connections_are_bounded_and_statements_can_be(postgres_dsn: str) -> None:
    """A PostgreSQL server that stops answering becomes a StoreError, never a worker thread
    blocked for ever: bounded connects and keepalives on every connection (the URL's own
    settings win), and a statement timeout when asked."""

    def settings(conn: Any) -> tuple[str, str]:
        return conn.execute("SHOW statement_timeout").fetchone()[0], conn.info.dsn

    plain = taskrunner.PostgresStore(postgres_dsn)
    timeout, dsn = await plain._call(settings)
    assert timeout == "0" and "connect_timeout=10" in dsn and "keepalives_idle=10" in dsn
    own = taskrunner.PostgresStore(postgres_dsn + "?connect_timeout=3")
    assert "connect_timeout=3" in (await own._call(settings))[1]
    bounded = taskrunner.PostgresStore(postgres_dsn, statement_timeout=0.25)
    assert (await bounded._call(settings))[0] == "250ms"
    with pytest.raises(taskrunner.StoreError, match="statement timeout"):
        await bounded._call(lambda conn: conn.execute("SELECT pg_sleep(5)"))
    assert (await bounded._call(lambda conn: conn.execute("SELECT 1").fetchone()))[0] == 1
    for store in (plain, own, bounded):
        await store.aclose()
    for bad in (0, -1.0, "5", float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match=r"statement_timeout=\) takes finite seconds > 0"):
            taskrunner.PostgresStore(postgres_dsn, statement_timeout=bad)  # type: ignore[arg-type]
