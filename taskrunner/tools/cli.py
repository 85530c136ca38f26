"""``python -m taskrunner``: run an agent with a scripted conversation, or the demo.

Commands: ``run MODULE`` (a handler module or path, with ``--say``/``--wait`` steps), ``demo``
(the built-in order agent and script), ``stress`` (many sessions at once, with checks),
``serve MODULE`` (the agent over HTTP), ``loadtest URL`` (load a served agent),
``variables set|list|unset`` and ``tests`` (the store's variables and A/B tests).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
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
from .._session.session import AgentHandler, _check_handler, open_session
from .cli_support import (
    OneLineParser,
    ToolOptions,
    add_server_options,
    add_tool_options,
    fail,
    finite_seconds,
    interrupted,
    open_tools,
    positive_number,
    start_server,
    wait_forever,
)

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
            if not (seconds >= 0 and math.isfinite(seconds)):
                parser.error(f"--wait takes a finite number of seconds >= 0, got {values!r}")
        script = list(getattr(namespace, "script", None) or [])
        script.append((kind, str(values)))
        namespace.script = script


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument(
        "--speed",
        type=positive_number,
        default=1.0,
        help="how much faster than real time the session's clock runs (default %(default)s)",
    )
    p.add_argument(
        "--pause",
        type=finite_seconds,
        default=0.5,
        help="seconds (session clock) to let pass after each --say (default %(default)s)",
    )
    add_tool_options(p)
    from .store_cli import add_store_option

    p.add_argument(
        "--no-tune-gc",
        action="store_true",
        help="keep CPython's GC settings (default: taskrunner.tune_gc() once the agent module "
        "is loaded)",
    )

    add_store_option(p)
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a session parameter, in the session data before the StartEvent (repeatable)",
    )
    p.add_argument("--agent", metavar="ID", default="", help="the session's agent_id")
    p.add_argument("--environment", metavar="ENV", default="", help="the session's environment")
    p.add_argument(
        "--input-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="send a TimeoutEvent after this much silence (session clock)",
    )



def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m taskrunner", description=__doc__)
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

    from ..serve._cli import add_loadtest_parser, add_serve_parser

    add_serve_parser(sub)
    add_loadtest_parser(sub)
    from .store_cli import add_store_parsers

    add_store_parsers(sub)

    debug = sub.add_parser("debug", help="open a recording (--record) in the debugger page")
    debug.add_argument("recording", metavar="FILE.jsonl")
    add_server_options(debug)
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
            raise SystemExit(f"error: cannot load {spec}: ModuleNotFoundError: {exc}") from None
        except Exception as exc:
            raise SystemExit(f"error: cannot load {spec}: {type(exc).__name__}: {exc}") from None
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError):
            _missing_sdk(spec, exc)
        raise SystemExit(f"error: cannot import {spec!r}: {exc}") from None
    except Exception as exc:
        raise SystemExit(f"error: cannot load {spec}: {type(exc).__name__}: {exc}") from None


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
    store: Any = None,
    parameters: dict[str, Any] | None = None,
    agent_id: str = "",
    environment: str = "",
    input_timeout: float | None = None,
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
                store=store,
                parameters=parameters,
                input_timeout=input_timeout,
                agent_id=agent_id,
                environment=environment,
            ) as session:

                redact = session.context.redact

                async def show() -> None:
                    async for record in session.events():
                        renderer.render(redact(record))

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


async def _run_with_tools(
    args: argparse.Namespace, tools: ToolOptions, conversation: Callable[[Any], Any]
) -> None:
    """Run ``conversation(feed)``; with ``--ui``, watched for blocking, then serve until Ctrl-C."""
    if not args.ui:
        await conversation(tools.feed)
        return
    from .watchdog import open_watchdog

    async with open_watchdog(args.block_threshold) as watchdog:
        tools.watchdog = watchdog
        tools.feed.watchdog = watchdog
        await conversation(tools.feed)
        print(
            f"session over; the debugger page stays at {tools.url} (Ctrl-C to quit)",
            file=sys.stderr,
        )
        await trio.sleep_forever()


def _debug_recording(args: argparse.Namespace) -> int:
    from .recorder import RecordingError
    from .recording_index import RecordingIndex, check_recording

    try:
        check_recording(args.recording)
        index = RecordingIndex(args.recording)
    except RecordingError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{args.recording}: cannot read it ({exc.strerror or exc})")
    reported = False

    def report() -> None:
        nonlocal reported
        if reported or index.loading:
            return
        reported = True
        sessions = len(index.session_ids())
        print(
            f"recording {args.recording}: {index.record_count:,} records, "
            f"{sessions} session{'s' if sessions != 1 else ''} (Ctrl-C to quit)",
            file=sys.stderr,
        )
        if index.error:
            print(f"warning: read up to a bad line: {index.error}", file=sys.stderr)

    with ExitStack() as stack:
        start_server(args, stack, source=index, scan=index.scan)
        wait_forever(report)
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
    """The command line entry point; returns the exit status.

    Ctrl-C ends any command with one line and status 130 (recordings flushed and closed).
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return interrupted()
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            return interrupted()
        raise


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "debug":
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        return _debug_recording(args)
    if args.command in ("serve", "loadtest"):
        return int(args.run(args))
    if args.command in ("variables", "tests"):
        from .store_cli import run_tests, run_variables

        return run_variables(args) if args.command == "variables" else run_tests(args)
    if args.command == "stress":
        logging.getLogger("taskrunner").setLevel(logging.CRITICAL)  # planned failures
        return int(args.run(args))
    _configure_logging(args.json)
    if args.input_timeout is not None and not args.input_timeout > 0:
        raise SystemExit(f"error: --input-timeout must be > 0, got {args.input_timeout:g}")
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
            fail(f"{args.module} has no {args.handler!r}")
        try:
            _check_handler(handler)
        except TypeError as exc:
            fail(f"{args.module}: {args.handler}: {exc}")
        script = list(getattr(args, "script", None) or [])
        flavor = args.flavor or getattr(module, "FLAVOR", "asyncio")
        if flavor not in ("asyncio", "trio"):
            fail(f"FLAVOR must be 'asyncio' or 'trio', got {flavor!r}")
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
    from .store_cli import parse_params, store_from_args

    store = store_from_args(args)
    parameters = parse_params(args.param)

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
            store=store,
            parameters=parameters,
            agent_id=args.agent,
            environment=args.environment,
            input_timeout=args.input_timeout,
        )

    if not args.no_tune_gc:
        # Start-up is over (the agent module and its imports are loaded): a long-running
        # session process collects less often and never re-walks those objects again.
        tune_gc()
    with open_tools(args) as tools:
        trio.run(_run_with_tools, args, tools, conversation, clock=clock)
    return 0
