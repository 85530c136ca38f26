"""Debugger web view: a local page showing sessions, tasks and events live.

Needs the ``ui`` extra (Starlette, Hypercorn).  :class:`DebuggerThread` serves it from a
thread of its own (what the CLI does); :func:`serve` runs the server in the current trio
run; :func:`create_app` builds the Starlette app alone (for tests or embedding).  Records
reach it through a :class:`taskrunner.tools.hub.Hub`, fed across threads by a
:class:`taskrunner.tools.feed.AgentFeed`.
"""

from taskrunner.tools.debugger.app import TOKEN_HEADER, create_app
from taskrunner.tools.debugger.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    TOKEN_ENV,
    ExposureError,
    is_loopback,
    serve,
)
from taskrunner.tools.debugger.thread import DebuggerThread

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "TOKEN_HEADER",
    "DebuggerThread",
    "ExposureError",
    "create_app",
    "is_loopback",
    "serve",
]
