"""Compaction: merge old per-minute rollups into one row per function and UTC hour.

Only the 1 h and 24 h metrics windows need minutes, and they reach back 24 hours; the 7 d and 30 d
windows (3-hour and 1-day steps, aligned to UTC boundaries), the cost pages (UTC days) and the dashboard
need hours. So every (function, hour) wholly older than `keep_minutes_for` (48 h) becomes one MinuteRollup
at HH:00 — the sums of the counters, the maxima of the maxima, and the dead-letter gauge's last value in
the hour (null if it did not change in it) — and one DurationBucket per (cold, bucket) at HH:00 with the
summed count. Sums, maxima and percentiles over whole hours are unchanged; a 30-day page reads 60× fewer
rows.

What moves: a compacted hour counts wholly at HH:00, so every period that reaches back past 48 hours
starts on a whole hour (the metrics pages' 7 d and 30 d steps on UTC step edges, the dashboard's 7 d and
30 d periods on the hour); the functions list's "last invoked" of a function idle for 48 hours is the
hour, not the minute.

Outcomes are recorded in the current minute, so nothing writes into an old hour; if a row ever lands in
one (a rebuild with retention off writes minute rows everywhere) the next compaction merges it with the
hour's row. An hour already compacted has a single row at HH:00 and is skipped: compacting is idempotent.
The event-source runners compact at most once an hour between them (take_turn), a slice at a time;
`manage.py compact_rollups` compacts at once.
"""

import time
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from functions.models import Function
from invocations import queue
from invocations.metrics.models import DurationBucket, MinuteRollup
from invocations.metrics.rollups import COUNTERS, MAXIMA

KEEP_MINUTES_FOR = timedelta(hours=48)
# Function-hours merged per transaction: ~60 rollup rows and a few hundred histogram rows each, so the
# workers recording outcomes (SQLite has one writer) wait for a few ms, not for the whole compaction.
HOURS_PER_TRANSACTION = 10
# The runners take turns: one compaction starts per hour, whichever runner asks first.
TURN_SECONDS = 3600
HOUR = timedelta(hours=1)


def floor_hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def cutoff(now=None, keep_minutes_for=KEEP_MINUTES_FOR):
    """Return the first hour that keeps its minutes: every hour before it ended before now − keep."""
    return floor_hour((now or timezone.now()) - keep_minutes_for)


def pending(before):
    """Return the (function id, hour) pairs before `before` that hold a row other than one at HH:00,
    oldest first. Tests the minute of every row before `before` in the database, and returns only those off
    the hour: after a compaction, about 60 times fewer rows are left to test."""
    hours = set()
    for model in (MinuteRollup, DurationBucket):
        rows = (model.objects.filter(minute__lt=before).extra(where=[_off_the_hour(model)])
                .values_list("function_id", "minute").distinct())
        hours.update((function_id, floor_hour(minute)) for function_id, minute in rows.iterator(chunk_size=5000))
    return sorted(hours, key=lambda pair: (pair[1], pair[0]))


def _off_the_hour(model):
    # The database's own date arithmetic: Django's ExtractMinute is a Python function row by row on SQLite.
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name('minute')}"
    if connection.vendor == "sqlite":
        return f"strftime('%%M', {column}) <> '00'"
    return f"EXTRACT(MINUTE FROM {column}) <> 0"


def compact_hours(hours, until=None):
    """Merge each (function id, hour) of `hours` (a list, consumed from the front) into its HH:00 rows,
    HOURS_PER_TRANSACTION per transaction; return how many were merged. With `until` (a time.monotonic()
    value), stop after the transaction that ends past it; what is left stays in `hours`."""
    merged = 0
    while hours:
        batch, hours[:HOURS_PER_TRANSACTION] = hours[:HOURS_PER_TRANSACTION], []
        with transaction.atomic():
            for function_id, hour in batch:
                _merge(function_id, hour)
        merged += len(batch)
        if until is not None and time.monotonic() >= until:
            break
    return merged


def _merge(function_id, hour):
    # The function's row first: rebuild() takes the same locks, so on PostgreSQL the two never interleave
    # (a rebuild's delete waiting on rows a compaction then replaces would miss the new HH:00 row and add
    # its own beside it). SQLite runs one writer at a time anyway.
    list(Function.objects.select_for_update().filter(pk=function_id).values_list("pk"))
    rollups = MinuteRollup.objects.filter(function_id=function_id, minute__gte=hour, minute__lt=hour + HOUR)
    figures = rollups.aggregate(**{c: Sum(c) for c in COUNTERS}, **{m: Max(m) for m in MAXIMA})
    if figures[COUNTERS[0]] is not None:  # None: no rollup rows (only histogram rows, which should not be)
        gauge = (rollups.filter(dead_letters__isnull=False).order_by("-minute")
                 .values_list("dead_letters", flat=True).first())
        rollups.delete()
        # int(): PostgreSQL sums bigints as numeric.
        MinuteRollup.objects.create(function_id=function_id, minute=hour, dead_letters=gauge,
                                    **{name: int(value) for name, value in figures.items()})
    buckets = DurationBucket.objects.filter(function_id=function_id, minute__gte=hour, minute__lt=hour + HOUR)
    counts = list(buckets.values_list("cold", "bucket").annotate(n=Sum("count")))
    buckets.delete()
    DurationBucket.objects.bulk_create([DurationBucket(function_id=function_id, minute=hour, cold=cold, bucket=bucket,
                                                       count=int(n)) for cold, bucket, n in counts])


def compact(now=None, keep_minutes_for=KEEP_MINUTES_FOR, until=None):
    """Merge the minute rollups and histogram rows of every function-hour that ended before
    `now − keep_minutes_for` into one row at HH:00; return (how many function-hours were merged, whether
    all were). With `until` (a time.monotonic() value), stop after the transaction that ends past it."""
    hours = pending(cutoff(now, keep_minutes_for))
    merged = compact_hours(hours, until)
    return merged, not hours


def _turn_key():
    return queue.turn_key("compaction")


def take_turn():
    """Return whether this runner compacts now: one runner per TURN_SECONDS, across every runner on the Redis."""
    return queue.take_turn("compaction", TURN_SECONDS)
