import json
from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def usd(value):
    """Format dollars with enough digits for a single invocation's fraction of a cent."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "$0"
    if abs(value) >= Decimal("0.01"):
        return f"${value:,.4f}"
    return f"${value:.10f}".rstrip("0")


@register.filter
def ms(value):
    if value is None:
        return "—"
    return f"{Decimal(value):,.2f} ms"


@register.filter
def decimal(value):
    """Show a Decimal without trailing zeros (0.0177500000000 → 0.01775)."""
    if value is None:
        return "—"
    return f"{Decimal(value).normalize():f}"


@register.filter
def pretty_json(text):
    """Indent JSON text for reading; leave anything else as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text
