"""The real parts the suite runs against: RQ worker processes and a gunicorn server on the test database.

Tests that need them use `@pytest.mark.usefixtures("workers")` or ("gunicorn"); both are started once
per session, after pytest-django has created the test database (a SQLite file, so other processes can
open it) and stopped at the end. Their output goes to files under the data directory.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def _child_env(database_path):
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database_path}",
        "REDIS_URL": settings.REDIS_URL,
        "LAMBDA_DATA_DIR": str(settings.DATA_DIR),
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }


def _test_database_path():
    from django.db import connection

    return connection.settings_dict["NAME"]


def _stop(processes):
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def workers(django_db_setup):
    """Start real RQ worker processes (our SimpleWorker subclass) on the test database and queue."""
    import django_rq
    from django.conf import settings
    from rq import Worker

    queue = django_rq.get_queue(settings.INVOCATION_QUEUE)

    log_dir = Path(settings.DATA_DIR) / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = _child_env(_test_database_path())
    processes = []
    for i in range(WORKERS):
        log = open(log_dir / f"worker-{i}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", queue.name, "--name", f"test-worker-{os.getpid()}-{i}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
    deadline = time.monotonic() + 60
    while Worker.count(queue=queue) < WORKERS:
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            _stop(processes)
            pytest.fail(f"RQ workers did not start; see {log_dir}")
        time.sleep(0.1)
    yield processes
    _stop(processes)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gunicorn(django_db_setup, workers):
    """Serve the console with gunicorn (threads, as ./dev run does) on the test database; yield its URL."""
    from django.conf import settings

    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True,
                   env=_child_env(_test_database_path()))
    port = _free_port()
    log = open(Path(settings.DATA_DIR) / "test-logs" / "gunicorn.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "console.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", "1", "--threads", "8"],
        cwd=ROOT, env=_child_env(_test_database_path()), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/status/", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop([process])
                pytest.fail("gunicorn did not start; see test-logs/gunicorn.log")
            time.sleep(0.1)
    yield url
    _stop([process])
