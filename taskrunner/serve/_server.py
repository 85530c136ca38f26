"""Running the API: one worker process, or a parent that runs N of them on one socket."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from typing import Any, cast

import attrs
import trio

from .._core.supervisor import Flavor
from .._session.session import AgentHandler

__all__ = ["API_KEY_ENV", "ServeConfig", "bind_socket", "is_loopback", "run_parent", "run_worker"]

logger = logging.getLogger("taskrunner.serve")

#: The environment variable ``serve`` reads the API key from when ``--api-key`` is not given.
API_KEY_ENV = "TASKRUNNER_API_KEY"

_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class ServeConfig:
    """Everything a worker needs; built from the command line by ``serve``.

    ``redis_url`` None keeps everything in this process (records in memory). ``lease`` is
    the seconds a worker's hold on a session lasts without renewal (takeover time after a
    crash); ``max_records`` bounds each session's kept records (memory, or its Redis stream);
    ``mirror`` is how many recent sessions of other workers a worker's debugger page shows;
    ``checkpoints`` a PostgreSQL URL where the workers keep the checkpoints (None: in Redis).
    ``drain_timeout`` bounds a worker's drain after SIGTERM/SIGINT (a second signal ends it
    at once); past it the worker exits and its sessions are taken over as after a crash.
    ``tune_gc``: each worker applies :func:`taskrunner.tune_gc` once its app is built, as
    ``run`` does (a server is the long-running process that policy is for).
    """

    module: str
    handler_name: str = "handler"
    agent_id: str = ""
    flavor: Flavor | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    redis_url: str | None = None
    workers: int = 1
    lease: float = 10.0
    max_records: int = 10_000
    max_sessions: int = 10_000
    mirror: int = 100
    stop_grace: float = 0.0
    max_body: int = 64 * 1024
    prefix: str = "taskrunner"
    checkpoints: str | None = None
    drain_timeout: float = 30.0
    tune_gc: bool = True


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0`` picks one), inheritable."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bare, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}/" if ":" in bare else f"http://{bare}:{port}/"


def _load_handler(cfg: ServeConfig) -> tuple[AgentHandler, Flavor]:
    from ..tools.cli import _load_module

    module = _load_module(cfg.module)
    handler = getattr(module, cfg.handler_name, None)
    if handler is None:
        raise SystemExit(f"error: {cfg.module} has no {cfg.handler_name!r}")
    flavor = cfg.flavor or getattr(module, "FLAVOR", "asyncio")
    if flavor not in ("asyncio", "trio"):
        raise SystemExit(f"error: FLAVOR must be 'asyncio' or 'trio', got {flavor!r}")
    return cast(AgentHandler, handler), cast(Flavor, flavor)


async def _worker(cfg: ServeConfig, fd: int, url: str) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from hypercorn.typing import ASGIFramework

    from .._gc import tune_gc
    from ..tools.debugger.app import create_app as create_debugger
    from ..tools.hub import Hub
    from ._app import create_api
    from ._local import LocalBackend

    handler, flavor = _load_handler(cfg)
    hub = Hub(history_limit=cfg.max_records)
    backend: Any
    if cfg.redis_url is None:
        backend = LocalBackend(
            handler,
            agent_id=cfg.agent_id,
            hub=hub,
            flavor=flavor,
            stop_grace=cfg.stop_grace,
            max_sessions=cfg.max_sessions,
        )
    else:
        from ._redis import RedisBackend

        backend = RedisBackend(
            handler,
            agent_id=cfg.agent_id,
            hub=hub,
            redis_url=cfg.redis_url,
            flavor=flavor,
            stop_grace=cfg.stop_grace,
            lease=cfg.lease,
            max_records=cfg.max_records,
            max_sessions=cfg.max_sessions,
            prefix=cfg.prefix,
            mirror=cfg.mirror,
            checkpoints=cfg.checkpoints,
        )
    loopback = is_loopback(cfg.host)
    debugger = create_debugger(
        hub,
        token=secrets.token_urlsafe(32),
        allowed_hosts=[*_LOOPBACK_HOSTS, cfg.host.strip("[]")] if loopback else None,
        require_token=False,  # behind the API's own check of every request
    )
    app = create_api(
        backend, api_key=cfg.api_key, debugger=_noting_use(debugger, backend), max_body=cfg.max_body
    )
    if cfg.tune_gc:
        # Start-up is over (the agent, the app, the server's modules): collect less often,
        # and never walk those objects again (full collections were pauses of every session).
        tune_gc()
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.errorlog = logging.getLogger("taskrunner.serve.hypercorn")
    config.accesslog = None
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 75.0
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run)
            nursery.start_soon(
                partial(
                    hypercorn_serve,
                    cast(ASGIFramework, app),
                    config,
                    shutdown_trigger=shutdown.wait,
                )
            )
            print(
                f"worker {backend.worker_id} serving agent {cfg.agent_id!r} on {url}",
                file=sys.stderr,
                flush=True,
            )
            async for signum in signals:
                logger.warning(
                    "worker %s: %s, draining", backend.worker_id, signal.Signals(signum).name
                )
                break
            if await _bounded_drain(backend, signals, cfg.drain_timeout):
                print(f"worker {backend.worker_id} drained", file=sys.stderr, flush=True)
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout + 1


async def _bounded_drain(backend: Any, signals: Any, timeout: float) -> bool:
    """``backend.drain()``, given up after ``timeout`` seconds or at a second signal (a
    drain waits for Redis, which may be unreachable); whether it finished. A worker that
    gives up leaves its sessions to their leases: they are taken over as after a crash, from
    their last checkpoint, and no record that was published is lost."""
    done = False
    async with trio.open_nursery() as nursery:

        async def drain() -> None:
            nonlocal done
            await backend.drain()
            done = True
            nursery.cancel_scope.cancel()

        async def second_signal() -> None:
            async for signum in signals:
                logger.warning(
                    "worker %s: %s again: leaving without draining",
                    backend.worker_id,
                    signal.Signals(signum).name,
                )
                nursery.cancel_scope.cancel()
                return

        nursery.start_soon(drain)
        nursery.start_soon(second_signal)
        await trio.sleep(timeout)
        logger.warning(
            "worker %s: drain not finished after %g s; leaving its sessions to their leases",
            backend.worker_id,
            timeout,
        )
        nursery.cancel_scope.cancel()
    return done


def _noting_use(app: Any, backend: Any) -> Any:
    """The debugger app, telling the backend of each request (see ``debugger_used``)."""

    async def noted(scope: Any, receive: Any, send: Any) -> None:
        backend.debugger_used()
        await app(scope, receive, send)

    return noted


def run_worker(cfg: ServeConfig, fd: int, url: str) -> int:
    """Serve in this process on the listening socket ``fd`` until SIGTERM/SIGINT (drains)."""
    trio.run(_worker, cfg, fd, url)
    return 0


def _worker_argv(cfg: ServeConfig, fd: int, url: str) -> list[str]:
    argv = [
        sys.executable, "-m", "taskrunner", "serve", cfg.module,
        "--handler", cfg.handler_name, "--agent-id", cfg.agent_id,
        "--host", cfg.host, "--lease", repr(cfg.lease),
        "--max-records", str(cfg.max_records), "--max-sessions", str(cfg.max_sessions),
        "--mirror", str(cfg.mirror),
        "--stop-grace", repr(cfg.stop_grace), "--max-body", str(cfg.max_body),
        "--prefix", cfg.prefix, "--worker-fd", str(fd), "--worker-url", url,
        "--drain-timeout", repr(cfg.drain_timeout),
    ]  # fmt: skip
    if cfg.flavor:
        argv += ["--flavor", cfg.flavor]
    if cfg.redis_url:
        argv += ["--redis", cfg.redis_url]
    if cfg.checkpoints:
        argv += ["--checkpoints", cfg.checkpoints]
    if not cfg.tune_gc:
        argv.append("--no-tune-gc")
    return argv


def run_parent(cfg: ServeConfig) -> int:
    """Bind the socket, then serve: in this process for one worker without Redis, else in
    ``cfg.workers`` child processes sharing it (restarted if one dies after a healthy
    start). SIGTERM/SIGINT are passed on to the workers, which drain; returns when all
    have exited."""
    try:
        sock = bind_socket(cfg.host, cfg.port)
    except OSError as exc:
        raise SystemExit(f"error: cannot serve on {cfg.host}:{cfg.port}: {exc}") from None
    url = _url(sock, cfg.host)
    print(f"serving on {url} ({cfg.workers} worker(s), pid {os.getpid()})", flush=True)
    if cfg.workers == 1 and cfg.redis_url is None:
        return run_worker(cfg, sock.fileno(), url)
    env = dict(os.environ)
    env.pop(API_KEY_ENV, None)
    if cfg.api_key:
        env[API_KEY_ENV] = cfg.api_key
    stopping = False

    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            _worker_argv(cfg, sock.fileno(), url),
            pass_fds=(sock.fileno(),),
            env=env,
            start_new_session=True,
        )
        print(f"worker pid {proc.pid}", flush=True)
        return proc

    procs = {spawn(): time.monotonic() for _ in range(cfg.workers)}

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while procs:
        time.sleep(0.2)
        for proc, started in list(procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del procs[proc]
            if stopping:
                continue
            lived = time.monotonic() - started
            print(f"worker pid {proc.pid} exited with {code} after {lived:.1f} s", flush=True)
            if lived >= 5.0:
                procs[spawn()] = time.monotonic()
    sock.close()
    return 0
