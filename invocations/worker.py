"""The RQ worker that runs invocations.

A SimpleWorker runs each job in its own process instead of forking a child per job: the fork would cost
milliseconds and throw away the warm execution environments this process keeps. User code never runs
here; it runs in the sandboxed runtime processes the pool starts.
"""

import atexit

from rq import SimpleWorker

from invocations.runtime.pool import pool


class LambdaWorker(SimpleWorker):
    def work(self, *args, **kwargs):
        try:
            return super().work(*args, **kwargs)
        finally:
            pool.close()


atexit.register(pool.close)
