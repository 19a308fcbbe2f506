"""Start and stop the real processes tests run against: RQ workers (and, in conftest, gunicorn)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env(**overrides):
    """The environment of a process serving the test database, Redis and data directory."""
    from django.conf import settings
    from django.db import connection

    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "LAMBDA_DATA_DIR": str(settings.DATA_DIR),
        "DJANGO_SETTINGS_MODULE": "console.settings",
        **overrides,
    }


def log_dir():
    from django.conf import settings

    path = Path(settings.DATA_DIR) / "test-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_worker(queue_name, name, **env):
    """Start one of our RQ workers (with the scheduler, as ./dev run does) on `queue_name`; wait until it listens.

    `env` overrides settings for that worker only, e.g. ENVIRONMENT_IDLE_SECONDS="1".
    """
    import django_rq
    from django.conf import settings
    from rq import Worker

    log = open(log_dir() / f"{name}.log", "w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", queue_name, "--with-scheduler", "--name", f"{name}-{os.getpid()}"],
        cwd=ROOT, env=child_env(INVOCATION_QUEUE=queue_name, **env), stdout=log, stderr=subprocess.STDOUT,
    )
    connection = django_rq.get_connection(settings.INVOCATION_QUEUE)
    deadline = time.monotonic() + 60
    while not any(w.name == f"{name}-{os.getpid()}" for w in Worker.all(connection=connection)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop([process])
            raise RuntimeError(f"RQ worker {name} did not start; see {log.name}")
        time.sleep(0.05)
    return process


def host_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def host_stat(pid):
    """Return (state, ppid, starttime) of a host pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def marked_processes(marker):
    """Return {(pid, starttime)} of the live host processes whose command line contains `marker`."""
    found = set()
    for pid in host_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() not in f.read():
                    continue
        except OSError:
            continue
        stat = host_stat(pid)
        if stat is not None and stat[0] != "Z":
            found.add((pid, stat[2]))
    return found


def wait_for(predicate, timeout, interval=0.05):
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def use_queue(queue_name):
    """Settings that send invocations to `queue_name` (a worker of start_worker's listens there)."""
    from django.conf import settings
    from django.test import override_settings

    return override_settings(
        INVOCATION_QUEUE=queue_name, RQ_QUEUES={queue_name: settings.RQ_QUEUES[settings.INVOCATION_QUEUE]}
    )


def stop(processes):
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    # A worker stopping kills and cleans up its idle environments (cgroups, /tmp disks) first.
    deadline = time.monotonic() + 30
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
