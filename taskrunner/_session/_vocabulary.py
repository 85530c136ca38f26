"""Event vocabularies: which event classes a session sends to its handler and recognises.

A handler checks ``isinstance(event, TextEvent)`` against the classes it imported. An agent
written for taskrunner imports ``taskrunner.events``; an agent written for VoiceRun imports
``primfunctions.events`` (the VoiceRun SDK). A :class:`Vocabulary` is the one place that knows
each family: how to build the session's input events (start, text, timeout, stop), how to
recognise them, how to mark what a background task yields, and how to describe and serialise
their events for people and tools.

``primfunctions`` is optional (the ``taskrunner[voicerun]`` extra) and imported only when the
``"primfunctions"`` vocabulary is first asked for; then the SDK's ``primfunctions.logger``
is routed to the ``primfunctions`` logger of :mod:`logging` (its own fallback prints to
stdout), as VoiceRun's runtime swaps that logger's backend.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from types import ModuleType
from typing import Any

from .._core.errors import TaskRunnerError
from .._core.records import jsonable, register_json_converter
from . import agent_events as _tr

__all__ = [
    "VOCABULARIES",
    "MissingExtraError",
    "Vocabulary",
    "describe_foreign_event",
    "detect_vocabulary",
    "resolve_vocabulary",
]

#: The names ``open_session(events=...)`` accepts.
VOCABULARIES = ("taskrunner", "primfunctions")


class MissingExtraError(TaskRunnerError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class Vocabulary:
    """One family of agent events, as a session uses it.

    Subclasses exist for ``"taskrunner"`` (:mod:`taskrunner.events`) and ``"primfunctions"``
    (the VoiceRun SDK's ``primfunctions.events``). Get one with :func:`resolve_vocabulary`.
    """

    #: the name given to ``open_session(events=...)``
    name: str = ""
    #: the base class of every event of the family
    event_type: type
    start_type: type
    text_type: type
    timeout_type: type
    stop_type: type
    tts_type: type
    #: the Python module the handler imports the classes from
    module_name: str = ""

    def __repr__(self) -> str:
        return f"<Vocabulary {self.name!r}>"

    def is_event(self, obj: object) -> bool:
        """True for an event of this family."""
        return isinstance(obj, self.event_type)

    def is_stop(self, obj: object) -> bool:
        """True for the family's ``StopEvent``."""
        return isinstance(obj, self.stop_type)

    def start(self) -> Any:
        """A new ``StartEvent``."""
        raise NotImplementedError

    def text(self, text: str, source: str = "text") -> Any:
        """A new ``TextEvent`` carrying ``text`` said or typed by the user (``source``)."""
        raise NotImplementedError

    def timeout(self, count: int = 1, ms_since_input: int = 5000) -> Any:
        """A new ``TimeoutEvent``: the user has been silent."""
        raise NotImplementedError

    def stop(self) -> Any:
        """A new ``StopEvent``."""
        raise NotImplementedError

    def mark_background(self, event: Any, task_name: str) -> None:
        """Mark ``event``, yielded by the background task ``task_name``, as the family's
        runtime does (nothing for the taskrunner family: its records carry the task)."""

    def field(self, event: Any, name: str) -> Any:
        """The value of the event's field ``name``: its attribute, else its ``data`` entry
        (``TextEvent``'s text is ``data["text"]``); raises ``KeyError`` if it has neither."""
        try:
            return getattr(event, name)
        except AttributeError:
            pass
        data = getattr(event, "data", None)
        if isinstance(data, dict) and name in data:
            return data[name]
        raise KeyError(name)

    def tts_text(self, event: Any) -> str | None:
        """The text of a text-to-speech event, None for any other event."""
        if isinstance(event, self.tts_type):
            text = self.field(event, "text")
            return text if isinstance(text, str) else None
        return None


class _TaskrunnerVocabulary(Vocabulary):
    name = "taskrunner"
    module_name = "taskrunner.events"
    event_type = _tr.Event
    start_type = _tr.StartEvent
    text_type = _tr.TextEvent
    timeout_type = _tr.TimeoutEvent
    stop_type = _tr.StopEvent
    tts_type = _tr.TextToSpeechEvent

    def start(self) -> Any:
        return _tr.StartEvent()

    def text(self, text: str, source: str = "text") -> Any:
        return _tr.TextEvent.from_text(text, source)

    def timeout(self, count: int = 1, ms_since_input: int = 5000) -> Any:
        return _tr.TimeoutEvent(data={"count": count, "ms_since_input": ms_since_input})

    def stop(self) -> Any:
        return _tr.StopEvent()


class _PrimfunctionsVocabulary(Vocabulary):
    name = "primfunctions"
    module_name = "primfunctions.events"

    def __init__(self, events: ModuleType) -> None:
        self._ev = events
        self.event_type = events.Event
        self.start_type = events.StartEvent
        self.text_type = events.TextEvent
        self.timeout_type = events.TimeoutEvent
        self.stop_type = events.StopEvent
        self.tts_type = events.TextToSpeechEvent

    def start(self) -> Any:
        return self._ev.StartEvent()

    def text(self, text: str, source: str = "text") -> Any:
        return self._ev.TextEvent(source=source, text=text)

    def timeout(self, count: int = 1, ms_since_input: int = 5000) -> Any:
        return self._ev.TimeoutEvent(count=count, ms_since_input=ms_since_input)

    def stop(self) -> Any:
        return self._ev.StopEvent()

    def mark_background(self, event: Any, task_name: str) -> None:
        # What the VoiceRun runtime does to an event a background task yields.
        if isinstance(event, self.event_type):
            setattr(event, "background", True)  # noqa: B010 (a class not known to mypy)
            setattr(event, "background_task_name", task_name)  # noqa: B010

    def field(self, event: Any, name: str) -> Any:
        # primfunctions events keep their fields in ``data`` (text, voice, message...),
        # beside the attributes every event has (name, data, timestamp, turn, background).
        if isinstance(event, self.event_type) and name not in _PF_ATTRIBUTES:
            data = getattr(event, "data", None)
            if isinstance(data, dict) and name in data:
                return data[name]
            raise KeyError(name)
        return super().field(event, name)


_PF_ATTRIBUTES = frozenset(
    {"name", "data", "timestamp", "turn", "background", "background_task_name"}
)

_TASKRUNNER = _TaskrunnerVocabulary()
_loaded: dict[str, Vocabulary] = {"taskrunner": _TASKRUNNER}


def _import_primfunctions_events() -> ModuleType:
    try:
        return importlib.import_module("primfunctions.events")
    except ImportError as exc:
        raise MissingExtraError(
            "the 'primfunctions' event vocabulary needs the VoiceRun SDK (the primfunctions "
            "package), which is not installed: pip install 'taskrunner[voicerun]' "
            f"({type(exc).__name__}: {exc})",
            name="primfunctions",
        ) from exc


class _LoggingImpl:
    """The SDK logger's backend outside VoiceRun's sandbox: the ``primfunctions`` logger of
    :mod:`logging` (the SDK's own fallback prints to stdout, into ``--json`` output)."""

    def __init__(self) -> None:
        self._log = logging.getLogger("primfunctions")

    def _emit(self, level: int, message: Any, attributes: Any) -> None:
        if attributes:
            self._log.log(level, "%s %s", message, attributes)
        else:
            self._log.log(level, "%s", message)

    def info(self, message: Any, attributes: Any = None) -> None:
        self._emit(logging.INFO, message, attributes)

    def warn(self, message: Any, attributes: Any = None) -> None:
        self._emit(logging.WARNING, message, attributes)

    def error(self, message: Any, attributes: Any = None) -> None:
        self._emit(logging.ERROR, message, attributes)

    def debug(self, message: Any, attributes: Any = None) -> None:
        self._emit(logging.DEBUG, message, attributes)


def _route_sdk_logger() -> None:
    """Send ``primfunctions.logger.logger`` to :mod:`logging`, as VoiceRun's runtime swaps
    its backend; a backend someone else installed is left alone."""
    try:
        sdk_logger = importlib.import_module("primfunctions.logger").logger
    except (ImportError, AttributeError):
        return
    if getattr(sdk_logger, "_impl", "absent") is None:
        sdk_logger._impl = _LoggingImpl()


def resolve_vocabulary(events: object) -> Vocabulary:
    """The :class:`Vocabulary` for ``events``: ``"taskrunner"``, ``"primfunctions"`` or a
    :class:`Vocabulary` (returned as is).

    Raises ``ValueError`` for another name, ``TypeError`` for another type, and
    :class:`MissingExtraError` (an ``ImportError``) when ``"primfunctions"`` is asked for and
    the ``voicerun`` extra is not installed.
    """
    if isinstance(events, Vocabulary):
        return events
    if not isinstance(events, str):
        raise TypeError(
            f"events must be one of {VOCABULARIES} or a Vocabulary, "
            f"got {type(events).__name__}: {events!r:.80}"
        )
    found = _loaded.get(events)
    if found is not None:
        return found
    if events != "primfunctions":
        raise ValueError(f"events must be one of {VOCABULARIES}, got {events!r}")
    module = _import_primfunctions_events()
    vocab = _PrimfunctionsVocabulary(module)
    register_json_converter(module.Event, primfunctions_event_json)
    _route_sdk_logger()
    _loaded[events] = vocab
    return vocab


def detect_vocabulary(obj: object) -> str:
    """``"primfunctions"`` if the module ``obj`` (or the module of the function ``obj``)
    imports from ``primfunctions.events``, else ``"taskrunner"``.

    Looks at the module's globals: a class of ``primfunctions.events``, that module, or the
    ``primfunctions`` package. Never imports ``primfunctions`` itself. A module that imports
    from both ``primfunctions.events`` and ``taskrunner.events`` is ambiguous: ``ValueError``
    asking for ``events=``.
    """
    pf_events = sys.modules.get("primfunctions.events")
    if pf_events is None:
        return "taskrunner"
    if isinstance(obj, ModuleType):
        names: dict[str, Any] = vars(obj)
        where = obj.__name__
    else:
        func = inspect.unwrap(obj) if callable(obj) else obj
        found = getattr(func, "__globals__", None)
        if not isinstance(found, dict):
            module = sys.modules.get(getattr(obj, "__module__", None) or "")
            found = vars(module) if module is not None else {}
        names = found
        where = str(names.get("__name__", "?"))
    pf_package = sys.modules.get("primfunctions")
    uses_pf = uses_tr = False
    for value in names.values():
        if value is pf_events or (pf_package is not None and value is pf_package):
            uses_pf = True
        elif value is _tr or value is sys.modules.get("taskrunner.events"):
            uses_tr = True
        elif isinstance(value, type):
            if value.__module__ == "primfunctions.events":
                uses_pf = True
            elif issubclass(value, _tr.Event):
                uses_tr = True
    if uses_pf and uses_tr:
        raise ValueError(
            f"module {where!r} imports events from both primfunctions.events and "
            "taskrunner.events; say which ones its handler uses with events='primfunctions' "
            "or events='taskrunner'"
        )
    return "primfunctions" if uses_pf else "taskrunner"


# ---------------------------------------------------------------------- describing


def _voice(voice: Any) -> str:
    if isinstance(voice, dict):
        provider = voice.get("provider")
        provider = getattr(provider, "value", provider)
        return f"{provider}/{voice.get('identifier')}"
    return str(voice)


def describe_foreign_event(event: Any) -> str | None:
    """A one-line description of a ``primfunctions`` event, None for anything else.

    Looks only at modules already imported: never imports ``primfunctions`` itself.
    """
    pf_events = sys.modules.get("primfunctions.events")
    if pf_events is None or not isinstance(event, pf_events.Event):
        return None
    data = event.data if isinstance(event.data, dict) else {}
    name = event.name
    if name == "text_to_speech":
        return f'says "{data.get("text")}" ({_voice(data.get("voice"))})'
    if name == "text":
        return f'hears "{data.get("text")}" ({data.get("source")})'
    if name == "log":
        return f"log: {data.get('message')}"
    if name == "error":
        return f"error: {data.get('message')}"
    if name == "audio":
        return f"plays {data.get('path')}"
    if name == "silence":
        return f"silence {data.get('duration')} ms"
    rest = {k: v for k, v in data.items() if k != "custom"}
    if isinstance(event, pf_events.CustomEvent):
        return f"custom {name} {jsonable(rest)}"
    detail = f" {jsonable(rest)}" if rest else ""
    return f"{type(event).__name__} ({name}){detail}"


def primfunctions_event_json(event: Any) -> dict[str, Any]:
    """The JSON-safe form of a ``primfunctions`` event: its ``event_to_dict`` fields
    (``name``, ``data``, ``timestamp``, ``turn``, ``background``, ``background_task_name``)
    with the class under ``"type"``, and the spoken text or log message at the top level
    (``"text"`` / ``"message"``) for tools that show one line per event."""
    data = getattr(event, "data", None)
    out: dict[str, Any] = {
        "type": type(event).__name__,
        "name": getattr(event, "name", None),
        "data": jsonable(data),
        "timestamp": jsonable(getattr(event, "timestamp", None)),
        "turn": jsonable(getattr(event, "turn", None)),
        "background": bool(getattr(event, "background", False)),
        "background_task_name": jsonable(getattr(event, "background_task_name", None)),
    }
    if isinstance(data, dict):
        for key in ("text", "message"):
            if isinstance(data.get(key), str):
                out[key] = data[key]
    return out
