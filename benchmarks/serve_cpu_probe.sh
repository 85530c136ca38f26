#!/usr/bin/env bash
# One loadtest against a fresh `serve --workers W --redis` on a private, snapshot-free
# redis-server; prints the workers' and Redis's CPU seconds over the loadtest, its latencies,
# and Redis's command counts (to see what the serving costs per session, and in which calls).
#
#   NICE=0 REDIS_PORT=6395 bash benchmarks/serve_cpu_probe.sh WORKERS SESSIONS [WORK_MS]
#
# WORK_MS is the agent's CPU per streamed step (CHAT_AGENT_WORK_MS; 0: serving only).
set -euo pipefail
W=$1; N=$2; WM=${3:-0}; RP=${REDIS_PORT:-6395}; PORT=$((8900 + W))
cd "$(dirname "$0")/.."
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir /tmp --logfile "/tmp/redis$RP.log"
sleep 0.3; redis-cli -p "$RP" flushall > /dev/null
CHAT_AGENT_WORK_MS=$WM nice -n "${NICE:-0}" .venv/bin/python -m taskrunner serve \
    examples/chat_agent.py --port "$PORT" --workers "$W" --redis "redis://127.0.0.1:$RP/0" \
    > /tmp/serve_cpu_probe.log 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null; wait $SP 2>/dev/null; redis-cli -p "$RP" shutdown nosave > /dev/null 2>&1 || true' EXIT
for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$PORT/v1/health" 2>/dev/null | python3 -c \
        "import json,sys; sys.exit(0 if len(json.load(sys.stdin).get('workers',[]))>=$W else 1)"  2>/dev/null
    then break; fi
    sleep 0.2
done
PIDS=$(pgrep -P $SP -f python | head -"$W")
REDIS_PID=$(redis-cli -p "$RP" info server | grep process_id | cut -d: -f2 | tr -d '\r')
cpu() { for p in "$@"; do awk '{printf "%.2f ", ($14+$15)/100}' "/proc/$p/stat"; done; }
BEFORE=$(cpu $PIDS $REDIS_PID)
.venv/bin/python -m taskrunner loadtest "http://127.0.0.1:$PORT/" --agent-id chat_agent \
    --sessions "$N" --rate $((N / 4)) --turns 16 --think 1 --interrupt-every 2 --no-progress \
    | grep -E "first output|until|interruption|errors|lost"
echo "CPU seconds before: $BEFORE(workers..., redis)"
echo "CPU seconds after:  $(cpu $PIDS $REDIS_PID)"
redis-cli -p "$RP" info commandstats | grep -v "^#" | sed "s/,usec_per_call.*//" \
    | sort -t= -k2 -rn | head -12
