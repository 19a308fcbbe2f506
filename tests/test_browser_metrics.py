"""In Chromium, against gunicorn and the real workers: the metrics page draws what ran, and an invocation's
page replays it on another version (issue 7, item 8; the live tail's browser test is in
test_invocation_pages.py)."""

import json
import re

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import reverse

from functions.models import Alias
from invocations.invoke import invoke_and_wait
from invocations.models import Invocation
from tests.base import World, handler_zip
from tests.browser import browser, page  # noqa: F401 (fixtures)
from tests.browser import sign_in, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("workers")]

HANDLER = handler_zip("""
    def handler(event, context):
        if event.get("fail"):
            raise ValueError("asked to fail")
        return {"echo": event, "version": context.function_version}
""")


def series(page, chart, name):
    """The values a chart's series was drawn from (its data-values), "" where a step has none."""
    group = page.locator(f'#chart-{chart} g[data-series="{name}"]')
    return group.get_attribute("data-values").split(",")


def total(values):
    return sum(int(v) for v in values if v)


def test_the_metrics_page_draws_each_series_from_what_ran(page):
    sign_in(page, "erin", "erin-password-1", start="/functions/")
    fn = World().create_function(HANDLER, name="charted", owner=User.objects.get(username="erin"))
    outcomes = [invoke_and_wait(fn, event).status for event in
                ['{"n": 1}', '{"fail": true}', '{"n": 2}', '{"fail": true}', '{"n": 3}']]
    assert outcomes.count(Invocation.Status.SUCCEEDED) == 3 and outcomes.count(Invocation.Status.FAILED) == 2

    page.goto(reverse("metrics:function", args=["charted"]) + "?window=1h")
    assert page.locator("#total-invocations").inner_text() == "5"
    assert page.locator("#total-errors").inner_text() == "2"
    # One value per minute of the hour; the five may straddle a minute's end, so compare the sums.
    invocations = series(page, "invocations", "invocations")
    assert len(invocations) == 60
    assert total(invocations) == 5
    assert total(series(page, "invocations", "errors")) == 2
    assert total(series(page, "invocations", "throttles")) == 0
    # Bars drawn: one per minute with invocations, one per minute with errors.
    bars = page.locator('#chart-invocations g[data-series="invocations"] rect')
    assert bars.count() == sum(1 for v in invocations if v != "0")
    assert page.locator('#chart-invocations g[data-series="errors"] rect').count() >= 1
    # The first invocation started its environment (each worker's first does): cold and warm lines.
    cold = Invocation.objects.filter(function=fn, cold_start=True).count()
    assert 1 <= cold <= 2
    assert page.locator("#durations-cold td.num").first.inner_text() == str(cold)
    assert page.locator("#durations-warm td.num").first.inner_text() == str(5 - cold)
    for name in ("p50-cold", "p90-cold", "p99-cold", "p50-warm", "p90-warm", "p99-warm"):
        assert page.locator(f'#chart-duration g[data-series="{name}"]').count() == 1, name
    assert any(series(page, "duration", "p50-cold")) and any(series(page, "duration", "p99-warm"))
    assert page.locator('#chart-duration g[data-series="p50-warm"] circle').count() >= 1
    # One invocation at a time: every completion saw one running (itself).
    assert max(int(v) for v in series(page, "concurrency", "concurrency-peak")) == 1
    assert page.locator('#chart-concurrency g[data-series="concurrency-mean"] polyline').count() == 1
    # Synchronous invocations only: no event age, an empty inbox.
    assert not any(series(page, "event-age", "event-age-average"))
    assert set(series(page, "dead-letters", "dead-letter-depth")) == {"0"}
    cold_rate = [v for v in series(page, "cold-start-rate", "cold-start-rate") if v]
    assert cold_rate and float(max(cold_rate, key=float)) > 0


def test_an_invocation_replays_on_an_alias_of_another_version(page):
    sign_in(page, "frank", "frank-password-1", start="/functions/")
    fn = World().create_function(HANDLER, name="replayed", owner=User.objects.get(username="frank"))
    with transaction.atomic():
        v1, _ = fn.publish("one")
    Alias.objects.create(function=fn, name="live", version=v1)
    original = invoke_and_wait(fn, '{"replay": "me"}')
    assert json.loads(original.result)["version"] == "$LATEST"

    page.goto(original.get_absolute_url())
    page.select_option("#id_qualifier", "live")
    page.select_option("#id_invocation_type", "RequestResponse")
    submit(page, "#replay", r"/invocations/[0-9a-f-]{36}/$")
    again = Invocation.objects.get(pk=re.search(r"/invocations/([0-9a-f-]{36})/$", page.url).group(1))
    assert again.pk != original.pk
    assert (again.event, again.qualifier, again.version, again.status) == (
        '{"replay": "me"}', "live", "1", Invocation.Status.SUCCEEDED)
    # Its page shows what version 1 answered.
    assert page.locator("#status").inner_text() == "Succeeded"
    assert json.loads(page.locator("#result").inner_text()) == {"echo": {"replay": "me"}, "version": "1"}
    assert f"Replayed {original.id}." in page.content()
