import json

from django import template

register = template.Library()


@register.filter
def as_json(value):
    """Typed JSON as one line of JSON (not Python's repr)."""
    return json.dumps(value, ensure_ascii=False)
