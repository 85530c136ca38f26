"""The pytest plugin (entry point pytest11): fixtures, the autojump clock, plain reports.

Each test runs an inner pytest in a subprocess over a small test file, as a user's project
would: the plugin comes from the installed entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

AGENT = '''
import asyncio

from pathlib import Path

import pytest
import trio
import trio.testing

from taskrunner.events import StartEvent, TextEvent, TextToSpeechEvent


async def slow():
    await asyncio.sleep(3600)


async def handler(event, context):
    if isinstance(event, StartEvent):
        context.create_task(slow, name="slow", timeout=30)
        yield TextToSpeechEvent(text="Hello!", voice="nova")
    elif isinstance(event, TextEvent):
        yield TextToSpeechEvent(text="You said " + event.data["text"], voice="nova")
'''

TESTS = AGENT + '''

@pytest.fixture(name="handler")
def handler_fixture():
    return handler


async def test_run_agent_fixture_runs_on_the_autojump_clock(run_agent):
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    async with run_agent(handler) as agent:
        turn = await agent.start()
        turn.expect.next_output(TextToSpeechEvent, text="Hello!")
        timed_out = turn.expect.task("slow").timed_out()
        assert timed_out.at - turn.sent_at == 30


async def test_agent_runner_fixture(agent_runner):
    await agent_runner.start()
    await agent_runner.text("hi")
    assert agent_runner.get_tts_texts() == ["Hello!", "You said hi"]


async def test_own_clock_is_kept(run_agent, mock_clock):
    assert trio.lowlevel.current_clock() is mock_clock


async def test_failing_expectation(run_agent):
    async with run_agent(handler) as agent:
        turn = await agent.say("hello")
        turn.expect.next_output(TextToSpeechEvent, text="Goodbye")
'''


@pytest.mark.parametrize("trio_mode", [False, True])
def test_plugin_fixtures_clock_and_reports(pytester: pytest.Pytester, trio_mode: bool) -> None:
    pytester.makepyfile(test_agent=TESTS)
    if trio_mode:
        pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    # The failed expectation is reported as itself, with its transcript, not inside the
    # exception group of pytest-trio's nursery.
    assert "Exception Group" not in out
    result.stdout.fnmatch_lines(
        [
            "E * taskrunner.testing.ExpectationError: expected output #1 to be "
            "TextToSpeechEvent with text == 'Goodbye'",
            "E * but output #1 is the handler's says \"You said hello\" (nova): its text is "
            "'You said hello', expected == 'Goodbye'",
            "E * turn 1: TextEvent 'hello'  (+0.000s .. +0.000s)",
            "E *  ->   1 +   0.000s  handler says \"You said hello\" (nova)",
        ]
    )


def test_other_tests_are_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain='''
import trio

def test_sync():
    assert True

from pathlib import Path

import pytest

@pytest.mark.trio
async def test_real_clock():
    assert type(trio.lowlevel.current_clock()).__name__ == "SystemClock"
'''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_readme_test_file_passes(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme.split("## Testing your agent", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.startswith("# test_order_agent.py")
    pytester.makepyfile(test_order_agent=code)
    pytester.makepyfile(order_agent=(root / "examples" / "order_agent.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
