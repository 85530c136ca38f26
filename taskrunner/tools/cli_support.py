"""What the commands share: one-line errors, number checks, Ctrl-C, and the debugger tools.

Every error a command can meet ends it with one line on stderr (``error: ...``) and a
non-zero exit, never a traceback; Ctrl-C ends it with one line and exit code 130, after
the recording has been flushed and closed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, NoReturn

__all__ = [
    "EXIT_INTERRUPTED",
    "OneLineParser",
    "ToolOptions",
    "add_tool_options",
    "fail",
    "finite_seconds",
    "interrupted",
    "open_tools",
    "port_number",
    "positive_number",
]

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def fail(message: str) -> NoReturn:
    """End the command with ``error: message`` on stderr and exit status 1."""
    raise SystemExit(f"error: {message}")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and ``--help`` for the rest)."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: message (see --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def finite_seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def add_server_options(p: argparse.ArgumentParser) -> None:
    """``--host``, ``--port``, ``--token``, ``--metrics``, ``--max-clients``."""
    from .debugger.server import TOKEN_ENV

    p.add_argument("--host", default="127.0.0.1", help="debugger address (default %(default)s)")
    p.add_argument(
        "--port", type=port_number, default=8765, help="debugger port (default %(default)s)"
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"secret every request must carry (Bearer); required off loopback; or set {TOKEN_ENV}",
    )
    p.add_argument("--metrics", action="store_true", help="serve /metrics (Prometheus)")
    p.add_argument(
        "--max-clients",
        type=_positive_int,
        default=16,
        help="open event streams at most (default %(default)s)",
    )


def add_tool_options(p: argparse.ArgumentParser) -> None:
    """``--ui`` with the server options, ``--record``/``--force``, ``--block-threshold``."""
    p.add_argument("--ui", action="store_true", help="serve the debugger page while it runs")
    add_server_options(p)
    p.add_argument("--record", metavar="FILE.jsonl", help="record every record as JSON lines")
    p.add_argument("--force", action="store_true", help="let --record overwrite an existing file")
    p.add_argument(
        "--block-threshold",
        type=positive_number,
        default=0.1,
        metavar="SECONDS",
        help="with --ui, warn when the trio thread is blocked this long (default %(default)s)",
    )


def token_of(args: argparse.Namespace) -> str | None:
    """The token from ``--token`` or the environment."""
    from .debugger.server import TOKEN_ENV

    return args.token or os.environ.get(TOKEN_ENV) or None


class ToolOptions:
    """The debugger tools a command runs with, once opened by :func:`open_tools`."""

    def __init__(self) -> None:
        self.feed: Any = None
        self.watchdog: Any = None
        self.url: str | None = None

    def status(self) -> dict[str, Any] | None:
        """The watchdog's status (for the server thread), None until it runs."""
        watchdog = self.watchdog
        return None if watchdog is None else dict(watchdog.status())


def _print_url(url: str, host: str) -> None:
    from .debugger.server import is_loopback

    if is_loopback(host):
        print(f"debugger: {url}", file=sys.stderr)
    else:
        print(
            f"debugger: {url} (reachable off this machine; open it as {url}#token=<your token>)",
            file=sys.stderr,
        )


@contextmanager
def open_tools(args: argparse.Namespace) -> Iterator[ToolOptions]:
    """Open the recorder and start the debugger thread that ``args`` ask for.

    Errors (a recording that exists, a port in use, no token off loopback) end the command
    with one line before the session starts.  On exit the server stops and the recording
    is closed, also on Ctrl-C.
    """
    tools = ToolOptions()
    if not (args.ui or args.record):
        yield tools
        return
    from .feed import AgentFeed

    tools.feed = AgentFeed(capture_creation=args.ui, forward=args.ui)
    with ExitStack() as stack:
        if args.record:
            from .recorder import open_recorder

            try:
                stack.enter_context(open_recorder(tools.feed, args.record, force=args.force))
            except FileExistsError:
                fail(f"{args.record} exists; pass --force to overwrite it")
            except OSError as exc:
                fail(f"cannot record to {args.record}: {exc.strerror or exc}")
        if args.ui:
            tools.url = start_server(args, stack, feed=tools.feed, status=tools.status)
        yield tools


def start_server(
    args: argparse.Namespace,
    stack: ExitStack,
    *,
    feed: Any = None,
    source: Any = None,
    status: Callable[[], dict[str, Any] | None] | None = None,
    scan: Callable[[], None] | None = None,
) -> str:
    """Start a :class:`DebuggerThread` from the server options; stopped when ``stack`` closes."""
    from .debugger import DebuggerThread, ExposureError

    server = DebuggerThread(
        feed=feed,
        source=source,
        host=args.host,
        port=args.port,
        token=token_of(args),
        read_only=source is not None,
        status=status,
        metrics=args.metrics,
        max_stream_clients=args.max_clients,
        scan=scan,
    )
    try:
        url = server.start()
    except ExposureError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
    stack.callback(server.stop)
    _print_url(url, args.host)
    return url


def interrupted() -> int:
    """Say that the command was interrupted (one line) and return exit status 130."""
    print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def wait_forever(check: Callable[[], None] | None = None) -> None:
    """Block the main thread until Ctrl-C, calling ``check()`` every half second."""
    never = threading.Event()
    while not never.wait(0.5):
        if check is not None:
            check()
