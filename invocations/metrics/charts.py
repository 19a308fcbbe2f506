"""Geometry for the hand-written SVG charts: the templates draw what these return."""

from decimal import Decimal

WIDTH, HEIGHT, PAD = 600, 160, 4


def _scale(series):
    top = max((v for _, values in series for v in values if v is not None), default=0)
    return top if top > 0 else 1


def _values_attr(values):
    # format "f": a Decimal never in exponent notation (Decimal("8E-7") → 0.0000008).
    return ",".join("" if v is None else format(v.normalize(), "f") if isinstance(v, Decimal) else str(v) for v in values)


def bar_chart(series):
    """Grouped bars: [(name, values)] → {"series": [{name, values, rects}], "top"}; one group per step."""
    top = _scale(series)
    steps = len(series[0][1]) if series else 0
    slot = (WIDTH - 2 * PAD) / max(steps, 1)
    width = max(slot * 0.8 / max(len(series), 1), 0.5)
    drawn = []
    for i, (name, values) in enumerate(series):
        rects = []
        for step, value in enumerate(values):
            if not value:
                continue
            h = float(value) / float(top) * (HEIGHT - 2 * PAD)
            rects.append({"x": round(PAD + step * slot + slot * 0.1 + i * width, 2), "y": round(HEIGHT - PAD - h, 2),
                          "w": round(width, 2), "h": round(h, 2), "value": value, "step": step})
        drawn.append({"name": name, "values": _values_attr(values), "rects": rects})
    return {"series": drawn, "top": top, "width": WIDTH, "height": HEIGHT}


def line_chart(series):
    """Lines: [(name, values with None for no data)] → {"series": [{name, values, points}], "top"}."""
    top = _scale(series)
    steps = len(series[0][1]) if series else 0
    slot = (WIDTH - 2 * PAD) / max(steps - 1, 1)
    drawn = []
    for name, values in series:
        points = [(round(PAD + step * slot, 2), round(HEIGHT - PAD - float(v) / float(top) * (HEIGHT - 2 * PAD), 2))
                  for step, v in enumerate(values) if v is not None]
        drawn.append({"name": name, "values": _values_attr(values),
                      "points": " ".join(f"{x},{y}" for x, y in points), "dots": points})
    return {"series": drawn, "top": top, "width": WIDTH, "height": HEIGHT}
