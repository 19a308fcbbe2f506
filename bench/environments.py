"""Execution environments against bare RQ: latency and throughput, all measured in one run.

    .venv/bin/python bench/environments.py [--latency 400] [--cold 40] [--batch 200] [--rounds 5] [--keep]

Three kinds of worker process, each kind on its own queue:

  rq      bare RQ, `rq worker --worker-class rq.SimpleWorker`, running bench.jobs.noop (the baseline)
  lambda  the project's worker, `manage.py rqworker` (the LambdaWorker), running invocations
  naive   RQ's forking `rq.Worker`, each job a fresh `python3 -I` that imports the handler and calls it

The machine is noisy (2 shared vCPUs), so measurements of the three kinds are interleaved: drift in the
machine's load then hits all of them alike. Read the ratios, not the milliseconds, and never assert on
them in tests.

The run uses its own data directory (.run/bench, removed at the end unless --keep or a failure), its own
Redis database (REDIS_URL's server, db 14) and queue names, and starts and stops its own workers.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = ROOT / ".run" / "bench"
LOG_DIR = DATA_DIR / "logs"
RQ_QUEUE = f"bench-{os.getpid()}-rq"
LAMBDA_QUEUE = f"bench-{os.getpid()}-lambda"
NAIVE_QUEUE = f"bench-{os.getpid()}-naive"

# This process and every worker it starts read their settings from these variables.
REDIS_URL = urlunsplit(urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))._replace(path="/14"))
os.environ.update({
    "LAMBDA_DATA_DIR": str(DATA_DIR),
    "DATABASE_URL": f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
    "REDIS_URL": REDIS_URL,
    # The plain `rq worker`s read it from here rather than --url, which would show a password in `ps`.
    "RQ_REDIS_URL": REDIS_URL,
    "INVOCATION_QUEUE": LAMBDA_QUEUE,
    # Given, so that workers starting at the same time do not race to create secret_key in the data directory.
    "SECRET_KEY": "bench-only-not-secret",
    "DJANGO_SETTINGS_MODULE": "console.settings",
})

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402
from rq.results import Result  # noqa: E402

from functions.forms import FunctionForm, host_runtime  # noqa: E402
from invocations.invoke import invoke, invoke_and_wait  # noqa: E402
from invocations.models import Invocation  # noqa: E402
from tests.base import handler_zip  # noqa: E402
from tests.processes import stop  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'echo': event}\n"
EVENT = '{"n": 1}'
RQ_BIN = str(Path(sys.executable).with_name("rq"))
WAIT_SECONDS = 120  # a generous bound on any single wait; reaching it means something is broken
NOOP = "bench.jobs.noop"
NOOP_AND_WAKE = "bench.jobs.noop_and_wake"
FRESH_INTERPRETER = "bench.jobs.run_in_fresh_interpreter"


# Worker processes


def start_worker(argv, name):
    with open(LOG_DIR / f"{name}.log", "w") as log:  # the child has its own copy of the file
        return subprocess.Popen(argv, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)


def start_workers(number):
    """Start worker `number` of each kind; return {kind: process}."""
    rq, lambda_, naive = (f"bench-{kind}-{number}" for kind in ("rq", "lambda", "naive"))
    return {
        "rq": start_worker([RQ_BIN, "worker", "--worker-class", "rq.SimpleWorker", "--name", rq, RQ_QUEUE], rq),
        "lambda": start_worker([sys.executable, "manage.py", "rqworker", LAMBDA_QUEUE, "--name", lambda_], lambda_),
        "naive": start_worker([RQ_BIN, "worker", "--worker-class", "rq.Worker", "--name", naive, NAIVE_QUEUE], naive),
    }


def wait_registered(connection, processes, count):
    """Wait until `count` workers listen on each queue; fail if one of ours exits first."""
    deadline = time.monotonic() + 60
    for name in (RQ_QUEUE, LAMBDA_QUEUE, NAIVE_QUEUE):
        while Worker.count(queue=Queue(name, connection=connection)) < count:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                raise RuntimeError(f"workers for {name} did not start; see {LOG_DIR}")
            time.sleep(0.1)


def wait_idle(connection, count):
    """Wait until every worker is back to waiting for work. The tail of a worker's last job (RQ's own
    bookkeeping after the caller has its answer, reaping a forked child, stopping an evicted environment)
    would otherwise land in the next measurement, whichever kind that is."""
    deadline = time.monotonic() + WAIT_SECONDS
    for kind in ("rq", "lambda", "naive"):
        for number in range(1, count + 1):
            worker = Worker.find_by_key(f"{Worker.redis_worker_namespace_prefix}bench-{kind}-{number}", connection)
            while worker is None or worker.get_state() != "idle":
                if worker is None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker bench-{kind}-{number} is gone or stuck; see {LOG_DIR}")
                time.sleep(0.0005)
                worker.refresh()


# One measurement each


def check(job, result):
    if result is None or result.type != Result.Type.SUCCESSFUL:
        raise RuntimeError(f"job {job.func_name} did not succeed: {result and result.exc_string}")


def rq_round_trip(queue, func, *args):
    """Enqueue one job and block on RQ's result stream until its result is there; return ms."""
    started = time.perf_counter()
    job = queue.enqueue(func, *args)
    result = job.latest_result(timeout=WAIT_SECONDS)
    elapsed = (time.perf_counter() - started) * 1000
    check(job, result)
    return elapsed


def rq_wake_round_trip(queue, connection):
    """Enqueue one no-op job that pushes on a Redis list, and block on that list (as invoke_and_wait() does)."""
    key = f"bench:wake:{uuid.uuid4()}"
    started = time.perf_counter()
    queue.enqueue(NOOP_AND_WAKE, key)
    woken = connection.blpop([key], timeout=WAIT_SECONDS)
    elapsed = (time.perf_counter() - started) * 1000
    if woken is None:
        raise RuntimeError("the wake-up job did not wake its caller")
    return elapsed


def rq_batch(queue, func, args, n):
    """Enqueue `n` jobs at once; return the seconds until the last result is there."""
    started = time.perf_counter()
    jobs = [queue.enqueue(func, *args) for _ in range(n)]
    for job in jobs:
        check(job, job.latest_result(timeout=WAIT_SECONDS))
    return time.perf_counter() - started


def warm_invoke(function, samples):
    """One warm synchronous invocation; record its latency and, from the row's timestamps, where it went."""
    started_at = time.time()
    started = time.perf_counter()
    invocation = invoke_and_wait(function, EVENT)
    elapsed = (time.perf_counter() - started) * 1000
    ended_at = time.time()
    if invocation.status != Invocation.Status.SUCCEEDED or invocation.cold_start:
        raise RuntimeError(f"warm invocation: {invocation.status} cold={invocation.cold_start} {invocation.result}")
    samples["warm"].append(elapsed)
    # The row's timestamps come from the caller's and the worker's processes on one host, hence one clock.
    samples["warm: call → claimed"].append((invocation.started_at.timestamp() - started_at) * 1000)
    samples["warm: claimed → finished"].append((invocation.finished_at - invocation.started_at).total_seconds() * 1000)
    samples["warm: finished → caller has row"].append((ended_at - invocation.finished_at.timestamp()) * 1000)
    samples["warm: handler Duration"].append(float(invocation.duration_ms))


def cold_invoke(function, samples):
    started = time.perf_counter()
    invocation = invoke_and_wait(function, EVENT)
    elapsed = (time.perf_counter() - started) * 1000
    if invocation.status != Invocation.Status.SUCCEEDED or not invocation.cold_start:
        raise RuntimeError(f"cold invocation: {invocation.status} cold={invocation.cold_start} {invocation.result}")
    samples["cold"].append(elapsed)
    samples["cold: Init Duration"].append(float(invocation.init_duration_ms))


def wait_rows_finished(ids):
    """Nobody is woken for an asynchronous invocation: watch the rows (a 10 ms poll, against seconds per batch)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while Invocation.objects.filter(pk__in=ids, finished_at__isnull=False).count() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"invocations did not finish within {WAIT_SECONDS} s")
        time.sleep(0.01)


def invoke_batch(function, n):
    """Create `n` asynchronous invocations at once; return the seconds until the last one has finished."""
    started = time.perf_counter()
    ids = [invoke(function, EVENT, kind=Invocation.Kind.ASYNC).pk for _ in range(n)]
    wait_rows_finished(ids)
    elapsed = time.perf_counter() - started
    failed = Invocation.objects.filter(pk__in=ids).exclude(status=Invocation.Status.SUCCEEDED).count()
    if failed:
        raise RuntimeError(f"{failed} of {n} invocations did not succeed")
    return elapsed


# Warming up: a worker's first job (imports, connections, a cold environment) is never measured.


def warm_up_rq(queue, func, args, count):
    """Run jobs until each of the `count` workers on `queue` has run one."""
    seen = set()
    for _ in range(100):
        jobs = [queue.enqueue(func, *args) for _ in range(2 * count)]
        for job in jobs:
            check(job, job.latest_result(timeout=WAIT_SECONDS))
            job.refresh()
            seen.add(job.worker_name)
        if len(seen) == count:
            return
    raise RuntimeError(f"only workers {seen} on {queue.name} ran a job")


def warm_up_lambda(function, processes):
    """Run invocations until each worker process has run one, so each holds a warm environment."""
    wanted = {f"{socket.gethostname()}:{p.pid}" for p in processes}
    seen = set()
    for _ in range(100):
        ids = [invoke(function, EVENT, kind=Invocation.Kind.ASYNC).pk for _ in range(2 * len(processes))]
        wait_rows_finished(ids)
        seen |= set(Invocation.objects.filter(pk__in=ids).values_list("worker", flat=True))
        if seen >= wanted:
            return
    raise RuntimeError(f"workers {wanted - seen} never ran an invocation")


# Set-up


def create_function(owner, name, runtime):
    form = FunctionForm(
        {"name": name, "runtime": runtime, "handler": "lambda_function.handler", "memory_size": 128, "timeout": 10},
        {"code": SimpleUploadedFile("code.zip", handler_zip(HANDLER))}, owner=owner,
    )
    if not form.is_valid():
        raise RuntimeError(form.errors.as_text())
    return form.save()


def machine():
    bwrap = shutil.which("bwrap")
    bwrap = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip() if bwrap else "no bwrap"
    cgroup = "cgroup v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "cgroup v1"
    user = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} vCPU, {platform.system()} "
            f"{platform.release()}, {bwrap}, {cgroup}, workers run as {user}")


def rotated(items, i):
    """`items`, starting at position i: so that no kind always runs right after the same other kind."""
    i %= len(items)
    return items[i:] + items[:i]


# Report


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def report(samples, throughput, args):
    base_p50 = percentile(samples["rq"], 50)
    latency_rows = [
        ("(a) RQ SimpleWorker no-op: enqueue → result", "rq"),
        ("      same, woken by a list push instead", "rq wake"),
        ("(b) warm sync invoke_and_wait()", "warm"),
        ("      call → claimed by the worker", "warm: call → claimed"),
        ("      claimed → finished (row times)", "warm: claimed → finished"),
        ("      finished → caller has the row", "warm: finished → caller has row"),
        ("      handler Duration (on the row)", "warm: handler Duration"),
        ("(c) cold start invoke_and_wait()", "cold"),
        ("      Init Duration (on the row)", "cold: Init Duration"),
        ("(e) naive: fork + python3 -I per job", "naive"),
    ]
    throughput_rows = [
        ("(a) RQ SimpleWorker no-op", "rq"),
        ("(d) async invoke()", "lambda"),
        ("(e) naive: fork + python3 -I per job", "naive"),
    ]
    print(f"\n{machine()}")
    print(f"--latency {args.latency} --cold {args.cold} --batch {args.batch} --rounds {args.rounds}\n")
    print(f"{'measurement':48} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'jobs/s':>8} {'ratio':>6}")
    for label, key in latency_rows:
        values = samples[key]
        p50 = percentile(values, 50)
        print(f"{label:48} {len(values):5d} {p50:8.2f} {percentile(values, 99):8.2f} {'':>8} {p50 / base_p50:6.2f}")
    rates = {}
    for workers in (1, 2):
        for label, kind in throughput_rows:
            jobs, seconds = throughput[kind, workers]
            rates[kind, workers] = jobs / seconds
            ratio = rates[kind, workers] / rates["rq", workers]
            label = f"{label}, {workers} worker{'s' if workers > 1 else ''}"
            print(f"{label:48} {jobs:5d} {'':>8} {'':>8} {rates[kind, workers]:8.1f} {ratio:6.2f}")

    warm_p50 = percentile(samples["warm"], 50)
    cold_p50 = percentile(samples["cold"], 50)
    targets = [(f"warm sync p50 ≤ 1.3 × baseline p50: {warm_p50:.2f} ms, allowed {1.3 * base_p50:.2f} ms",
                warm_p50 <= 1.3 * base_p50)]
    for workers in (1, 2):
        have, base = rates["lambda", workers], rates["rq", workers]
        targets.append((f"throughput, {workers} worker(s) ≥ 0.7 × baseline: {have:.1f} jobs/s, needed {0.7 * base:.1f}",
                        have >= 0.7 * base))
    targets.append((f"cold start p50 ≤ 100 ms: {cold_p50:.2f} ms", cold_p50 <= 100))
    print("\ntargets:")
    for text, met in targets:
        print(f"  {'met    ' if met else 'NOT MET'}  {text}")


# The run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=int, default=400, help="round trips of each kind (a, b, e)")
    parser.add_argument("--cold", type=int, default=40, help="cold starts, spread over the latency loop")
    parser.add_argument("--batch", type=int, default=200, help="jobs enqueued at once per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per kind and worker count")
    parser.add_argument("--keep", action="store_true", help=f"keep {DATA_DIR} (database, worker logs)")
    args = parser.parse_args()
    # A plain `kill` of this process should still stop the workers it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    # Start from nothing: a previous run may have stopped half-way.
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)
    call_command("migrate", verbosity=0)
    # redis-py's default socket timeout (5 s) would cut short the blocking waits on results below.
    connection = Redis.from_url(settings.REDIS_URL, socket_timeout=WAIT_SECONDS + 10)
    connection.flushdb()
    rq_queue = Queue(RQ_QUEUE, connection=connection)
    naive_queue = Queue(NAIVE_QUEUE, connection=connection)

    owner = User.objects.create_user("bench")
    runtime = host_runtime()
    function = create_function(owner, "trivial", runtime)
    # A new function per cold start: a configuration no worker has an environment for.
    cold_functions = [create_function(owner, f"cold-{i}", runtime) for i in range(args.cold)]
    code_dir = DATA_DIR / "naive-code"
    code_dir.mkdir()
    (code_dir / "lambda_function.py").write_text(HANDLER)
    naive_args = (str(code_dir), EVENT)

    samples = {key: [] for key in ("rq", "rq wake", "warm", "warm: call → claimed", "warm: claimed → finished",
                                   "warm: finished → caller has row", "warm: handler Duration", "cold",
                                   "cold: Init Duration", "naive")}
    throughput = {}
    processes = []
    ok = False
    try:
        # Latency: one worker of each kind, one round trip of each kind per step, a cold start every few steps.
        first = start_workers(1)
        processes += first.values()
        lambda_processes = [first["lambda"]]
        wait_registered(connection, processes, 1)
        print("workers started; warming up", flush=True)
        warm_up_rq(rq_queue, NOOP, (), 1)
        warm_up_rq(naive_queue, FRESH_INTERPRETER, naive_args, 1)
        warm_up_lambda(function, lambda_processes)
        measure = {
            "rq": lambda: samples["rq"].append(rq_round_trip(rq_queue, NOOP)),
            "rq wake": lambda: samples["rq wake"].append(rq_wake_round_trip(rq_queue, connection)),
            "warm": lambda: warm_invoke(function, samples),
            "naive": lambda: samples["naive"].append(rq_round_trip(naive_queue, FRESH_INTERPRETER, *naive_args)),
        }
        for kind in measure:  # a few more, unmeasured, so that caches and connections settle
            for _ in range(10):
                measure[kind]()
        for values in samples.values():
            values.clear()

        print(f"latency: {args.latency} round trips of each kind, {args.cold} cold starts", flush=True)
        every = max(1, args.latency // max(1, args.cold))
        for i in range(args.latency):
            for kind in rotated(list(measure), i):
                wait_idle(connection, 1)
                measure[kind]()
            if cold_functions and i % every == 0:
                wait_idle(connection, 1)
                cold_invoke(cold_functions.pop(), samples)
        while cold_functions:  # only when --cold is larger than --latency
            wait_idle(connection, 1)
            cold_invoke(cold_functions.pop(), samples)

        # Throughput: rounds of one batch of each kind, first with one worker of each kind, then with two.
        batch = {
            "rq": lambda: rq_batch(rq_queue, NOOP, (), args.batch),
            "lambda": lambda: invoke_batch(function, args.batch),
            "naive": lambda: rq_batch(naive_queue, FRESH_INTERPRETER, naive_args, args.batch),
        }
        for workers in (1, 2):
            if workers == 2:
                second = start_workers(2)
                processes += second.values()
                lambda_processes.append(second["lambda"])
                wait_registered(connection, processes, 2)
                warm_up_rq(rq_queue, NOOP, (), 2)
                warm_up_rq(naive_queue, FRESH_INTERPRETER, naive_args, 2)
                warm_up_lambda(function, lambda_processes)
            print(f"throughput: {args.rounds} rounds of {args.batch} jobs, {workers} worker(s) of each kind",
                  flush=True)
            for kind in batch:
                throughput[kind, workers] = (0, 0.0)
            for r in range(args.rounds):
                for kind in rotated(list(batch), r):
                    wait_idle(connection, workers)
                    jobs, seconds = throughput[kind, workers]
                    throughput[kind, workers] = (jobs + args.batch, seconds + batch[kind]())
        ok = True
    finally:
        stop(processes)
        connection.flushdb()
        if ok and not args.keep:
            shutil.rmtree(DATA_DIR, ignore_errors=True)
        else:
            print(f"data and worker logs kept in {DATA_DIR}", file=sys.stderr)

    report(samples, throughput, args)


if __name__ == "__main__":
    main()
