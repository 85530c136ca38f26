"""JSON for browsers, and the headers every debugger answer carries."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["COMMON_HEADERS", "json_dumps"]

#: Every page and API answer: no sniffing, no framing, no referrer leaks.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _json_safe(value: Any) -> Any:
    """Replace what JSON.parse cannot read (NaN, infinities) by strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def json_dumps(value: Any) -> str:
    """JSON text a browser can parse, whatever a record holds."""
    try:
        return json.dumps(value, default=repr, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # Rare (a non-finite float): pay for the sanitising walk only then.
        return json.dumps(_json_safe(value), default=repr, separators=(",", ":"))
