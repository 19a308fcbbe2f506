"""Invocations whose RQ job is gone: Redis restarted without persistence, was down when the job was
queued, or the job failed before it could claim its row (the database was down, its worker died).

The database is the record, so the workers' upkeep looks for queued rows without a live job after
LOST_JOB_AFTER seconds: an asynchronous event is queued again (it must never be lost); a synchronous
invocation is failed, so that its caller's wait ends and a batch source gets its records back.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from invocations import queue
from invocations.invoke import enqueue
from invocations.models import Invocation
from invocations.sources import invocation_finished
from invocations.wakeup import notify_finished

log = logging.getLogger(__name__)

# Jobs still on their way to a worker; any other state (finished, failed, stopped, canceled, gone)
# means the row has no job to run it.
LIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
BATCH = 500


def requeue_events(now=None):
    """Queue again the due asynchronous events that have no live job; return them."""
    overdue = (now or timezone.now()) - timedelta(seconds=settings.LOST_JOB_AFTER)
    waiting = Invocation.objects.filter(status=Invocation.Status.QUEUED, kind=Invocation.Kind.ASYNC,
                                        retry_at__lt=overdue)
    requeued = []
    for pk, job_id in _without_live_job(waiting):
        new_job_id = f"{pk}-requeued-{uuid.uuid4().hex[:12]}"
        # Only if nobody moved it on meanwhile (another worker's sweep, a late claim): one new job at most.
        if Invocation.objects.filter(pk=pk, status=Invocation.Status.QUEUED, job_id=job_id).update(job_id=new_job_id):
            invocation = Invocation.objects.only("id", "job_id", "config", "kind").get(pk=pk)
            enqueue(invocation)
            requeued.append(invocation)
    return requeued


def fail_sync(now=None):
    """Fail the synchronous invocations queued long ago that have no live job; return them."""
    overdue = (now or timezone.now()) - timedelta(seconds=settings.LOST_JOB_AFTER)
    waiting = Invocation.objects.filter(status=Invocation.Status.QUEUED, kind=Invocation.Kind.SYNC,
                                        created_at__lt=overdue)
    failed = []
    for pk, job_id in _without_live_job(waiting):
        invocation = Invocation.objects.defer("event", "log").get(pk=pk)
        with transaction.atomic():
            if not invocation.fail("ServiceException", "The invocation's job was lost before a worker ran it.",
                                   queued_for=job_id):
                continue  # claimed or failed meanwhile
            invocation_finished(invocation)
        notify_finished(invocation.pk)
        failed.append(invocation)
    return failed


def _without_live_job(rows):
    """(pk, job_id) of the rows, oldest first and at most BATCH, whose job is not live in Redis."""
    waiting = list(rows.order_by("created_at").values_list("id", "job_id")[:BATCH])
    if not waiting:
        return []
    try:
        jobs = Job.fetch_many([job_id for _, job_id in waiting], connection=queue.connection())
    except RedisError as e:
        log.warning("cannot look for lost jobs now: %s", e)  # nothing can be queued either; next pass
        return []
    return [(pk, job_id) for (pk, job_id), job in zip(waiting, jobs)
            if job is None or job.get_status(refresh=False) not in LIVE_JOB_STATES]
