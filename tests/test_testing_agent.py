"""taskrunner.testing.run_agent: turns, waiting, expectations and their failure messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

import taskrunner
from taskrunner.events import (
    CustomEvent,
    LogEvent,
    Record,
    StartEvent,
    TextEvent,
    TextToSpeechEvent,
)
from taskrunner.testing import (
    ExpectationError,
    contains,
    matches,
    regex,
    run_agent,
)


@pytest.fixture(params=["asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sleeper(flavor: str) -> Callable[[float], Any]:
    return trio.sleep if flavor == "trio" else asyncio.sleep


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def make_agent(flavor: str) -> Any:
    """An agent whose tasks cover every ending: finish, time out, fail, get interrupted."""
    sleep = sleeper(flavor)

    async def process(context: Any) -> AsyncIterator[Any]:
        yield LogEvent("processing")
        await sleep(5)
        context.set_data("status", "done")
        yield LogEvent("processed")

    async def slow() -> None:
        await sleep(100)

    async def broken() -> None:
        await sleep(1)
        raise ValueError("card declined")

    async def weird() -> None:
        raise Unprintable()

    async def suggest() -> AsyncIterator[Any]:
        for item in ("coffee", "bagel", "juice"):
            await sleep(1)
            yield LogEvent(f"suggesting {item}")

    async def handler(event: Any, context: Any) -> AsyncIterator[Any]:
        if isinstance(event, StartEvent):
            context.create_task(suggest, name="suggest", interruptible=True)
            yield TextToSpeechEvent(text="Welcome!", voice="nova")
            return
        if not isinstance(event, TextEvent):
            return
        text = event.data["text"]
        if text == "order":
            context.create_task(process(context), name="process", timeout=60)
            yield TextToSpeechEvent(text="Processing your order.", voice="nova")
        elif text == "slow":
            context.create_task(slow, name="slow", timeout=30)
            yield TextToSpeechEvent(text="This takes a while.", voice="nova")
        elif text == "pay":
            context.create_task(broken, name="pay")
            yield TextToSpeechEvent(text="Paying.", voice="nova")
        elif text == "weird":
            context.create_task(weird, name="weird")
        elif text == "forever":
            context.create_task(slow, name="forever", timeout=None)
        elif text == "crash":
            raise KeyError("no such menu")
        else:
            yield TextToSpeechEvent(text=f"You said {text}.", voice="nova")
            yield LogEvent("echoed")

    return handler


# ---------------------------------------------------------------------------- turns and waiting


async def test_a_turn_waits_for_the_tasks_it_started(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor) as agent:
        turn = await agent.say("order")
        assert turn.ended_at - turn.sent_at == 5
        turn.expect.next_output(TextToSpeechEvent, text="Processing your order.")
        turn.expect.next_output(LogEvent, message="processing")
        turn.expect.next_output(LogEvent, message="processed")
        turn.expect.no_more_outputs()
        turn.expect.task("process").started(timeout=60, interruptible=False)
        assert turn.expect.task("process").finished().at - turn.t0 == 5
        assert turn.expect.task("process").outputs == [
            LogEvent("processing"), LogEvent("processed")
        ]
        assert agent.context.get_data("status") == "done"
        assert turn.unfinished == ()


async def test_a_30_second_timeout_in_virtual_time(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor) as agent:
        turn = await agent.say("slow")
        ended = turn.expect.task("slow").timed_out()
        assert ended.timeout == 30 and ended.at - turn.sent_at == 30


async def test_wait_seconds_ends_the_turn_after_a_quiet_period(
    flavor: str, autojump_clock: Any
) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor) as agent:
        # Suggestions come 1 s apart: half a second of quiet ends the turn before the first.
        turn = await agent.start(wait=0.5)
        assert [type(e).__name__ for e in turn.outputs] == ["TextToSpeechEvent"]
        turn.expect.task("suggest").still_running()
        # With 1.5 s the turn goes on while they come, and ends 1.5 s after the last.
        turn = await agent.send(CustomEvent("noop", {}), wait=1.5)
        assert [e.message for e in turn.outputs] == [
            "suggesting coffee", "suggesting bagel", "suggesting juice"
        ]
        turn.expect.task("suggest").finished()
        assert turn.sent_at - turn.t0 == 0.5 and turn.ended_at - turn.t0 == 4.5
        # Nothing happens while nothing runs.
        assert (await agent.advance(10)).records == ()


async def test_run_agent_default_wait_and_max_wait(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor, wait=0, max_wait=50) as agent:
        turn = await agent.say("order")  # wait=0 by default: the task is still running
        turn.expect.task("process").still_running()
        turn = await agent.say("forever", wait=None)
        assert turn.ended_at - turn.sent_at == 50 and turn.unfinished == ("forever",)
        assert "(stopped waiting; still running: forever)" in turn.transcript()
        turn = await agent.say("forever again", wait=None, max_wait=1)
        assert turn.unfinished == ()  # it started nothing: its own wait was over at once


async def test_tasks_across_turns(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor, wait=0) as agent:
        first = await agent.say("order")
        second = await agent.advance(10)
        second.expect.task("process").finished()
        with pytest.raises(ExpectationError) as info:
            second.expect.task("process").started()
        assert str(info.value).startswith(
            "expected task 'process' to start in this turn, but it did not\n\nturn 2: advance"
        )
        assert agent.turns == [first, second]
        whole = agent.transcript()
        assert "[process] started (timeout 60s)" in whole and "[process] finished" in whole


async def test_send_stop_and_after(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor) as agent:
        turn = await agent.send(CustomEvent("ping", {}))
        turn.expect.no_more_outputs()
        await agent.start(wait=0)
        end = await agent.stop()
        end.expect.task("suggest").cancelled(reason="closed")
        with pytest.raises(taskrunner.SessionClosedError):
            await agent.say("anyone?")
    assert type(agent.records[-1]).__name__ == "SessionEnded"


async def test_an_exception_in_the_block_propagates_as_itself(autojump_clock: Any) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with run_agent(make_agent("asyncio"), wait=0) as agent:
            await agent.start()
            raise KeyError("boom")
    assert agent.records[-1].__class__.__name__ == "SessionEnded"
    # The interruptible task was cancelled when the block failed.
    assert not agent.session.supervisor.has_unfinished_tasks()


async def test_on_record_and_session_options(autojump_clock: Any) -> None:
    seen: list[Record] = []
    async with run_agent(
        make_agent("asyncio"), on_record=seen.append, agent_id="orders", variables={"K": "v"}
    ) as agent:
        assert agent.context.agent_id == "orders" and agent.context.variables == {"K": "v"}
        await agent.say("hello")
    assert seen == agent.records and len(seen) > 3


# ---------------------------------------------------------------------------- matchers


async def test_matchers_and_searches(autojump_clock: Any) -> None:
    async with run_agent(make_agent("asyncio")) as agent:
        turn = await agent.say("Hello There")
        e = turn.expect
        e.any_output(LogEvent, message="echoed")  # by search: the cursor does not move
        e.next_output(TextToSpeechEvent, text=contains("hello", ignore_case=True), voice="nova")
        e.next_output(where=lambda ev: isinstance(ev, LogEvent))
        e.no_more_outputs()
        e.any_output(TextToSpeechEvent, text=regex(r"^You said \w+ There\.$"))
        e.any_output(text=matches(lambda t: t.endswith("There."), "ending in 'There.'"))
        e.no_output(TextToSpeechEvent, text=contains("sorry"))
        e.no_failures()

        turn = await agent.say("again")
        turn.expect.skip()
        turn.expect.next_output(LogEvent)
        with pytest.raises(ExpectationError, match="cannot skip 1 output"):
            turn.expect.skip()


async def test_bad_arguments_are_refused(autojump_clock: Any) -> None:
    with pytest.raises(TypeError, match="contains\\(\\) takes a str, got int"):
        contains(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="matches\\(\\) takes a callable"):
        matches("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait must be a number of seconds >= 0 or None, got -1"):
        async with run_agent(make_agent("asyncio"), wait=-1):
            pass
    async with run_agent(make_agent("asyncio")) as agent:
        turn = await agent.say("hi")
        with pytest.raises(TypeError, match="the output type must be an event class"):
            turn.expect.next_output("TextToSpeechEvent")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="task\\(\\) takes the task's name"):
            turn.expect.task(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="advance\\(seconds\\) must be a number"):
            await agent.advance(-1)
        with pytest.raises(ValueError, match="max_wait must be a number of seconds >= 0, got"):
            await agent.say("x", max_wait=-3)
        with pytest.raises(TypeError, match="say\\(\\) takes the user's text"):
            await agent.say(b"hi")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- failure messages


async def test_next_output_failure_message(autojump_clock: Any) -> None:
    async with run_agent(make_agent("asyncio")) as agent:
        turn = await agent.say("order")
        turn.expect.next_output(TextToSpeechEvent)
        with pytest.raises(ExpectationError) as info:
            turn.expect.next_output(TextToSpeechEvent, text=contains("status"))
    assert str(info.value) == (
        "expected output #2 to be TextToSpeechEvent with text containing 'status'\n"
        "but output #2 is task 'process''s log: processing: it is a LogEvent, not "
        "TextToSpeechEvent\n"
        "\n"
        "turn 1: TextEvent 'order'  (+0.000s .. +5.000s)\n"
        "        +   0.000s  > TextEvent 'order'\n"
        "        +   0.000s  [process] started (timeout 60s)\n"
        "      1 +   0.000s  handler says \"Processing your order.\" (nova)\n"
        " ->   2 +   0.000s  [process] log: processing\n"
        "      3 +   5.000s  [process] log: processed\n"
        "        +   5.000s  [process] finished"
    )


async def test_field_and_end_of_turn_failure_messages(autojump_clock: Any) -> None:
    async with run_agent(make_agent("asyncio")) as agent:
        turn = await agent.say("hi")
        with pytest.raises(ExpectationError) as info:
            turn.expect.next_output(TextToSpeechEvent, text="You said hello.")
        assert str(info.value).splitlines()[:2] == [
            "expected output #1 to be TextToSpeechEvent with text == 'You said hello.'",
            "but output #1 is the handler's says \"You said hi.\" (nova): its text is "
            "'You said hi.', expected == 'You said hello.'",
        ]
        with pytest.raises(ExpectationError, match="it has no field 'colour'"):
            turn.expect.next_output(TextToSpeechEvent, colour="red")
        turn.expect.skip(2)
        with pytest.raises(ExpectationError) as info:
            turn.expect.next_output(LogEvent)
        message = str(info.value)
        assert message.startswith(
            "expected the next output to be LogEvent, but there is none "
            "(all 2 outputs were already expected)"
        )
        assert message.endswith(" ->     (end of turn)")

        turn = await agent.say("hi")
        turn.expect.next_output()
        with pytest.raises(ExpectationError) as info:
            turn.expect.no_more_outputs()
        assert str(info.value).startswith(
            "expected no more outputs, but 1 more: the next is output #2, "
            "the handler's log: echoed\n\nturn 2: TextEvent 'hi'"
        )
        with pytest.raises(ExpectationError, match="expected an output TextToSpeechEvent with "
                           "text containing 'bye' in this turn; none matches"):
            turn.expect.any_output(TextToSpeechEvent, text=contains("bye"))
        with pytest.raises(ExpectationError, match=r"expected no output LogEvent, but output #2 "
                           r"is one: the handler's log: echoed"):
            turn.expect.no_output(LogEvent)


async def test_task_failure_messages(flavor: str, autojump_clock: Any) -> None:
    async with run_agent(make_agent(flavor), flavor=flavor) as agent:
        turn = await agent.say("pay")
        turn.expect.task("pay").failed(ValueError, match="declined")
        with pytest.raises(ExpectationError) as info:
            turn.expect.task("pay").finished()
        assert str(info.value).startswith(
            "expected task 'pay' to finish in this turn, but it failed at +1.000s: "
            "ValueError: card declined\n"
        )
        assert " ->     +   1.000s  [pay] FAILED: ValueError('card declined')" in str(info.value)
        with pytest.raises(ExpectationError, match="to fail with KeyError, but it failed with "
                           "ValueError: card declined"):
            turn.expect.task("pay").failed(KeyError)
        with pytest.raises(ExpectationError, match="error to match /refused/, but its message "
                           "is 'card declined'"):
            turn.expect.task("pay").failed(match="refused")
        with pytest.raises(ExpectationError, match="expected no failures, but task 'pay' failed"):
            turn.expect.no_failures()
        with pytest.raises(ExpectationError) as info:
            turn.expect.task("charge").cancelled(reason="interrupted")
        assert (
            "expected task 'charge' to be cancelled (reason 'interrupted') in this turn, but "
            "there is no record of it ending in this turn\n"
            "(no record of a task named 'charge' in this turn; tasks: 'pay')"
        ) in str(info.value)

        turn = await agent.say("slow")
        with pytest.raises(ExpectationError, match=r"to be cancelled in this turn, but it timed "
                           r"out at \+31\.000s \(after 30s\)"):
            turn.expect.task("slow").cancelled()
        with pytest.raises(ExpectationError, match="to start with interruptible=True, but"):
            turn.expect.task("slow").started(interruptible=True)
        with pytest.raises(ExpectationError, match="to start with timeout=10, but its timeout"):
            turn.expect.task("slow").started(timeout=10)

        turn = await agent.start(wait=0.5)
        with pytest.raises(ExpectationError, match=r"to be cancelled with reason 'closed', but "
                           r"the reason was 'interrupted'"):
            (await agent.say("hi")).expect.task("suggest").cancelled(reason="closed")
        with pytest.raises(ExpectationError, match="to time out in this turn, but it was still "
                           "running at the end of the turn"):
            turn.expect.task("suggest").timed_out()


async def test_unprintable_errors_and_handler_failures(autojump_clock: Any) -> None:
    async with run_agent(make_agent("asyncio")) as agent:
        turn = await agent.say("weird")
        turn.expect.task("weird").failed(Unprintable)
        assert "[weird] FAILED: Unprintable('<unprintable>')" in turn.transcript()
        with pytest.raises(ExpectationError, match="its message is '<unprintable>'"):
            turn.expect.task("weird").failed(Unprintable, match="x")
        turn = await agent.say("crash")
        with pytest.raises(ExpectationError) as info:
            turn.expect.no_failures()
        assert str(info.value).startswith(
            "expected no failures, but the handler failed: KeyError: 'no such menu'"
        )
        assert "handler FAILED on TextEvent: KeyError(\"'no such menu'\")" in str(info.value)
        # The session goes on after a handler failure.
        (await agent.say("still there?")).expect.next_output(TextToSpeechEvent)


def test_a_session_that_records_its_inputs_shows_them_once() -> None:
    # The core's InputReceived record (issue 8) replaces the turn's own input line.
    import attrs

    from taskrunner._session._vocabulary import resolve_vocabulary
    from taskrunner.testing import Turn

    @attrs.frozen
    class InputReceived(Record):
        event: Any

    said = TextEvent.from_text("hello")
    turn = Turn(index=1, input=said, records=[InputReceived(1, 2.0, said)],
                vocabulary=resolve_vocabulary("taskrunner"), t0=0.0, sent_at=2.0, ended_at=2.0)
    assert turn.transcript().splitlines()[1:] == ["        +   2.000s  > TextEvent 'hello'"]
