"""HTTP endpoints (function URLs) against a plain Django view on the same server: warm latency, one run.

    .venv/bin/python bench/http_endpoint.py [--calls 300] [--warmup 30] [--keep]

One gunicorn (gthread, as ./dev run serves the console) and one of the project's RQ workers, on a fresh
database. Over one keep-alive connection, each step makes one call of each kind, in an order that rotates
each step:

  login     GET /login/: a plain Django view (template, CSRF cookie), no invocation. The baseline.
  endpoint  GET /url/<id>/ of a function returning {"ok": true}: the view builds the payload 2.0 event,
            invokes synchronously through the worker's warm environment, maps the result to HTTP
  direct    invoke_and_wait() of the same function from this process: the invocation without HTTP

The machine is noisy (2 shared vCPUs), so the kinds are interleaved and each is read as a ratio to the
baseline's p50 measured in the same run. No assertions: this prints a table.

It reuses bench/environments.py's set-up (its data directory .run/bench, Redis database 14 on
REDIS_URL's server, its queue name and worker helpers), so do not run the two at the same time.
"""

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Sets the environment (data directory, database, Redis db 14, queue) and calls django.setup().
from bench import environments as env  # noqa: E402

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402

from functions.forms import FunctionForm, host_runtime  # noqa: E402
from invocations.forms import HttpEndpointForm  # noqa: E402
from invocations.invoke import invoke_and_wait  # noqa: E402
from invocations.models import Invocation  # noqa: E402
from tests.base import handler_zip  # noqa: E402
from tests.processes import stop  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
WORKER_NAME = "bench-http-lambda-1"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port):
    # One process with threads, as the test suite serves the console; ./dev run has two such processes.
    with open(env.LOG_DIR / "gunicorn.log", "w") as log:
        process = subprocess.Popen(
            [GUNICORN, "console.wsgi", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
             "--workers", "1", "--threads", "8"],
            cwd=env.ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/status/")
            conn.getresponse().read()
            conn.close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop([process])
                raise RuntimeError(f"gunicorn did not start; see {env.LOG_DIR / 'gunicorn.log'}")
            time.sleep(0.1)


def wait_registered(connection, process):
    deadline = time.monotonic() + 60
    while Worker.count(queue=Queue(env.LAMBDA_QUEUE, connection=connection)) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start; see {env.LOG_DIR}")
        time.sleep(0.1)


def wait_idle(connection):
    """Wait until the worker is back to waiting for work, so the tail of its last job (RQ's bookkeeping after
    the caller has its answer) does not land in the next measurement, whichever kind that is."""
    deadline = time.monotonic() + env.WAIT_SECONDS
    worker = Worker.find_by_key(f"{Worker.redis_worker_namespace_prefix}{WORKER_NAME}", connection)
    while worker is None or worker.get_state() != "idle":
        if worker is None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {WORKER_NAME} is gone or stuck; see {env.LOG_DIR}")
        time.sleep(0.0005)
        worker.refresh()


class Client:
    """One keep-alive connection; counts how often it had to connect (should be once)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=env.WAIT_SECONDS)
        self.connects = 0
        self.sock = None

    def get(self, path):
        """GET `path`; return (ms, status, body)."""
        started = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if self.conn.sock is not self.sock:
            self.connects += 1
            self.sock = self.conn.sock
        if response.will_close:
            raise RuntimeError(f"GET {path}: the server closed the keep-alive connection")
        return elapsed, response.status, body


def create_function(owner):
    form = FunctionForm(
        {"name": "ok", "runtime": host_runtime(), "handler": "lambda_function.handler", "memory_size": 128,
         "timeout": 10},
        {"code": SimpleUploadedFile("code.zip", handler_zip(HANDLER))}, owner=owner,
    )
    if not form.is_valid():
        raise RuntimeError(form.errors.as_text())
    return form.save()


def create_endpoint(function):
    form = HttpEndpointForm({"qualifier": "", "auth_type": "NONE"}, function=function)
    if not form.is_valid():
        raise RuntimeError(form.errors.as_text())
    trigger, _ = form.save()
    return trigger


def report(samples, args, connects):
    base_p50 = env.percentile(samples["login"], 50)
    base_p99 = env.percentile(samples["login"], 99)
    rows = [
        ("(a) GET /login/ (plain Django view)", "login"),
        ("(b) GET /url/<id>/ (HTTP endpoint, warm)", "endpoint"),
        ("(c) invoke_and_wait() in-process, warm", "direct"),
    ]
    print(f"\n{env.machine()}; commit {commit()}")
    print(f"--calls {args.calls} --warmup {args.warmup}; one keep-alive connection, "
          f"{connects} reconnect(s) in the measured loop\n")
    print(f"{'measurement':44} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'ratio p50':>10} {'ratio p99':>10}")
    for label, key in rows:
        values = samples[key]
        p50, p99 = env.percentile(values, 50), env.percentile(values, 99)
        print(f"{label:44} {len(values):5d} {p50:8.2f} {p99:8.2f} {p50 / base_p50:10.2f} {p99 / base_p99:10.2f}")
    extra = env.percentile(samples["endpoint"], 50) - env.percentile(samples["direct"], 50)
    print(f"\nendpoint p50 − direct p50: {extra:.2f} ms (HTTP, the view, the event and the response mapping)")


def commit():
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=env.ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="measured calls of each kind")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls of each kind first")
    parser.add_argument("--keep", action="store_true", help=f"keep {env.DATA_DIR} (database, logs)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    shutil.rmtree(env.DATA_DIR, ignore_errors=True)
    env.LOG_DIR.mkdir(parents=True)
    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # /login/ renders hashed static names
    connection = Redis.from_url(settings.REDIS_URL, socket_timeout=env.WAIT_SECONDS + 10)
    connection.flushdb()

    owner = User.objects.create_user("bench")
    function = create_function(owner)
    trigger = create_endpoint(function)
    endpoint_path = f"/url/{trigger.url_id}/"

    samples = {"login": [], "endpoint": [], "direct": []}
    processes = []
    ok = False
    try:
        worker = env.start_worker(
            [sys.executable, "manage.py", "rqworker", env.LAMBDA_QUEUE, "--name", WORKER_NAME], WORKER_NAME)
        processes.append(worker)
        wait_registered(connection, worker)
        processes.append(start_gunicorn(port := free_port()))
        print("worker and gunicorn started; warming up", flush=True)
        env.warm_up_lambda(function, [worker])
        client = Client(port)

        def login():
            ms, status, _ = client.get("/login/")
            if status != 200:
                raise RuntimeError(f"GET /login/: {status}")
            return ms

        def endpoint():
            ms, status, body = client.get(endpoint_path)
            if status != 200 or body != b'{"ok": true}':
                raise RuntimeError(f"GET {endpoint_path}: {status} {body[:200]!r}")
            return ms

        def direct():
            started = time.perf_counter()
            invocation = invoke_and_wait(function, "{}")
            ms = (time.perf_counter() - started) * 1000
            if invocation.status != Invocation.Status.SUCCEEDED or invocation.cold_start:
                raise RuntimeError(f"direct: {invocation.status} cold={invocation.cold_start}")
            return ms

        measure = {"login": login, "endpoint": endpoint, "direct": direct}
        for _ in range(args.warmup):
            for kind in measure:
                wait_idle(connection)
                measure[kind]()
        connects_before = client.connects

        print(f"measuring: {args.calls} calls of each kind", flush=True)
        for i in range(args.calls):
            for kind in env.rotated(list(measure), i):
                wait_idle(connection)
                samples[kind].append(measure[kind]())
        connects = client.connects - connects_before
        cold = Invocation.objects.filter(function=function, cold_start=True).count()
        if cold != 1:
            raise RuntimeError(f"{cold} cold starts: the function did not stay warm")
        ok = True
    finally:
        stop(processes)
        connection.flushdb()
        if ok and not args.keep:
            shutil.rmtree(env.DATA_DIR, ignore_errors=True)
        else:
            print(f"data and logs kept in {env.DATA_DIR}", file=sys.stderr)

    report(samples, args, connects)


if __name__ == "__main__":
    main()
