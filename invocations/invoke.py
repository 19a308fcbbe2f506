"""Start invocations: write the row, queue the job after commit, and (for sync callers) wait for it."""

import logging
from datetime import timedelta

from django.db import transaction
from redis.exceptions import RedisError

from invocations import queue
from functions.models import event_invoke_config, payload_too_large
from invocations.models import Invocation
from invocations.sources import invocation_finished
from invocations.runtime.environment import INIT_MIN_SECONDS
from invocations.wakeup import wait_finished

log = logging.getLogger(__name__)

# Room for the queue and the worker's own work on top of the function's init and run time.
WAIT_MARGIN_SECONDS = 30


def longest_run_seconds(config):
    """Return how long an invocation may take in its environment: init (on a cold start), then the run."""
    return max(INIT_MIN_SECONDS, config["timeout"]) + config["timeout"]


def job_timeout(config):
    # RQ's own timeout is only a backstop: the environment enforces the function's timeout itself.
    return longest_run_seconds(config) + WAIT_MARGIN_SECONDS + 60


def whole_second_after(moment):
    """`moment` rounded up to a whole second: RQ's scheduler drops the fraction, which would run a job
    up to a second early."""
    return moment.replace(microsecond=0) + timedelta(seconds=1) if moment.microsecond else moment


class RequestTooLarge(Exception):
    """Lambda's RequestTooLargeException (HTTP 413): the event is over the invocation type's limit."""

    error_type = "RequestTooLargeException"


def invoke(function, event, kind=Invocation.Kind.SYNC, source="console", qualifier=None, trigger=None,
           destination_depth=0, client_context=None, client_request_id=None):
    """Record an invocation of `function` with the JSON text `event` and queue it; return the row.

    `qualifier` is $LATEST (None), a version number or an alias (see Function.resolve). Raise
    RequestTooLarge for an event over Lambda's payload limit, before anything is written.
    `destination_depth` counts the destinations that led to this one (invocations.asynchronous).
    `client_context` (a dict) becomes the handler's context.client_context; `client_request_id` is the
    Lambda API caller's id for its call (IntegrityError if the function already has an invocation with it).
    """
    asynchronous = kind == Invocation.Kind.ASYNC
    too_large = payload_too_large(len(event.encode()), asynchronous)
    if too_large:
        raise RequestTooLarge(too_large)
    config = function.resolve(qualifier)
    config["mounts"] = function.mounts  # the buckets its notifications come from, for every version
    if asynchronous:
        # What happens to the event after a failure is decided when it is queued, like what runs.
        config["async"] = {**event_invoke_config(function, qualifier), "depth": destination_depth}
    with transaction.atomic():
        invocation = Invocation(
            function=function, version=config["version"], qualifier=qualifier or "", kind=kind, source=source,
            trigger=trigger, config=config, event=event, memory_size_mb=config["memory_size"],
            client_context=client_context, client_request_id=client_request_id,
        )
        invocation.job_id = str(invocation.pk)
        if asynchronous:
            invocation.retry_at = invocation.created_at  # due now; the workers' sweep looks after it
        invocation.save(force_insert=True)
        if function.reserved_concurrency == 0 and not asynchronous:
            # Nothing may run: answer at once, as Lambda does, instead of queueing a job to say so.
            invocation.throttle()
            invocation_finished(invocation)
        else:
            transaction.on_commit(lambda: enqueue(invocation))
    return invocation


def enqueue(invocation, at=None):
    """Queue the job for the invocation's next attempt (now, or at the time `at`).

    Call after the row is committed. An asynchronous event that cannot be queued stays QUEUED: the
    workers' sweep queues it once Redis answers again. A synchronous caller is told at once.
    """
    try:
        q = queue.queue()
        options = dict(
            args=(str(invocation.pk),), job_id=invocation.job_id, timeout=job_timeout(invocation.config),
            # The database holds the outcome, but RQ stores a result faster than it deletes a finished job.
            result_ttl=300, failure_ttl=86400,
        )
        if at is None:
            q.enqueue_call("invocations.jobs.run_invocation", **options)
        else:
            q.enqueue_at(whole_second_after(at), "invocations.jobs.run_invocation", **options)
    except RedisError as e:
        log.error("could not queue invocation %s: %s", invocation.pk, e)
        if invocation.kind == Invocation.Kind.SYNC:
            # The row exists and the user may have seen it: it must end in a definite state.
            with transaction.atomic():
                if invocation.fail("ServiceException",
                                   "The invocation could not be queued: the job queue is unavailable."):
                    invocation_finished(invocation)


OUTCOME_FIELDS = [
    "status", "result", "error_type", "log", "cold_start", "init_duration_ms", "duration_ms", "billed_duration_ms",
    "max_memory_used_mb", "gb_seconds", "cost", "started_at", "finished_at", "worker", "attempts",
]


def invoke_and_wait(function, event, source="console", qualifier=None, trigger=None, client_context=None,
                    client_request_id=None):
    """Invoke synchronously: return the invocation once it has finished (or the wait ran out)."""
    invocation = invoke(function, event, kind=Invocation.Kind.SYNC, source=source, qualifier=qualifier,
                        trigger=trigger, client_context=client_context, client_request_id=client_request_id)
    return wait(invocation)


def wait(invocation):
    """Wait until the invocation has finished (or the wait ran out); return it with its outcome."""
    if not invocation.is_finished:
        try:
            wait_finished(invocation.pk, longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS)
        except RedisError as e:
            # Only the wake-up is lost: the worker still records the outcome, and the page polls for it.
            log.warning("lost the wake-up for invocation %s: %s", invocation.pk, e)
        # Not the event and configuration, which the caller has: decoding them back costs more than the rest.
        invocation.refresh_from_db(fields=OUTCOME_FIELDS)
    return invocation
