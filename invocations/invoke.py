"""Start invocations: write the row, queue the job after commit, and (for sync callers) wait for it."""

import logging

from django.db import transaction
from redis.exceptions import RedisError

from invocations import queue
from invocations.models import Invocation
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


def invoke(function, event, kind=Invocation.Kind.SYNC, source="console", qualifier=None):
    """Record an invocation of `function` with the JSON text `event` and queue it; return the row.

    `qualifier` is $LATEST (None), a version number or an alias (see Function.resolve).
    """
    config = function.resolve(qualifier)
    with transaction.atomic():
        invocation = Invocation.objects.create(
            function=function, version=config["version"], kind=kind, source=source, config=config,
            event=event, memory_size_mb=config["memory_size"],
        )
        if function.reserved_concurrency == 0 and kind == Invocation.Kind.SYNC:
            # Nothing may run: answer at once, as Lambda does, instead of queueing a job to say so.
            invocation.throttle()
        else:
            transaction.on_commit(lambda: _enqueue(invocation))
    return invocation


def _enqueue(invocation):
    # Already after commit (see invoke()): the queue enqueues at once, so a Redis failure is caught here.
    try:
        queue.queue().enqueue_call(
            "invocations.jobs.run_invocation", args=(str(invocation.pk),), job_id=str(invocation.pk),
            timeout=job_timeout(invocation.config),
            # The database holds the outcome, but RQ stores a result faster than it deletes a finished job.
            result_ttl=300, failure_ttl=86400,
        )
    except RedisError as e:
        # The row exists and the user may have seen it: it must end in a definite state, not stay QUEUED.
        log.error("could not queue invocation %s: %s", invocation.pk, e)
        invocation.fail("ServiceException", "The invocation could not be queued: the job queue is unavailable.")


OUTCOME_FIELDS = [
    "status", "result", "error_type", "log", "cold_start", "init_duration_ms", "duration_ms", "billed_duration_ms",
    "max_memory_used_mb", "gb_seconds", "cost", "started_at", "finished_at", "worker",
]


def invoke_and_wait(function, event, source="console", qualifier=None):
    """Invoke synchronously: return the invocation once it has finished (or the wait ran out)."""
    invocation = invoke(function, event, kind=Invocation.Kind.SYNC, source=source, qualifier=qualifier)
    if not invocation.is_finished:
        try:
            wait_finished(invocation.pk, longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS)
        except RedisError as e:
            # Only the wake-up is lost: the worker still records the outcome, and the page polls for it.
            log.warning("lost the wake-up for invocation %s: %s", invocation.pk, e)
        # Not the event and configuration, which the caller has: decoding them back costs more than the rest.
        invocation.refresh_from_db(fields=OUTCOME_FIELDS)
    return invocation
