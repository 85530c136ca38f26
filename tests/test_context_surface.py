"""The Context's synchronous surface: completion messages, cache, outcomes, metadata, data,
checkpoints, userdata, phases, playout, parameters and input timeouts; bad input everywhere."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import attrs
import pytest
import trio
from context_support import converse, outputs

import taskrunner
from taskrunner.events import (
    LogEvent,
    StartEvent,
    TaskCancelled,
    TextEvent,
    TextToSpeechEvent,
    TimeoutEvent,
)


async def in_handler(body: Any, flavor: str, store: Any, **kwargs: Any) -> Any:
    """Run ``body(context)`` on the StartEvent; re-raise what it raised."""
    errors: list[BaseException] = []

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            try:
                body(context)
            except BaseException as exc:
                errors.append(exc)

    ran = await converse(handler, [StartEvent()], flavor=flavor, store=store, **kwargs)
    if errors:
        raise errors[0]
    return ran.context


@attrs.define
class Message:
    role: str
    content: str

    def serialize(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


class BadSerialize:
    def serialize(self) -> Any:
        raise RuntimeError("serialize failed")


async def test_completion_messages(flavor: str, sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        original = {"role": "system", "content": "be brief"}
        ctx.add_completion_message(original)
        ctx.add_completion_message(Message("user", "hi"))
        original["content"] = "changed later"  # stored as a copy
        got = ctx.get_completion_messages()
        got.append({"role": "x"})  # a copy too
        with pytest.raises(TypeError, match=r"dict or an object with serialize\(\).*int"):
            ctx.add_completion_message(3)
        with pytest.raises(TypeError, match="must be JSON data"):
            ctx.add_completion_message({"when": object()})
        with pytest.raises(RuntimeError, match="serialize failed"):
            ctx.add_completion_message(BadSerialize())
        with pytest.raises(TypeError, match=r"message 1: .*str"):
            ctx.set_completion_messages([{"role": "user"}, "hello"])
        with pytest.raises(TypeError, match="takes a list"):
            ctx.set_completion_messages({"role": "user"})

    ctx = await in_handler(body, flavor, sqlite_store)
    assert ctx.get_completion_messages() == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}
    ]


@attrs.define
class Order:
    item: str
    qty: int

    def to_cache(self) -> dict[str, Any]:
        return {"item": self.item, "qty": self.qty}

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Order:
        return cls(**data)


class BrokenEntity:
    def to_cache(self) -> dict[str, Any]:
        raise ValueError("cannot serialise")

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> BrokenEntity:
        return cls()


async def test_cache(flavor: str, sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        for key, value in [("s", "x"), ("i", 5), ("f", 1.5), ("b", False), ("n", None)]:
            ctx.cache_set(key, value)
            assert ctx.cache_get(key) == value
        ctx.cache_set("d", {"a": [1, 2]})
        ctx.cache_set("order", Order("tea", 2))
        assert ctx.cache_get("order") == {"item": "tea", "qty": 2}
        assert ctx.cache_get("order", entity_type=Order) == Order("tea", 2)
        assert ctx.cache_get("missing") is None
        with pytest.raises(TypeError, match=r"cache_set\('s'\).*got list"):
            ctx.cache_set("s", [1, 2])
        with pytest.raises(TypeError, match="got object"):
            ctx.cache_set("s", object())
        with pytest.raises(ValueError, match="not a finite float"):
            ctx.cache_set("s", float("nan"))
        with pytest.raises(ValueError, match="cannot serialise"):
            ctx.cache_set("s", BrokenEntity())
        with pytest.raises(TypeError, match="must be JSON data"):
            ctx.cache_set("s", {"x": {1, 2}})
        with pytest.raises(TypeError, match="from_cache"):
            ctx.cache_get("order", entity_type=dict)
        with pytest.raises(TypeError, match="not an entity's dict"):
            ctx.cache_get("s", entity_type=Order)
        with pytest.raises(TypeError, match="cache keys are str"):
            ctx.cache_set(1, 1)  # type: ignore[arg-type]
        got = ctx.cache_get("d")
        got["a"].append(3)  # a copy

    ctx = await in_handler(body, flavor, sqlite_store)
    assert ctx.cache_get("s") == "x"  # every refused write left it as it was
    assert ctx.cache_get("d") == {"a": [1, 2]}


async def test_outcomes(flavor: str, sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        ctx.add_outcomes([
            {"name": "ok", "type": "boolean"},
            {"name": "count", "type": "integer", "description": "messages"},
            {"name": "value", "type": "float"},
            {"name": "tier", "type": "string"},
        ])
        assert [ctx.get_outcome(n) for n in ("ok", "count", "value", "tier")] == [
            False, 0, 0.0, ""
        ]
        assert ctx.trigger_outcome("ok") is False and ctx.get_outcome("ok") is True
        assert ctx.trigger_outcome("count") == 0 and ctx.trigger_outcome("count") == 1
        assert ctx.set_outcome("value", 3) == 0.0 and ctx.get_outcome("value") == 3.0
        assert isinstance(ctx.get_outcome("value"), float)
        assert ctx.set_outcome("tier", "gold") == ""
        assert ctx.reset_outcome("count") == 2 and ctx.get_outcome("count") == 0
        with pytest.raises(TypeError, match="'value'.*float.*str"):
            ctx.set_outcome("value", "high")
        with pytest.raises(TypeError, match="'count'.*integer.*bool"):
            ctx.set_outcome("count", True)
        with pytest.raises(TypeError, match="trigger_outcome works on boolean and integer"):
            ctx.trigger_outcome("tier")
        with pytest.raises(KeyError, match=r"no outcome 'nope'.*'ok', 'count'"):
            ctx.trigger_outcome("nope")
        with pytest.raises(KeyError, match="no outcome"):
            ctx.reset_outcome("nope")
        with pytest.raises(ValueError, match=r"type must be one of 'boolean'.*got 'bool'"):
            ctx.add_outcome("x", "bool")
        with pytest.raises(ValueError, match="already exists with type 'boolean'"):
            ctx.add_outcome("ok", "integer")
        with pytest.raises(ValueError, match="item 1"):
            ctx.add_outcomes([{"name": "new", "type": "integer"}, {"name": "bad"}])
        with pytest.raises(TypeError, match="outcome value is a bool, int, float or str"):
            ctx.set_outcome("fresh", [1])
        ctx.add_outcome("ok", "boolean")  # again, same type: value kept
        assert ctx.get_outcome("ok") is True
        assert ctx.get_outcome("new", "absent") == "absent"  # add_outcomes added nothing
        assert ctx.set_outcome("rate", 0.1) == 0.0  # an outcome not added takes the type
        assert ctx.testing.outcomes.items["rate"].type == "float"

    ctx = await in_handler(body, flavor, sqlite_store)
    assert ctx.get_outcome("value") == 3.0 and ctx.get_outcome("tier") == "gold"


async def test_testing_manager_and_metadata(flavor: str, sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        assert ctx.testing.add_test("t", {"only": 1}) == "only"
        assert ctx.get_test("t") == "only" and ctx.testing.get_test("t") == "only"
        ctx.set_testing_metadata("segment", {"new": True})
        with pytest.raises(TypeError, match="metadata keys are str"):
            ctx.set_testing_metadata(3, "x")  # type: ignore[arg-type]

    ctx = await in_handler(body, flavor, sqlite_store)
    assert ctx.get_testing_metadata("segment") == {"new": True}


async def test_data_sources_writable_keys_and_clear(flavor: str, sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        ctx.set_data("status", "ok", source="cron")
        ctx.set_data("count", 1)
        with pytest.raises(KeyError, match=r"set_data\('secret'\).*\['count', 'status'\]"):
            ctx.set_data("secret", "x")
        with pytest.raises(TypeError, match="source is a non-empty str"):
            ctx.set_data("status", "x", source="")
        assert ctx.data_keys() == ["locked", "status", "count"]
        with pytest.raises(KeyError, match=r"\['locked'\] are not writable"):
            ctx.clear_data()

    ctx = await in_handler(body, flavor, sqlite_store, writable_keys=["status", "count"],
                           parameters={"locked": "p"})
    assert ctx.data == {"locked": "p", "status": "ok", "count": 1}
    assert [(c.source, c.value) for c in ctx.data_history("status")] == [("cron", "ok")]
    assert ctx.data_history("locked")[0].source == "parameters"

    def clear(ctx: taskrunner.Context) -> None:
        ctx.set_data("a", 1)
        ctx.clear_data(source="reset")

    ctx = await in_handler(clear, flavor, sqlite_store)
    assert ctx.data == {} and ctx.data_keys() == []
    assert [(c.value, c.source, c.deleted) for c in ctx.data_history("a")] == [
        (1, "handler", False), (None, "reset", True)
    ]


async def test_checkpoint_round_trip(flavor: str, sqlite_store: Any) -> None:
    await sqlite_store.set_variable(taskrunner.Variable("org", "", "", "TOKEN", "tok-123", True))

    def body(ctx: taskrunner.Context) -> None:
        ctx.set_data("cart", ["tea"], source="shop")
        ctx.set_data("cart", ["tea", "cake"])
        ctx.set_data("note", "token tok-123 seen")
        ctx.add_completion_message({"role": "user", "content": "hi"})
        ctx.cache_set("order", Order("tea", 1))
        ctx.add_test("greeting", {"hello": 1, "hi": 1})
        ctx.add_outcome("ok", "boolean")
        ctx.trigger_outcome("ok")
        ctx.set_testing_metadata("segment", "vip")

    first = await in_handler(body, flavor, sqlite_store, variables={"PLAIN": "p"})
    cp = first.checkpoint()
    assert json.loads(json.dumps(cp)) == cp
    assert cp["variables"] == {"PLAIN": "p"} and "tok-123" not in json.dumps(cp)

    def check(ctx: taskrunner.Context) -> None:
        assert ctx.get_test("greeting") == first.get_test("greeting")
        assert ctx.add_test("greeting", {"hello": 1, "hi": 1}) == first.get_test("greeting")

    resumed = await in_handler(check, flavor, sqlite_store, restore=cp)
    assert resumed.session_id == first.session_id
    assert resumed.get_data("cart") == ["tea", "cake"]
    assert [c.source for c in resumed.data_history("cart")] == ["shop", "handler"]
    assert resumed.get_completion_messages() == [{"role": "user", "content": "hi"}]
    assert resumed.cache_get("order", Order) == Order("tea", 1)
    assert resumed.get_outcome("ok") is True
    assert resumed.get_testing_metadata("segment") == "vip"
    assert resumed.variables == {"TOKEN": "tok-123"}  # from the store again, not the checkpoint

    async def nothing(event: Any, context: taskrunner.Context) -> None:
        pass

    with pytest.raises(TypeError, match="restore must be a dict"):
        await converse(nothing, [], store=sqlite_store, restore=[1])
    with pytest.raises(ValueError, match="checkpoint version 9"):
        await converse(nothing, [], store=sqlite_store, restore={**cp, "version": 9})
    broken = {k: v for k, v in cp.items() if k != "cache"}
    with pytest.raises(ValueError, match="not a checkpoint"):
        await converse(nothing, [], store=sqlite_store, restore=broken)


@dataclass
class Profile:
    name: str | None = None
    visits: int = 0


async def test_typed_userdata(flavor: str, sqlite_store: Any) -> None:
    profile = Profile()

    async def remember(context: taskrunner.Context[Profile]) -> None:
        context.userdata.visits += 1

    async def handler(event: Any, context: taskrunner.Context[Profile]) -> None:
        if isinstance(event, TextEvent):
            context.userdata.name = event.data["text"]
            context.create_task(remember(context), name="remember")

    ran = await converse(handler, [TextEvent.from_text("Ada")], flavor=flavor,
                         store=sqlite_store, userdata=profile)
    assert ran.context.userdata is profile and profile == Profile("Ada", 1)


async def test_current_session_and_phases(flavor: str, sqlite_store: Any) -> None:
    from taskrunner.tools.hub import Hub

    seen: dict[str, Any] = {}

    async def checkout(context: taskrunner.Context) -> Any:
        seen[taskrunner.current_task().name] = taskrunner.current_phase()
        seen["task_session"] = taskrunner.current_session()
        yield LogEvent("charging")

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            seen["session"] = taskrunner.current_session()
            with context.phase("checkout") as label:
                assert label == "checkout"
                with context.phase("payment"):
                    seen["inner"] = taskrunner.current_phase()
                seen["outer"] = taskrunner.current_phase()
                context.create_task(checkout(context), name="charge")
            context.create_task(checkout(context), name="plain")
            seen["after"] = taskrunner.current_phase()
            with pytest.raises(TypeError, match="phase label"):
                with context.phase(""):
                    pass
            await context.wait_for_all_tasks()
            seen["snapshot"] = context.snapshot()

    hub = Hub()
    ran = await converse(handler, [StartEvent()], flavor=flavor, store=sqlite_store, hub=hub)
    assert seen["session"] is ran.session and seen["task_session"] is ran.session
    assert (seen["inner"], seen["outer"], seen["after"]) == ("payment", "checkout", None)
    assert (seen["charge"], seen["plain"]) == ("checkout", None)
    phases = {t["name"]: t["phase"] for t in seen["snapshot"]["tasks"]}
    assert phases == {"charge": "checkout", "plain": None}
    records = hub.records(ran.session.session_id)
    charge = [r for r in records if r["task"] == "charge"]
    assert len(charge) == 3 and all(r["phase"] == "checkout" for r in charge)
    assert all("phase" not in r for r in records if r["task"] == "plain")
    assert taskrunner.current_session() is None and taskrunner.current_phase() is None


async def test_task_inherits_phase(flavor: str, sqlite_store: Any) -> None:
    seen = []

    async def job() -> None:
        seen.append(taskrunner.current_phase())

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            with context.phase("lookup"):
                context.create_task(job(), name="job")

    await converse(handler, [StartEvent()], flavor=flavor, store=sqlite_store)
    assert seen == ["lookup"]


async def test_wait_for_playout(
    flavor: str, sqlite_store: Any, autojump_clock: trio.abc.Clock
) -> None:
    marks: dict[str, float] = {}

    async def handler(event: Any, context: taskrunner.Context) -> Any:
        if isinstance(event, StartEvent):
            yield TextToSpeechEvent(text="one moment", voice="nova")
            await context.wait_for_playout()
            marks["returned"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(handler, flavor=flavor, store=sqlite_store) as s:

            async def slow_reader() -> None:
                await trio.sleep(5)
                async for record in s.events():
                    if isinstance(getattr(record, "event", None), TextToSpeechEvent):
                        marks["read"] = trio.current_time()
                        await trio.sleep(1)

            nursery.start_soon(slow_reader)
            await s.send(StartEvent())
            await s.wait_until_handled()
    assert marks["read"] == 5 and marks["returned"] >= marks["read"]


async def test_input_timeout_counts_and_resets(
    flavor: str, sqlite_store: Any, autojump_clock: trio.abc.Clock
) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> Any:
        if isinstance(event, TimeoutEvent):
            yield LogEvent(json.dumps(event.data))

    async with trio.open_nursery() as nursery:
        async with taskrunner.open_session(
            handler, flavor=flavor, store=sqlite_store, input_timeout=3
        ) as s:
            got: list[Any] = []

            async def read() -> None:
                async for r in s.events():
                    if isinstance(getattr(r, "event", None), LogEvent):
                        got.append((trio.current_time(), json.loads(r.event.message)))

            nursery.start_soon(read)
            await s.send(StartEvent())
            await trio.sleep(7)  # timeouts at 3 and 6
            await s.send(TextEvent.from_text("here"))  # at 7: the count restarts
            await trio.sleep(4)  # a timeout at 10
    assert [(round(t), d) for t, d in got] == [
        (3, {"count": 1, "ms_since_input": 3000}),
        (6, {"count": 2, "ms_since_input": 6000}),
        (10, {"count": 1, "ms_since_input": 3000}),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"parameters": [("a", 1)]}, TypeError, "parameters must be a dict"),
        ({"parameters": {1: "a"}}, TypeError, "str keys"),
        ({"input_timeout": 0}, ValueError, "input_timeout must be a number of seconds > 0"),
        ({"input_timeout": "5"}, ValueError, "input_timeout"),
        ({"writable_keys": "status"}, TypeError, "writable_keys must be a collection"),
        ({"memory": object()}, TypeError, "memory must be a MemoryProvider"),
        ({"notifier": "ops@x.y"}, TypeError, "notifier must be a Notifier"),
    ],
)
async def test_session_options_refused(
    sqlite_store: Any, kwargs: dict[str, Any], error: type, match: str
) -> None:
    async def handler(event: Any, context: taskrunner.Context) -> None:
        pass

    with pytest.raises(error, match=match):
        async with taskrunner.open_session(handler, store=sqlite_store, **kwargs):
            pass


async def test_memory_bad_input(sqlite_store: Any) -> None:
    def body(ctx: taskrunner.Context) -> None:
        with pytest.raises(ValueError, match="limit is an int >= 1"):
            ctx.search_memory("x", limit=0)
        with pytest.raises(TypeError, match="query is a str"):
            ctx.search_memory(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="text is a non-empty str"):
            ctx.add_memory("  ")
        with pytest.raises(TypeError, match="metadata is a dict"):
            ctx.add_memory("x", metadata=[1])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="memory id"):
            ctx.delete_memory(5)  # type: ignore[arg-type]

    await in_handler(body, "trio", sqlite_store)


async def test_duplicate_name_replaces_in_the_context(flavor: str, sqlite_store: Any) -> None:
    async def slow(n: int) -> int:
        await (trio.sleep(100) if flavor == "trio" else asyncio.sleep(100))
        return n

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, TextEvent):
            context.create_task(slow(1), name="lookup")
            context.create_task(slow(2), name="lookup")
            context.cancel_all_tasks()

    ran = await converse(handler, [TextEvent.from_text("go")], flavor=flavor, store=sqlite_store)
    reasons = {(c.task, c.task_id): c.reason for c in ran.of(TaskCancelled)}
    assert reasons == {("lookup", 1): "replaced", ("lookup", 2): "cancel_all"}
    assert outputs(ran) == []


class ListMemory:
    """A MemoryProvider of the test's own: substring search over a list."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    async def search(self, query: str, limit: int) -> list[taskrunner.MemoryHit]:
        await trio.lowlevel.checkpoint()
        return [taskrunner.MemoryHit(k, v, {}, 1.0) for k, v in self.items.items()
                if query in v][:limit]

    async def add(self, content: str, metadata: dict[str, Any]) -> str:
        await trio.lowlevel.checkpoint()
        key = f"m{len(self.items)}"
        self.items[key] = content
        return key

    async def delete(self, memory_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self.items.pop(memory_id, None) is not None


class FailingMemory(ListMemory):
    async def search(self, query: str, limit: int) -> list[taskrunner.MemoryHit]:
        raise _Unprintable()


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


async def test_custom_memory_provider_and_its_failures(flavor: str, sqlite_store: Any) -> None:
    got: list[Any] = []

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            await context.add_memory("likes tea")
            got.append([h.content for h in await context.search_memory("tea")])
        if isinstance(event, TextEvent):
            await context.search_memory("tea")

    memory = ListMemory()
    ran = await converse(handler, [StartEvent()], flavor=flavor, store=sqlite_store,
                         memory=memory)
    assert got == [["likes tea"]] and memory.items == {"m0": "likes tea"}
    ran = await converse(handler, [TextEvent.from_text("x")], flavor=flavor,
                         store=sqlite_store, memory=FailingMemory())
    [failed] = ran.of(taskrunner.events.HandlerFailed)
    assert isinstance(failed.error, _Unprintable)
    assert type(ran.records[-1]).__name__ == "SessionEnded"


class BrokenStore(taskrunner.SQLiteStore):
    async def record_session(self, result: Any) -> None:
        raise OSError("disk full")


async def test_a_store_failing_at_the_end_is_logged(
    flavor: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from helpers import check_stream_invariants

    async def handler(event: Any, context: taskrunner.Context) -> None:
        if isinstance(event, StartEvent):
            context.add_outcome("n", "integer")
            context.trigger_outcome("n")

    store = BrokenStore(tmp_path / "b.db")
    ran = await converse(handler, [StartEvent()], flavor=flavor, store=store)
    await store.aclose()
    assert type(ran.records[-1]).__name__ == "SessionEnded"
    check_stream_invariants(ran.records)
    assert any("could not record its tests and outcomes" in r.getMessage()
               and "disk full" in r.exc_text for r in caplog.records if r.exc_text)
