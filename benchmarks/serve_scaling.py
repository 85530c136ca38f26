"""Serving scale: 1 vs 2 worker processes over Redis, side by side, with the loadtest.

    .venv/bin/python benchmarks/serve_scaling.py --redis redis://127.0.0.1:6379/0

For each worker count, starts ``serve examples/chat_agent.py --workers W --redis URL`` (with
``CHAT_AGENT_WORK_KB``, CPU work per streamed step), then runs the loadtest at each rate of
``--rates`` (sessions started per second; each session lasts ``--turns`` x ``--think`` s, so
concurrent sessions grow with the rate) and prints one markdown row per run: peak active
sessions, input-to-first-output and interruption p50/p99, errors, lost records, and the CPU
each part used over the run (in cores: CPU seconds / elapsed seconds), to tell whether the
workers, Redis or the load generator is the limit on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import trio

from taskrunner.serve._loadtest import LoadSpec, run_load

ROOT = Path(__file__).resolve().parent.parent


def start_server(
    workers: int, redis: str, work_kb: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "CHAT_AGENT_WORK_KB": str(work_kb)}
    env.pop("TASKRUNNER_API_KEY", None)
    out = open(log, "wb")  # the server writes to it until stopped
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskrunner", "serve", str(ROOT / "examples/chat_agent.py"),
         "--port", "0", "--workers", str(workers), "--redis", redis,
         "--prefix", f"bench{uuid.uuid4().hex[:6]}"],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    url = None
    while time.monotonic() < deadline:
        match = re.search(r"serving on (\S+)", log.read_text())
        if match:
            url = match.group(1)
            try:
                health = httpx.get(url + "v1/health", timeout=2).json()
                if len(health.get("workers", [])) >= workers:
                    return proc, url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def redis_pid(url: str) -> int:
    import coredis

    client = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        return int((await client.info("server"))["process_id"])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rates", default="4,8,12,16")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of starts per run")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--work-kb", type=int, default=1024)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON lines")
    args = parser.parse_args()
    print("| workers | start rate /s | peak active sessions | first output p50 / p99 ms "
          "| interruption p50 / p99 ms | completed | errors | lost records "
          "| CPU cores used: workers / redis / loadtest |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in [int(w) for w in args.workers.split(",")]:
        for rate in [float(r) for r in args.rates.split(",")]:
            log = Path(f"/tmp/serve-bench-{workers}-{rate}.log")
            proc, url = start_server(workers, args.redis, args.work_kb, log)
            try:
                spec = LoadSpec(
                    url=url, agent_id="chat_agent", sessions=max(1, int(rate * args.duration)),
                    rate=rate, turns=args.turns, think=args.think, interrupt_every=2,
                )  # fmt: skip
                pids = [int(p) for p in re.findall(r"worker pid (\d+)", log.read_text())]
                redis = trio.run(redis_pid, args.redis)
                before = [cpu_seconds(p) for p in pids], cpu_seconds(redis), own_cpu()
                report = trio.run(run_load, spec).to_dict()
                after = [cpu_seconds(p) for p in pids], cpu_seconds(redis), own_cpu()
                elapsed = report["elapsed_s"]
                report["cpu_share"] = {
                    "workers": [
                        round((a - b) / elapsed, 2)
                        for a, b in zip(after[0], before[0], strict=True)
                    ],
                    "redis": round((after[1] - before[1]) / elapsed, 2),
                    "loadtest": round((after[2] - before[2]) / elapsed, 2),
                }
            finally:
                stop_server(proc)
            fo, it = report["first_output_ms"], report["interruption_ms"]
            cpu = report["cpu_share"]
            shares = " + ".join(f"{c:.2f}" for c in cpu["workers"])
            print(f"| {workers} | {rate:g} | {report['peak_active_sessions']} "
                  f"| {fo['p50']} / {fo['p99']} | {it['p50']} / {it['p99']} "
                  f"| {report['completed']}/{report['sessions']} "
                  f"| {sum(report['errors'].values())} | {report['lost_records']} "
                  f"| {shares} / {cpu['redis']:.2f} / {cpu['loadtest']:.2f} |", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"workers": workers, "rate": rate, **report}) + "\n")


if __name__ == "__main__":
    main()
