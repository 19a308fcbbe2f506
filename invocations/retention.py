"""Retention: delete the records of invocations that ended more than INVOCATION_RETENTION_DAYS ago.

Only the rows go (event, result, log, timings): the per-minute rollups (invocations.metrics) are separate
tables, so the metrics and cost pages show the same totals after a purge. The event-source runners purge
at most once an hour between them (take_turn), a slice at a time; `manage.py purge_invocations` purges at
once.

Every relation that points at an Invocation, and what a purge does with it (tests/test_retention.py fails
when a new one appears, so that it gets a decision here too):

- DeadLetter.invocation (CASCADE): a letter still in the inbox keeps its invocation, however old: the user
  has yet to act on that event (redrive or purge it from the inbox), and its page shows the error and log.
  A redriven letter is history: it goes with its invocation.
- DeadLetter.redrive (SET_NULL): a letter may outlive the invocation its redrive made; it keeps
  `redriven_at` and loses the link.
- tables.StreamCursor.invocation (SET_NULL): keeps the invocation. The cursor names the batch it has not
  settled yet; nulling the link would send the batch again without counting the attempt, while
  streams.recover() still needs the row to settle it.
- queues.Message.invocation (SET_NULL): set null. The link only marks the batch a message is in flight
  with; settling clears it and the next receive overwrites it, so a stale one means nothing.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from invocations import queue
from invocations.models import DeadLetter, Invocation, PurgeMark
from invocations.tables.models import StreamCursor

# Rows deleted per transaction: short enough that the workers recording outcomes (SQLite has one writer)
# wait for a batch, not for the whole purge.
BATCH_SIZE = 500
# The runners take turns: one purge starts per hour, whichever runner asks first.
TURN_SECONDS = 3600


def cutoff(now=None):
    """Return the instant before which ended invocations are purged, or None if they are kept for ever."""
    days = settings.INVOCATION_RETENTION_DAYS
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def horizon(now=None):
    """Return the first whole minute whose invocations are all still there (None: all are, for ever): after
    the cutoff of today's setting and after every purge so far (the setting may have grown since, or gone
    to 0, but purged rows do not come back).

    A purge at an earlier cutoff in the same minute may have taken part of the minute the cutoff falls in.
    """
    edges = [edge for edge in (cutoff(now), PurgeMark.purged_before_or_none()) if edge is not None]
    if not edges:
        return None
    edge = max(edges)
    minute = edge.replace(second=0, microsecond=0)
    return minute if minute == edge else minute + timedelta(minutes=1)


def purgeable(cutoff):
    """The invocations that ended before `cutoff` and that nothing still needs."""
    in_inbox = DeadLetter.objects.filter(invocation=OuterRef("pk"), redriven_at__isnull=True)
    unsettled = StreamCursor.objects.filter(invocation=OuterRef("pk"))
    # Not QUEUED or RUNNING: an asynchronous event waiting for its retry is QUEUED again (with `retry_at`)
    # from the moment its failed attempt is recorded, so an ended status means no attempt is to come.
    # created_at ≤ finished_at, so the created_at condition is implied, but it lets the database walk the
    # (created_at, id) index from the oldest row. Written as NOT IN, which no index on status serves: with
    # status IN (the five ended ones) SQLite reads every ended row through the status index and sorts them,
    # for each batch (~80 ms a batch at 200,000 rows, against ~4 ms).
    return (Invocation.objects
            .filter(created_at__lt=cutoff)
            .exclude(status__in=[Invocation.Status.QUEUED, Invocation.Status.RUNNING])
            .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True))
            .exclude(Exists(in_inbox))
            .exclude(Exists(unsettled)))


def purge(now=None, batch=BATCH_SIZE):
    """Delete the invocations that ended more than INVOCATION_RETENTION_DAYS before `now`; return how many
    went."""
    edge = cutoff(now)
    if edge is None:
        return 0
    deleted, _ = purge_some(edge, batch)
    return deleted


def purge_some(cutoff, batch=BATCH_SIZE, until=None):
    """Delete purgeable invocations a batch per transaction; return (how many went, whether all did).

    With `until` (a time.monotonic() value), stop after the batch that ends past it.
    """
    total = 0
    while True:
        pks = list(purgeable(cutoff).order_by("created_at", "id").values_list("pk", flat=True)[:batch])
        # Through the ORM, so that each relation above cascades or is set null as declared; only("pk"), or
        # the collector would read every event and log it deletes. The conditions again, in case a row
        # changed since it was read.
        with transaction.atomic():
            _, per_model = purgeable(cutoff).filter(pk__in=pks).only("pk").delete()
            if per_model.get(Invocation._meta.label):
                PurgeMark.advance(cutoff)
        total += per_model.get(Invocation._meta.label, 0)
        if len(pks) < batch:
            return total, True
        if until is not None and time.monotonic() >= until:
            return total, False


def _turn_key():
    return queue.turn_key("retention")


def take_turn():
    """Return whether this runner purges now: one runner per TURN_SECONDS, across every runner on the Redis."""
    return queue.take_turn("retention", TURN_SECONDS)
