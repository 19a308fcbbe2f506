"""Per-minute rollups: kept up to date in the transaction that records each outcome, or rebuilt from rows.

Duration percentiles come from a fixed histogram: bucket k holds run durations d with
EDGES[k-1] < d ≤ EDGES[k], where EDGES[k] = 2^(k/8) ms rounded to 0.01 ms (bucket 0: d ≤ 1 ms; the last
bucket also takes anything longer). A percentile is reported as its bucket's upper edge, so it is never
below the true value and at most 9.1% above it (2^(1/8) = 1.0905, plus the 0.01 ms rounding), for any
number of invocations and any window, because buckets of different minutes add up exactly.

Concurrent executions come two ways, neither needing a round trip of its own on the warm path. The mean
over a period is exact from the sums already kept: by Little's law it is the run time ended in the period
divided by its length (an attempt counts in the minute it ended, so one running across a minute boundary
lands wholly in the later minute). The peak is sampled: as each attempt is recorded, the upsert itself
counts the function's RUNNING rows (the invocation_function_status index answers it) plus the attempt
just ended, and keeps the minute's maximum; a peak between completions is not seen.

The dead-letter inbox depth is a gauge: each change of a function's inbox writes the depth into that
minute's rollup (`record_dead_letters`); the charts carry it forward over minutes without a change.
"""

import bisect
import math
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.db.backends.utils import format_number
from django.utils import timezone

from functions.models import Function
from invocations.billing import COST_QUANTUM
from invocations.metrics.models import DurationBucket, MinuteRollup

# 2^(160/8) ms ≈ 1,048 s: past Lambda's 900 s timeout.
BUCKET_EDGES_MS = [Decimal(2 ** (k / 8)).quantize(Decimal("0.01")) for k in range(161)]

ERROR_STATUSES = ("FAILED", "TIMED_OUT")
# The platform's own failures (a lost job, a dead worker): nothing ran to completion, nothing is billed, and
# the row's duration, if any, is an earlier attempt's.
PLATFORM_ERROR = "ServiceException"

COUNTERS = ("invocations", "errors", "timeouts", "throttles", "cold_starts", "billed_requests", "duration_sum_cms",
            "billed_ms_sum", "mb_ms_sum", "cost_sum_units", "event_age_count", "event_age_sum_ms")


def bucket_of(duration_ms):
    """Return the histogram bucket of a run duration in ms."""
    return min(bisect.bisect_left(BUCKET_EDGES_MS, Decimal(duration_ms)), len(BUCKET_EDGES_MS) - 1)


def percentile(counts, p):
    """Return the nearest-rank `p`th percentile (upper bucket edge, Decimal ms) of {bucket: count}, or None."""
    total = sum(counts.values())
    if not total:
        return None
    rank = math.ceil(Decimal(p) * total / 100)  # Decimal: 99 × n / 100 must not round the wrong way
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return BUCKET_EDGES_MS[bucket]


def minute_of(moment):
    return moment.replace(second=0, microsecond=0)


def event_age_ms(kind, created_at, started_at):
    """Return an asynchronous attempt's event age in whole ms (queued → started), or None for a synchronous
    one. Clamped at 0: the two instants may come from the clocks of two hosts."""
    if kind != "Event" or created_at is None or started_at is None:
        return None
    return max((started_at - created_at) // timedelta(milliseconds=1), 0)


def attempt_figures(status, error_type, cold_start, duration_ms, memory_mb, billed_ms, cost, max_memory_mb,
                    age_ms=None):
    """Return (counters, max memory, (cold, bucket) or None) for one ended attempt. With one attempt, its
    event age's sum is also its maximum."""
    figures = dict.fromkeys(COUNTERS, 0)
    if status == "THROTTLED":
        figures["throttles"] = 1
        return figures, 0, None
    if status not in ("SUCCEEDED", *ERROR_STATUSES):
        return figures, 0, None  # EXPIRED: never attempted
    figures["invocations"] = 1
    figures["errors"] = int(status in ERROR_STATUSES)
    figures["timeouts"] = int(status == "TIMED_OUT")
    if error_type == PLATFORM_ERROR or duration_ms is None:
        return figures, 0, None
    duration_ms = stored_duration(duration_ms)
    figures["cold_starts"] = int(bool(cold_start))
    figures["billed_requests"] = 1
    figures["duration_sum_cms"] = int(Decimal(duration_ms) * 100)
    figures["billed_ms_sum"] = billed_ms or 0
    figures["mb_ms_sum"] = memory_mb * (billed_ms or 0)
    figures["cost_sum_units"] = int((cost or Decimal(0)) / COST_QUANTUM)
    if age_ms is not None:
        figures["event_age_count"], figures["event_age_sum_ms"] = 1, age_ms
    return figures, max_memory_mb or 0, (bool(cold_start), bucket_of(duration_ms))


def stored_duration(duration_ms):
    """Return a run duration as the invocation row stores it (2 decimal places), whether it comes from the
    worker's outcome (a float) or from the row: a rebuild must bucket and sum exactly what the worker did."""
    from invocations.models import Invocation

    field = Invocation._meta.get_field("duration_ms")
    return Decimal(format_number(field.to_python(duration_ms), field.max_digits, field.decimal_places))


def record(invocation):
    """Add one ended attempt to its function's minute (an `every_outcome` listener: runs in the transaction
    that records the outcome). finish() leaves this attempt's own billed figures on the invocation."""
    if invocation.finished_at is None:
        return
    figures, max_memory, bucket = attempt_figures(
        invocation.status, invocation.error_type, invocation.cold_start, invocation.duration_ms,
        invocation.memory_size_mb, invocation.billed_duration_ms, invocation.cost, invocation.max_memory_used_mb,
        age_ms=event_age_ms(invocation.kind, invocation.created_at, invocation.started_at),
    )
    if not any(figures.values()):
        return
    minute = minute_of(invocation.finished_at)
    # Only an attempt the runtime ran samples the concurrency (bucket is not None): a throttle or a
    # platform failure ended without running.
    _upsert_rollup(invocation.function_id, minute, figures, max_memory, sample_concurrency=bucket is not None)
    if bucket is not None:
        _upsert_bucket(invocation.function_id, minute, *bucket)


MAXIMA = ("max_memory_used_mb", "event_age_max_ms", "peak_concurrency")


def _upsert_rollup(function_id, minute, figures, max_memory, sample_concurrency=False):
    # One INSERT … ON CONFLICT DO UPDATE (SQLite ≥ 3.24, PostgreSQL): two workers ending attempts of the
    # same function in the same minute both add up, whichever writes first.
    from invocations.models import Invocation

    qn = connection.ops.quote_name
    table = qn(MinuteRollup._meta.db_table)
    columns = ["function_id", "minute", *COUNTERS, *MAXIMA]
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    updates = [f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in COUNTERS]
    updates += [f"{qn(c)} = {greatest}({table}.{qn(c)}, excluded.{qn(c)})" for c in MAXIMA]
    values = ["%s"] * (len(columns) - 1)
    params = [function_id, _db_minute(MinuteRollup, minute), *(figures[c] for c in COUNTERS), max_memory,
              figures["event_age_sum_ms"]]
    if sample_concurrency:
        # In this statement, not a query of its own: the ended attempt's row is no longer RUNNING, hence + 1.
        values.append(f"(SELECT COUNT(*) + 1 FROM {qn(Invocation._meta.db_table)} "
                      f"WHERE {qn('function_id')} = %s AND {qn('status')} = %s)")
        params += [function_id, Invocation.Status.RUNNING]
    else:
        values.append("%s")
        params.append(0)
    sql = (f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) VALUES ({', '.join(values)}) "
           f"ON CONFLICT ({qn('function_id')}, {qn('minute')}) DO UPDATE SET {', '.join(updates)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def record_dead_letters(function_id, now=None):
    """Write the depth of the function's dead-letter inbox into its rollup of this minute. Call in the
    transaction that changed the inbox, after the change.

    Counted in the statement (the dead_letter_inbox index answers it) rather than adjusted by ±1, so the
    gauge is right after any change, however many letters it moved. Under SQLite one writer at a time
    makes it exact; under PostgreSQL two changes of one inbox committing at the same instant may leave it
    off by one until its next change.
    """
    from invocations.models import DeadLetter

    qn = connection.ops.quote_name
    table = qn(MinuteRollup._meta.db_table)
    # Every NOT NULL column needs a value here: Django's defaults live in Python, not in the schema.
    zeros = [*COUNTERS, *MAXIMA]
    sql = (f"INSERT INTO {table} ({qn('function_id')}, {qn('minute')}, {', '.join(qn(c) for c in zeros)}, "
           f"{qn('dead_letters')}) VALUES (%s, %s, {', '.join(['0'] * len(zeros))}, "
           f"(SELECT COUNT(*) FROM {qn(DeadLetter._meta.db_table)} "
           f"WHERE {qn('function_id')} = %s AND {qn('redriven_at')} IS NULL)) "
           f"ON CONFLICT ({qn('function_id')}, {qn('minute')}) "
           f"DO UPDATE SET {qn('dead_letters')} = excluded.{qn('dead_letters')}")
    minute = minute_of(now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [function_id, _db_minute(MinuteRollup, minute), function_id])


def _upsert_bucket(function_id, minute, cold, bucket):
    qn = connection.ops.quote_name
    table = qn(DurationBucket._meta.db_table)
    sql = (f"INSERT INTO {table} ({qn('function_id')}, {qn('minute')}, {qn('cold')}, {qn('bucket')}, {qn('count')}) "
           f"VALUES (%s, %s, %s, %s, 1) "
           f"ON CONFLICT ({qn('function_id')}, {qn('minute')}, {qn('cold')}, {qn('bucket')}) "
           f"DO UPDATE SET {qn('count')} = {table}.{qn('count')} + 1")
    with connection.cursor() as cursor:
        cursor.execute(sql, [function_id, _db_minute(DurationBucket, minute), cold, bucket])


def _db_minute(model, minute):
    return model._meta.get_field("minute").get_db_prep_value(minute, connection)


def rebuild(function_ids=None, now=None):
    """Recompute the rollups from the invocation rows (all functions, or those of `function_ids`) for the
    minutes from the retention horizon on; return how many minute rollups were written.

    Earlier minutes keep their rollups as they are: their rows may have been purged (invocations.retention),
    and the rollups are then all the history there is. With INVOCATION_RETENTION_DAYS = 0 every minute is
    recomputed.

    A row holds its last attempt; an asynchronous event retried before it ended counts its earlier attempts
    as errors in its last attempt's minute, and the row's billed totals cover all its attempts. So for
    events that were never retried the result equals the incremental rollups exactly. The event age is
    likewise the last attempt's only.

    No row records the peak concurrency seen at completions or the dead-letter inbox's depth over time:
    those are kept from the rollups being replaced.

    Old hours may have been compacted into one row at HH:00 (invocations.metrics.compaction), so the
    recomputation starts at the first whole hour at or after the horizon: a compacted hour the horizon
    falls in holds minutes on both sides of it, and is kept whole. The rows written are minute rows, old
    hours included; the next compaction merges them into hours again.
    """
    from invocations.models import Invocation
    from invocations.retention import horizon

    since = horizon(now)
    if since is not None and since.minute:
        since = since.replace(minute=0) + timedelta(hours=1)
    rollups = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    maxima = defaultdict(int)
    age_maxima = defaultdict(int)
    buckets = defaultdict(int)
    rows = Invocation.objects.filter(finished_at__isnull=False).values_list(
        "function_id", "finished_at", "status", "error_type", "cold_start", "duration_ms", "memory_size_mb",
        "billed_duration_ms", "cost", "max_memory_used_mb", "attempts", "kind", "created_at", "started_at")
    if function_ids is not None:
        rows = rows.filter(function_id__in=function_ids)
    if since is not None:
        rows = rows.filter(finished_at__gte=since)
    for (function_id, finished_at, status, error_type, cold, duration, memory, billed, cost, max_memory,
         attempts, kind, created_at, started_at) in rows.iterator(chunk_size=2000):
        key = (function_id, minute_of(finished_at))
        figures, used, bucket = attempt_figures(status, error_type, cold, duration, memory, billed, cost, max_memory,
                                                age_ms=event_age_ms(kind, created_at, started_at))
        ran_last = status in ("SUCCEEDED", *ERROR_STATUSES)
        earlier = max(attempts - 1, 0) if ran_last else attempts
        figures["invocations"] += earlier
        figures["errors"] += earlier
        if not any(figures.values()):
            continue
        for name, value in figures.items():
            rollups[key][name] += value
        maxima[key] = max(maxima[key], used)
        age_maxima[key] = max(age_maxima[key], figures["event_age_sum_ms"])
        if bucket is not None:
            buckets[(*key, *bucket)] += 1
    with transaction.atomic():
        # Lock the functions' rows as compaction does (compaction._merge), so that the two never interleave.
        functions = Function.objects.select_for_update()
        list((functions if function_ids is None else functions.filter(pk__in=function_ids)).values_list("pk"))
        old_rollups, old_buckets = MinuteRollup.objects.all(), DurationBucket.objects.all()
        if function_ids is not None:
            old_rollups = old_rollups.filter(function_id__in=function_ids)
            old_buckets = old_buckets.filter(function_id__in=function_ids)
        if since is not None:
            old_rollups = old_rollups.filter(minute__gte=since)
            old_buckets = old_buckets.filter(minute__gte=since)
        kept = {(f, m): {"peak_concurrency": peak, "dead_letters": depth} for f, m, peak, depth in old_rollups.filter(
            Q(peak_concurrency__gt=0) | Q(dead_letters__isnull=False)).values_list(
            "function_id", "minute", "peak_concurrency", "dead_letters")}
        old_rollups.delete()
        old_buckets.delete()
        MinuteRollup.objects.bulk_create(
            [MinuteRollup(function_id=f, minute=m, max_memory_used_mb=maxima[(f, m)],
                          event_age_max_ms=age_maxima[(f, m)], **rollups[(f, m)], **kept.get((f, m), {}))
             for f, m in rollups.keys() | kept.keys()], batch_size=1000)
        DurationBucket.objects.bulk_create(
            [DurationBucket(function_id=f, minute=m, cold=c, bucket=b, count=n)
             for (f, m, c, b), n in buckets.items()], batch_size=1000)
    return len(rollups.keys() | kept.keys())
