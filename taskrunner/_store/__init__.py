"""Stores: what outlives a session or is shared between sessions and processes."""

from ._open import DEFAULT_STORE_URL, default_store, open_store, resolve_store
from ._postgres import PostgresStore
from ._protocol import (
    CheckpointNotFoundError,
    MemoryHit,
    OptionStats,
    SessionResult,
    Store,
    StoreError,
    TestState,
    Variable,
)
from ._sqlite import SQLiteStore

__all__ = [
    "DEFAULT_STORE_URL",
    "CheckpointNotFoundError",
    "MemoryHit",
    "OptionStats",
    "PostgresStore",
    "SQLiteStore",
    "SessionResult",
    "Store",
    "StoreError",
    "TestState",
    "Variable",
    "default_store",
    "open_store",
    "resolve_store",
]
