"""Reserved concurrency: at most N invocations of a function run at once, across every worker and host.

Each running invocation holds a lease in a Redis sorted set per function (member: the invocation id,
score: when the lease runs out). A worker that dies cannot give its leases back, so each one ends by
itself at the latest moment its invocation could still be running; the orphan sweep also returns
them sooner when it fails the invocation. Times come from the Redis server's clock, the one clock
every host shares.
"""

from invocations.queue import connection as _connection

KEY = "lambda:concurrency:{}"

# KEYS[1]: the function's lease set. ARGV: limit, lease seconds, invocation id. Returns 1 if leased.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
-- The set itself goes when its last lease would have.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1)
return 1
"""


def acquire(function_id, invocation_id, limit, seconds):
    """Lease one of the function's `limit` slots for `seconds`; return False if all are taken."""
    if limit <= 0:
        return False
    script = _connection().register_script(ACQUIRE)
    return script(keys=[KEY.format(function_id)], args=[limit, seconds, str(invocation_id)]) == 1


def release(function_id, invocation_id):
    _connection().zrem(KEY.format(function_id), str(invocation_id))


def in_use(function_id):
    """Return how many leases the function holds now, expired ones aside (for pages and tests)."""
    connection = _connection()
    now = connection.time()
    return connection.zcount(KEY.format(function_id), now[0] + now[1] / 1e6, "+inf")
