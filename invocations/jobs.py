"""Jobs the RQ workers run. Each takes an id and writes its outcome to the database."""

import logging
import os
import socket
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from invocations import concurrency, queue
from invocations.invoke import WAIT_MARGIN_SECONDS, job_timeout, longest_run_seconds
from invocations.models import Invocation
from invocations.runtime.pool import pool
from invocations.wakeup import notify_finished

log = logging.getLogger(__name__)

# Lambda retries a throttled asynchronous event with a backoff from 1 s up to 5 minutes, for at most the
# maximum event age (6 hours by default).
THROTTLE_BACKOFF_MAX_SECONDS = 300
MAX_EVENT_AGE_SECONDS = 6 * 3600


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
    leased = False
    try:
        if limit is not None:
            lease_seconds = longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS
            leased = concurrency.acquire(invocation.function_id, invocation_id, limit, lease_seconds)
            if not leased:
                return _throttle(invocation, throttled)
        outcome = pool.run(invocation.config, invocation.request_id, invocation.event)
        invocation.finish(outcome)
    except BaseException as e:
        # Also a Redis failure, SystemExit (a forced worker shutdown) and RQ's job timeout: the row must
        # not stay RUNNING (or QUEUED with no job behind it).
        log.exception("invocation %s failed inside the platform", invocation_id)
        invocation.fail("ServiceException", f"The platform failed to run the invocation: {e!r}")
        raise
    finally:
        # The slot first: a caller woken with its answer may invoke again at once.
        if leased:
            concurrency.release(invocation.function_id, invocation_id)
        if invocation.kind == Invocation.Kind.SYNC:  # nobody waits for an asynchronous one
            notify_finished(invocation_id)
    # Housekeeping after the caller has been woken: stopping an old environment takes milliseconds.
    pool.evict()
    return invocation.status


def _throttle(invocation, throttled):
    """The function is at its reserved concurrency: a sync caller gets 429, an async event waits and retries
    until it is older than Lambda's maximum event age, then it is dropped as throttled."""
    delay = min(THROTTLE_BACKOFF_MAX_SECONDS, 2 ** throttled)
    created_at = Invocation.objects.filter(pk=invocation.pk).values_list("created_at", flat=True).get()
    age = (timezone.now() - created_at).total_seconds()
    if invocation.kind == Invocation.Kind.SYNC or age + delay > MAX_EVENT_AGE_SECONDS:
        invocation.throttle()  # the caller (run_invocation) wakes a sync caller
        return invocation.status
    # Queue the retry first: if that fails, the row is still claimed and run_invocation fails it.
    queue.queue().enqueue_in(
        timedelta(seconds=delay), "invocations.jobs.run_invocation", args=(invocation.request_id, throttled + 1),
        job_id=f"{invocation.pk}-throttled-{throttled + 1}", timeout=job_timeout(invocation.config),
        result_ttl=300, failure_ttl=86400,
    )
    invocation.unclaim()
    return f"throttled, retrying in {delay} s"
