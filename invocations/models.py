import json
import logging
import socket
import uuid
from decimal import Decimal

from django.db import connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Concat
from django.urls import reverse
from django.utils import timezone

from functions.models import Function
from invocations import billing
from invocations.runtime.outcome import error_payload, report_line

log = logging.getLogger(__name__)


class Invocation(models.Model):
    """One request to run a function: what was asked, what happened, and what it cost."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED"
        RUNNING = "RUNNING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        TIMED_OUT = "TIMED_OUT"
        THROTTLED = "THROTTLED"
        # An asynchronous event that grew older than its maximum event age before its next attempt.
        EXPIRED = "EXPIRED"

    class Kind(models.TextChoices):
        SYNC = "RequestResponse"
        ASYNC = "Event"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.THROTTLED, Status.EXPIRED)

    # The id is the request id the function sees (context.aws_request_id).
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="invocations")
    version = models.CharField(max_length=32, default="$LATEST")
    # As invoked: "" (unqualified), a version number or an alias name; `version` is what ran.
    qualifier = models.CharField(max_length=128, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SYNC)
    source = models.CharField(max_length=32, default="console")
    trigger = models.ForeignKey("functions.Trigger", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="invocations")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # What ran: a copy of the configuration at invoke time, so later edits never rewrite history.
    config = models.JSONField()
    event = models.TextField()
    result = models.TextField(blank=True, help_text="the JSON response, or the error object")
    error_type = models.CharField(max_length=128, blank=True)
    log = models.TextField(blank=True)

    cold_start = models.BooleanField(null=True)
    init_duration_ms = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    duration_ms = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    billed_duration_ms = models.PositiveBigIntegerField(null=True)
    memory_size_mb = models.PositiveIntegerField()
    max_memory_used_mb = models.PositiveIntegerField(null=True)
    gb_seconds = models.DecimalField(max_digits=24, decimal_places=13, null=True)
    cost = models.DecimalField(max_digits=24, decimal_places=16, null=True, help_text="US dollars")

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    worker = models.CharField(max_length=128, blank=True)

    # Asynchronous events: attempts started (Lambda's approximateInvokeCount), when the next one is due
    # and the RQ job that will make it (the workers' sweep queues a new one if Redis lost it), and where
    # the outcome was sent.
    attempts = models.PositiveSmallIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    destination = models.CharField(max_length=300, blank=True)

    # The Lambda API: the caller's amz-sdk-invocation-id, which an SDK sends again on every retry of one
    # call, so a retried Invoke answers with this invocation instead of running the function again; and
    # the decoded X-Amz-Client-Context, which the handler sees as context.client_context.
    client_request_id = models.CharField(max_length=64, null=True, blank=True)
    client_context = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One invocation per API call, however often the SDK retried it (and the lookup of a retry's).
            models.UniqueConstraint(fields=["function", "client_request_id"], name="invocation_client_request_id"),
        ]
        indexes = [
            # The function page's recent invocations, and the list's 24 h counts and monthly cost.
            models.Index(fields=["function", "-created_at"], name="invocation_function_recent"),
            # The workers' sweep for invocations orphaned by a dead worker (fail_orphans).
            models.Index(fields=["status", "worker"], name="invocation_status_worker"),
            # The workers' sweep for asynchronous events whose queued job was lost.
            models.Index(fields=["status", "retry_at"], name="invocation_status_retry_at"),
            # A trigger's invocation count and last error.
            models.Index(fields=["trigger", "-created_at"], name="invocation_trigger_recent"),
            # A queue trigger's batches in flight, counted every second: the few rows still in flight,
            # not the trigger's whole history. (Not a partial index: SQLite cannot match one against the
            # ORM's bound parameters.)
            models.Index(fields=["trigger", "status"], name="invocation_trigger_status"),
            # The invocation list across all of a user's functions, newest first: read in order and
            # stop after a page, instead of sorting every row of the user's functions.
            models.Index(fields=["created_at", "id"], name="invocation_recent"),
            # The invocation list filtered by status and by source, newest first. (Not cold/warm: with
            # two values SQLite's planner never prefers such an index to invocation_function_recent.)
            models.Index(fields=["function", "status", "-created_at"], name="invocation_function_status"),
            models.Index(fields=["function", "source", "-created_at"], name="invocation_function_source"),
            # The live tail: a function's invocations finished after a cursor.
            models.Index(fields=["function", "finished_at"], name="invocation_function_finished"),
        ]

    def __str__(self):
        return str(self.id)

    def get_absolute_url(self):
        return reverse("invocations:detail", args=[self.pk])

    @property
    def is_finished(self):
        return self.status in self.FINISHED

    @property
    def request_id(self):
        return str(self.id)

    @classmethod
    def claim(cls, pk, worker_name, job_id=None):
        """Move QUEUED → RUNNING; return the invocation, with what running it takes, or None if another
        worker has it or it was already handled.

        `job_id` is the RQ job asking: only the job queued for the invocation's next attempt may claim it,
        so a stale or duplicate job (e.g. one the lost-job sweep replaced) cannot run an attempt early.
        None (a call from outside RQ) claims whatever is queued.

        The invocation comes back with only the fields the worker uses, plus its function's current
        `reserved_concurrency`. One UPDATE … RETURNING (SQLite ≥ 3.35, PostgreSQL) does what the ORM
        would do with a conditional update and a read: the pair costs ~0.9 ms, this ~0.1 ms, on a warm
        path whose handler round trip is ~0.5 ms (bench/README.md).
        """
        qn = connection.ops.quote_name
        returned = [cls._meta.get_field(name) for name in RUN_FIELDS]
        table = qn(cls._meta.db_table)
        sql = (
            f"UPDATE {table} SET {qn('status')} = %s, {qn('started_at')} = %s, {qn('worker')} = %s, "
            f"{qn('attempts')} = {qn('attempts')} + 1 "
            f"WHERE {qn('id')} = %s AND {qn('status')} = %s "
            + (f"AND {qn('job_id')} = %s " if job_id is not None else "")
            + f"RETURNING {', '.join(qn(field.column) for field in returned)}, "
            f"(SELECT {qn('reserved_concurrency')} FROM {qn(Function._meta.db_table)} "
            f"WHERE {qn('id')} = {table}.{qn('function_id')})"
        )
        started_at = timezone.now()
        params = [
            cls.Status.RUNNING, cls._meta.get_field("started_at").get_db_prep_value(started_at, connection),
            worker_name, cls._meta.pk.get_db_prep_value(uuid.UUID(str(pk)), connection), cls.Status.QUEUED,
        ] + ([job_id] if job_id is not None else [])
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        values = {field.attname: _from_db(field, value) for field, value in zip(returned, row)}
        invocation = cls(id=pk, status=cls.Status.RUNNING, started_at=started_at, worker=worker_name, **values)
        invocation.reserved_concurrency = row[-1]
        return invocation

    def unclaim(self, job_id, retry_at):
        """Give a claimed invocation back, unattempted, to the job `job_id` due at `retry_at` (RUNNING →
        QUEUED), e.g. when its function was at its reserved concurrency."""
        Invocation.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=self.Status.QUEUED, started_at=None, worker="", attempts=F("attempts") - 1,
            job_id=job_id, retry_at=retry_at,
        )
        self.status = self.Status.QUEUED
        self.attempts -= 1

    def requeue(self, job_id, retry_at):
        """Queue a finished attempt of an asynchronous event again, for the job `job_id` due at `retry_at`.

        The outcome of the failed attempt (its log, error and bill) stays on the row.
        """
        Invocation.objects.filter(pk=self.pk, status__in=[self.Status.FAILED, self.Status.TIMED_OUT]).update(
            status=self.Status.QUEUED, worker="", job_id=job_id, retry_at=retry_at,
        )
        self.status, self.job_id, self.retry_at = self.Status.QUEUED, job_id, retry_at

    def expire(self):
        """End an asynchronous event that is older than its maximum event age, unattempted."""
        fields = dict(
            status=self.Status.EXPIRED, error_type="EventAgeExceeded", finished_at=timezone.now(),
            result=error_payload("EventAgeExceeded", "The event was older than its maximum event age.",
                                 self.request_id),
        )
        Invocation.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            attempts=F("attempts") - 1, **fields)
        for name, value in fields.items():
            setattr(self, name, value)
        self.attempts -= 1

    def finish(self, outcome):
        """Record a runtime outcome (invocations.runtime.environment.Outcome) and its bill, once."""
        billed = billing.billed_duration_ms(outcome.duration_ms, outcome.init_duration_ms)
        gb_s = billing.gb_seconds(self.memory_size_mb, billed)
        report = report_line(
            self.request_id, outcome.duration_ms, billed, self.memory_size_mb, outcome.max_memory_used_mb,
            init_ms=outcome.init_duration_ms, status=outcome.report_status, error_type=outcome.error_type,
        )
        fields = dict(
            status=outcome.status,
            result=outcome.payload,
            error_type=outcome.error_type[:128],
            cold_start=outcome.cold_start,
            init_duration_ms=outcome.init_duration_ms,
            duration_ms=outcome.duration_ms,
            max_memory_used_mb=outcome.max_memory_used_mb,
            finished_at=timezone.now(),
        )
        log = f"{outcome.log}END RequestId: {self.request_id}\n{report}\n"
        cost = billing.cost(gb_s)
        # A retried asynchronous event keeps every attempt's log, and is billed for all of them.
        added = dict(
            log=Concat(F("log"), Value(log)),
            billed_duration_ms=Coalesce(F("billed_duration_ms"), 0) + billed,
            gb_seconds=Coalesce(F("gb_seconds"), Value(Decimal(0))) + gb_s,
            cost=Coalesce(F("cost"), Value(Decimal(0))) + cost,
        )
        # Only the worker that claimed the row may finish it.
        updated = Invocation.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(**fields, **added)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
            # This attempt's figures; the row holds the totals.
            self.log, self.billed_duration_ms, self.gb_seconds, self.cost = log, billed, gb_s, cost
        return updated == 1

    @classmethod
    def fail_orphans(cls, then=None, stuck=None):
        """Fail the RUNNING invocations whose worker on this host has died, and those `stuck(invocation)`
        says have run past every limit; return them.

        A worker killed outright (SIGKILL, the OOM killer, a crash) takes its sandbox with it but cannot
        record anything: without this sweep its invocation would stay RUNNING for ever. A stuck one's
        worker may live on without having recorded it (the database failed under it), or its host may be
        gone. `then(invocation)` runs in the same transaction as each failure (an asynchronous event's
        retry or destination), and only if this sweep is the one that failed it.
        """
        orphans = []
        host = socket.gethostname()
        # The event can be megabytes: read it only for the few orphans that need it (a dead letter).
        for invocation in cls.objects.filter(status=cls.Status.RUNNING).defer("event", "log", "result"):
            worker_host, _, pid = invocation.worker.rpartition(":")
            dead = worker_host == host and (not pid.isdigit() or not _process_alive(int(pid)))
            if not dead and not (stuck is not None and stuck(invocation)):
                continue
            try:
                with transaction.atomic():
                    failed = invocation.fail("ServiceException",
                                             "The worker running this invocation stopped before it finished.",
                                             running_on=invocation.worker)
                    if failed and then is not None:
                        then(invocation)
            except Exception:
                # One bad row must not stop the sweep (nor the rest of a worker's upkeep).
                log.exception("could not fail orphaned invocation %s", invocation.pk)
                continue
            if failed:
                orphans.append(invocation)
        return orphans

    def throttle(self):
        """Finish an invocation refused because its function is at its reserved concurrency: a synchronous
        one at once, an asynchronous one when it has waited too long for a slot.

        Lambda answers 429 with this body and bills nothing.
        """
        fields = dict(
            status=self.Status.THROTTLED, error_type="TooManyRequestsException", finished_at=timezone.now(),
            result=json.dumps({
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User",
                "message": "Rate Exceeded.",
            }),
        )
        # Claimed by the worker that found no free slot (so not an attempt), or still queued (invoke() at
        # reserved concurrency 0).
        claimed = Invocation.objects.filter(pk=self.pk, status=self.Status.RUNNING)
        if claimed.update(attempts=F("attempts") - 1, **fields):
            self.attempts -= 1
        else:
            Invocation.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def fail(self, error_type, message, running_on=None, queued_for=None):
        """Finish an invocation the platform could not run (it could not be queued, or its worker failed);
        return whether this call failed it.

        With `running_on`, only while that worker runs it: a sweep or a failing worker must not fail an
        attempt that has since ended, or a later attempt. With `queued_for`, only while it waits for that
        job.
        """
        fields = dict(
            status=self.Status.FAILED, error_type=error_type, finished_at=timezone.now(),
            result=error_payload(error_type, message, self.request_id),
        )
        rows = Invocation.objects.filter(pk=self.pk)
        if running_on is not None:
            rows = rows.filter(status=self.Status.RUNNING, worker=running_on)
        elif queued_for is not None:
            rows = rows.filter(status=self.Status.QUEUED, job_id=queued_for)
        else:
            rows = rows.filter(status__in=[self.Status.QUEUED, self.Status.RUNNING])
        if not rows.update(**fields):
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True


# What a worker needs of an invocation to run it (Invocation.claim returns these).
RUN_FIELDS = ("kind", "source", "trigger", "config", "event", "function", "memory_size_mb", "qualifier", "created_at",
              "attempts", "client_context")


def _from_db(field, value):
    """Convert a raw column value as the ORM would (e.g. SQLite's datetime text, a JSON field)."""
    column = field.get_col(field.model._meta.db_table)
    for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
        value = converter(value, column, connection)
    return value


def _process_alive(pid):
    """Return whether `pid` is a live process (a zombie, killed but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class DeadLetter(models.Model):
    """An asynchronous event that failed every attempt or grew too old, kept in its function's dead-letter
    inbox until it is redriven (invoked again, perhaps with an edited payload) or purged."""

    class Condition(models.TextChoices):
        RETRIES_EXHAUSTED = "RetriesExhausted"
        EVENT_AGE_EXCEEDED = "EventAgeExceeded"

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="dead_letters")
    invocation = models.OneToOneField(Invocation, on_delete=models.CASCADE, related_name="dead_letter")
    condition = models.CharField(max_length=32, choices=Condition.choices)
    # The event to redrive: the original until someone edits it.
    payload = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    redriven_at = models.DateTimeField(null=True, blank=True)
    redrive = models.ForeignKey(Invocation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["function", "redriven_at", "-created_at"], name="dead_letter_inbox")]

    def __str__(self):
        return f"dead letter of {self.invocation_id}"


class PurgeMark(models.Model):
    """How far retention has purged: the latest cutoff before which it deleted invocation rows. Minutes
    before it have only their rollups left, so rebuild_rollups must not recompute them from rows, whatever
    INVOCATION_RETENTION_DAYS says now. One row."""

    purged_before = models.DateTimeField()

    @classmethod
    def advance(cls, cutoff):
        """Record a purge at `cutoff` (in the purge's transaction); the mark never moves back."""
        mark, created = cls.objects.select_for_update().get_or_create(pk=1, defaults={"purged_before": cutoff})
        if not created and cutoff > mark.purged_before:
            mark.purged_before = cutoff
            mark.save(update_fields=["purged_before"])

    @classmethod
    def purged_before_or_none(cls):
        return cls.objects.filter(pk=1).values_list("purged_before", flat=True).first()
