"""Suite-wide fixtures: the real servers some tests need (see tests/services.py), the store
fixtures (tests/context_support.py), and a default store kept out of the working tree."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from context_support import flavor, sqlite_store, store, store_url
from services import postgres_dsn, redis_url

__all__ = ["flavor", "postgres_dsn", "redis_url", "sqlite_store", "store", "store_url"]


@pytest.fixture(scope="session", autouse=True)
def _default_store_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sessions opened without a store use ``$TASKRUNNER_STORE`` (else ``taskrunner.db`` in
    the working directory): point it at a temporary file, for this process and the
    subprocesses tests start, so a test run leaves nothing behind."""
    if "TASKRUNNER_STORE" in os.environ:
        yield
        return
    path = tmp_path_factory.mktemp("store") / "taskrunner.db"
    os.environ["TASKRUNNER_STORE"] = f"sqlite:///{path}"
    try:
        yield
    finally:
        os.environ.pop("TASKRUNNER_STORE", None)
