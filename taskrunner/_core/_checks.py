"""Argument checks and handler coercion for the supervisor: clear errors at the wrong call."""

from __future__ import annotations

import dis
import inspect
import math
import types
from typing import Any, Literal, TypeAlias

from .errors import FlavorError

__all__ = [
    "ACCEPTED_HANDLERS",
    "Flavor",
    "check_count",
    "check_flavor",
    "check_seconds",
    "check_timeout",
    "coerce_handler",
    "flavor_misuse",
    "safe_repr",
    "safe_str",
]

Flavor: TypeAlias = Literal["trio", "asyncio"]

ACCEPTED_HANDLERS = (
    "a coroutine object, an async generator object, "
    "or an async function / async generator function taking no arguments"
)

_RETURN_GENERATOR = dis.opmap.get("RETURN_GENERATOR", -1)
_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder naming its type when its ``__str__`` raises."""
    try:
        return str(value)
    except Exception as exc:  # user code: never let it break the caller
        return f"<{type(value).__qualname__}: str() raised {type(exc).__name__}>"


def safe_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, or a placeholder when ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__}: repr() raised {type(exc).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _as_float(value: object, what: str, accepted: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be {accepted}, got {type(value).__name__}: {value!r:.80}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: larger than any time
        return math.inf


def check_timeout(timeout: object, what: str) -> float | None:
    """A positive number of seconds, or None / ``math.inf`` for no limit (returned as None)."""
    if timeout is None:
        return None
    accepted = "a positive number of seconds (int or float), or None for no limit"
    value = _as_float(timeout, what, accepted)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{what} must be {accepted}, got {timeout!r:.80}")
    if math.isinf(value):
        return None
    return value


def check_seconds(value: object, what: str) -> float:
    """A number of seconds >= 0 (``math.inf`` allowed); None is refused."""
    accepted = "a number of seconds >= 0 (int or float; math.inf for no limit)"
    if value is None:
        raise TypeError(f"{what} must be {accepted}, got None")
    seconds = _as_float(value, what, accepted)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{what} must be {accepted}, got {value!r:.80}")
    return seconds


def check_count(value: object, what: str, minimum: int = 1) -> int:
    """An int >= ``minimum``: ``TypeError`` for another type, ``ValueError`` when too small."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{what} must be an int >= {minimum}, got {type(value).__name__}: {value!r:.80}"
        )
    if value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def check_flavor(flavor: object) -> Flavor:
    if flavor == "trio":
        return "trio"
    if flavor == "asyncio":
        return "asyncio"
    raise ValueError(f"flavor must be 'trio' or 'asyncio', got {flavor!r:.80}")


def _agen_started(agen: types.AsyncGeneratorType[Any, Any]) -> bool:
    getstate = getattr(inspect, "getasyncgenstate", None)
    if getstate is not None:  # Python >= 3.12
        return bool(getstate(agen) != "AGEN_CREATED")
    # Python 3.11: a generator that has not started yet still stands on RETURN_GENERATOR.
    frame = agen.ag_frame
    if frame is None:
        return True
    return bool(agen.ag_code.co_code[frame.f_lasti] != _RETURN_GENERATOR)


def _takes_no_arguments(fn: types.FunctionType) -> bool:
    """True for an async (generator) function callable with no arguments, as far as its code
    tells; False means "ask inspect" (a decorated function's signature may differ)."""
    code = fn.__code__
    if not code.co_flags & _ASYNC_CODE or "__wrapped__" in fn.__dict__ or (
        "__signature__" in fn.__dict__
    ):
        return False
    if code.co_argcount > len(fn.__defaults__ or ()):
        return False
    return code.co_kwonlyargcount <= len(fn.__kwdefaults__ or ())


def _is_async_callable(obj: object) -> bool:
    if inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - an object with async __call__
    return call is not None and (
        inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
    )


def coerce_handler(handler: object) -> tuple[Any, bool, str]:
    """Return (coroutine or async generator, is_generator, readable base name).

    A coroutine or async generator object this refuses is left as it was (the caller closes
    what it owns); one made here by calling a function is closed before raising.
    """
    kind = type(handler)
    if kind is types.CoroutineType:
        coro: types.CoroutineType[Any, Any, Any] = handler  # type: ignore[assignment]
        if coro.cr_frame is None:
            raise ValueError(
                f"coroutine {coro.__qualname__} was already awaited or closed; "
                f"pass a fresh coroutine object or the async function itself"
            )
        if coro.cr_running or coro.cr_suspended:
            raise ValueError(
                f"coroutine {coro.__qualname__} has already started running; "
                f"pass a fresh coroutine object or the async function itself"
            )
        # __name__ follows functools.wraps; the code object's name would be the wrapper's.
        return coro, False, coro.__name__
    if kind is types.AsyncGeneratorType:
        agen: types.AsyncGeneratorType[Any, Any] = handler  # type: ignore[assignment]
        if agen.ag_frame is None:
            raise ValueError(
                f"async generator {agen.__qualname__} is already exhausted or closed; "
                f"pass a fresh async generator object or the function itself"
            )
        if agen.ag_running or _agen_started(agen):
            raise ValueError(
                f"async generator {agen.__qualname__} has already been started; "
                f"pass a fresh async generator object or the function itself"
            )
        return agen, True, agen.__name__
    if kind is types.FunctionType and _takes_no_arguments(handler):  # type: ignore[arg-type]
        # The common case, a plain `async def` taking no arguments, checked from its code
        # object: inspect.signature() would cost more than all the rest of create_task.
        made = handler()  # type: ignore[operator]
        if type(made) is types.CoroutineType:  # fresh: nothing more to check
            return made, False, made.__name__
        return coerce_handler(made)
    if callable(handler):
        fn_name = getattr(handler, "__qualname__", None) or safe_repr(handler, 80)
        if _is_async_callable(handler):
            try:
                inspect.signature(handler).bind()
            except TypeError:
                raise TypeError(
                    f"async function {fn_name} takes arguments, but create_task calls it with "
                    f"none; pass a coroutine object ({fn_name.rsplit('.', 1)[-1]}(...)) instead"
                ) from None
            except ValueError:  # no signature available (builtins): just try the call
                pass
            made = handler()
            if type(made) not in (types.CoroutineType, types.AsyncGeneratorType):
                raise TypeError(
                    f"{fn_name}() returned {type(made).__name__}, not a coroutine or async "
                    f"generator; handler must be {ACCEPTED_HANDLERS}"
                )
            return coerce_handler(made)
        raise TypeError(
            f"handler must be {ACCEPTED_HANDLERS}; got the synchronous callable {fn_name}"
        )
    if inspect.isawaitable(handler):
        raise TypeError(
            f"handler must be {ACCEPTED_HANDLERS}; got the awaitable "
            f"{type(handler).__name__} (wrap it: async def job(): return await it)"
        )
    raise TypeError(
        f"handler must be {ACCEPTED_HANDLERS}; got {type(handler).__name__}: "
        f"{safe_repr(handler, 80)}"
    )


def flavor_misuse(exc: BaseException, flavor: str, who: str, call: str) -> FlavorError | None:
    """A :class:`FlavorError` explaining ``exc`` if it is what trio or asyncio raise when code
    of the other flavour runs in ``flavor`` code, else None.

    ``who`` names the code (``"task 'x'"``), ``call`` the call that sets its flavour.
    """
    if not isinstance(exc, (TypeError, RuntimeError)):
        return None
    msg = safe_str(exc)
    if flavor == "trio" and (
        (isinstance(exc, TypeError) and "unrecognized yield message" in msg)
        or (isinstance(exc, RuntimeError) and "no running event loop" in msg)
    ):
        other = "asyncio"
    elif flavor == "asyncio" and isinstance(exc, RuntimeError) and "got bad yield" in msg:
        other = "trio"
    else:
        return None
    err = FlavorError(
        f"{who} is {flavor}-flavoured but called {other} code ({msg}); "
        f"run it with {call}(..., flavor={other!r})"
    )
    err.__cause__ = exc
    return err
