"""Testing helpers for agents: drive a session turn by turn on trio's mock clock.

- :func:`run_agent`: ``async with run_agent(handler) as agent: turn = await agent.say("hi")``,
  then ``turn.expect.next_output(TextToSpeechEvent, text=contains("hello"))``,
  ``turn.expect.task("order_processing").finished()``... (:class:`Expectations`).
- :class:`TestRunner`: VoiceRun's runner names (``start``, ``text``, ``get_tts_texts``...),
  backed by a taskrunner session.
- :func:`fake_context`: a Context stand-in to unit-test a task function alone, and
  :func:`run_asyncio` to run asyncio task code from a trio test on its clock.
- A pytest plugin (``taskrunner.testing.pytest_plugin``, registered through the ``pytest11``
  entry point) with the ``run_agent`` and ``agent_runner`` fixtures; tests that use them run
  on trio's autojump clock under pytest-trio.

Importing this module does not import pytest.
"""

from ._agent import Agent, run_agent
from ._expect import (
    ExpectationError,
    Expectations,
    Matcher,
    TaskExpectation,
    contains,
    matches,
    regex,
)
from ._fake import FakeContext, FakeTask, fake_context, run_asyncio
from ._runner import TestRunner, create_test_runner
from ._turn import Turn

__all__ = [
    "Agent",
    "ExpectationError",
    "Expectations",
    "FakeContext",
    "FakeTask",
    "Matcher",
    "TaskExpectation",
    "TestRunner",
    "Turn",
    "contains",
    "create_test_runner",
    "fake_context",
    "matches",
    "regex",
    "run_agent",
    "run_asyncio",
]
