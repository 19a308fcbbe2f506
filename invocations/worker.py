"""The RQ worker that runs invocations.

A SimpleWorker runs each job in its own process instead of forking a child per job: the fork would cost
milliseconds and throw away the warm execution environments this process keeps. User code never runs
here; it runs in the sandboxed runtime processes the pool starts.
"""

import atexit
import ctypes
import os
import signal
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from rq import SimpleWorker

from invocations import asynchronous, concurrency, lost
from invocations.invoke import job_timeout
from invocations.models import Invocation
from invocations.runtime import sandbox
from invocations.runtime.pool import pool, remove_stale
from invocations.sources import invocation_finished
from invocations.wakeup import notify_finished


class LambdaWorker(SimpleWorker):
    def __init__(self, *args, **kwargs):
        # RQ's default is 10 minutes; an orphaned invocation should not look alive for that long.
        kwargs.setdefault("maintenance_interval", settings.WORKER_MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self):
        # RQ waits up to worker_ttl - 15 s (405 s) for a job before it looks at its maintenance clock;
        # an idle worker must wake each interval to sweep orphans and stop expired environments.
        return min(super().dequeue_timeout, self.maintenance_interval)

    def run_maintenance_tasks(self):
        """RQ's periodic upkeep (at start, then every maintenance interval), plus ours."""
        super().run_maintenance_tasks()
        # RQ's dequeue loop, which calls this, survives only Redis errors: a database restart or a locked
        # SQLite file must not end the worker, and one failing step must not skip the others.
        for step in (self.sweep_orphans, self.sweep_lost_jobs, remove_stale, pool.evict):
            try:
                close_old_connections()
                step()
            except Exception:
                self.log.exception("maintenance step %s failed; trying again at the next pass", step.__name__)

    def sweep_orphans(self):
        for invocation in Invocation.fail_orphans(then=_after_failure, stuck=stuck):
            self.log.warning("failed invocation %s: its worker (%s) died or it ran past every limit",
                             invocation.pk, invocation.worker)
            concurrency.release(invocation.function_id, invocation.pk)
            notify_finished(invocation.pk)

    def sweep_lost_jobs(self):
        for invocation in lost.requeue_events():
            self.log.warning("queued asynchronous invocation %s again: its job was lost", invocation.pk)
        for invocation in lost.fail_sync():
            self.log.warning("failed synchronous invocation %s: its job was lost", invocation.pk)

    def work(self, *args, **kwargs):
        sandbox.layers()  # detect the host's isolation layers now, and load the egress filter
        try:
            return super().work(*args, **kwargs)
        finally:
            pool.close()


def stuck(invocation):
    """Whether a RUNNING invocation has outlived any attempt: RQ's job timeout ends every attempt by
    job_timeout(), so one still RUNNING a minute later was never recorded (the database failed under its
    worker, or its host is gone)."""
    limit = timedelta(seconds=job_timeout(invocation.config) + 60)
    return invocation.started_at is not None and timezone.now() - invocation.started_at > limit


def _after_failure(invocation):
    invocation_finished(invocation)
    # A worker dying mid-attempt is a failed attempt: the event is retried, never lost.
    if invocation.kind == Invocation.Kind.ASYNC:
        asynchronous.conclude(invocation)


def _in_forked_child():
    """In each child the worker forks (RQ's scheduler): stop when the worker dies, even by SIGKILL, and
    let go of the environments' uid locks and pipes.

    RQ's scheduler process never checks on its parent, so a killed worker would leave it running.
    SIGTERM lets it release its scheduler lock on the way out.
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    pool.forget()


os.register_at_fork(after_in_child=_in_forked_child)
atexit.register(pool.close)
