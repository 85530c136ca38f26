"""The ``serve`` and ``loadtest`` subcommands of ``python -m taskrunner``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["add_loadtest_parser", "add_serve_parser"]


def _positive(kind: type, name: str) -> Any:
    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    return check


def add_serve_parser(sub: Any) -> None:
    """Register ``serve`` on an argparse subparsers object."""
    p = sub.add_parser("serve", help="serve an agent over HTTP and WebSocket")
    p.add_argument("module", help="a path to a .py file or a module name, with a handler")
    p.add_argument("--handler", default="handler", help="the handler's name in the module")
    p.add_argument("--agent-id", default=None, help="the agent id in URLs (default: file stem)")
    p.add_argument("--flavor", choices=("asyncio", "trio"), default=None)
    p.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port, 0 for any (default %(default)s)")
    p.add_argument(
        "--api-key",
        default=None,
        help="bearer key every request needs (default: $TASKRUNNER_API_KEY; without one the "
        "server only binds to loopback)",
    )
    p.add_argument("--redis", default=None, metavar="URL", help="redis://HOST:PORT/DB to share")
    p.add_argument("--workers", type=_positive(int, "--workers"), default=1)
    p.add_argument("--lease", type=_positive(float, "--lease"), default=10.0,
                   help="seconds a session's lease lasts (takeover time; default %(default)s)")
    p.add_argument("--max-records", type=_positive(int, "--max-records"), default=10_000,
                   help="records kept per session (default %(default)s)")
    p.add_argument("--max-sessions", type=_positive(int, "--max-sessions"), default=10_000,
                   help="sessions one worker runs at most (default %(default)s)")
    p.add_argument("--mirror", type=int, default=100,
                   help="with --redis: recent sessions of other workers the debugger page "
                   "shows too, read while the page is in use (default %(default)s, 0: only "
                   "this worker's)")
    p.add_argument("--stop-grace", type=float, default=0.0)
    p.add_argument("--drain-timeout", type=_positive(float, "--drain-timeout"), default=30.0,
                   help="seconds a worker drains after SIGTERM at most; a second SIGTERM "
                   "ends it at once (default %(default)s)")
    p.add_argument("--no-tune-gc", action="store_true",
                   help="keep CPython's GC settings (default: taskrunner.tune_gc() in each "
                   "worker once it is set up)")
    p.add_argument("--max-body", type=_positive(int, "--max-body"), default=64 * 1024)
    p.add_argument("--prefix", default="taskrunner", help="Redis key prefix")
    p.add_argument(
        "--checkpoints",
        default="redis",
        metavar="WHERE",
        help="with --redis: where the workers keep each session's checkpoint: 'redis' "
        "(default) or postgresql://USER@HOST:PORT/DB (the same for every worker)",
    )
    p.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-url", default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=main_serve)


def main_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` from parsed arguments."""
    from ._server import API_KEY_ENV, ServeConfig, is_loopback, run_parent, run_worker

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("taskrunner").setLevel(logging.WARNING)
    logging.getLogger("taskrunner.serve").setLevel(logging.INFO)
    logging.getLogger("coredis").setLevel(logging.WARNING)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if api_key is None and not is_loopback(args.host):
        raise SystemExit(
            f"error: --host {args.host} is not loopback: serving beyond this machine needs an "
            f"API key (--api-key or ${API_KEY_ENV})"
        )
    if args.workers > 1 and not args.redis:
        raise SystemExit("error: --workers N needs --redis URL (workers share sessions there)")
    if args.redis and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise SystemExit(f"error: --redis takes redis://HOST:PORT/DB, got {args.redis!r}")
    checkpoints = _checkpoints(args)
    if args.stop_grace < 0:
        raise SystemExit("error: --stop-grace must be >= 0")
    agent_id = args.agent_id or Path(args.module).stem
    cfg = ServeConfig(
        module=args.module,
        handler_name=args.handler,
        agent_id=agent_id,
        flavor=args.flavor,
        host=args.host,
        port=args.port,
        api_key=api_key,
        redis_url=args.redis,
        workers=args.workers,
        lease=args.lease,
        max_records=args.max_records,
        max_sessions=args.max_sessions,
        mirror=max(0, args.mirror),
        stop_grace=args.stop_grace,
        max_body=args.max_body,
        prefix=args.prefix,
        checkpoints=checkpoints,
        drain_timeout=args.drain_timeout,
        tune_gc=not args.no_tune_gc,
    )
    if args.worker_fd is not None:
        return run_worker(cfg, args.worker_fd, args.worker_url or "")
    return run_parent(cfg)


def _checkpoints(args: argparse.Namespace) -> str | None:
    """The PostgreSQL DSN ``--checkpoints`` names, None for Redis; exits on a bad value."""
    import importlib.util

    from ._store_checkpoints import check_checkpoints_option

    try:
        dsn = check_checkpoints_option(args.checkpoints)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if dsn is not None and not args.redis:
        raise SystemExit(
            "error: --checkpoints postgresql://... needs --redis URL (the checkpoints are for "
            "workers that take sessions over from each other)"
        )
    if dsn is not None and importlib.util.find_spec("psycopg") is None:
        raise SystemExit(
            "error: --checkpoints postgresql://... needs psycopg 3: "
            "pip install 'taskrunner[serve,postgres]'"
        )
    return dsn


def add_loadtest_parser(sub: Any) -> None:
    """Register ``loadtest`` on an argparse subparsers object."""
    p = sub.add_parser("loadtest", help="load a served agent over HTTP and report latencies")
    p.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000/")
    p.add_argument("--agent-id", required=True, help="the agent id to start sessions of")
    p.add_argument("--sessions", type=_positive(int, "--sessions"), default=100)
    p.add_argument("--rate", type=_positive(float, "--rate"), default=20.0,
                   help="sessions started per second (default %(default)s)")
    p.add_argument("--turns", type=_positive(int, "--turns"), default=5,
                   help="text inputs per session (default %(default)s)")
    p.add_argument("--think", type=float, default=1.0,
                   help="seconds between a reply and the next input (default %(default)s)")
    p.add_argument("--interrupt-every", type=int, default=2,
                   help="interrupt after every Nth turn, 0 never (default %(default)s)")
    p.add_argument("--text", default="hello", help="what the user says")
    p.add_argument("--api-key", default=None, help="bearer key (default: $TASKRUNNER_API_KEY)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply")
    p.add_argument("--follow", choices=("ws", "poll"), default="ws",
                   help="receive records (and send inputs) on each session's WebSocket, or "
                   "long-poll GET .../events and POST inputs (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=main_loadtest)


def main_loadtest(args: argparse.Namespace) -> int:
    """Run ``loadtest`` from parsed arguments."""
    from ._loadtest import main_loadtest as run

    return run(args)
