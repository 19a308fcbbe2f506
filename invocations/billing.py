"""Lambda's arithmetic for what an invocation costs, in Decimal so sums never drift."""

import math
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings

COST_QUANTUM = Decimal("1e-16")


def billed_duration_ms(duration_ms, init_duration_ms=None):
    """Round the run time (plus init on a cold start, when billed) up to the next whole millisecond."""
    if duration_ms is None:
        return None
    total = Decimal(duration_ms)
    if init_duration_ms is not None and settings.BILL_INIT_DURATION:
        total += Decimal(init_duration_ms)
    return max(1, math.ceil(total))


def gb_seconds(memory_mb, billed_ms):
    """Return memory in GB × billed seconds; exact, since 1024 and 1000 divide cleanly in Decimal."""
    if billed_ms is None:
        return Decimal(0)
    return Decimal(memory_mb) / Decimal(1024) * Decimal(billed_ms) / Decimal(1000)


def cost(gb_s):
    """Return the request charge plus the compute charge, in US dollars."""
    total = settings.PRICE_PER_REQUEST + gb_s * settings.PRICE_PER_GB_SECOND
    return total.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
