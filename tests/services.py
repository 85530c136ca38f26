"""Real servers for the tests that need them: redis-server and PostgreSQL on 127.0.0.1.

Each is started once per test run in a private temporary directory on a free port, and
stopped at the end. When ``TASKRUNNER_REDIS_URL`` / ``TASKRUNNER_POSTGRES_DSN`` are set, that
server is used instead and nothing is started. When the binaries are missing the tests that
need them are skipped, unless ``TASKRUNNER_REQUIRE_SERVICES=1`` (as ``.ci/run`` sets), where
they fail: CI must never pass by skipping them.

Install them on Debian with ``apt-get install redis-server postgresql``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["postgres_dsn", "redis_url"]


def _missing(what: str) -> None:
    msg = f"{what} is not installed (apt-get install redis-server postgresql)"
    if os.environ.get("TASKRUNNER_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + "; TASKRUNNER_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 30 s")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server's URL (``redis://127.0.0.1:PORT/0``) for this test run."""
    given = os.environ.get("TASKRUNNER_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="taskrunner-redis-") as tmp:
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", tmp,
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, proc, "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return shutil.which(name)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server's DSN (``postgresql://USER@127.0.0.1:PORT/postgres``)."""
    given = os.environ.get("TASKRUNNER_POSTGRES_DSN")
    if given:
        yield given
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        _missing("PostgreSQL (initdb, pg_ctl)")
    assert initdb is not None and pg_ctl is not None
    # PostgreSQL refuses to run as root: run it as the 'postgres' user the package creates.
    prefix: list[str] = []
    user = os.environ.get("USER") or "postgres"
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        user = "postgres"
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="taskrunner-pg-")
    data = Path(tmp) / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(Path(tmp) / "log"), "-w", "-o",
             f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off -c full_page_writes=off",
             "start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, None, "postgres")
            yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
