"""The functions list's figures, from the rollups: they survive retention purges, and cost a range read of
the (function, minute) index instead of a scan of every invocation row."""

from datetime import timedelta

from django.db.models import OuterRef, Q, Subquery, Sum

from functions.models import Function
from invocations.metrics.models import MinuteRollup, cost_of
from invocations.metrics.rollups import minute_of


def annotate_function_list(functions, now):
    """Set last_invoked (the minute its last attempt ended), invocations_24h, errors_24h and cost_month on
    each of `functions` (a list)."""
    ids = [f.pk for f in functions]
    day = {row["function_id"]: row for row in (
        MinuteRollup.objects.filter(function_id__in=ids, minute__gte=minute_of(now - timedelta(hours=24)))
        .values("function_id").annotate(invocations=Sum("invocations"), errors=Sum("errors")))}
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = dict(MinuteRollup.objects.filter(function_id__in=ids, minute__gte=month_start)
                 .values("function_id").annotate(units=Sum("cost_sum_units")).values_list("function_id", "units"))
    # One index seek per function: a MAX(minute) … GROUP BY would read every rollup of each function.
    # Only minutes in which something was invoked: a dead-letter inbox change writes a rollup row too.
    latest = (MinuteRollup.objects.filter(Q(invocations__gt=0) | Q(throttles__gt=0), function_id=OuterRef("pk"))
              .order_by("-minute").values("minute")[:1])
    last = dict(Function.objects.filter(pk__in=ids).annotate(last=Subquery(latest)).values_list("pk", "last"))
    for function in functions:
        figures = day.get(function.pk, {})
        function.last_invoked = last.get(function.pk)
        function.invocations_24h = figures.get("invocations", 0)
        function.errors_24h = figures.get("errors", 0)
        function.cost_month = cost_of(month.get(function.pk) or 0)
