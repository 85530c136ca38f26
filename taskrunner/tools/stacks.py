"""Where a task is now, and where it was created: stacks for the debugger and the watchdog.

Everything here only reads frames: it never resumes, cancels or changes a task.  Reading
the frames of a suspended coroutine from another thread is safe in CPython (the GIL makes
each read atomic); the picture may be a step out of date if the task moves meanwhile.
"""

from __future__ import annotations

import linecache
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "FrameInfo",
    "awaitable_frames",
    "creation_site",
    "describe_frames",
    "find_owner",
    "task_stack",
    "thread_frames",
]

_PACKAGE = Path(__file__).resolve().parent.parent  # taskrunner/
# Frames inside these directories are taskrunner's own plumbing, not the user's code.
_INTERNAL_DIRS = tuple(str(_PACKAGE / name) for name in ("_core", "_session", "_adapters"))
_INTERNAL_FILES = (str(Path(__file__).resolve().parent / "feed.py"),)

_STDLIB = sys.base_prefix + "/lib"
_CORE_DIR = str(_PACKAGE / "_core")

MAX_FRAMES = 40


class FrameInfo(TypedDict):
    """One frame of a stack, JSON-safe: file, line, function and the source line."""

    file: str
    line: int
    function: str
    code: str


def _frame_of(obj: Any) -> types.FrameType | None:
    for attr in ("cr_frame", "ag_frame", "gi_frame"):
        frame = getattr(obj, attr, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited_by(obj: Any, frame: types.FrameType) -> Any:
    for attr in ("cr_await", "ag_await", "gi_yieldfrom"):
        inner = getattr(obj, attr, None)
        if inner is not None:
            break
    else:
        return None
    if type(inner).__name__ in ("async_generator_asend", "async_generator_athrow"):
        # ``async for`` over an async generator: the awaitable hides the generator; the
        # awaiting frame holds it in a local.
        for value in list(frame.f_locals.values()):
            if isinstance(value, types.AsyncGeneratorType) and (
                value.ag_running or value.ag_await is not None
            ):
                return value
        return None
    return inner


def awaitable_frames(obj: Any) -> list[types.FrameType]:
    """Frames of a suspended coroutine / async generator chain, outermost first.

    Follows what each one awaits (``cr_await``/``ag_await``) down to the innermost
    coroutine; an asyncio future or a trio trap ends the chain.
    """
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    while obj is not None and id(obj) not in seen and len(frames) < MAX_FRAMES:
        seen.add(id(obj))
        frame = _frame_of(obj)
        if frame is None:
            break
        frames.append(frame)
        obj = _awaited_by(obj, frame)
    return frames


def describe_frames(frames: list[types.FrameType]) -> list[FrameInfo]:
    """JSON-safe description of ``frames`` (outermost first), with their source lines."""
    out: list[FrameInfo] = []
    for frame in frames[-MAX_FRAMES:]:
        filename = frame.f_code.co_filename
        lineno = frame.f_lineno or frame.f_code.co_firstlineno
        out.append(
            {
                "file": filename,
                "line": lineno,
                "function": frame.f_code.co_qualname,
                "code": linecache.getline(filename, lineno).strip(),
            }
        )
    return out


def thread_frames(thread_id: int) -> list[types.FrameType]:
    """The frames a thread is executing now, outermost first (empty if it is gone)."""
    frame = sys._current_frames().get(thread_id)
    frames: list[types.FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def task_stack(handle: Any) -> list[FrameInfo] | None:
    """Where the task of ``handle`` is waiting now, outermost first.

    ``None`` when the task has ended or its code is not known (a handle from before this
    version).  Works for both flavours: the frames are those of the task's own coroutine or
    async generator, down to the innermost await.
    """
    body = getattr(handle, "_body", None)
    if body is None:
        return None
    return describe_frames(awaitable_frames(body))


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL_DIRS) or filename in _INTERNAL_FILES


def _is_library(filename: str) -> bool:
    return "site-packages" in filename or filename.startswith(_STDLIB) or filename.startswith("<")


def creation_site(skip: int = 1, limit: int = 8) -> list[FrameInfo]:
    """The caller's stack outside taskrunner's own modules, innermost frame last.

    Called while ``create_task`` publishes its ``TaskStarted`` record, this is where the task
    was created.  Cheap enough for a debugging session (a frame walk), not free: only done
    when asked.
    """
    frame: types.FrameType | None = sys._getframe(skip)
    picked: list[types.FrameType] = []
    while frame is not None and len(picked) < limit:
        if not _is_internal(frame.f_code.co_filename) and not _is_library(frame.f_code.co_filename):
            picked.append(frame)
        elif picked:
            break  # the user's frames above the first internal one are what matters
        frame = frame.f_back
    picked.reverse()
    return describe_frames(picked)


def _walk_inward(frames: list[types.FrameType]) -> Iterator[tuple[int, types.FrameType]]:
    for index in range(len(frames) - 1, -1, -1):
        yield index, frames[index]


def _code_is(frame: types.FrameType, name: str, filename_tail: str) -> bool:
    code = frame.f_code
    return code.co_name == name and code.co_filename.endswith(filename_tail)


def find_owner(
    frames: list[types.FrameType], handles: Any = (), sessions: dict[Any, Any] | None = None
) -> tuple[str, Any, int] | None:
    """Which taskrunner task or handler the executing ``frames`` belong to.

    Returns ``("task", handle, index)`` or ``("handler", session, index)``, where
    ``frames[index + 1:]`` are the owner's own frames; ``None`` if neither shows.  Trio
    tasks are found by the supervisor's task frame, asyncio generator tasks by the
    forwarding frame, asyncio coroutine tasks by matching ``handles``' coroutines, asyncio
    handlers by ``sessions`` (session -> its handler's code object).
    """
    by_code: dict[Any, list[Any]] = {}
    for session, code in (sessions or {}).items():
        by_code.setdefault(code, []).append(session)
    bodies = {}
    for handle in handles:
        frame = _frame_of(getattr(handle, "_body", None))
        if frame is not None:
            bodies[id(frame)] = handle
    for index, frame in _walk_inward(frames):
        handle = bodies.get(id(frame))
        if handle is not None:
            return ("task", handle, index - 1)
        if frame.f_code.co_name == "_run" and _CORE_DIR in frame.f_code.co_filename:
            handle = frame.f_locals.get("handle")
            if handle is not None:
                return ("task", handle, index)
        candidates = by_code.get(frame.f_code)
        if candidates:
            context = frame.f_locals.get("context")
            wanted = getattr(context, "session_id", None)
            chosen = next((s for s in candidates if s.session_id == wanted), candidates[0])
            return ("handler", chosen, index - 1)
        if _code_is(frame, "_drive", "aio.py"):
            handle = frame.f_locals.get("handle")
            if handle is not None:
                return ("task", handle, index)
            output = frame.f_locals.get("output")
            args = getattr(output, "args", ())
            if args:
                return ("task", args[0], index)
            func = getattr(output, "func", None)
            session = getattr(func, "__self__", None)
            if session is not None:
                return ("handler", session, index)
        if _code_is(frame, "_handle", "session.py"):
            session = frame.f_locals.get("self")
            if session is not None:
                return ("handler", session, index)
    return None
