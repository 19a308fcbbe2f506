"""The jobs bench/environments.py runs on plain RQ workers. They import neither Django nor the project."""

import json
import os
import subprocess

from redis import Redis

# The interpreter the sandbox runs (SANDBOX_PYTHON's default), so the naive design pays the same start-up.
PYTHON = "/usr/bin/python3"

# Import the handler from the code directory and call it once with the event, as a one-shot runtime would.
CALL_HANDLER = (
    "import json, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from lambda_function import handler\n"
    "print(json.dumps(handler(json.loads(sys.argv[2]), None)))\n"
)

_redis = None


def noop():
    """The baseline: RQ's own work around a job that does nothing."""


def noop_and_wake(key):
    """The baseline job, but waking its caller the way invoke_and_wait() is woken: a push on a Redis list."""
    global _redis
    if _redis is None:  # one connection per worker process, kept, as a long-running service would
        _redis = Redis.from_url(os.environ["REDIS_URL"])
    with _redis.pipeline() as p:
        p.rpush(key, 1)
        p.expire(key, 300)
        p.execute()


def run_in_fresh_interpreter(code_dir, event):
    """The naive design: a new interpreter per invocation, which imports the handler and calls it."""
    done = subprocess.run([PYTHON, "-I", "-c", CALL_HANDLER, code_dir, event],
                          capture_output=True, text=True, check=True, timeout=30)
    return json.loads(done.stdout)
