"""Cold and warm invoke latency (enqueue → result), as ratios to RQ's own round trip measured in the same run.

    .venv/bin/python bench/invoke_latency.py [--warm 200] [--cold 20]

It uses its own data directory (.run/bench) and Redis database (REDIS_URL's server, db 14), starts one
real worker process, and prints a table of medians and p90s. Machines here are noisy: compare ratios,
not milliseconds, and never assert on them in tests.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LAMBDA_DATA_DIR"] = str(ROOT / ".run" / "bench")
redis_url = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
os.environ["REDIS_URL"] = urlunsplit(redis_url._replace(path="/14"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

import django_rq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402

from functions.forms import FunctionForm, host_runtime  # noqa: E402
from functions.models import Function  # noqa: E402
from invocations.invoke import invoke_and_wait  # noqa: E402
from invocations.wakeup import wait_finished  # noqa: E402
from tests.base import handler_zip  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'echo': event}\n"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def timed(fn, n):
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def baseline_once():
    token = str(uuid.uuid4())
    django_rq.get_queue(settings.INVOCATION_QUEUE).enqueue("bench.jobs.noop", token, result_ttl=0)
    assert wait_finished(token, 10), "baseline job did not finish"


def function_with_memory(owner, memory):
    """Each memory size is its own configuration, hence its own environment: invoking it first is cold."""
    name = f"bench-{memory}"
    Function.objects.filter(owner=owner, name=name).delete()
    form = FunctionForm(
        {"name": name, "runtime": host_runtime(), "handler": "lambda_function.handler", "memory_size": memory,
         "timeout": 10},
        {"code": SimpleUploadedFile("code.zip", handler_zip(HANDLER))}, owner=owner,
    )
    assert form.is_valid(), form.errors
    return form.save()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--cold", type=int, default=20)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    django_rq.get_connection(settings.INVOCATION_QUEUE).flushdb()
    owner, _ = User.objects.get_or_create(username="bench")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", settings.INVOCATION_QUEUE, "--name", f"bench-{os.getpid()}"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        timed(baseline_once, 20)  # let the worker settle
        warm_fn = function_with_memory(owner, 128)
        first = invoke_and_wait(warm_fn, "{}")
        assert first.status == "SUCCEEDED", first.result

        # Interleave the three measurements so drift in machine load hits all of them alike.
        baseline, warm, cold, inside, init = [], [], [], [], []
        cold_left = args.cold
        for i in range(args.warm):
            baseline += timed(baseline_once, 1)
            started = time.perf_counter()
            invocation = invoke_and_wait(warm_fn, '{"n": 1}')
            warm.append((time.perf_counter() - started) * 1000)
            assert invocation.status == "SUCCEEDED" and not invocation.cold_start, invocation.result
            inside.append(float(invocation.duration_ms))
            if cold_left and i % max(1, args.warm // args.cold) == 0:
                fn = function_with_memory(owner, 129 + cold_left)
                started = time.perf_counter()
                invocation = invoke_and_wait(fn, "{}")
                cold.append((time.perf_counter() - started) * 1000)
                assert invocation.cold_start and invocation.status == "SUCCEEDED", invocation.result
                init.append(float(invocation.init_duration_ms))
                cold_left -= 1
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    base = statistics.median(baseline)
    rows = [
        ("RQ round trip (baseline)", baseline),
        ("warm invoke, enqueue → result", warm),
        ("cold invoke, enqueue → result", cold),
        ("cold: Init Duration (sandbox + import)", init),
        ("warm: handler duration (inside)", inside),
    ]
    print(f"\n{'measurement':36} {'n':>5} {'median ms':>10} {'p90 ms':>9} {'median / baseline':>18}")
    for label, values in rows:
        median = statistics.median(values)
        print(f"{label:36} {len(values):5d} {median:10.2f} {percentile(values, 90):9.2f} {median / base:18.2f}")


if __name__ == "__main__":
    main()
