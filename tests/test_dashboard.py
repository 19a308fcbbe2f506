"""The dashboard home (/): the period's totals and top functions from the rollups, recent failures, health.

Hand-computed figures; costs are rollup units of billing.COST_QUANTUM (1e-16 dollars).
"""

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from invocations import queue
from invocations.metrics.models import DurationBucket, MinuteRollup
from invocations.models import Invocation
from invocations.runtime.outcome import error_payload
from tests.base import BaseTestCase, handler_zip
from tests.processes import use_queue

HANDLER = handler_zip("def handler(event, context):\n    return 1\n")
GB_S = 1024 * 1000  # mb_ms_sum of one GB-second


def rollup(function, minute, **figures):
    return MinuteRollup.objects.create(function=function, minute=minute, **figures)


def rows(response, table):
    """The data-function (or data-id) of each row of the table with id `table`, in order."""
    html = response.content.decode()
    match = re.search(rf'<table class="list" id="{table}">.*?</table>', html, re.S)
    return re.findall(r'<tr data-(?:function|id)="([^"]+)"', match.group(0)) if match else []


class DashboardFiguresTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.now = timezone.now().replace(second=0, microsecond=0)
        self.pricey = self.create_function(HANDLER, name="pricey")
        self.flaky = self.create_function(HANDLER, name="flaky")
        self.slow = self.create_function(HANDLER, name="slow")
        bobs = self.create_function(HANDLER, name="bobs", owner=self.bob)
        # In the last 24 h: pricey 10 runs of 50 ms, 2 GB-s; flaky 4 runs of 1 ms (3 errors) and 2 throttles.
        rollup(self.pricey, self.now, invocations=10, billed_requests=10, duration_sum_cms=10 * 5000,
               mb_ms_sum=2 * GB_S, cost_sum_units=5_000_000_000)
        rollup(self.flaky, self.now - timedelta(hours=1), invocations=4, errors=3, throttles=2, billed_requests=4,
               duration_sum_cms=4 * 100, mb_ms_sum=GB_S // 2, cost_sum_units=1_000_000_000)
        # Three days ago: in the 7-day period only. 31 days ago: in none.
        rollup(self.slow, self.now - timedelta(days=3), invocations=1, billed_requests=1, duration_sum_cms=200_000,
               mb_ms_sum=GB_S, cost_sum_units=2_000_000_000)
        rollup(self.pricey, self.now - timedelta(days=31), invocations=999, errors=999, billed_requests=999,
               duration_sum_cms=999 * 10_000_000, mb_ms_sum=999 * GB_S, cost_sum_units=999_000_000_000_000)
        # pricey's run durations: 9 of ≤ 32 ms, 1 of ≤ 64 ms (p99 = rank 10 → 64 ms).
        DurationBucket.objects.create(function=self.pricey, minute=self.now, cold=False, bucket=40, count=9)
        DurationBucket.objects.create(function=self.pricey, minute=self.now, cold=True, bucket=48, count=1)
        rollup(bobs, self.now, invocations=1000, errors=1000, throttles=1000, billed_requests=1000,
               duration_sum_cms=1000 * 900_000, mb_ms_sum=1000 * GB_S, cost_sum_units=10**15)
        self.client.force_login(self.alice)

    def get(self, window=None):
        response = self.client.get(reverse("home"), {"window": window} if window else {})
        self.assertEqual(response.status_code, 200)
        return response

    def assertCell(self, response, cell_id, text):
        self.assertContains(response, f'<td id="{cell_id}">{text}</td>', html=True)

    def test_the_last_24_hours_totals_are_the_sums_of_the_users_rollups_in_the_period(self):
        response = self.get()
        self.assertCell(response, "total-invocations", "14")
        self.assertCell(response, "total-errors", "3")
        self.assertCell(response, "error-rate", "21.4%")  # 3 / 14
        self.assertCell(response, "total-throttles", "2")
        self.assertCell(response, "total-gb-seconds", "2.5")
        self.assertCell(response, "total-cost", "$0.0000006000")  # 6e9 × 1e-16

    def test_the_top_lists_rank_the_users_functions_of_the_period(self):
        response = self.get()
        self.assertEqual(rows(response, "top-cost"), ["pricey", "flaky"])
        self.assertEqual(rows(response, "top-errors"), ["flaky"])
        self.assertEqual(rows(response, "top-duration"), ["pricey", "flaky"])
        self.assertContains(response, "<td class=\"num\">50 ms</td><td class=\"num\">≤ 64 ms</td>", html=True)
        self.assertContains(response, "<td class=\"num\">3</td><td class=\"num\">75.0%</td>", html=True)
        self.assertContains(response, f'href="{reverse("metrics:function", args=["pricey"])}?window=24h"')

    def test_a_week_takes_in_the_older_minutes(self):
        response = self.get("7d")
        self.assertCell(response, "total-invocations", "15")
        self.assertCell(response, "total-gb-seconds", "3.5")
        self.assertCell(response, "total-cost", "$0.0000008000")
        self.assertEqual(rows(response, "top-cost"), ["pricey", "slow", "flaky"])
        self.assertEqual(rows(response, "top-duration"), ["slow", "pricey", "flaky"])  # 2000, 50, 1 ms

    def test_minutes_older_than_30_days_never_count(self):
        self.assertCell(self.get("30d"), "total-invocations", "15")

    def test_bobs_functions_never_show(self):
        response = self.get("30d")
        self.assertNotContains(response, "bobs")
        self.client.force_login(self.bob)
        response = self.get()
        self.assertCell(response, "total-invocations", "1000")
        self.assertEqual(rows(response, "top-cost"), ["bobs"])
        self.assertNotContains(response, "pricey")

    def test_a_top_list_holds_five_functions(self):
        for n in range(1, 8):
            rollup(self.create_function(HANDLER, name=f"many-{n}"), self.now, invocations=1, billed_requests=1,
                   cost_sum_units=n * 10**10)
        self.assertEqual(rows(self.get(), "top-cost"), ["many-7", "many-6", "many-5", "many-4", "many-3"])

    def test_an_unknown_period_is_not_found(self):
        self.assertEqual(self.client.get(reverse("home"), {"window": "1h"}).status_code, 404)


class RecentFailuresTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="flaky")
        self.bobs = self.create_function(HANDLER, name="bobs", owner=self.bob)
        self.now = timezone.now()
        self.client.force_login(self.alice)

    def invocation(self, function, status, minutes_ago, message="asked to fail", error_type="ValueError"):
        pk = Invocation._meta.pk.default()
        return Invocation.objects.create(
            id=pk, function=function, config=function.config_snapshot(), event="{}", memory_size_mb=128,
            status=status, error_type=error_type if status != "SUCCEEDED" else "",
            result=error_payload(error_type, message, str(pk)) if status != "SUCCEEDED" else "1",
            created_at=self.now - timedelta(minutes=minutes_ago))

    def test_it_lists_the_users_failures_newest_first_with_their_error(self):
        failed = self.invocation(self.fn, "FAILED", 5, message="asked to fail")
        timed_out = self.invocation(self.fn, "TIMED_OUT", 3, error_type="Sandbox.Timedout",
                                    message="Task timed out after 3.00 seconds")
        throttled = self.invocation(self.fn, "THROTTLED", 2, error_type="TooManyRequestsException",
                                    message="Rate Exceeded.")
        self.invocation(self.fn, "SUCCEEDED", 1)
        self.invocation(self.bobs, "FAILED", 1, message="a-secret-of-bobs")
        older = self.invocation(self.fn, "FAILED", 2 * 24 * 60)
        response = self.client.get(reverse("home"))
        self.assertEqual(rows(response, "failures"), [str(throttled.pk), str(timed_out.pk), str(failed.pk)])
        self.assertContains(response, f'href="{reverse("invocations:detail", args=[failed.pk])}"')
        self.assertContains(response, "Task timed out after 3.00 seconds")
        self.assertContains(response, "TooManyRequestsException")
        self.assertNotContains(response, "a-secret-of-bobs")
        # Older than the period: in the week's list.
        self.assertEqual(rows(self.client.get(reverse("home"), {"window": "7d"}), "failures")[-1], str(older.pk))

    def test_it_shows_the_latest_ten(self):
        made = [self.invocation(self.fn, "FAILED", minutes) for minutes in range(12, 0, -1)]
        self.assertEqual(rows(self.client.get(reverse("home")), "failures"), [str(i.pk) for i in made[::-1][:10]])

    def test_a_long_message_is_cut_to_a_snippet(self):
        self.invocation(self.fn, "FAILED", 1, message="x" * 5000)
        response = self.client.get(reverse("home"))
        self.assertContains(response, "x" * 100)
        self.assertNotContains(response, "x" * 300)

    def test_it_reads_the_invocation_rows_once_through_an_index(self):
        self.invocation(self.fn, "FAILED", 1)
        with CaptureQueriesContext(connection) as queries:
            self.assertEqual(self.client.get(reverse("home"), {"window": "30d"}).status_code, 200)
        reads = [q["sql"] for q in queries if Invocation._meta.db_table in q["sql"]]
        self.assertEqual(len(reads), 1, reads)
        if connection.vendor != "sqlite":
            self.skipTest(f"the query plan is checked on SQLite only, not {connection.vendor}")
        # The plan of the same query with its parameters (CaptureQueriesContext shows them inlined).
        from console.dashboard import FAILURES, RECENT_FAILURES
        from functions.models import Function
        inner = (Invocation.objects.filter(function__in=Function.objects.filter(owner=self.alice).values("id"),
                                           status__in=FAILURES, created_at__gte=self.now - timedelta(days=30))
                 .order_by("-created_at", "-id").values("id")[:RECENT_FAILURES])
        sql, params = inner.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " | ".join(row[-1] for row in cursor.fetchall())
        self.assertIn("SEARCH", plan)
        self.assertIn("invocation_function_status", plan)
        self.assertNotIn("SCAN invocations_invocation", plan)


class EmptyStateTests(BaseTestCase):
    def test_a_new_user_is_offered_to_create_a_first_function(self):
        User.objects.create_user("carol", password="carol-password-1")
        self.client.force_login(User.objects.get(username="carol"))
        response = self.client.get(reverse("home"))
        self.assertContains(response, f'<a href="{reverse("functions:create")}" id="create-first">', html=False)
        self.assertNotContains(response, 'id="totals"')
        self.assertContains(response, 'id="health"')


@pytest.mark.usefixtures("workers")
class HealthTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_it_shows_the_workers_alive_and_the_isolation_layers(self):
        from invocations.runtime.sandbox import layers

        response = self.client.get(reverse("home"))
        self.assertRegex(response.content.decode(),
                         rf'<tr id="health-rq-workers"><th>RQ workers</th><td class="ok">2 listening on '
                         rf'{settings.INVOCATION_QUEUE}</td></tr>')
        active = sum(ok for ok, _ in layers().values())
        self.assertContains(response, f"{active} of {len(layers())} active")
        self.assertContains(response, f'href="{reverse("status")}"')

    def test_it_shows_the_jobs_waiting_in_the_queue(self):
        # A queue of its own, that no worker reads: the jobs stay there.
        with use_queue(f"{settings.INVOCATION_QUEUE}-dashboard"):
            waiting = queue.queue()
            self.addCleanup(waiting.empty)
            for _ in range(3):
                waiting.enqueue("builtins.print")
            response = self.client.get(reverse("home"))
        self.assertContains(response, '<td id="queue-depth">3 waiting</td>', html=True)
        self.assertContains(response, "none: invocations wait in the queue")
