"""Jobs the RQ workers run. Each takes an id and writes its outcome to the database."""

import logging
import os
import socket
from datetime import timedelta

from django.db import close_old_connections, transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq import get_current_job

from invocations import concurrency, queue
from invocations.asynchronous import age_seconds, conclude, deliver, expire, maximum_event_age
from invocations.invoke import WAIT_MARGIN_SECONDS, job_timeout, longest_run_seconds, whole_second_after
from invocations.models import DeadLetter, Invocation
from invocations.sources import invocation_finished
from invocations.runtime.pool import pool
from invocations.wakeup import notify_finished

log = logging.getLogger(__name__)

# Lambda retries a throttled asynchronous event with a backoff from 1 s up to 5 minutes, for at most the
# maximum event age.
THROTTLE_BACKOFF_MAX_SECONDS = 300


def run_invocation(invocation_id, throttled=0):
    """Claim the invocation, run it in an execution environment, record the outcome, wake the caller.

    `throttled` counts how often an asynchronous invocation already found its function at its
    reserved concurrency.
    """
    close_old_connections()
    job = get_current_job()  # None when called outside RQ (tests)
    invocation = Invocation.claim(invocation_id, worker_name=f"{socket.gethostname()}:{os.getpid()}",
                                  job_id=job.id if job is not None else None)
    if invocation is None:
        return "already handled"  # by another worker, or gone
    asynchronous = invocation.kind == Invocation.Kind.ASYNC
    limit = invocation.reserved_concurrency
    leased = False
    try:
        if asynchronous and age_seconds(invocation) > maximum_event_age(invocation):
            with transaction.atomic():
                expire(invocation)
                invocation_finished(invocation)
            return invocation.status
        if limit is not None:
            lease_seconds = longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS
            leased = concurrency.acquire(invocation.function_id, invocation_id, limit, lease_seconds)
            if not leased:
                return _throttle(invocation, throttled)
        outcome = pool.run(invocation.config, invocation.request_id, invocation.event,
                           client_context=invocation.client_context)
        with transaction.atomic():
            # Not finished (the sweep failed it meanwhile, taking its retry along): nothing follows here.
            if invocation.finish(outcome):
                invocation_finished(invocation)
                if asynchronous:
                    conclude(invocation)
    except BaseException as e:
        # Also a Redis failure, SystemExit (a forced worker shutdown) and RQ's job timeout: the row must
        # not stay RUNNING (or QUEUED with no job behind it). An asynchronous event gets its retries.
        log.exception("invocation %s failed inside the platform", invocation_id)
        _fail(invocation, e)
        raise
    finally:
        # The slot first: a caller woken with its answer may invoke again at once.
        if leased:
            concurrency.release(invocation.function_id, invocation_id)
        if not asynchronous:  # nobody waits for an asynchronous one
            notify_finished(invocation_id)
    # Housekeeping after the caller has been woken: stopping an old environment takes milliseconds.
    pool.evict()
    return invocation.status


def _fail(invocation, error):
    """Fail the attempt, and queue an asynchronous event's retry or deliver it, in one transaction.

    If even that fails (the database went away), the row stays RUNNING: the workers' sweep fails it, with
    its retry, once it has run past every limit (worker.stuck).
    """
    try:
        close_old_connections()  # a connection the error broke is replaced
        with transaction.atomic():
            failed = invocation.fail("ServiceException", f"The platform failed to run the invocation: {error!r}",
                                     running_on=invocation.worker)
            if failed:
                invocation_finished(invocation)
                if invocation.kind == Invocation.Kind.ASYNC:
                    conclude(invocation)
    except Exception:
        log.exception("could not record the failure of invocation %s; the workers' sweep will", invocation.pk)


def _throttle(invocation, throttled):
    """The function is at its reserved concurrency: a sync caller gets 429, an async event waits and retries
    until it would be older than its maximum event age, then it ends THROTTLED and goes to its failure
    destination."""
    delay = min(THROTTLE_BACKOFF_MAX_SECONDS, 2 ** throttled)
    if invocation.kind == Invocation.Kind.SYNC:
        with transaction.atomic():
            invocation.throttle()  # the caller (run_invocation) wakes a sync caller
            invocation_finished(invocation)
        return invocation.status
    if age_seconds(invocation) + delay > maximum_event_age(invocation):
        with transaction.atomic():
            invocation.throttle()
            invocation_finished(invocation)
            deliver(invocation, DeadLetter.Condition.EVENT_AGE_EXCEEDED)
        return invocation.status
    retry_at = whole_second_after(timezone.now() + timedelta(seconds=delay))
    job_id = f"{invocation.pk}-throttled-{throttled + 1}"
    invocation.unclaim(job_id, retry_at)
    try:
        queue.queue().enqueue_at(
            retry_at, "invocations.jobs.run_invocation", args=(invocation.request_id, throttled + 1),
            job_id=job_id, timeout=job_timeout(invocation.config), result_ttl=300, failure_ttl=86400,
        )
    except RedisError as e:
        log.error("could not queue throttled invocation %s again: %s", invocation.pk, e)  # the sweep will
    return f"throttled, retrying in {delay} s"
