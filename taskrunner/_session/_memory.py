"""Long-term memory (seed 003): the MemoryProvider protocol and the store-backed default."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .._store._protocol import MemoryHit, Store

__all__ = ["MemoryProvider", "StoreMemory"]


@runtime_checkable
class MemoryProvider(Protocol):
    """Where ``context.search_memory`` / ``add_memory`` / ``delete_memory`` go.

    Methods are trio coroutines (the Context runs them from either flavour).
    """

    async def search(self, query: str, limit: int) -> list[MemoryHit]:
        """The memories best matching ``query``, at most ``limit``, best first."""

    async def add(self, content: str, metadata: dict[str, Any]) -> str:
        """Store a memory; returns its id."""

    async def delete(self, memory_id: str) -> bool:
        """Delete a memory; False if there was none."""


class StoreMemory:
    """The default :class:`MemoryProvider`: full-text search in the store (SQLite FTS5 or
    PostgreSQL ``tsvector``), one ``namespace`` per agent by default. Matches any word of
    the query, ranked by relevance."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<StoreMemory {self.namespace!r} in {self.store.url}>"

    async def search(self, query: str, limit: int) -> list[MemoryHit]:
        """See :class:`MemoryProvider`."""
        return await self.store.search_memory(self.namespace, query, limit)

    async def add(self, content: str, metadata: dict[str, Any]) -> str:
        """See :class:`MemoryProvider`."""
        return await self.store.add_memory(self.namespace, content, metadata)

    async def delete(self, memory_id: str) -> bool:
        """See :class:`MemoryProvider`."""
        return await self.store.delete_memory(self.namespace, memory_id)
