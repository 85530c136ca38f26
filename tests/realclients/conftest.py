"""Fixtures of the real-client tests: the slow local API server, and the strict checks.

Every test here runs with the real clock (real sockets) and fails on any warning that a leak
or a lost exception leaves behind (``STRICT_WARNINGS``, given to every test of the package):
``ResourceWarning``, "coroutine ... was never awaited", an unraisable exception, and the
lines asyncio logs through its loop's exception handler ("Task was destroyed but it is
pending", "exception was never retrieved", "Unclosed ...") whether they go to the
``asyncio`` or the ``taskrunner`` logger. A test that provokes such a line on purpose is
marked ``loop_errors_expected`` and checks the lines itself.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("fake_api.py")

#: Log lines that mean something leaked or an exception was lost.
LEAK_PATTERNS = (
    "Task was destroyed",
    "exception was never retrieved",
    "was never awaited",
    "Unclosed",
    "unclosed",
    "Exception in callback",
)


#: Warnings that mean a leak or a lost exception, made errors in every test of this package.
STRICT_WARNINGS = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("error:.*was never awaited:RuntimeWarning"),
]

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # First in the item's own marks, so they have the lowest precedence: a test (or a
    # fixture) may still allow one precise warning it provokes on purpose.
    for item in items:
        if HERE in item.path.parents:
            for mark in reversed(STRICT_WARNINGS):
                item.add_marker(mark, append=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loop_errors_expected: the test provokes asyncio exception-handler lines on purpose "
        "and checks them itself",
    )


@pytest.fixture(scope="session")
def fake_api() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of tests/realclients/fake_api.py, run once."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake_api.py did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.stdin.close()  # the server ends when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def loop_log() -> Iterator[list[logging.LogRecord]]:
    """Every record logged on the ``asyncio`` and ``taskrunner`` loggers during the test."""
    handler = _Collect()
    loggers = [logging.getLogger("asyncio"), logging.getLogger("taskrunner")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.fixture(autouse=True)
def _no_lost_errors(
    request: pytest.FixtureRequest, loop_log: list[logging.LogRecord]
) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("xfail"):
        # A known failure leaves half-closed clients behind: collect them now, silently,
        # so that they do not warn later inside another test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
        return
    gc.collect()  # objects the test dropped warn now
    if request.node.get_closest_marker("loop_errors_expected"):
        return
    bad = []
    for record in loop_log:
        try:
            text = record.getMessage()
        except Exception as exc:  # a message that cannot be formatted is a finding too
            text = f"<unformattable log record: {exc!r}>"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}]"
        if any(p in text for p in LEAK_PATTERNS):
            bad.append(f"{record.name}: {text}")
    if bad:
        pytest.fail("lost errors or leaks were logged:\n" + "\n".join(bad), pytrace=False)
