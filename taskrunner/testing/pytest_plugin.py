"""The pytest plugin of :mod:`taskrunner.testing` (entry point ``pytest11``: ``taskrunner``).

Fixtures:

- ``run_agent``: :func:`taskrunner.testing.run_agent` itself, for
  ``async with run_agent(handler) as agent:``.
- ``agent_runner``: a :class:`taskrunner.testing.TestRunner` for the test's ``handler``
  fixture (which the test module or a conftest defines), open for the test.

A test that uses one of them runs under pytest-trio (it is marked ``trio``) on trio's
autojump clock (``MockClock(autojump_threshold=0)``): sleeps and task timeouts take no real
time. A clock the test asks for itself (``mock_clock``, ``autojump_clock``) is used instead.
Without pytest-trio installed the fixtures are not usable and the plugin does nothing else.
A failed expectation (:class:`taskrunner.testing.ExpectationError`) is reported as itself,
not inside the exception group pytest-trio's nursery wraps it in. Importing this module
imports only pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

__all__ = ["agent_runner", "run_agent", "run_with_autojump_clock"]

_FIXTURES = frozenset({"run_agent", "agent_runner"})


def run_with_autojump_clock(fn: Callable[[], Any], *, clock: Any = None, **kwargs: Any) -> Any:
    """``trio.run(fn)`` on an autojump ``MockClock`` unless ``clock`` is given."""
    import trio
    import trio.testing

    if clock is None:
        clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(fn, clock=clock, **kwargs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that use the fixtures as trio tests on the autojump clock."""
    if not config.pluginmanager.hasplugin("trio"):
        return
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            # Prepended, so pytest-trio's own trio_mode marker (appended) comes second.
            item.add_marker(pytest.mark.trio(run=run_with_autojump_clock), append=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Report a failed expectation as itself: pytest-trio runs the test in a nursery, which
    wraps what it raises in an exception group; one ``ExpectationError`` alone is unwrapped
    so the report shows its message and transcript plainly."""
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, BaseExceptionGroup):
        leaf: BaseException = excinfo.value
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        from ._expect import ExpectationError

        if isinstance(leaf, ExpectationError):
            call.excinfo = pytest.ExceptionInfo.from_exception(leaf)
    yield


@pytest.fixture
def run_agent() -> Any:
    """:func:`taskrunner.testing.run_agent`, on the autojump clock."""
    from . import run_agent as run

    return run


@pytest.fixture
async def agent_runner(handler: Any) -> AsyncIterator[Any]:
    """A :class:`taskrunner.testing.TestRunner` for the ``handler`` fixture, open for the
    test and closed after it (its tasks ended)."""
    from . import TestRunner

    async with TestRunner(handler) as runner:
        yield runner
