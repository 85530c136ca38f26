"""Suite-wide fixtures: the real servers some tests need (see tests/services.py)."""

from services import postgres_dsn, redis_url

__all__ = ["postgres_dsn", "redis_url"]
