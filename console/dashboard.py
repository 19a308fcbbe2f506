"""The dashboard home: the period's totals and top functions, its latest failures, and the platform's health."""

import json
from collections import defaultdict
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Substr
from django.http import Http404
from django.shortcuts import render

from console.views import background
from functions.models import Function
from invocations import queue
from invocations.metrics.models import DurationBucket, MinuteRollup, cost_of, gb_seconds_of
from invocations.metrics.rollups import percentile
from invocations.metrics.views import SUMMED, WINDOWS, window_bounds
from invocations.models import Invocation
from invocations.runtime.sandbox import layers

DASHBOARD_WINDOWS = ("24h", "7d", "30d")
TOP = 5
FAILURES = (Invocation.Status.FAILED, Invocation.Status.TIMED_OUT, Invocation.Status.THROTTLED)
RECENT_FAILURES = 10
# Enough of the error object for its message: a result can be megabytes.
SNIPPET_CHARS = 300


def home(request):
    """The user's dashboard: the period's totals and top functions (from the rollups, as the metrics pages),
    the period's latest failures, and whether the platform can run anything at all."""
    window = request.GET.get("window", "24h")
    if window not in DASHBOARD_WINDOWS:
        raise Http404("unknown window")
    start, end = window_bounds(WINDOWS[window][0])
    if window != "24h":
        # From a whole hour: rollups older than 48 hours are one row per hour (at HH:00), so a period starting
        # inside one would leave that hour out entirely. The period reaches back up to 59 minutes more.
        start = start.replace(minute=0)
    context = {"window": window, "windows": DASHBOARD_WINDOWS, "start": start, "end": end,
               "has_functions": Function.objects.filter(owner=request.user).exists(), "health": _health()}
    if context["has_functions"]:
        functions = _per_function(request.user, start, end)
        totals = {k: sum(f[k] for f in functions)
                  for k in ("invocations", "errors", "throttles", "mb_ms_sum", "cost_sum_units")}
        context.update({
            "totals": totals, "gb_seconds": gb_seconds_of(totals["mb_ms_sum"]),
            "cost": cost_of(totals["cost_sum_units"]),
            "error_rate": _rate(totals["errors"], totals["invocations"]),
            "top_cost": _top(functions, "cost_sum_units"), "top_errors": _top(functions, "errors"),
            "top_duration": _top(functions, "average_ms"),
            "failures": _recent_failures(request.user, start),
        })
    return render(request, "console/home.html", context)


def _rate(part, whole):
    return round(100 * part / whole, 1) if whole else None


def _per_function(user, start, end):
    """Return a dict of figures per function of `user` with rollups in [start, end)."""
    scope = {"function__owner": user, "minute__gte": start, "minute__lt": end}
    histograms = defaultdict(lambda: defaultdict(int))  # function id → {bucket: count}, cold and warm together
    for row in DurationBucket.objects.filter(**scope).values("function_id", "bucket").annotate(n=Sum("count")):
        histograms[row["function_id"]][row["bucket"]] += row["n"]
    functions = []
    # What the metrics pages add up, and what an average duration and GB-seconds need (without repeats).
    summed = dict.fromkeys((*SUMMED, "billed_requests", "duration_sum_cms", "mb_ms_sum"))
    for row in (MinuteRollup.objects.filter(**scope).values("function_id", "function__name")
                .annotate(**{k: Sum(k) for k in summed})):
        billed = row["billed_requests"]
        functions.append({
            **row, "name": row["function__name"], "cost": cost_of(row["cost_sum_units"]),
            "error_rate": _rate(row["errors"], row["invocations"]),
            # Run durations are summed only over the attempts that ran and billed (rollups.attempt_figures).
            "average_ms": (Decimal(row["duration_sum_cms"]) / 100 / billed).quantize(Decimal("0.01"))
                          if billed else None,
            "p99_ms": percentile(histograms[row["function_id"]], 99),
        })
    return functions


def _top(functions, key):
    """The TOP functions with the highest non-zero `key`, ties by name."""
    ranked = [f for f in functions if f[key]]
    return sorted(ranked, key=lambda f: (-f[key], f["name"]))[:TOP]


def _recent_failures(user, start):
    """The user's latest failed, timed-out or throttled invocations created since `start`, newest first.

    The one query on the invocation rows: SQLite serves it from invocation_function_status, reading only the
    period's failures of the user's functions (not every row of the period) and sorting those."""
    names = dict(Function.objects.filter(owner=user).values_list("id", "name"))
    # The functions as a subquery and their names from a dict, as the invocation list does: a join would be
    # made for every failure of the period before the sort.
    latest = (Invocation.objects
              .filter(function__in=Function.objects.filter(owner=user).values("id"), status__in=FAILURES,
                      created_at__gte=start)
              .order_by("-created_at", "-id").values("id")[:RECENT_FAILURES])
    # The error objects of those ten only: in one query, SQLite would read every sorted row's result.
    rows = (Invocation.objects.filter(id__in=latest).order_by("-created_at", "-id")
            .annotate(snippet=Substr("result", 1, SNIPPET_CHARS))
            .values("id", "function_id", "status", "error_type", "created_at", "snippet"))
    return [{**row, "function_name": names.get(row["function_id"], ""), "message": _error_message(row["snippet"])}
            for row in rows]


def _error_message(snippet):
    """Return the errorMessage of an error object from its first characters (it comes first in Lambda's)."""
    try:
        return json.loads(snippet)["errorMessage"]
    except (ValueError, KeyError, TypeError):
        prefix = '{"errorMessage": "'
        return snippet[len(prefix):] + "…" if snippet.startswith(prefix) else snippet


def _health():
    """What the dashboard shows of /status/: the workers and the runner, the queue's depth, the isolation layers."""
    redis = queue.connection()
    try:
        redis.ping()
        processes, depth, redis_error = background(redis), queue.queue().count, None
    except Exception as e:
        processes, depth, redis_error = {}, None, str(e)
    found = layers()
    return {"background": processes, "queue_depth": depth, "redis_error": redis_error, "layers": found,
            "layers_active": sum(active for active, _ in found.values())}
