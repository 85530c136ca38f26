"""Choosing a store: from a URL, an object, or the default file in the working directory."""

from __future__ import annotations

import os
import weakref
from typing import Any

from ._protocol import Store
from ._sql import SQLStore

__all__ = ["DEFAULT_STORE_URL", "default_store", "open_store", "resolve_store"]

#: The store used when none is given: ``TASKRUNNER_STORE`` if set, else this file.
DEFAULT_STORE_URL = "sqlite:///taskrunner.db"

_open: dict[str, Store] = {}


def open_store(url: str) -> Store:
    """The store named by ``url``: ``sqlite:///relative/or/absolute/path`` (``sqlite:////abs``
    also works) or ``postgresql://user[:password]@host[:port]/db``.

    One object per URL per process (so sessions of a process share its reserved slots).
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL is a str, got {type(url).__name__}: {url!r}")
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel/file.db, sqlite:////abs/file.db
        if not path:
            raise ValueError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
        from ._sqlite import SQLiteStore

        key = "sqlite:///" + os.path.abspath(path)
        store = _open.get(key)
        if store is None or getattr(store, "_closed", False):
            store = _open[key] = SQLiteStore(path)
        return store
    if url.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        store = _open.get(url)
        if store is None or getattr(store, "_closed", False):
            store = _open[url] = PostgresStore(url)
        return store
    raise ValueError(
        f"unknown store URL {url!r}: use sqlite:///path/to/file.db or "
        f"postgresql://user@host:port/db"
    )


def default_store() -> Store:
    """The process's default store: ``$TASKRUNNER_STORE`` or ``taskrunner.db`` in the
    working directory."""
    return open_store(os.environ.get("TASKRUNNER_STORE") or DEFAULT_STORE_URL)


def resolve_store(store: Any) -> Store:
    """``open_session(store=...)``: a Store object, a URL, or None for the default."""
    if store is None:
        return default_store()
    if isinstance(store, str):
        return open_store(store)
    if isinstance(store, SQLStore) or isinstance(store, Store):
        return store
    raise TypeError(
        f"store must be a taskrunner.Store (SQLiteStore, PostgresStore), a URL "
        f"(sqlite:///file.db, postgresql://...) or None, got {type(store).__name__}: {store!r}"
    )


_existing: weakref.WeakSet[Any] = weakref.WeakSet()


def store_exists(store: Store) -> bool:
    """False only for a SQLite store whose file does not exist yet (nothing to read).

    One ``stat`` of a local path (no lock, no network); once the file exists,
    :func:`known_to_exist` answers without it.
    """
    path = getattr(store, "path", None)
    exists = path is None or os.path.exists(path)
    if exists:
        _existing.add(store)
    return exists


def known_to_exist(store: Store) -> bool:
    """True once :func:`store_exists` has seen ``store`` exist (or it has no file): a check
    without I/O, so sessions after the first skip the worker thread."""
    return store in _existing or getattr(store, "path", None) is None
