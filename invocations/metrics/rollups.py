"""Per-minute rollups: kept up to date in the transaction that records each outcome, or rebuilt from rows.

Duration percentiles come from a fixed histogram: bucket k holds run durations d with
EDGES[k-1] < d ≤ EDGES[k], where EDGES[k] = 2^(k/8) ms rounded to 0.01 ms (bucket 0: d ≤ 1 ms; the last
bucket also takes anything longer). A percentile is reported as its bucket's upper edge, so it is never
below the true value and at most 9.1% above it (2^(1/8) = 1.0905, plus the 0.01 ms rounding), for any
number of invocations and any window, because buckets of different minutes add up exactly.
"""

import bisect
import math
from collections import defaultdict
from decimal import Decimal

from django.db import connection, transaction
from django.db.backends.utils import format_number

from invocations.billing import COST_QUANTUM
from invocations.metrics.models import DurationBucket, MinuteRollup

# 2^(160/8) ms ≈ 1,048 s: past Lambda's 900 s timeout.
BUCKET_EDGES_MS = [Decimal(2 ** (k / 8)).quantize(Decimal("0.01")) for k in range(161)]

ERROR_STATUSES = ("FAILED", "TIMED_OUT")
# The platform's own failures (a lost job, a dead worker): nothing ran to completion, nothing is billed, and
# the row's duration, if any, is an earlier attempt's.
PLATFORM_ERROR = "ServiceException"

COUNTERS = ("invocations", "errors", "timeouts", "throttles", "cold_starts", "billed_requests", "duration_sum_cms",
            "billed_ms_sum", "mb_ms_sum", "cost_sum_units")


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


def attempt_figures(status, error_type, cold_start, duration_ms, memory_mb, billed_ms, cost, max_memory_mb):
    """Return (counters, max memory, (cold, bucket) or None) for one ended attempt."""
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
    )
    if not any(figures.values()):
        return
    minute = minute_of(invocation.finished_at)
    _upsert_rollup(invocation.function_id, minute, figures, max_memory)
    if bucket is not None:
        _upsert_bucket(invocation.function_id, minute, *bucket)


def _upsert_rollup(function_id, minute, figures, max_memory):
    # One INSERT … ON CONFLICT DO UPDATE (SQLite ≥ 3.24, PostgreSQL): two workers ending attempts of the
    # same function in the same minute both add up, whichever writes first.
    qn = connection.ops.quote_name
    table = qn(MinuteRollup._meta.db_table)
    columns = ["function_id", "minute", *COUNTERS, "max_memory_used_mb"]
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    updates = [f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in COUNTERS]
    updates.append(f"{qn('max_memory_used_mb')} = {greatest}({table}.{qn('max_memory_used_mb')}, "
                   f"excluded.{qn('max_memory_used_mb')})")
    sql = (f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))}) "
           f"ON CONFLICT ({qn('function_id')}, {qn('minute')}) DO UPDATE SET {', '.join(updates)}")
    params = [function_id, _db_minute(MinuteRollup, minute), *(figures[c] for c in COUNTERS), max_memory]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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


def rebuild(function_ids=None):
    """Recompute the rollups from the invocation rows (all functions, or those of `function_ids`); return
    how many minute rollups were written.

    A row holds its last attempt; an asynchronous event retried before it ended counts its earlier attempts
    as errors in its last attempt's minute, and the row's billed totals cover all its attempts. So for
    events that were never retried the result equals the incremental rollups exactly.
    """
    from invocations.models import Invocation

    rollups = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    maxima = defaultdict(int)
    buckets = defaultdict(int)
    rows = Invocation.objects.filter(finished_at__isnull=False).values_list(
        "function_id", "finished_at", "status", "error_type", "cold_start", "duration_ms", "memory_size_mb",
        "billed_duration_ms", "cost", "max_memory_used_mb", "attempts")
    if function_ids is not None:
        rows = rows.filter(function_id__in=function_ids)
    for (function_id, finished_at, status, error_type, cold, duration, memory, billed, cost, max_memory,
         attempts) in rows.iterator(chunk_size=2000):
        key = (function_id, minute_of(finished_at))
        figures, used, bucket = attempt_figures(status, error_type, cold, duration, memory, billed, cost, max_memory)
        ran_last = status in ("SUCCEEDED", *ERROR_STATUSES)
        earlier = max(attempts - 1, 0) if ran_last else attempts
        figures["invocations"] += earlier
        figures["errors"] += earlier
        if not any(figures.values()):
            continue
        for name, value in figures.items():
            rollups[key][name] += value
        maxima[key] = max(maxima[key], used)
        if bucket is not None:
            buckets[(*key, *bucket)] += 1
    with transaction.atomic():
        old_rollups, old_buckets = MinuteRollup.objects.all(), DurationBucket.objects.all()
        if function_ids is not None:
            old_rollups = old_rollups.filter(function_id__in=function_ids)
            old_buckets = old_buckets.filter(function_id__in=function_ids)
        old_rollups.delete()
        old_buckets.delete()
        MinuteRollup.objects.bulk_create(
            [MinuteRollup(function_id=f, minute=m, max_memory_used_mb=maxima[(f, m)], **figures)
             for (f, m), figures in rollups.items()], batch_size=1000)
        DurationBucket.objects.bulk_create(
            [DurationBucket(function_id=f, minute=m, cold=c, bucket=b, count=n)
             for (f, m, c, b), n in buckets.items()], batch_size=1000)
    return len(rollups)
