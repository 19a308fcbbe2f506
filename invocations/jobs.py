"""Jobs the RQ workers run. Each takes an id and writes its outcome to the database."""

import logging
import os
import socket
from datetime import timedelta

from django.db import close_old_connections

from invocations import concurrency, queue
from invocations.invoke import WAIT_MARGIN_SECONDS, job_timeout, longest_run_seconds
from invocations.models import Invocation
from invocations.runtime.pool import pool
from invocations.wakeup import notify_finished

log = logging.getLogger(__name__)

# Lambda retries a throttled asynchronous event with a backoff from 1 s up to 5 minutes.
THROTTLE_BACKOFF_MAX_SECONDS = 300


def run_invocation(invocation_id, throttled=0):
    """Claim the invocation, run it in an execution environment, record the outcome, wake the caller.

    `throttled` counts how often an asynchronous invocation already found its function at its
    reserved concurrency.
    """
    close_old_connections()
    invocation = Invocation.claim(invocation_id, worker_name=f"{socket.gethostname()}:{os.getpid()}")
    if invocation is None:
        return "already handled"  # by another worker, or gone
    limit = invocation.reserved_concurrency
    leased = limit is not None
    if leased:
        lease_seconds = longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS
        if not concurrency.acquire(invocation.function_id, invocation_id, limit, lease_seconds):
            return _throttle(invocation, throttled)
    try:
        try:
            outcome = pool.run(invocation.config, invocation.request_id, invocation.event)
            invocation.finish(outcome)
        except BaseException as e:
            # Also SystemExit (a forced worker shutdown) and RQ's job timeout: the row must not stay RUNNING.
            log.exception("invocation %s failed inside the platform", invocation_id)
            invocation.fail("ServiceException", f"The platform failed to run the invocation: {e!r}")
            raise
        finally:
            if invocation.kind == Invocation.Kind.SYNC:  # nobody waits for an asynchronous one
                notify_finished(invocation_id)
    finally:
        if leased:
            concurrency.release(invocation.function_id, invocation_id)
    # Housekeeping after the caller has been woken: stopping an old environment takes milliseconds.
    pool.evict()
    return invocation.status


def _throttle(invocation, throttled):
    """The function is at its reserved concurrency: a sync caller gets 429, an async event waits and retries."""
    if invocation.kind == Invocation.Kind.SYNC:
        invocation.throttle()
        notify_finished(invocation.pk)
        return invocation.status
    invocation.unclaim()
    delay = min(THROTTLE_BACKOFF_MAX_SECONDS, 2 ** throttled)
    queue.queue().enqueue_in(
        timedelta(seconds=delay), "invocations.jobs.run_invocation", args=(invocation.request_id, throttled + 1),
        job_id=f"{invocation.pk}-throttled-{throttled + 1}", timeout=job_timeout(invocation.config),
        result_ttl=300, failure_ttl=86400,
    )
    return f"throttled, retrying in {delay} s"
