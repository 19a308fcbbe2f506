"""The real parts the suite runs against: RQ worker processes and a gunicorn server on the test database.

Tests that need them use `@pytest.mark.usefixtures("workers")` or ("gunicorn"); both are started once
per session, after pytest-django has created the test database (a SQLite file, so other processes can
open it) and stopped at the end. Their output goes to files under the data directory.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ROOT, child_env, log_dir, start_worker, stop

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

WORKERS = 2


@pytest.fixture(scope="session")
def workers(django_db_setup):
    """Start real RQ worker processes (our SimpleWorker subclass) on the test database and queue."""
    from django.conf import settings

    processes = []
    try:
        for i in range(WORKERS):
            processes.append(start_worker(settings.INVOCATION_QUEUE, f"worker-{i}"))
    except RuntimeError as e:
        stop(processes)
        pytest.fail(str(e))
    yield processes
    stop(processes)
    # Stopped workers clean up after their environments: no /tmp disk of theirs may stay mounted.
    leftovers = scratch_mounts()
    for mountpoint in leftovers:
        subprocess.run(["umount", "-l", mountpoint], check=False)
    assert not leftovers, f"stopped workers left {len(leftovers)} /tmp disks mounted: {leftovers[:3]}"


@pytest.fixture(scope="class")
def solo_worker(request, django_db_setup):
    """One worker of the class's own, on its own queue, with the settings in the class's `worker_env`.

    The class's tests send invocations there with `self.enterContext(use_queue(self.queue))`.
    """
    from django.conf import settings

    # Module and class: two modules may have classes of the same name, and a worker a test SIGKILLed stays
    # registered in Redis (under its name) for minutes.
    name = f"{request.cls.__module__.rpartition('.')[2]}-{request.cls.__name__}"
    queue = f"{settings.INVOCATION_QUEUE}-{name}"
    request.cls.queue = queue
    request.cls.worker = start_worker(queue, name, **request.cls.worker_env)
    yield
    stop([request.cls.worker])


def scratch_mounts():
    from django.conf import settings

    root = f"{settings.SCRATCH_DIR}/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gunicorn(django_db_setup, workers):
    """Serve the console with gunicorn (threads, as ./dev run does) on the test database; yield its URL."""
    from django.conf import settings

    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True,
                   env=child_env())
    port = _free_port()
    log = open(log_dir() / "gunicorn.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "console.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", "1", "--threads", "8",
         "--keep-alive", "30"],  # as ./dev run: an SDK client reuses its connection
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/status/", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop([process])
                pytest.fail("gunicorn did not start; see test-logs/gunicorn.log")
            time.sleep(0.1)
    yield url
    stop([process])
