import calendar
import csv
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import IntegerField, Max, OuterRef, Subquery, Sum
from django.db.models.expressions import RawSQL
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from functions.models import Function
from invocations.metrics import charts, costs
from invocations.metrics.models import DurationBucket, MinuteRollup, cost_of
from invocations.metrics.rollups import percentile

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
# Window → (minutes shown, minutes per step of the chart).
WINDOWS = {"1h": (60, 1), "24h": (1440, 30), "7d": (10080, 180), "30d": (43200, 1440)}
PERCENTILES = (50, 90, 99)
SUMMED = ("invocations", "errors", "throttles", "cold_starts", "cost_sum_units", "duration_sum_cms", "event_age_count",
          "event_age_sum_ms")


def step_index(model, start, step):
    """An SQL expression for the chart step (0, 1, …) of a rollup row: whole minutes since `start`, divided
    by `step` minutes. Grouped by in SQL, a 30-day window returns 30 rows instead of 43,200 minutes (and,
    for the histograms, instead of ~20 buckets a minute): Django's TruncHour and __date are Python
    functions row by row under SQLite, these are the database's own date arithmetic."""
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name('minute')}"
    if connection.vendor == "sqlite":
        # Minutes are whole, so rounding the day fraction (a float) gives them exactly.
        sql = f"CAST(ROUND((julianday({column}) - julianday(%s)) * 1440) AS INTEGER) / {int(step)}"
        start = connection.ops.adapt_datetimefield_value(start)
    else:
        sql = f"CAST(FLOOR(ROUND(EXTRACT(EPOCH FROM ({column} - %s)) / 60) / {int(step)}) AS INTEGER)"
    return RawSQL(sql, [start], output_field=IntegerField())


def _get_function_for_user(request, name):
    return get_object_or_404(Function, owner=request.user, name=name)


def window_bounds(minutes):
    """Return (start, end) of the last `minutes` whole minutes, the current minute included."""
    end = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(minutes=minutes), end


def metrics(request, name=None):
    function = _get_function_for_user(request, name) if name is not None else None
    window = request.GET.get("window", "24h")
    if window not in WINDOWS:
        raise Http404("unknown window")
    minutes, step = WINDOWS[window]
    start, end = window_bounds(minutes)
    if step % 60 == 0:
        # Steps of whole hours start on UTC boundaries (3-hour steps at 00:00, 03:00 …; days at midnight), as
        # CloudWatch aligns its periods: an hour compacted into one row at HH:00 (compaction.py) then falls
        # in the step that held all of its minutes. The window reaches back to the start of its first step.
        start = EPOCH + (start - EPOCH) // timedelta(minutes=step) * timedelta(minutes=step)
    steps = -(-int((end - start) / timedelta(minutes=1)) // step)  # the last step may be partial
    scope = {"function__owner": request.user, "minute__gte": start, "minute__lt": end}
    if function is not None:
        scope["function"] = function

    def step_of(minute):
        return int((minute - start).total_seconds() // 60) // step

    # Served from rollups only, grouped by step in the database: a row per function and step, and one per
    # step and histogram bucket.
    counts = {key: [0] * steps for key in SUMMED}
    peaks = {"peak_concurrency": [0] * steps, "event_age_max_ms": [0] * steps}
    # Across functions, a step's peak concurrency is the sum of each function's peak in it (their busiest
    # moments need not be the same instant: an upper bound); the event age's maximum is the oldest of theirs.
    rows = (MinuteRollup.objects.filter(**scope).annotate(step=step_index(MinuteRollup, start, step))
            .values("step", "function_id").annotate(**{k: Sum(k) for k in SUMMED}, peak_concurrency=Max("peak_concurrency"),
                                                    event_age_max_ms=Max("event_age_max_ms")))
    for row in rows:
        s = row["step"]
        for key in SUMMED:
            counts[key][s] += row[key]
        peaks["peak_concurrency"][s] += row["peak_concurrency"]
        peaks["event_age_max_ms"][s] = max(peaks["event_age_max_ms"][s], row["event_age_max_ms"])
    histograms = defaultdict(lambda: defaultdict(int))  # (cold, step or None) → {bucket: count}
    for row in (DurationBucket.objects.filter(**scope).annotate(step=step_index(DurationBucket, start, step))
                .values("step", "cold", "bucket").annotate(n=Sum("count"))):
        histograms[(row["cold"], row["step"])][row["bucket"]] += row["n"]
        histograms[(row["cold"], None)][row["bucket"]] += row["n"]

    duration_series, summary = [], []
    for cold, label in ((True, "cold"), (False, "warm")):
        for p in PERCENTILES:
            duration_series.append((f"p{p}-{label}", [percentile(histograms[(cold, s)], p) for s in range(steps)]))
        summary.append({"label": label, "count": sum(histograms[(cold, None)].values()),
                        "percentiles": [percentile(histograms[(cold, None)], p) for p in PERCENTILES]})
    cold_rate = [round(100 * c / n, 1) if n else None for c, n in zip(counts["cold_starts"], counts["invocations"])]
    step_costs = [cost_of(units) for units in counts["cost_sum_units"]]
    # Mean concurrency by Little's law: run time ended in the step ÷ the step's length (both in 1/100 ms).
    lengths = [step] * steps
    lengths[-1] = int((end - start) / timedelta(minutes=1)) - step * (steps - 1)  # a partial last step
    mean_concurrency = [(Decimal(cms) / (length * 60 * 1000 * 100)).quantize(Decimal("0.001")) for cms, length in
                        zip(counts["duration_sum_cms"], lengths)]
    age_average = [round(Decimal(ms) / n) if n else None for ms, n in zip(counts["event_age_sum_ms"],
                                                                        counts["event_age_count"])]
    age_maximum = [ms if n else None for ms, n in zip(peaks["event_age_max_ms"], counts["event_age_count"])]
    depth = _dead_letter_depth(request.user, function, start, steps, step_of)
    totals = {key: sum(values) for key, values in counts.items()}
    return render(request, "metrics/metrics.html", {
        "function": function, "window": window, "windows": list(WINDOWS), "start": start, "end": end,
        "step_minutes": step, "totals": totals, "total_cost": cost_of(totals["cost_sum_units"]),
        "cold_start_rate": round(100 * totals["cold_starts"] / totals["invocations"], 1) if totals["invocations"] else None,
        "summary": summary, "percentiles": PERCENTILES,
        "counts_chart": charts.bar_chart([(k, counts[k]) for k in ("invocations", "errors", "throttles")]),
        "duration_chart": charts.line_chart(duration_series),
        "cold_chart": charts.line_chart([("cold-start-rate", cold_rate)]),
        "cost_chart": charts.bar_chart([("cost", step_costs)]),
        "concurrency_chart": charts.line_chart([("concurrency-mean", mean_concurrency),
                                                ("concurrency-peak", peaks["peak_concurrency"])]),
        "event_age_chart": charts.line_chart([("event-age-average", age_average), ("event-age-maximum", age_maximum)]),
        "dead_letter_chart": charts.line_chart([("dead-letter-depth", depth)]),
        "peak_concurrency": max(peaks["peak_concurrency"]),
        "event_age_average": round(Decimal(totals["event_age_sum_ms"]) / totals["event_age_count"])
        if totals["event_age_count"] else None,
        "event_age_maximum": max(peaks["event_age_max_ms"]) if totals["event_age_count"] else None,
        "dead_letters_now": depth[-1],
    })


def _dead_letter_depth(user, function, start, steps, step_of):
    """The dead-letter inbox depth at the end of each step, summed over the functions: each function's
    gauge carried forward from its last value before the window over the minutes it did not change."""
    functions = Function.objects.filter(owner=user) if function is None else Function.objects.filter(pk=function.pk)
    before = functions.annotate(depth=Subquery(
        MinuteRollup.objects.filter(function=OuterRef("pk"), minute__lt=start, dead_letters__isnull=False)
        .order_by("-minute").values("dead_letters")[:1])).filter(depth__isnull=False).values_list("pk", "depth")
    depths = dict(before)
    changes = defaultdict(dict)  # function → {step: its last value in that step}
    for function_id, minute, value in (
            MinuteRollup.objects.filter(function__in=functions, minute__gte=start, dead_letters__isnull=False)
            .order_by("minute").values_list("function_id", "minute", "dead_letters")):
        if step_of(minute) < steps:
            changes[function_id][step_of(minute)] = value
    series = [0] * steps
    for function_id in depths.keys() | changes.keys():
        value = depths.get(function_id, 0)
        for s in range(steps):
            value = changes[function_id].get(s, value)
            series[s] += value
    return series


def _month(request):
    """The month asked for (?month=YYYY-MM, default this one, UTC) as (first instant, first of next)."""
    now = timezone.now()
    try:
        year, month = map(int, request.GET.get("month", f"{now:%Y-%m}").split("-"))
        first = datetime(year, month, 1, tzinfo=dt_timezone.utc)
    except ValueError:
        raise Http404("month must be YYYY-MM")
    days = calendar.monthrange(year, month)[1]
    return first, first + timedelta(days=days)


def _cost_rows(request, first, after):
    """Per function and per UTC day: billed requests, MB-ms and billed ms, from the rollups. Each row's
    "day" is a date."""
    rows = (MinuteRollup.objects.filter(function__owner=request.user, minute__gte=first, minute__lt=after)
            .annotate(day_index=step_index(MinuteRollup, first, 1440))
            .values("function_id", "function__name", "function__memory_size", "day_index")
            .annotate(requests=Sum("billed_requests"), mb_ms=Sum("mb_ms_sum"), billed_ms=Sum("billed_ms_sum"),
                      max_used=Max("max_memory_used_mb"))
            .order_by("function__name", "day_index"))
    return [{**row, "day": (first + timedelta(days=row["day_index"])).date()} for row in rows]


def cost_report(request):
    first, after = _month(request)
    free_tier = request.GET.get("free_tier") == "on"
    functions, days = {}, defaultdict(lambda: [0, 0])
    for row in _cost_rows(request, first, after):
        f = functions.setdefault(row["function_id"], {
            "name": row["function__name"], "memory_size": row["function__memory_size"], "requests": 0, "mb_ms": 0,
            "billed_ms": 0, "max_used": 0})
        f["requests"] += row["requests"]
        f["mb_ms"] += row["mb_ms"]
        f["billed_ms"] += row["billed_ms"]
        f["max_used"] = max(f["max_used"], row["max_used"] or 0)
        days[row["day"]][0] += row["requests"]
        days[row["day"]][1] += row["mb_ms"]
    per_function = []
    for f in functions.values():
        line = {"name": f["name"], **costs.charges(f["requests"], f["mb_ms"])}
        if f["max_used"]:
            suggested = costs.suggested_memory(f["max_used"])
            if suggested < f["memory_size"]:
                line["hint"] = {"max_used": f["max_used"], "configured": f["memory_size"], "suggested": suggested,
                                "cost": costs.at_memory(f["requests"], f["billed_ms"], suggested)}
            else:
                line["hint"] = {"max_used": f["max_used"], "configured": f["memory_size"], "suggested": None}
        per_function.append(line)
    month = costs.charges(sum(f["requests"] for f in functions.values()), sum(f["mb_ms"] for f in functions.values()))
    billed = costs.with_free_tier(month) if free_tier else month
    now = timezone.now()
    projection = None
    if first <= now < after:
        projection = costs.projected(billed["total"], (now - first).total_seconds(), (after - first).total_seconds())
    if request.GET.get("format") == "csv":
        return _csv(first, after, request)
    return render(request, "metrics/costs.html", {
        "first": first, "month": f"{first:%Y-%m}", "free_tier": free_tier, "per_function": per_function,
        "per_day": [{"day": day, **costs.charges(*figures)} for day, figures in sorted(days.items())],
        "month_total": month, "billed": billed, "projection": projection,
        "price_per_request": settings.PRICE_PER_REQUEST, "price_per_gb_second": settings.PRICE_PER_GB_SECOND,
        "free_requests": costs.FREE_REQUESTS, "free_gb_seconds": costs.FREE_GB_SECONDS,
    })


def _csv(first, after, request):
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="lambda-costs-{first:%Y-%m}.csv"'
    writer = csv.writer(response)
    writer.writerow(["day", "function", "requests", "gb_seconds", "request_charge_usd", "compute_charge_usd",
                     "total_usd"])
    for row in _cost_rows(request, first, after):
        c = costs.charges(row["requests"], row["mb_ms"])
        writer.writerow([row["day"].isoformat(), row["function__name"], c["requests"],
                         *(format(c[k], "f") for k in ("gb_seconds", "request_charge", "compute_charge", "total"))])
    return response
