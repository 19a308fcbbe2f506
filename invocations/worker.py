"""The RQ worker that runs invocations.

A SimpleWorker runs each job in its own process instead of forking a child per job: the fork would cost
milliseconds and throw away the warm execution environments this process keeps. User code never runs
here; it runs in the sandboxed runtime processes the pool starts.
"""

import atexit
import ctypes
import os
import signal

from django.conf import settings
from rq import SimpleWorker

from invocations import concurrency
from invocations.models import Invocation
from invocations.runtime.pool import pool, remove_stale
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
        for invocation in Invocation.fail_orphans():
            self.log.warning("failed invocation %s: its worker (%s) died", invocation.pk, invocation.worker)
            concurrency.release(invocation.function_id, invocation.pk)
            notify_finished(invocation.pk)
        remove_stale()  # what dead workers on this host left: cgroups, mounted /tmp disks
        pool.evict()  # idle environments past their timeout

    def work(self, *args, **kwargs):
        try:
            return super().work(*args, **kwargs)
        finally:
            pool.close()


def _end_with_the_worker():
    """In each child the worker forks (RQ's scheduler): stop when the worker dies, even by SIGKILL.

    RQ's scheduler process never checks on its parent, so a killed worker would leave it running.
    SIGTERM lets it release its scheduler lock on the way out.
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


os.register_at_fork(after_in_child=_end_with_the_worker)
atexit.register(pool.close)
