"""The Lua scripts a Redis worker runs: each one is atomic on the server, and every write a
worker makes for a session it owns is fenced by the session's lease."""

from __future__ import annotations

__all__ = ["END", "INPUT", "PUBLISH", "RELEASE", "RENEW", "SAVE"]

# KEYS: meta, input stream. ARGV: message JSON, "1" if it stops the session, "1" if the
# message is an input (not a control).
# -> {1, entry id} or {0, state} (state: "missing", "stopping", "ended", ...).
INPUT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'missing'} end
if state ~= 'running' then return {0, state} end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'state', 'stopping') end
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
return {1, id}
"""

# KEYS: lease, record stream. ARGV: worker, maxlen, then seq, JSON pairs in order.
# Records whose seq the stream already holds are skipped, so a retried batch is harmless.
# -> 1, or 0 when the lease is not the worker's (nothing written).
PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local top = -1
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  top = tonumber(string.match(last[1][1], '^0%-(%d+)$')) - 1
end
for i = 3, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. (seq + 1), 'r', ARGV[i + 1])
    top = seq
  end
end
return 1
"""

# KEYS: lease, checkpoint. ARGV: worker, JSON. -> 1, or 0 when fenced.
SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lease, meta, live set, sessions listing, then every key of the session.
# ARGV: worker, session id, seconds to keep an ended session, now (unix time).
# Ends the session, lets its keys expire, and drops listed sessions older than that.
# -> 1, or 0 when fenced.
END = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'state', 'ended', 'owner', '')
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[3]))
redis.call('DEL', KEYS[1])
for i = 5, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return 1
"""

# KEYS: lease, meta, new-session stream. ARGV: worker, session id.
# Gives the session up (the owner field stays until the taker's claim, which names it as the
# previous owner) and queues it for another worker at once. -> 1, or 0 when fenced.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('XADD', KEYS[3], '*', 'sid', ARGV[2], 'why', 'handed_over')
return 1
"""

# KEYS: leases. ARGV: worker, milliseconds. Renews the worker's leases; returns the indexes
# (1-based) of the keys it does not hold any more.
RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""
