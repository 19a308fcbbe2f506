"""Workers that die or are stopped mid-invocation (§6 item 37), with real worker processes of the test's own.

Each test starts its own `manage.py rqworker` processes (the command line and environment conftest's
workers use) on queues of its own, sends one invocation to one of them, and then kills or stops that
worker while the handler runs. What must hold: the sandbox never outlives its worker, and the invocation
never stays RUNNING.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import django_rq
from django.conf import settings
from django.test import TransactionTestCase, override_settings
from rq import Queue, Worker

from invocations.invoke import invoke
from invocations.models import Invocation
from tests.base import World, handler_zip
from tests.processes import ROOT, child_env, host_pids, host_stat, log_dir, marked_processes, wait_for

MAINTENANCE_INTERVAL = 2

# The handler starts a child whose command line carries the test's marker, so the test knows from the
# host's /proc that the handler is running, then waits far longer than any test.
SLEEPER = """
    import subprocess, time
    def handler(event, context):
        subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(1000)", event["marker"]])
        time.sleep(1000)
"""


# Host-side views of processes


def _alive(process):
    """`process` is (pid, starttime): alive if that very process still runs (not a zombie, not a reused pid)."""
    pid, started = process
    stat = host_stat(pid)
    return stat is not None and stat[0] != "Z" and stat[2] == started


def _descendants(root):
    """Return {(pid, starttime)} of every live process below host pid `root`."""
    children = {}
    for pid in host_pids():
        stat = host_stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append((pid, stat[2]))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _cgroup_leftovers(worker_pid):
    """Return the memory cgroups named after `worker_pid` (env-<pid>-…) under this process's cgroup."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        elif line.startswith("0::"):
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
        else:
            continue
        found += [str(p) for p in base.glob(f"env-{worker_pid}-*")]
    return found


def _mount_leftovers(worker_pid):
    """Return the mount points named after `worker_pid` (a scratch /tmp disk: …/env-<pid>-…)."""
    needle = f"/env-{worker_pid}-"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if needle in line.split()[4]]


class WorkerFaultTests(World, TransactionTestCase):
    def setUp(self):
        self.make_world()
        self.run_id = uuid.uuid4().hex[:8]
        self.marker = f"fault-marker-{self.run_id}"
        self.connection = django_rq.get_connection(settings.INVOCATION_QUEUE)

    # Workers of the test's own

    def start_worker(self, label, maintenance_interval=MAINTENANCE_INTERVAL):
        """Start `manage.py rqworker` on a queue of its own; return (process, queue name, log path)."""
        queue = f"{settings.INVOCATION_QUEUE}-{label}-{self.run_id}"
        name = f"fault-{label}-{self.run_id}"
        log_path = log_dir() / f"{name}.log"
        env = child_env(INVOCATION_QUEUE=queue, WORKER_MAINTENANCE_INTERVAL=str(maintenance_interval))
        with open(log_path, "w") as log:
            # As ./dev run starts its workers (with RQ's scheduler, a forked child of the worker).
            process = subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", queue, "--with-scheduler", "--name", name],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.addCleanup(self._stop, process)
        return process, queue, log_path

    def _kill_leftovers(self, processes):
        for pid, started in processes:
            if _alive((pid, started)):
                os.kill(pid, signal.SIGKILL)

    def _stop(self, process):
        """Stop a worker still running: SIGTERM (RQ then stops its scheduler too), SIGKILL if it lingers."""
        forks = {p for p in _descendants(process.pid) if b"rqworker" in _cmdline(p[0])}
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        wait_for(lambda: not [p for p in forks if _alive(p)], 3)
        self._kill_leftovers(forks)

    def wait_registered(self, *started):
        for process, queue, log_path in started:
            listening = Queue(queue, connection=self.connection)
            ok = wait_for(lambda: process.poll() is not None or Worker.count(queue=listening), 30)
            self.assertIsNone(process.poll(), f"worker exited; see {log_path}")
            self.assertTrue(ok, f"worker did not register; see {log_path}")

    def send(self, function, queue):
        """Invoke `function` through `queue` only (invoke() reads the queue's name when it enqueues)."""
        queues = {**settings.RQ_QUEUES, queue: settings.RQ_QUEUES[settings.INVOCATION_QUEUE]}
        with override_settings(INVOCATION_QUEUE=queue, RQ_QUEUES=queues):
            return invoke(function, json.dumps({"marker": self.marker}))

    def wait_running(self, invocation, worker):
        """Wait until the handler runs on `worker`; return the sandbox's processes (pid, starttime)."""
        marked = wait_for(lambda: marked_processes(self.marker), 20)
        self.assertTrue(marked, "the handler never started")
        invocation.refresh_from_db()
        self.assertEqual(invocation.status, Invocation.Status.RUNNING)
        self.assertEqual(invocation.worker, f"{socket.gethostname()}:{worker.pid}")
        below = _descendants(worker.pid)
        self.assertTrue(marked <= below, "the handler's child is not below the worker")
        # RQ's scheduler is a fork of the worker, not part of any sandbox.
        schedulers = {p for p in below if b"rqworker" in _cmdline(p[0])}
        self.addCleanup(self._kill_leftovers, schedulers)
        sandbox = below - schedulers
        # At least the launcher, the runtime and the handler's child.
        self.assertGreaterEqual(len(sandbox), 3, sandbox)
        return sandbox | marked

    def assert_gone(self, processes, within):
        started = time.monotonic()
        left = wait_for(lambda: not [p for p in processes if _alive(p)] or None, within)
        self.assertTrue(left, f"still alive {within} s later: {[p for p in processes if _alive(p)]}")
        self.assertEqual(marked_processes(self.marker), set())
        return time.monotonic() - started

    def wait_finished(self, invocation, within):
        started = time.monotonic()

        def finished():
            invocation.refresh_from_db()
            return invocation.is_finished
        self.assertTrue(wait_for(finished, within, 0.1), f"invocation still {invocation.status} after {within} s")
        return time.monotonic() - started

    # The tests

    def test_a_killed_worker_takes_its_sandbox_along_and_a_sweep_fails_its_invocation(self):
        doomed = self.start_worker("doomed")
        # Another worker of this host, already past the sweep it makes when it starts, so it is its
        # periodic maintenance that has to find the orphan.
        sweeper = self.start_worker("sweeper")
        self.wait_registered(doomed, sweeper)
        self.assertTrue(wait_for(lambda: "cleaning registries" in sweeper[2].read_text(), 10),
                        "the sweeper's first maintenance pass never ran")
        fn = self.create_function(handler_zip(SLEEPER), name="killed-mid-run", timeout=60)
        invocation = self.send(fn, doomed[1])
        worker = doomed[0]
        sandbox = self.wait_running(invocation, worker)

        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # bubblewrap's --die-with-parent: the whole sandbox goes with its worker, at once.
        self.assert_gone(sandbox, within=3)
        # The worker could not record anything; the other worker's sweep must.
        invocation.refresh_from_db()
        self.assertEqual(invocation.status, Invocation.Status.RUNNING)
        bound = 2 * MAINTENANCE_INTERVAL + 5
        self.wait_finished(invocation, within=bound)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "ServiceException")
        error = json.loads(invocation.result)
        self.assertEqual(error["errorType"], "ServiceException")
        self.assertEqual(error["requestId"], str(invocation.id))
        self.assertIn("stopped before it finished", error["errorMessage"])
        self.assertIsNotNone(invocation.finished_at)
        # What the dead worker's environment held on the host is cleaned up by the same sweep.
        self.assertTrue(wait_for(lambda: not _cgroup_leftovers(worker.pid), 2), _cgroup_leftovers(worker.pid))
        self.assertEqual(_mount_leftovers(worker.pid), [])
        self.assertIsNone(sweeper[0].poll())

    def test_a_stopped_worker_finishes_the_running_invocation_first(self):
        # SIGTERM is RQ's warm shutdown: the invocation runs to its end (here its timeout), then the
        # worker stops its environments and exits.
        started = self.start_worker("warm")
        self.wait_registered(started)
        fn = self.create_function(handler_zip(SLEEPER), name="warm-shutdown", timeout=2)
        invocation = self.send(fn, started[1])
        worker = started[0]
        sandbox = self.wait_running(invocation, worker)

        worker.send_signal(signal.SIGTERM)
        self.wait_finished(invocation, within=2 + 3)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertIn("Task timed out after 2.00 seconds", invocation.log)
        self.assertEqual(worker.wait(timeout=10), 0)
        self.assert_gone(sandbox, within=3)
        self.assertEqual(_cgroup_leftovers(worker.pid), [])
        self.assertEqual(_mount_leftovers(worker.pid), [])

    def test_a_worker_shut_down_cold_fails_the_running_invocation(self):
        # A second SIGTERM (more than a second after the first: RQ ignores quicker repeats) is a cold
        # shutdown: SystemExit in the middle of the invocation. It must end FAILED, and the sandbox go.
        started = self.start_worker("cold")
        self.wait_registered(started)
        fn = self.create_function(handler_zip(SLEEPER), name="cold-shutdown", timeout=60)
        invocation = self.send(fn, started[1])
        worker = started[0]
        sandbox = self.wait_running(invocation, worker)

        worker.send_signal(signal.SIGTERM)
        time.sleep(1.2)
        invocation.refresh_from_db()
        self.assertEqual(invocation.status, Invocation.Status.RUNNING)  # the warm shutdown waits for it
        worker.send_signal(signal.SIGTERM)
        self.wait_finished(invocation, within=3)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "ServiceException")
        error = json.loads(invocation.result)
        self.assertEqual(error["requestId"], str(invocation.id))
        worker.wait(timeout=10)
        self.assert_gone(sandbox, within=3)
        self.assertEqual(_cgroup_leftovers(worker.pid), [])
        self.assertEqual(_mount_leftovers(worker.pid), [])

    def test_a_killed_worker_takes_its_idle_environments_along(self):
        # Between invocations an environment idles (frozen) with whatever the handler left running.
        started = self.start_worker("idle")
        self.wait_registered(started)
        fn = self.create_function(handler_zip("""
            import subprocess
            def handler(event, context):
                subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(1000)", event["marker"]])
                return "left a child behind"
        """), name="idle-environment", timeout=3)
        invocation = self.send(fn, started[1])
        worker = started[0]
        self.wait_finished(invocation, within=15)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        self.assertEqual(invocation.worker, f"{socket.gethostname()}:{worker.pid}")
        marked = marked_processes(self.marker)
        self.assertTrue(marked, "the handler's child is not in the idle environment")
        below = _descendants(worker.pid)
        self.assertTrue(marked <= below)
        schedulers = {p for p in below if b"rqworker" in _cmdline(p[0])}
        self.addCleanup(self._kill_leftovers, schedulers)
        environment = below - schedulers

        worker.send_signal(signal.SIGKILL)
        worker.wait()
        self.assert_gone(environment, within=3)
