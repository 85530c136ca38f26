"""Errors of the serving layer; each maps to one HTTP status."""

from __future__ import annotations

from .._core.errors import TaskRunnerError

__all__ = [
    "BadInputError",
    "ConflictError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServeError",
    "UnavailableError",
]


class ServeError(TaskRunnerError):
    """Base class of the errors the server answers with a 4xx/5xx; ``status`` is the code."""

    status = 500


class BadInputError(ServeError, ValueError):
    """A request's body or parameters are malformed or not accepted (HTTP 400)."""

    status = 400


class NotFoundError(ServeError, LookupError):
    """No such session, agent or task (HTTP 404)."""

    status = 404


class ConflictError(ServeError, RuntimeError):
    """The session cannot take this now, e.g. it has stopped (HTTP 409)."""

    status = 409


class UnavailableError(ServeError, RuntimeError):
    """The server cannot do this now: draining, or Redis unreachable (HTTP 503)."""

    status = 503


class PayloadTooLargeError(BadInputError):
    """A request body is larger than the server accepts (HTTP 413)."""

    status = 413
