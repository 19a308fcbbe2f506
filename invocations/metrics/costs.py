"""Cost arithmetic over rollups, in Decimal: charges, the free tier, the month-end projection, right-sizing."""

import math
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings

from invocations.metrics.models import gb_seconds_of

FREE_REQUESTS = 1_000_000
FREE_GB_SECONDS = Decimal(400_000)
CENT_FRACTIONS = Decimal("0.0000000001")  # shown to 1e-10 dollars: small enough for one invocation


def charges(requests, mb_ms):
    """Return {requests, gb_seconds, request_charge, compute_charge, total} of billed requests and MB-ms."""
    gb_s = gb_seconds_of(mb_ms)
    request_charge = requests * settings.PRICE_PER_REQUEST
    compute_charge = gb_s * settings.PRICE_PER_GB_SECOND
    return {"requests": requests, "gb_seconds": gb_s, "request_charge": request_charge,
            "compute_charge": compute_charge, "total": request_charge + compute_charge}


def with_free_tier(month):
    """Return a month's `charges` with Lambda's monthly free tier (per account) taken off."""
    requests = max(month["requests"] - FREE_REQUESTS, 0)
    gb_s = max(month["gb_seconds"] - FREE_GB_SECONDS, Decimal(0))
    request_charge = requests * settings.PRICE_PER_REQUEST
    compute_charge = gb_s * settings.PRICE_PER_GB_SECOND
    return {"requests": month["requests"], "gb_seconds": month["gb_seconds"], "request_charge": request_charge,
            "compute_charge": compute_charge, "total": request_charge + compute_charge}


def projected(total_so_far, elapsed_seconds, month_seconds):
    """Return the month-end total if the month goes on as it went so far (linear)."""
    if elapsed_seconds <= 0:
        return total_so_far
    return total_so_far * Decimal(month_seconds) / Decimal(elapsed_seconds)


def suggested_memory(max_used_mb):
    """The rule shown on the page: the smallest setting ≥ max used × 1.2, rounded up to 64 MB, at least 128."""
    return max(128, math.ceil(Decimal(max_used_mb) * Decimal("1.2") / 64) * 64)


def at_memory(requests, billed_ms, memory_mb):
    """Return what `requests` billed for `billed_ms` would have cost at `memory_mb` (same durations)."""
    return charges(requests, billed_ms * memory_mb)["total"]


def money(value):
    return value.quantize(CENT_FRACTIONS, rounding=ROUND_HALF_EVEN)
