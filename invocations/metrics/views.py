import calendar
import csv
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db.models import Max, Sum
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from functions.models import Function
from invocations.metrics import charts, costs
from invocations.metrics.models import DurationBucket, MinuteRollup, cost_of
from invocations.metrics.rollups import percentile

# Window → (minutes shown, minutes per step of the chart).
WINDOWS = {"1h": (60, 1), "24h": (1440, 30), "7d": (10080, 180), "30d": (43200, 1440)}
PERCENTILES = (50, 90, 99)
SUMMED = ("invocations", "errors", "throttles", "cold_starts", "cost_sum_units")


def _get_function_for_user(request, name):
    return get_object_or_404(Function, owner=request.user, name=name)


def metrics(request, name=None):
    function = _get_function_for_user(request, name) if name is not None else None
    window = request.GET.get("window", "24h")
    if window not in WINDOWS:
        raise Http404("unknown window")
    minutes, step = WINDOWS[window]
    end = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    steps = minutes // step
    scope = {"function__owner": request.user, "minute__gte": start, "minute__lt": end}
    if function is not None:
        scope["function"] = function

    def step_of(minute):
        return int((minute - start).total_seconds() // 60) // step

    # Served from rollups only: at most one row per minute of the window, and one per histogram bucket.
    counts = {key: [0] * steps for key in SUMMED}
    for row in MinuteRollup.objects.filter(**scope).values("minute").annotate(**{k: Sum(k) for k in SUMMED}):
        for key in SUMMED:
            counts[key][step_of(row["minute"])] += row[key]
    histograms = defaultdict(lambda: defaultdict(int))  # (cold, step or None) → {bucket: count}
    for row in DurationBucket.objects.filter(**scope).values("minute", "cold", "bucket").annotate(n=Sum("count")):
        histograms[(row["cold"], step_of(row["minute"]))][row["bucket"]] += row["n"]
        histograms[(row["cold"], None)][row["bucket"]] += row["n"]

    duration_series, summary = [], []
    for cold, label in ((True, "cold"), (False, "warm")):
        for p in PERCENTILES:
            duration_series.append((f"p{p}-{label}", [percentile(histograms[(cold, s)], p) for s in range(steps)]))
        summary.append({"label": label, "count": sum(histograms[(cold, None)].values()),
                        "percentiles": [percentile(histograms[(cold, None)], p) for p in PERCENTILES]})
    cold_rate = [round(100 * c / n, 1) if n else None for c, n in zip(counts["cold_starts"], counts["invocations"])]
    step_costs = [cost_of(units) for units in counts["cost_sum_units"]]
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
    })


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
    """Per function and per UTC day: billed requests, MB-ms and billed ms, from the rollups."""
    return (MinuteRollup.objects.filter(function__owner=request.user, minute__gte=first, minute__lt=after)
            .values("function_id", "function__name", "function__memory_size", "minute__date")
            .annotate(requests=Sum("billed_requests"), mb_ms=Sum("mb_ms_sum"), billed_ms=Sum("billed_ms_sum"),
                      max_used=Max("max_memory_used_mb"))
            .order_by("function__name", "minute__date"))


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
        days[row["minute__date"]][0] += row["requests"]
        days[row["minute__date"]][1] += row["mb_ms"]
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
        writer.writerow([row["minute__date"].isoformat(), row["function__name"], c["requests"],
                         *(format(c[k], "f") for k in ("gb_seconds", "request_charge", "compute_charge", "total"))])
    return response
