"""Debugger web view: a local page showing sessions, tasks and events live.

Needs the ``ui`` extra (Starlette, Hypercorn).  :func:`serve` runs the server
on trio; :func:`create_app` builds the Starlette app alone (for tests or
embedding).  Records reach it through a :class:`taskrunner.tools.hub.Hub`.
"""

from taskrunner.tools.debugger.app import TOKEN_HEADER, create_app
from taskrunner.tools.debugger.server import DEFAULT_HOST, DEFAULT_PORT, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_HEADER", "create_app", "serve"]
