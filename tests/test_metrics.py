"""Per-minute rollups, the metrics charts and the cost pages (invocations.metrics).

Hand-computed cases use Lambda's x86 default prices: $0.20 per million requests, $0.0000166667 per GB-second.
"""

import csv
import io
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from unittest import mock

from django.core.management import call_command
from django.db import connection
from django.test import SimpleTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from invocations.invoke import invoke
from invocations.metrics import costs
from invocations.metrics.models import DurationBucket, MinuteRollup
from invocations.metrics.rollups import BUCKET_EDGES_MS, bucket_of, percentile, rebuild, record
from invocations.metrics.views import WINDOWS
from invocations.models import Invocation
from tests.base import BaseTestCase, WorkerTestCase, handler_zip
from tests.processes import wait_for

PRICES = dict(PRICE_PER_REQUEST=Decimal("0.0000002"), PRICE_PER_GB_SECOND=Decimal("0.0000166667"))

HANDLER = handler_zip("""
    import time

    def handler(event, context):
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("fail"):
            raise ValueError("asked to fail")
        return {"ok": True}
""")


class PercentileTests(SimpleTestCase):
    def test_bucket_edges_grow_by_an_eighth_power_of_two(self):
        self.assertEqual(BUCKET_EDGES_MS[0], Decimal("1.00"))
        self.assertEqual(BUCKET_EDGES_MS[8], Decimal("2.00"))
        self.assertEqual(BUCKET_EDGES_MS[1], Decimal("1.09"))  # 2^(1/8) = 1.0905…
        self.assertEqual(BUCKET_EDGES_MS[80], Decimal("1024.00"))

    def test_a_duration_on_an_edge_belongs_to_the_bucket_it_closes(self):
        self.assertEqual(bucket_of(Decimal("0.01")), 0)
        self.assertEqual(bucket_of(Decimal("1.00")), 0)
        self.assertEqual(bucket_of(Decimal("1.01")), 1)
        self.assertEqual(bucket_of(Decimal("2.00")), 8)
        self.assertEqual(bucket_of(Decimal("2.01")), 9)
        self.assertEqual(bucket_of(Decimal("5000000")), len(BUCKET_EDGES_MS) - 1)

    def test_the_reported_edge_is_never_below_and_at_most_9_1_percent_above_the_duration(self):
        for hundredths in range(100, 90_000_000, 997):
            d = Decimal(hundredths) / 100
            edge = BUCKET_EDGES_MS[bucket_of(d)]
            self.assertGreaterEqual(edge, d)
            self.assertLessEqual(edge / d, Decimal("1.091"), d)

    def test_nearest_rank_percentiles_of_a_hand_counted_histogram(self):
        # 10 durations: 5 of ≤ 1 ms, 4 in (1.83, 2.00] ms, 1 in (3.67, 4.00] ms.
        counts = {0: 5, 8: 4, 16: 1}
        self.assertEqual(percentile(counts, 50), Decimal("1.00"))  # rank 5
        self.assertEqual(percentile(counts, 51), Decimal("2.00"))  # rank ceil(5.1) = 6
        self.assertEqual(percentile(counts, 90), Decimal("2.00"))  # rank 9
        self.assertEqual(percentile(counts, 99), Decimal("4.00"))  # rank ceil(9.9) = 10

    def test_the_rank_has_no_float_drift(self):
        # In floats 0.99 × 100 = 99.00000000000001, whose ceiling would wrongly be rank 100.
        counts = {0: 99, 40: 1}
        self.assertEqual(percentile(counts, 99), Decimal("1.00"))
        self.assertEqual(percentile(counts, 100), BUCKET_EDGES_MS[40])

    def test_no_durations_have_no_percentile(self):
        self.assertIsNone(percentile({}, 50))


@override_settings(**PRICES)
class CostArithmeticTests(SimpleTestCase):
    def test_charges_of_three_requests_at_128_mb(self):
        # 3 requests billed 500 ms each at 128 MB: 0.125 GB × 1.5 s = 0.1875 GB-s.
        c = costs.charges(3, 128 * 1500)
        self.assertEqual(c["gb_seconds"], Decimal("0.1875"))
        self.assertEqual(c["request_charge"], Decimal("0.0000006"))
        self.assertEqual(c["compute_charge"], Decimal("0.0000031250062500"))  # 0.1875 × 0.0000166667
        self.assertEqual(c["total"], Decimal("0.0000037250062500"))

    def test_a_million_one_millisecond_requests_add_up_exactly(self):
        c = costs.charges(1_000_000, 1024 * 1_000_000)  # 1 GB × 1 ms each: 1000 GB-s
        self.assertEqual(c["gb_seconds"], Decimal(1000))
        self.assertEqual(c["total"], Decimal("0.2") + Decimal("0.0166667000"))

    def test_the_free_tier_takes_a_million_requests_and_400000_gb_seconds_off_the_month(self):
        month = costs.charges(1_500_000, 500_000 * 1024 * 1000)
        free = costs.with_free_tier(month)
        self.assertEqual(free["request_charge"], Decimal("0.1"))  # 500,000 × $0.0000002
        self.assertEqual(free["compute_charge"], Decimal("1.66667"))  # 100,000 × $0.0000166667
        self.assertEqual(free["total"], Decimal("1.76667"))
        self.assertEqual(costs.with_free_tier(costs.charges(10, 1024 * 5000))["total"], 0)

    def test_the_projection_extends_the_month_so_far_linearly(self):
        self.assertEqual(costs.projected(Decimal("10"), 10 * 86400, 30 * 86400), Decimal(30))
        self.assertEqual(costs.projected(Decimal("1.5"), 0, 30 * 86400), Decimal("1.5"))

    def test_the_suggested_memory_is_max_used_times_1_2_rounded_up_to_64_mb(self):
        self.assertEqual(costs.suggested_memory(50), 128)
        self.assertEqual(costs.suggested_memory(107), 192)  # 128.4 → 192
        self.assertEqual(costs.suggested_memory(200), 256)  # 240 → 256
        self.assertEqual(costs.suggested_memory(640), 768)  # exactly 768
        self.assertEqual(costs.at_memory(2, 1000, 256), Decimal("0.0000004") + Decimal("0.25") * PRICES["PRICE_PER_GB_SECOND"])


def snapshot():
    rollups = {(r.function_id, r.minute): {f.name: getattr(r, f.name) for f in MinuteRollup._meta.fields
                                           if f.name not in ("id", "function", "minute")}
               for r in MinuteRollup.objects.all()}
    buckets = {(b.function_id, b.minute, b.cold, b.bucket): b.count for b in DurationBucket.objects.all()}
    return rollups, buckets


@override_settings(**PRICES)
class RollupTests(WorkerTestCase):
    maxDiff = None
    def test_rollups_kept_by_the_workers_equal_a_recomputation_from_the_rows(self):
        fn = self.create_function(HANDLER, name="metered")
        slow = self.create_function(HANDLER, name="slow", timeout=1, memory_size=256)
        closed = self.create_function(HANDLER, name="closed")
        closed.reserved_concurrency = 0
        closed.save()
        # Asynchronous events, so both workers end attempts of the same function in the same minutes.
        events = [invoke(fn, "{}", kind=Invocation.Kind.ASYNC) for _ in range(6)]
        finished = wait_for(lambda: Invocation.objects.filter(pk__in=[e.pk for e in events],
                                                              status=Invocation.Status.SUCCEEDED).count() == 6, 60)
        self.assertTrue(finished, "the asynchronous events did not all succeed")
        for event in ['{"fail": true}', '{"fail": true}', "{}"]:
            self.invoke(fn, event)
        self.assertEqual(self.invoke(slow, '{"sleep": 3}').status, Invocation.Status.TIMED_OUT)
        self.assertEqual(invoke(closed, "{}").status, Invocation.Status.THROTTLED)

        rows = Invocation.objects.exclude(status=Invocation.Status.THROTTLED)
        incremental = snapshot()
        totals = {name: sum(r[name] for r in incremental[0].values())
                  for name in ("invocations", "errors", "timeouts", "throttles", "cold_starts", "billed_requests",
                               "billed_ms_sum", "mb_ms_sum", "cost_sum_units")}
        self.assertEqual(totals["invocations"], 10)  # 6 + 3 + 1; not the throttled one
        self.assertEqual(totals["errors"], 3)
        self.assertEqual(totals["timeouts"], 1)
        self.assertEqual(totals["throttles"], 1)
        self.assertEqual(totals["billed_requests"], 10)
        cold = rows.filter(cold_start=True).count()
        self.assertGreaterEqual(cold, 2)  # each function's first invocation at least
        self.assertEqual(totals["cold_starts"], cold)
        self.assertEqual(totals["billed_ms_sum"], sum(r.billed_duration_ms for r in rows))
        self.assertEqual(totals["mb_ms_sum"], sum(r.billed_duration_ms * r.memory_size_mb for r in rows))
        self.assertEqual(sum(r.cost for r in MinuteRollup.objects.all()), sum(r.cost for r in rows))
        self.assertEqual(sum(incremental[1].values()), 10)
        self.assertEqual(max(r["max_memory_used_mb"] for r in incremental[0].values()),
                         max(r.max_memory_used_mb for r in rows))

        rebuild()
        self.assertEqual(snapshot(), incremental)


# Retention off: its rows end on fixed dates, which a rebuild would otherwise leave alone once they are
# past the retention horizon (invocations.retention).
@override_settings(INVOCATION_RETENTION_DAYS=0, **PRICES)
class RecordAndRebuildTests(BaseTestCase):
    """What a row cannot tell apart by itself: the platform's own failures and retried events."""

    def row(self, **fields):
        fn = self.create_function(HANDLER, name="rows")
        values = dict(function=fn, config={}, event="{}", memory_size_mb=128, attempts=1,
                      finished_at=datetime(2026, 11, 2, 10, 5, 30, tzinfo=dt_timezone.utc))
        return Invocation.objects.create(**{**values, **fields})

    def test_a_platform_failure_counts_as_an_error_but_bills_nothing_of_an_earlier_attempt(self):
        # As the orphan sweep holds it: the row still has the first attempt's duration and bill.
        invocation = self.row(status="FAILED", error_type="ServiceException", attempts=2, cold_start=True,
                              duration_ms=Decimal("12.5"), billed_duration_ms=13, max_memory_used_mb=40,
                              cost=Decimal("0.0000002270833333"))
        record(invocation)
        r = MinuteRollup.objects.get()
        self.assertEqual((r.minute, r.invocations, r.errors, r.billed_requests, r.billed_ms_sum, r.cold_starts),
                         (datetime(2026, 11, 2, 10, 5, tzinfo=dt_timezone.utc), 1, 1, 0, 0, 0))
        self.assertFalse(DurationBucket.objects.exists())

    def test_a_rebuild_counts_a_retried_events_earlier_attempts_as_errors_with_its_whole_bill(self):
        self.row(status="SUCCEEDED", attempts=3, cold_start=False, duration_ms=Decimal("2.00"),
                 billed_duration_ms=30, max_memory_used_mb=40, cost=Decimal("0.0000006625000000"))
        call_command("rebuild_rollups", stdout=io.StringIO())
        r = MinuteRollup.objects.get()
        self.assertEqual((r.invocations, r.errors, r.billed_requests, r.billed_ms_sum, r.mb_ms_sum),
                         (3, 2, 1, 30, 128 * 30))
        self.assertEqual(r.cost, Decimal("0.0000006625"))
        self.assertEqual(r.gb_seconds, Decimal("0.00375"))
        self.assertEqual(DurationBucket.objects.get().bucket, 8)

    def test_a_rebuild_replaces_what_was_there(self):
        self.row(status="TIMED_OUT", cold_start=True, duration_ms=Decimal("1000.00"), billed_duration_ms=1000,
                 max_memory_used_mb=50, cost=Decimal("0.0000022833375000"))
        rebuild()
        rebuild()
        r = MinuteRollup.objects.get()
        self.assertEqual((r.invocations, r.errors, r.timeouts, r.cold_starts, r.max_memory_used_mb),
                         (1, 1, 1, 1, 50))
        self.assertEqual(DurationBucket.objects.get().count, 1)


def rollup(function, minute, **figures):
    return MinuteRollup.objects.create(function=function, minute=minute, **figures)


@override_settings(**PRICES)
class MetricsPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="charted")
        self.bobs = self.create_function(HANDLER, name="bobs", owner=self.bob)
        self.now = timezone.now().replace(second=0, microsecond=0)
        rollup(self.fn, self.now, invocations=4, errors=1, cold_starts=1, billed_requests=4, throttles=2,
               cost_sum_units=8_000_000_000)
        rollup(self.fn, self.now - timedelta(minutes=2), invocations=1, billed_requests=1)
        # Warm: 3 of ≤ 2 ms, 1 of ≤ 4 ms; cold: 1 of ≤ 1024 ms.
        DurationBucket.objects.create(function=self.fn, minute=self.now, cold=False, bucket=8, count=3)
        DurationBucket.objects.create(function=self.fn, minute=self.now, cold=False, bucket=16, count=1)
        DurationBucket.objects.create(function=self.fn, minute=self.now, cold=True, bucket=80, count=1)
        rollup(self.bobs, self.now, invocations=1000, errors=1000, billed_requests=1000)
        self.client.force_login(self.alice)

    def series(self, response, chart, name):
        import re
        html = response.content.decode()
        figure = html[html.index(f'id="chart-{chart}"'):]
        match = re.search(rf'data-series="{name}" data-values="([^"]*)"', figure)
        self.assertIsNotNone(match, f"no series {name} in chart {chart}")
        return match.group(1).split(",")

    def test_the_function_page_draws_each_series_minute_by_minute_over_the_last_hour(self):
        response = self.client.get(reverse("metrics:function", args=["charted"]) + "?window=1h")
        self.assertEqual(response.status_code, 200)
        invocations = self.series(response, "invocations", "invocations")
        self.assertEqual(len(invocations), 60)
        self.assertEqual(invocations[-1], "4")
        self.assertEqual(invocations[-3], "1")
        self.assertEqual(self.series(response, "invocations", "errors")[-1], "1")
        self.assertEqual(self.series(response, "invocations", "throttles")[-1], "2")
        self.assertEqual(self.series(response, "duration", "p50-warm")[-1], "2")
        self.assertEqual(self.series(response, "duration", "p99-warm")[-1], "4")
        self.assertEqual(self.series(response, "duration", "p90-cold")[-1], "1024")
        self.assertEqual(self.series(response, "duration", "p50-cold")[-3], "")  # no data, no point
        self.assertEqual(self.series(response, "cold-start-rate", "cold-start-rate")[-1], "25.0")
        self.assertEqual(self.series(response, "cost", "cost")[-1], "0.0000008")  # 8e9 × 1e-16 dollars
        self.assertContains(response, '<td id="total-invocations">5</td>', html=True)
        self.assertContains(response, '<td id="cold-start-rate">20.0%</td>', html=True)
        self.assertContains(response, "<rect", count=2 + 1 + 1 + 1)  # invocations, errors, throttles, cost

    def test_the_pages_read_rollups_only_never_the_invocation_rows(self):
        for url in [reverse("metrics:function", args=["charted"]), reverse("metrics:overall"),
                    reverse("metrics:costs")]:
            for window in WINDOWS:
                with CaptureQueriesContext(connection) as queries:
                    self.assertEqual(self.client.get(url, {"window": window}).status_code, 200)
                self.assertFalse([q for q in queries if Invocation._meta.db_table in q["sql"]], url)

    def test_a_day_window_sums_minutes_into_half_hours(self):
        response = self.client.get(reverse("metrics:function", args=["charted"]) + "?window=24h")
        invocations = self.series(response, "invocations", "invocations")
        self.assertEqual(len(invocations), 48)
        self.assertEqual(sum(int(v) for v in invocations), 5)

    def test_the_overall_page_counts_only_the_users_own_functions(self):
        response = self.client.get(reverse("metrics:overall") + "?window=1h")
        self.assertContains(response, '<td id="total-invocations">5</td>', html=True)
        self.client.force_login(self.bob)
        response = self.client.get(reverse("metrics:overall") + "?window=1h")
        self.assertContains(response, '<td id="total-invocations">1000</td>', html=True)

    def test_another_users_function_is_not_found(self):
        self.assertEqual(self.client.get(reverse("metrics:function", args=["bobs"])).status_code, 404)

    def test_an_unknown_window_is_not_found(self):
        self.assertEqual(self.client.get(reverse("metrics:overall") + "?window=2h").status_code, 404)


FIXED_NOW = datetime(2026, 11, 11, 0, 0, tzinfo=dt_timezone.utc)  # 10 of November's 30 days gone


@override_settings(**PRICES)
class CostPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="big", memory_size=1024)
        self.small = self.create_function(HANDLER, name="small", memory_size=128)
        bobs = self.create_function(HANDLER, name="bobs", owner=self.bob)
        day1, day2 = datetime(2026, 11, 1, 8, 30, tzinfo=dt_timezone.utc), datetime(2026, 11, 2, 23, 59, tzinfo=dt_timezone.utc)
        # big: 2 requests × 1000 ms at 1024 MB on the 1st, 1 × 500 ms on the 2nd; used at most 100 MB.
        rollup(self.fn, day1, invocations=2, billed_requests=2, billed_ms_sum=2000, mb_ms_sum=1024 * 2000,
               max_memory_used_mb=100)
        rollup(self.fn, day2, invocations=1, billed_requests=1, billed_ms_sum=500, mb_ms_sum=1024 * 500,
               max_memory_used_mb=60)
        # small: 4 × 250 ms at 128 MB on the 2nd, using 120 MB: it fits.
        rollup(self.small, day2, invocations=4, billed_requests=4, billed_ms_sum=1000, mb_ms_sum=128 * 1000,
               max_memory_used_mb=120)
        rollup(bobs, day1, invocations=99, billed_requests=99, billed_ms_sum=99, mb_ms_sum=128 * 99)
        # October: not in November's figures.
        rollup(self.fn, datetime(2026, 10, 31, 23, 59, tzinfo=dt_timezone.utc), billed_requests=7, mb_ms_sum=7)
        self.client.force_login(self.alice)

    def get(self, **params):
        with mock.patch("django.utils.timezone.now", return_value=FIXED_NOW):
            return self.client.get(reverse("metrics:costs"), {"month": "2026-11", **params})

    def test_the_month_per_function_with_prices_and_right_sizing(self):
        response = self.get()
        self.assertContains(response, '<span id="price-request">$0.0000002</span>', html=True)
        self.assertContains(response, '<span id="price-gb-second">$0.0000166667</span>', html=True)
        html = response.content.decode()
        big = html[html.index('data-function="big"'):html.index('data-function="small"')]
        # 3 requests, 1 GB × 2.5 s = 2.5 GB-s: $0.0000006 + $0.00004166675 = $0.00004226675.
        self.assertIn('<td class="num requests">3</td>', big)
        self.assertIn('<td class="num gb-seconds">2.5</td>', big)
        self.assertIn('<td class="num total">$0.0000422668</td>', big)  # shown to 1e-10 dollars
        # 100 MB × 1.2 = 120 → 128 MB: 3 requests + 0.125 GB × 2.5 s = 0.3125 GB-s → $0.00000580834375.
        self.assertIn("<strong>128 MB</strong> would have cost <span class=\"hint-cost\">$0.0000058083</span>", big)
        small = html[html.index('data-function="small"'):]
        self.assertIn("max used 120 of 128 MB: fits", small)
        self.assertNotIn('data-function="bobs"', html)
        # Both: 7 requests, 2.5 + 0.125 GB-s.
        self.assertIn('<td class="num gb-seconds">2.625</td>', html[html.index('id="month-gross"'):])
        # $0.0000014 + 2.625 × $0.0000166667 = $0.0000451500875, a third of the month gone → × 3.
        self.assertEqual(response.context["month_total"]["total"], Decimal("0.0000451500875"))
        self.assertEqual(response.context["projection"], Decimal("0.0001354502625"))

    def test_per_day_figures_are_utc_days(self):
        days = {d["day"].isoformat(): d for d in self.get().context["per_day"]}
        self.assertEqual(list(days), ["2026-11-01", "2026-11-02"])
        self.assertEqual(days["2026-11-01"]["requests"], 2)
        self.assertEqual(days["2026-11-02"]["requests"], 5)
        self.assertEqual(days["2026-11-02"]["gb_seconds"], Decimal("0.625"))

    def test_the_free_tier_switch_takes_the_free_allowance_off(self):
        response = self.get(free_tier="on")
        self.assertEqual(response.context["billed"]["total"], 0)
        self.assertEqual(response.context["projection"], 0)
        self.assertContains(response, 'id="month-billed"')
        self.assertNotContains(self.get(), 'id="month-billed"')

    def test_the_csv_has_a_line_per_day_and_function(self):
        response = self.get(format="csv")
        self.assertEqual(response["Content-Type"], "text/csv")
        self.assertIn('filename="lambda-costs-2026-11.csv"', response["Content-Disposition"])
        lines = list(csv.reader(io.StringIO(response.content.decode())))
        self.assertEqual(lines, [
            ["day", "function", "requests", "gb_seconds", "request_charge_usd", "compute_charge_usd", "total_usd"],
            ["2026-11-01", "big", "2", "2", "0.0000004", "0.0000333334", "0.0000337334"],
            ["2026-11-02", "big", "1", "0.5", "0.0000002", "0.00000833335", "0.00000853335"],
            ["2026-11-02", "small", "4", "0.125", "0.0000008", "0.0000020833375", "0.0000028833375"],
        ])

    def test_a_bad_month_is_not_found(self):
        self.assertEqual(self.client.get(reverse("metrics:costs"), {"month": "november"}).status_code, 404)


# Recent, so that a rebuild (which keeps minutes before the retention horizon as they are) recomputes it.
AT = (timezone.now() - timedelta(days=1)).replace(second=0, microsecond=0)
# The pages' clock, held still so that no minute ends between seeding the rollups and drawing the charts.
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=dt_timezone.utc)
frozen = mock.patch("django.utils.timezone.now", new=lambda: NOW + timedelta(seconds=20))


@override_settings(**PRICES)
class EventAgeTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="aged")

    def attempt(self, kind, queued, started, **fields):
        values = dict(function=self.fn, config={}, event="{}", memory_size_mb=128, attempts=1, kind=kind,
                      status="SUCCEEDED", cold_start=False, duration_ms=Decimal("2.00"), billed_duration_ms=2,
                      max_memory_used_mb=40, cost=Decimal("0.0000002041666667"), created_at=queued,
                      started_at=started, finished_at=AT + timedelta(seconds=30))
        invocation = Invocation.objects.create(**{**values, **fields})
        record(invocation)
        return invocation

    def test_the_event_age_of_asynchronous_attempts_is_kept_as_count_sum_and_maximum_in_ms(self):
        # Queued 1.25 s and 10.5 s before they started; the synchronous one has no event age.
        self.attempt("Event", AT - timedelta(seconds=1), AT + timedelta(milliseconds=250))
        self.attempt("Event", AT, AT + timedelta(seconds=10, milliseconds=500))
        self.attempt("RequestResponse", AT - timedelta(hours=1), AT)
        r = MinuteRollup.objects.get()
        self.assertEqual((r.event_age_count, r.event_age_sum_ms, r.event_age_max_ms), (2, 11_750, 10_500))
        self.assertEqual(r.invocations, 3)

    def test_a_throttle_and_a_platform_failure_have_no_event_age(self):
        self.attempt("Event", AT, AT + timedelta(seconds=5), status="THROTTLED", duration_ms=None)
        self.attempt("Event", AT, AT + timedelta(seconds=5), status="FAILED", error_type="ServiceException")
        r = MinuteRollup.objects.get()
        self.assertEqual((r.throttles, r.errors, r.event_age_count, r.event_age_max_ms), (1, 1, 0, 0))

    def test_a_rebuild_recomputes_the_event_age_of_events_never_retried(self):
        self.attempt("Event", AT - timedelta(seconds=1), AT + timedelta(milliseconds=250))
        self.attempt("Event", AT, AT + timedelta(seconds=10, milliseconds=500))
        incremental = snapshot()
        rebuild()
        self.assertEqual(snapshot(), incremental)

    @frozen
    def test_the_chart_draws_the_average_and_maximum_age_per_step(self):
        now = NOW
        rollup(self.fn, now, invocations=3, event_age_count=3, event_age_sum_ms=1000, event_age_max_ms=700)
        rollup(self.fn, now - timedelta(minutes=1), invocations=1)  # synchronous only: no age, no point
        self.client.force_login(self.alice)
        response = self.client.get(reverse("metrics:function", args=["aged"]), {"window": "1h"})
        page = MetricsPageTests.series
        self.assertEqual(page(self, response, "event-age", "event-age-average")[-1], "333")  # 1000 / 3
        self.assertEqual(page(self, response, "event-age", "event-age-maximum")[-1], "700")
        self.assertEqual(page(self, response, "event-age", "event-age-average")[-2], "")
        self.assertContains(response, '<td id="event-age">333 ms average, 700 ms maximum</td>', html=True)


class ConcurrencyTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="busy")
        self.other = self.create_function(HANDLER, name="other")

    def row(self, function, status, **fields):
        return Invocation.objects.create(function=function, config={}, event="{}", memory_size_mb=128,
                                         status=status, **fields)

    def ended(self, status="SUCCEEDED", at=AT, **fields):
        values = dict(cold_start=False, duration_ms=Decimal("3.00"), billed_duration_ms=3, max_memory_used_mb=40,
                      cost=Decimal(0), attempts=1, finished_at=at + timedelta(seconds=10))
        record(self.row(self.fn, status, **{**values, **fields}))

    def test_an_ended_attempt_samples_the_functions_running_attempts_itself_included(self):
        for _ in range(2):
            self.row(self.fn, "RUNNING")
        self.row(self.other, "RUNNING")  # another function's: not counted
        self.row(self.fn, "QUEUED")  # waiting: not running
        self.ended()
        self.assertEqual(MinuteRollup.objects.get().peak_concurrency, 3)

    def test_the_minute_keeps_its_highest_sample(self):
        running = [self.row(self.fn, "RUNNING") for _ in range(3)]
        self.ended()
        Invocation.objects.filter(pk__in=[r.pk for r in running]).update(status="SUCCEEDED")
        self.ended()  # alone now: 1, but the minute saw 4
        self.ended(at=AT + timedelta(minutes=1))
        self.assertEqual(list(MinuteRollup.objects.order_by("minute").values_list("peak_concurrency", flat=True)),
                         [4, 1])

    def test_an_attempt_that_did_not_run_takes_no_sample(self):
        self.row(self.fn, "RUNNING")
        self.ended(status="THROTTLED", duration_ms=None)
        self.ended(status="FAILED", error_type="ServiceException")
        self.assertEqual(MinuteRollup.objects.get().peak_concurrency, 0)

    def test_a_rebuild_keeps_the_peaks_it_cannot_recompute(self):
        self.row(self.fn, "RUNNING")
        self.ended()
        rebuild()
        self.assertEqual(MinuteRollup.objects.get().peak_concurrency, 2)

    @frozen
    def test_the_mean_is_run_time_over_the_step_and_the_peak_the_steps_highest_sample(self):
        now = NOW
        # 90 s of run time ended in one minute: 1.5 executions on average; in a 30-minute step, 0.05.
        rollup(self.fn, now, invocations=9, duration_sum_cms=90 * 1000 * 100, peak_concurrency=3)
        rollup(self.fn, now - timedelta(minutes=1), invocations=1, duration_sum_cms=6 * 1000 * 100,
               peak_concurrency=1)
        rollup(self.other, now, invocations=1, duration_sum_cms=60 * 1000 * 100, peak_concurrency=2)
        self.client.force_login(self.alice)
        series = MetricsPageTests.series
        response = self.client.get(reverse("metrics:function", args=["busy"]), {"window": "1h"})
        self.assertEqual(series(self, response, "concurrency", "concurrency-mean")[-2:], ["0.1", "1.5"])
        self.assertEqual(series(self, response, "concurrency", "concurrency-peak")[-2:], ["1", "3"])
        self.assertContains(response, '<td id="peak-concurrency">3</td>', html=True)
        response = self.client.get(reverse("metrics:function", args=["busy"]), {"window": "24h"})
        self.assertEqual(series(self, response, "concurrency", "concurrency-mean")[-1], "0.053")  # 96 s / 1800 s
        # Overall: the functions' means add up exactly; their peaks add up to an upper bound.
        response = self.client.get(reverse("metrics:overall"), {"window": "1h"})
        self.assertEqual(series(self, response, "concurrency", "concurrency-mean")[-1], "2.5")
        self.assertEqual(series(self, response, "concurrency", "concurrency-peak")[-1], "5")


class DeadLetterDepthTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="dlq")

    def failed_event(self):
        return Invocation.objects.create(
            function=self.fn, config={}, event='{"n": 1}', memory_size_mb=128, kind="Event", status="FAILED",
            attempts=3, finished_at=timezone.now())

    def depth(self):
        return MinuteRollup.objects.filter(function=self.fn, dead_letters__isnull=False).latest("minute").dead_letters

    def test_every_change_of_the_inbox_writes_its_depth(self):
        from invocations.asynchronous import deliver, redrive
        from invocations.models import DeadLetter
        from invocations.tables.streams import to_inbox

        for _ in range(2):
            deliver(self.failed_event(), DeadLetter.Condition.RETRIES_EXHAUSTED)
        self.assertEqual(self.depth(), 2)
        to_inbox(self.failed_event())  # a table stream's batch whose retries are spent
        self.assertEqual(self.depth(), 3)
        self.assertIsNotNone(redrive(DeadLetter.objects.first()))
        self.assertEqual(self.depth(), 2)
        self.client.force_login(self.alice)
        self.client.post(reverse("functions:purge_dead_letters", args=["dlq"]))
        self.assertEqual(DeadLetter.objects.filter(redriven_at__isnull=True).count(), 0)
        self.assertEqual(self.depth(), 0)

    @frozen
    def test_the_chart_carries_the_depth_forward_from_before_the_window(self):
        from invocations.metrics.rollups import record_dead_letters

        now = NOW
        other = self.create_function(HANDLER, name="other")
        # Before the hour's window: 5 waiting (an older 9 was superseded); 2 minutes ago: 7; a minute later
        # another invocation in that minute leaves it be.
        rollup(self.fn, now - timedelta(hours=3), dead_letters=9)
        rollup(self.fn, now - timedelta(hours=2), dead_letters=5)
        record_dead_letters(self.fn.pk, now=now - timedelta(minutes=2))  # counts the inbox: 0 letters
        MinuteRollup.objects.filter(function=self.fn, minute=now - timedelta(minutes=2)).update(dead_letters=7)
        rollup(self.fn, now - timedelta(minutes=1), invocations=1)
        rollup(other, now - timedelta(hours=5), dead_letters=1)
        self.client.force_login(self.alice)
        series = MetricsPageTests.series
        response = self.client.get(reverse("metrics:function", args=["dlq"]), {"window": "1h"})
        depth = series(self, response, "dead-letters", "dead-letter-depth")
        self.assertEqual(depth, ["5"] * 57 + ["7", "7", "7"])
        self.assertContains(response, '<td id="dead-letters-now">7 waiting</td>', html=True)
        response = self.client.get(reverse("metrics:overall"), {"window": "1h"})
        self.assertEqual(series(self, response, "dead-letters", "dead-letter-depth")[-1], "8")
        self.assertEqual(series(self, response, "dead-letters", "dead-letter-depth")[0], "6")

    def test_a_rebuild_keeps_the_depth_it_cannot_recompute(self):
        rollup(self.fn, AT, dead_letters=4)
        rebuild()
        self.assertEqual(MinuteRollup.objects.get(function=self.fn).dead_letters, 4)


class CompactionTests(BaseTestCase):
    """Old minute rollups merged into hour rows (invocations.metrics.compaction)."""

    def setUp(self):
        import random

        super().setUp()
        self.fn = self.create_function(HANDLER, name="weekly")
        self.other = self.create_function(HANDLER, name="other")
        rng = random.Random(11)
        rollups, buckets = [], []
        # Nine days of minutes at random gaps, up to the pages' frozen clock, for two functions.
        for function in (self.fn, self.other):
            minute = NOW - timedelta(days=9)
            while minute <= NOW:
                rollups.append(MinuteRollup(
                    function=function, minute=minute, invocations=rng.randint(0, 50), errors=rng.randint(0, 5),
                    timeouts=rng.randint(0, 2), throttles=rng.randint(0, 3), cold_starts=rng.randint(0, 4),
                    billed_requests=rng.randint(0, 50), duration_sum_cms=rng.randint(0, 10**7),
                    billed_ms_sum=rng.randint(0, 10**5), mb_ms_sum=rng.randint(0, 10**8),
                    cost_sum_units=rng.randint(0, 10**9), max_memory_used_mb=rng.randint(0, 512),
                    event_age_count=rng.randint(0, 9), event_age_sum_ms=rng.randint(0, 10**5),
                    event_age_max_ms=rng.randint(0, 10**4), peak_concurrency=rng.randint(0, 20),
                    dead_letters=rng.randint(0, 30) if rng.random() < 0.1 else None))
                for _ in range(rng.randint(0, 4)):
                    buckets.append((function, minute, rng.random() < 0.2, rng.randint(0, 160), rng.randint(1, 9)))
                minute += timedelta(minutes=rng.randint(1, 13))
        MinuteRollup.objects.bulk_create(rollups)
        merged = {}
        for function, minute, cold, bucket, count in buckets:
            merged[(function.pk, minute, cold, bucket)] = merged.get((function.pk, minute, cold, bucket), 0) + count
        DurationBucket.objects.bulk_create([DurationBucket(function_id=f, minute=m, cold=c, bucket=b, count=n)
                                            for (f, m, c, b), n in merged.items()])
        self.client.force_login(self.alice)

    def rows(self):
        return (sorted(MinuteRollup.objects.values_list()), sorted(DurationBucket.objects.values_list()))

    @frozen
    def pages(self):
        keys = ("start", "totals", "total_cost", "cold_start_rate", "summary", "counts_chart", "duration_chart",
                "cold_chart", "cost_chart", "concurrency_chart", "event_age_chart", "dead_letter_chart",
                "peak_concurrency", "event_age_average", "event_age_maximum", "dead_letters_now")
        seen = {}
        for url in (reverse("metrics:overall"), reverse("metrics:function", args=["weekly"])):
            for window in ("7d", "30d"):
                response = self.client.get(url, {"window": window})
                self.assertEqual(response.status_code, 200)
                seen[(url, window)] = {key: response.context[key] for key in keys}
        for window in ("7d", "30d"):
            response = self.client.get(reverse("home"), {"window": window})
            seen[("dashboard", window)] = {key: response.context[key] for key in (
                "start", "totals", "gb_seconds", "cost", "top_cost", "top_errors", "top_duration")}
        response = self.client.get(reverse("metrics:costs"), {"month": "2026-11"})
        seen["costs"] = {key: response.context[key] for key in ("per_function", "per_day", "month_total")}
        seen["csv"] = self.client.get(reverse("metrics:costs"), {"month": "2026-11", "format": "csv"}).content
        return seen

    def test_the_week_and_month_pages_and_the_cost_page_are_the_same_after_compaction(self):
        from invocations.metrics.compaction import compact

        before = self.pages()
        self.assertGreater(before[(reverse("metrics:overall"), "7d")]["totals"]["invocations"], 0)
        self.assertEqual(before[(reverse("metrics:overall"), "7d")]["start"],
                         datetime(2026, 11, 13, 12, 0, tzinfo=dt_timezone.utc))  # on a 3-hour step's edge
        rows_before = MinuteRollup.objects.count()
        merged, done = compact(now=NOW)
        self.assertTrue(done)
        self.assertEqual(merged, 2 * 7 * 24)  # 9 days less the 48 hours kept, for two functions
        self.assertLess(MinuteRollup.objects.count(), rows_before / 3)
        self.assertEqual(self.pages(), before)

    def test_each_old_hour_becomes_one_row_of_sums_maxima_and_the_last_gauge_value(self):
        from invocations.metrics.compaction import compact
        from invocations.metrics.rollups import COUNTERS, MAXIMA

        hour = datetime(2026, 11, 15, 9, 0, tzinfo=dt_timezone.utc)
        minutes = MinuteRollup.objects.filter(function=self.fn, minute__gte=hour, minute__lt=hour + timedelta(hours=1))
        MinuteRollup.objects.filter(pk__in=minutes.order_by("-minute").values("pk")[:1]).update(dead_letters=None)
        expected = {c: sum(r[c] for r in minutes.values(c)) for c in COUNTERS}
        expected.update({m: max(r[m] for r in minutes.values(m)) for m in MAXIMA})
        expected["dead_letters"] = minutes.filter(dead_letters__isnull=False).latest("minute").dead_letters
        histogram = {}
        in_hour = DurationBucket.objects.filter(function=self.fn, minute__gte=hour, minute__lt=hour + timedelta(hours=1))
        for cold, bucket, count in in_hour.values_list("cold", "bucket", "count"):
            histogram[(cold, bucket)] = histogram.get((cold, bucket), 0) + count
        compact(now=NOW)
        row = MinuteRollup.objects.get(function=self.fn, minute__gte=hour, minute__lt=hour + timedelta(hours=1))
        self.assertEqual(row.minute, hour)
        self.assertEqual({key: getattr(row, key) for key in expected}, expected)
        self.assertEqual({(b.cold, b.bucket): b.count for b in DurationBucket.objects.filter(
            function=self.fn, minute__gte=hour, minute__lt=hour + timedelta(hours=1))}, histogram)
        self.assertEqual(set(DurationBucket.objects.filter(function=self.fn, minute__gte=hour,
                                                           minute__lt=hour + timedelta(hours=1))
                             .values_list("minute", flat=True)), {hour})

    def test_an_hour_without_a_gauge_value_has_none(self):
        from invocations.metrics.compaction import compact

        hour = datetime(2026, 11, 14, 3, 0, tzinfo=dt_timezone.utc)
        MinuteRollup.objects.filter(minute__gte=hour, minute__lt=hour + timedelta(hours=1)).update(dead_letters=None)
        compact(now=NOW)
        self.assertIsNone(MinuteRollup.objects.get(function=self.fn, minute=hour).dead_letters)

    def test_the_last_48_hours_keep_their_minutes_and_older_hours_hold_one_row_each(self):
        from invocations.metrics.compaction import compact

        edge = datetime(2026, 11, 18, 12, 0, tzinfo=dt_timezone.utc)  # the hour of NOW − 48 h is kept whole
        recent = (sorted(MinuteRollup.objects.filter(minute__gte=edge).values_list()),
                  sorted(DurationBucket.objects.filter(minute__gte=edge).values_list()))
        compact(now=NOW)
        self.assertEqual((sorted(MinuteRollup.objects.filter(minute__gte=edge).values_list()),
                          sorted(DurationBucket.objects.filter(minute__gte=edge).values_list())), recent)
        old = list(MinuteRollup.objects.filter(minute__lt=edge).values_list("function_id", "minute"))
        self.assertEqual(len(old), 2 * 7 * 24)
        self.assertTrue(all(minute.minute == 0 for _, minute in old))
        self.assertTrue(all(minute.minute == 0 for minute in
                            DurationBucket.objects.filter(minute__lt=edge).values_list("minute", flat=True)))

    def test_compaction_is_idempotent_and_merges_a_late_row_into_its_hour(self):
        from invocations.metrics.compaction import compact

        compact(now=NOW)
        after = self.rows()
        self.assertEqual(compact(now=NOW), (0, True))
        self.assertEqual(self.rows(), after)
        hour = datetime(2026, 11, 15, 9, 0, tzinfo=dt_timezone.utc)
        invocations = MinuteRollup.objects.get(function=self.fn, minute=hour).invocations
        slowest = DurationBucket.objects.filter(function=self.fn, minute=hour, cold=True, bucket=160).first()
        rollup(self.fn, hour + timedelta(minutes=17), invocations=3)
        DurationBucket.objects.create(function=self.fn, minute=hour + timedelta(minutes=17), cold=True, bucket=160,
                                      count=2)
        self.assertEqual(compact(now=NOW), (1, True))
        self.assertEqual(MinuteRollup.objects.get(function=self.fn, minute__gte=hour,
                                                  minute__lt=hour + timedelta(hours=1)).invocations, invocations + 3)
        self.assertEqual(DurationBucket.objects.get(function=self.fn, minute__gte=hour,
                                                    minute__lt=hour + timedelta(hours=1), cold=True, bucket=160).count,
                         2 + (slowest.count if slowest else 0))

    def test_a_rebuild_after_compaction_recomputes_from_the_first_whole_hour_after_the_horizon(self):
        from invocations.metrics.compaction import compact

        compact(now=NOW)
        hour = datetime(2026, 11, 15, 12, 0, tzinfo=dt_timezone.utc)
        Invocation.objects.create(function=self.fn, config={}, event="{}", memory_size_mb=128, status="SUCCEEDED",
                                  duration_ms=Decimal("5"), billed_duration_ms=5,
                                  finished_at=hour + timedelta(minutes=55))
        kept = MinuteRollup.objects.get(function=self.fn, minute=hour).invocations
        # Retention 5 days, 20 minutes past NOW: the horizon is 12:50 of the 15th, inside a compacted hour
        # whose row holds minutes on both sides of it; recomputing 12:55 would count that minute twice.
        with override_settings(INVOCATION_RETENTION_DAYS=5):
            rebuild(now=NOW + timedelta(minutes=20))
        self.assertEqual(MinuteRollup.objects.get(function=self.fn, minute=hour).invocations, kept)
        self.assertFalse(MinuteRollup.objects.filter(function=self.fn, minute__gt=hour,
                                                     minute__lt=hour + timedelta(hours=1)).exists())

    def test_the_runner_that_takes_the_hourly_turn_compacts_and_the_other_does_not(self):
        from invocations import queue
        from invocations.management.commands.run_event_sources import Command as RunEventSources
        from invocations.metrics import compaction

        outputs = io.StringIO(), io.StringIO()
        first, second = (RunEventSources(stdout=out) for out in outputs)
        # The runner's clock is the real one: the seeded week is more than 48 hours before it.
        first.compact_step(timezone.now())
        second.compact_step(timezone.now())
        self.assertRegex(outputs[0].getvalue(), r"compacted \d+ function-hours")
        self.assertEqual(outputs[1].getvalue(), "")
        while first.compacting:
            first.compact_step(timezone.now())
        self.assertIsNone(first.compacting)  # done: the next compaction waits for the next turn
        old = MinuteRollup.objects.filter(minute__lt=compaction.cutoff()).values_list("minute", flat=True)
        self.assertEqual({minute.minute for minute in old}, {0})
        self.assertFalse(compaction.take_turn())
        self.assertGreater(queue.connection().ttl(compaction._turn_key()), 3500)

    def test_the_command_prints_how_many_function_hours_it_merged(self):
        from invocations.metrics import compaction

        first, second = io.StringIO(), io.StringIO()
        call_command("compact_rollups", stdout=first)
        merged = int(re.search(r"compacted (\d+) function-hours", first.getvalue()).group(1))
        self.assertGreater(merged, 0)
        old = MinuteRollup.objects.filter(minute__lt=compaction.cutoff()).values_list("minute", flat=True)
        self.assertEqual({minute.minute for minute in old}, {0})
        call_command("compact_rollups", stdout=second)
        self.assertEqual(second.getvalue().strip(), "compacted 0 function-hours")


class PlainNumberTests(SimpleTestCase):
    def test_decimals_lose_their_exponent_and_floats_show_as_written(self):
        from invocations.metrics.templatetags.metrics_tags import plain

        self.assertEqual(plain(Decimal("2E-7")), "0.0000002")
        self.assertEqual(plain(Decimal("2.50")), "2.5")
        self.assertEqual(plain(6.1), "6.1")  # a cold-start rate: not 6.0999999999999996447…
        self.assertEqual(plain(Decimal("1.23456"), 2), "1.23")
        self.assertEqual(plain(None), "—")
