"""Suite-wide fixtures: the real servers some tests need (see tests/services.py)."""

from context_support import flavor, sqlite_store, store, store_url
from services import postgres_dsn, redis_url

__all__ = ["flavor", "postgres_dsn", "redis_url", "sqlite_store", "store", "store_url"]
