from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def plain(value, places=None):
    """Show a Decimal without exponent notation (Decimal("2E-7") → 0.0000002), to `places` or without trailing zeros."""
    if value is None:
        return "—"
    # A float through str(): Decimal(6.1) is 6.0999999999999996447…, the binary value the float holds.
    value = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-int(places)))
    else:
        value = value.normalize()  # 2.50 → 2.5
    return format(value, "f")
