"""``python -m taskrunner``: run an agent with a scripted conversation, or the demo.

Commands: ``run MODULE`` (a handler module or path, with ``--say``/``--wait`` steps), ``demo``
(the built-in order agent and script), ``stress`` (many sessions at once, with checks).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import trio
import trio.testing

from .._core.supervisor import Flavor
from .._gc import tune_gc
from .._session._vocabulary import (
    VOCABULARIES,
    MissingExtraError,
    detect_vocabulary,
    resolve_vocabulary,
)
from .._session.session import AgentHandler, open_session

__all__ = ["main"]

Step = tuple[str, str]


class _StepAction(argparse.Action):
    """Collects ``--say`` and ``--wait`` in the order given, into one ``script`` list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        kind = "say" if option_string == "--say" else "wait"
        if kind == "wait":
            try:
                seconds = float(values)
            except ValueError:
                parser.error(f"--wait takes a number of seconds, got {values!r}")
            if not seconds >= 0:
                parser.error(f"--wait takes a number of seconds >= 0, got {values!r}")
        script = list(getattr(namespace, "script", None) or [])
        script.append((kind, str(values)))
        namespace.script = script


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="how much faster than real time the session's clock runs (default %(default)s)",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=0.5,
        help="seconds (session clock) to let pass after each --say (default %(default)s)",
    )
    p.add_argument("--ui", action="store_true", help="serve the debugger page while it runs")
    _add_server_options(p)
    p.add_argument("--record", metavar="FILE.jsonl", help="record every record as JSON lines")
    p.add_argument(
        "--no-tune-gc",
        action="store_true",
        help="keep CPython's GC settings (default: taskrunner.tune_gc() once the agent module "
        "is loaded)",
    )


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="debugger address (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="debugger port (default %(default)s)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskrunner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a handler module with a scripted conversation")
    run.add_argument("module", help="a path to a .py file or a module name, with a handler")
    run.add_argument("--handler", default="handler", help="the handler's name in the module")
    run.add_argument("--say", action=_StepAction, dest="script", help="send a TextEvent")
    run.add_argument("--wait", action=_StepAction, dest="script", help="let seconds pass")
    run.add_argument(
        "--flavor",
        choices=("asyncio", "trio"),
        default=None,
        help="the session's flavour (default: the module's FLAVOR, else asyncio)",
    )
    run.add_argument(
        "--events",
        choices=VOCABULARIES,
        default=None,
        help="the event classes the handler is written against (default: primfunctions if "
        "the module imports primfunctions.events, else taskrunner)",
    )
    _add_output_options(run)

    demo = sub.add_parser("demo", help="run the built-in order agent and script")
    _add_output_options(demo)
    demo.set_defaults(speed=4.0)

    from .stress import add_stress_parser

    add_stress_parser(sub)

    debug = sub.add_parser("debug", help="open a recording (--record) in the debugger page")
    debug.add_argument("recording", metavar="FILE.jsonl")
    _add_server_options(debug)
    return parser


def _load_module(spec: str) -> ModuleType:
    path = Path(spec)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise SystemExit(f"error: no such file: {spec}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise SystemExit(f"error: cannot load {spec} as a Python module")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        try:
            mod_spec.loader.exec_module(module)
        except ModuleNotFoundError as exc:
            _missing_sdk(spec, exc)
            raise
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError):
            _missing_sdk(spec, exc)
        raise SystemExit(f"error: cannot import {spec!r}: {exc}") from None


def _missing_sdk(spec: str, exc: ModuleNotFoundError) -> None:
    """A VoiceRun agent on a machine without primfunctions: say which extra to install."""
    if (exc.name or "").split(".")[0] == "primfunctions":
        raise SystemExit(
            f"error: {spec} imports {exc.name}, the VoiceRun SDK, which is not installed: "
            "pip install 'taskrunner[voicerun]'"
        ) from None


@asynccontextmanager
async def _no_lifespan() -> AsyncIterator[dict[str, str]]:
    yield {}


async def run_conversation(
    handler: AgentHandler,
    script: Sequence[Step],
    *,
    renderer: Any,
    flavor: Flavor = "asyncio",
    pause: float = 0.5,
    lifespan: Callable[[], AbstractAsyncContextManager[dict[str, str]]] | None = None,
    session_id: str | None = None,
    hub: Any = None,
    events: str = "taskrunner",
) -> Any:
    """Open a session, send ``StartEvent``, play ``script``, stop, and render everything.

    Returns the session's supervisor (for its task snapshot). With ``hub``, the session
    publishes its records there (for the debugger and the recorder). ``events`` is the
    session's event vocabulary (``open_session(events=...)``).
    """
    async with (lifespan or _no_lifespan)() as variables:
        async with trio.open_nursery() as nursery:
            async with open_session(
                handler,
                flavor=flavor,
                variables=variables,
                session_id=session_id,
                hub=hub,
                events=events,
            ) as session:

                async def show() -> None:
                    async for record in session.events():
                        renderer.render(record)

                nursery.start_soon(show)
                vocab = session.vocabulary
                await session.send(vocab.start())
                await session.wait_until_handled()
                for kind, value in script:
                    if kind == "say":
                        await session.send(vocab.text(value))
                        await session.wait_until_handled()
                        await trio.sleep(pause)
                    else:
                        await trio.sleep(float(value))
                await session.wait_until_handled()
        renderer.summary(session.supervisor.snapshot())
    return session.supervisor


async def _run_with_tools(args: argparse.Namespace, conversation: Callable[[Any], Any]) -> None:
    """Run ``conversation(hub)`` with the debugger page and/or the recorder around it."""
    if not (args.ui or args.record):
        await conversation(None)
        return
    from .hub import Hub
    from .recorder import open_recorder

    hub = Hub()
    with ExitStack() as stack:
        if args.record:
            try:
                stack.enter_context(open_recorder(hub, args.record))
            except OSError as exc:
                raise SystemExit(f"error: cannot record to {args.record}: {exc}") from None
        async with trio.open_nursery() as nursery:
            if args.ui:
                url = await _start_debugger(nursery, hub, args, read_only=False)
            await conversation(hub)
            if args.ui:
                print(
                    f"session over; the debugger page stays at {url} (Ctrl-C to quit)",
                    file=sys.stderr,
                )
                await trio.sleep_forever()


async def _start_debugger(
    nursery: trio.Nursery, hub: Any, args: argparse.Namespace, *, read_only: bool
) -> str:
    from .debugger import serve

    try:
        url: str = await nursery.start(
            partial(serve, hub, host=args.host, port=args.port, read_only=read_only)
        )
    except OSError as exc:
        raise SystemExit(f"error: cannot serve on {args.host}:{args.port}: {exc}") from None
    print(f"debugger: {url}", file=sys.stderr)
    return url


def _debug_recording(args: argparse.Namespace) -> int:
    from .recorder import RecordingError, load_recording

    try:
        hub = load_recording(args.recording)
    except (OSError, RecordingError) as exc:
        raise SystemExit(f"error: {exc}") from None

    async def serve_forever() -> None:
        async with trio.open_nursery() as nursery:
            await _start_debugger(nursery, hub, args, read_only=True)
            print(f"recording {args.recording} (Ctrl-C to quit)", file=sys.stderr)

    try:
        trio.run(serve_forever)
    except KeyboardInterrupt:
        pass
    return 0


def _configure_logging(json_output: bool) -> None:
    # The supervisor's own warnings (timeouts, stuck tasks, task failures) are already records
    # on the stream shown to the person, so they are not printed twice; the tools' loggers
    # (debugger, recorder) and agents' own logging go to stderr.
    supervisor_log = logging.getLogger("taskrunner")
    supervisor_log.addFilter(lambda r: r.name != "taskrunner")
    if not json_output:
        from rich.logging import RichHandler

        logging.basicConfig(
            level=logging.INFO,
            format="%(name)s: %(message)s",
            handlers=[RichHandler(show_time=False, show_path=False)],
        )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "debug":
        logging.basicConfig(level=logging.WARNING)
        return _debug_recording(args)
    if args.command == "stress":
        logging.getLogger("taskrunner").setLevel(logging.CRITICAL)  # planned failures
        return int(args.run(args))
    _configure_logging(args.json)
    if args.speed <= 0:
        raise SystemExit("error: --speed must be > 0")
    if args.json:
        from .render import JsonRenderer

        renderer: Any = JsonRenderer(sys.stdout)
    else:
        from .render import TerminalRenderer

        renderer = TerminalRenderer()
    if args.command == "demo":
        from . import demo_agent

        handler: AgentHandler = demo_agent.handler
        script: list[Step] = list(demo_agent.SCRIPT)
        flavor: Flavor = "asyncio"
        lifespan = None
        events = "taskrunner"
    else:
        module = _load_module(args.module)
        handler = getattr(module, args.handler, None)  # type: ignore[assignment]
        if handler is None:
            raise SystemExit(f"error: {args.module} has no {args.handler!r}")
        script = list(getattr(args, "script", None) or [])
        flavor = args.flavor or getattr(module, "FLAVOR", "asyncio")
        if flavor not in ("asyncio", "trio"):
            raise SystemExit(f"error: FLAVOR must be 'asyncio' or 'trio', got {flavor!r}")
        lifespan = getattr(module, "lifespan", None)
        try:
            events = args.events or detect_vocabulary(module)
        except ValueError as exc:
            raise SystemExit(f"error: {exc} (--events)") from None
        try:
            resolve_vocabulary(events)
        except MissingExtraError as exc:
            raise SystemExit(f"error: --events {events}: {exc}") from None
    clock = trio.testing.MockClock(rate=args.speed) if args.speed != 1.0 else None

    def conversation(hub: Any) -> Any:
        return run_conversation(
            handler,
            script,
            renderer=renderer,
            flavor=flavor,
            pause=args.pause,
            lifespan=lifespan,
            hub=hub,
            events=events,
        )

    if not args.no_tune_gc:
        # Start-up is over (the agent module and its imports are loaded): a long-running
        # session process collects less often and never re-walks those objects again.
        tune_gc()
    try:
        trio.run(_run_with_tools, args, conversation, clock=clock)
    except KeyboardInterrupt:
        if not args.ui:
            raise
    return 0
