from decimal import Decimal

from django.db import models
from django.db.models import Q

from functions.models import Function


class MinuteRollup(models.Model):
    """What one function's invocations did in one UTC minute (the minute each attempt ended).

    Money and durations are kept as exact integers: SQLite stores a DecimalField as a float, and sums of
    floats drift. The Decimal figures are properties.
    """

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="minute_rollups")
    minute = models.DateTimeField(help_text="UTC, truncated to the minute")
    # Attempts that ended (an asynchronous event's retries each count, as CloudWatch counts them).
    invocations = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="FAILED or TIMED_OUT")
    timeouts = models.PositiveIntegerField(default=0)
    throttles = models.PositiveIntegerField(default=0, help_text="not counted in invocations, as in CloudWatch")
    cold_starts = models.PositiveIntegerField(default=0)
    # Attempts the runtime ran and billed (not the platform's own failures, nor throttles).
    billed_requests = models.PositiveIntegerField(default=0)
    duration_sum_cms = models.PositiveBigIntegerField(default=0, help_text="hundredths of a millisecond")
    billed_ms_sum = models.PositiveBigIntegerField(default=0)
    # Σ memory size (MB) × billed ms: GB-seconds × 1024 × 1000, an integer.
    mb_ms_sum = models.PositiveBigIntegerField(default=0)
    cost_sum_units = models.PositiveBigIntegerField(default=0, help_text="units of billing.COST_QUANTUM dollars")
    max_memory_used_mb = models.PositiveIntegerField(default=0)
    # Asynchronous attempts run, and their event age (Lambda's AsyncEventAge: queued → this attempt's start).
    event_age_count = models.PositiveIntegerField(default=0)
    event_age_sum_ms = models.PositiveBigIntegerField(default=0)
    event_age_max_ms = models.PositiveBigIntegerField(default=0)
    # The most RUNNING attempts of the function seen as one of this minute's attempts ended (itself
    # included): a sample, taken only at completions, so a peak between them can be missed.
    peak_concurrency = models.PositiveIntegerField(default=0)
    # A gauge: the events waiting in the dead-letter inbox after the minute's last change of it; None when
    # it did not change in this minute (the depth is then the last value before).
    dead_letters = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            # The upsert's conflict target; also serves every page's (function, minute range) query.
            models.UniqueConstraint(fields=["function", "minute"], name="rollup_function_minute"),
        ]
        indexes = [
            # The overall pages: every function of an owner over a window.
            models.Index(fields=["minute"], name="rollup_minute"),
            # The dead-letter depth as a window starts: a function's last gauge value before it, found
            # among the few minutes that have one rather than by walking back over every minute.
            models.Index(fields=["function", "minute"], condition=Q(dead_letters__isnull=False),
                         name="rollup_dead_letters"),
        ]

    def __str__(self):
        return f"{self.function_id} @ {self.minute:%Y-%m-%d %H:%M}"

    @property
    def gb_seconds(self):
        return gb_seconds_of(self.mb_ms_sum)

    @property
    def cost(self):
        return cost_of(self.cost_sum_units)


class DurationBucket(models.Model):
    """How many attempts of a function, cold or warm, ended in a minute with a run duration in one bucket
    of the fixed scheme in rollups.BUCKET_EDGES_MS."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="duration_buckets")
    minute = models.DateTimeField()
    cold = models.BooleanField()
    bucket = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target, and the percentile queries over (function, minute range).
            models.UniqueConstraint(fields=["function", "minute", "cold", "bucket"], name="duration_bucket_key"),
        ]
        indexes = [models.Index(fields=["minute"], name="duration_bucket_minute")]  # the overall page

    def __str__(self):
        return f"{self.function_id} @ {self.minute:%Y-%m-%d %H:%M} {'cold' if self.cold else 'warm'} #{self.bucket}"


def gb_seconds_of(mb_ms):
    return Decimal(mb_ms) / Decimal(1024 * 1000)


def cost_of(units):
    from invocations.billing import COST_QUANTUM

    return Decimal(units) * COST_QUANTUM
