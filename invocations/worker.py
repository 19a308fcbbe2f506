"""The RQ worker that runs invocations.

A SimpleWorker runs each job in its own process instead of forking a child per job: the fork would cost
milliseconds and throw away the warm execution environments this process keeps. User code never runs
here; it runs in the sandboxed runtime processes the pool starts.
"""

import atexit

from django.conf import settings
from rq import SimpleWorker

from invocations.models import Invocation
from invocations.runtime.pool import pool
from invocations.wakeup import notify_finished


class LambdaWorker(SimpleWorker):
    def __init__(self, *args, **kwargs):
        # RQ's default is 10 minutes; an orphaned invocation should not look alive for that long.
        kwargs.setdefault("maintenance_interval", settings.WORKER_MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self):
        """RQ's periodic upkeep (at start, then every maintenance interval), plus our orphan sweep."""
        super().run_maintenance_tasks()
        for invocation in Invocation.fail_orphans():
            self.log.warning("failed invocation %s: its worker (%s) died", invocation.pk, invocation.worker)
            notify_finished(invocation.pk)

    def work(self, *args, **kwargs):
        try:
            return super().work(*args, **kwargs)
        finally:
            pool.close()


atexit.register(pool.close)
