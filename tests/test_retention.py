"""Retention (invocations.retention): the records of invocations that ended more than
INVOCATION_RETENTION_DAYS ago are purged; in-flight invocations and events in a dead-letter inbox stay, and
the metrics and cost rollups, hence every total, are the same after a purge."""

import io
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from invocations import billing, queue, retention
from invocations.management.commands.run_event_sources import Command as RunEventSources
from invocations.metrics.models import MinuteRollup
from invocations.metrics.rollups import rebuild, record, record_dead_letters
from invocations.metrics.summaries import annotate_function_list
from invocations.models import DeadLetter, Invocation
from invocations.queues.models import Message, Queue
from invocations.tables.models import StreamCursor
from tests.base import BaseTestCase, handler_zip
from tests.test_metrics import PRICES, snapshot
from tests.test_tables import TableWorld

HANDLER = handler_zip("""
    def handler(event, context):
        return {"ok": True}
""")

# Purges in these tests run "at" NOW: with 30 days' retention the cutoff is 2026-09-15 00:00 UTC.
NOW = datetime(2026, 10, 15, tzinfo=dt_timezone.utc)
OLD = datetime(2026, 9, 1, 10, 5, 30, tzinfo=dt_timezone.utc)
RECENT = datetime(2026, 10, 10, 8, 0, 15, tzinfo=dt_timezone.utc)


@override_settings(INVOCATION_RETENTION_DAYS=30, **PRICES)
class RetentionTests(TableWorld, BaseTestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(HANDLER, name="kept-for-30-days")
        queue.connection().delete(retention._turn_key())
        self.addCleanup(queue.connection().delete, retention._turn_key())

    def ended(self, finished_at, status="SUCCEEDED", billed_ms=13, memory=128, **fields):
        """An invocation that ended at `finished_at`, added to the rollups as a worker adds it."""
        values = dict(function=self.fn, config={}, event='{"big": "event"}', log="START …\nEND …\n",
                      memory_size_mb=memory, attempts=1, status=status, cold_start=False, duration_ms=Decimal("12.34"),
                      billed_duration_ms=billed_ms, max_memory_used_mb=40,
                      cost=billing.cost(billing.gb_seconds(memory, billed_ms)) if billed_ms else None,
                      created_at=finished_at - timedelta(seconds=1), started_at=finished_at - timedelta(seconds=1),
                      finished_at=finished_at)
        invocation = Invocation.objects.create(**{**values, **fields})
        record(invocation)
        return invocation

    def in_flight(self, created_at, status, **fields):
        return Invocation.objects.create(function=self.fn, config={}, event="{}", memory_size_mb=128, status=status,
                                         created_at=created_at, **fields)

    def remaining(self, *invocations):
        return set(Invocation.objects.filter(pk__in=[i.pk for i in invocations]).values_list("pk", flat=True))

    def test_it_purges_what_ended_before_the_cutoff_and_keeps_the_recent_and_the_unfinished(self):
        gone = [self.ended(OLD), self.ended(OLD, status="FAILED", error_type="Runtime.ExitError"),
                self.ended(OLD, status="TIMED_OUT"), self.ended(OLD, status="THROTTLED", billed_ms=None),
                self.ended(OLD, status="EXPIRED", billed_ms=None),
                # Created before the cutoff: what counts is when it ended.
                self.ended(NOW - timedelta(days=30, seconds=1), created_at=OLD)]
        kept = [self.ended(RECENT), self.ended(NOW - timedelta(days=29), created_at=OLD),
                self.in_flight(OLD, "QUEUED"), self.in_flight(OLD, "RUNNING", started_at=OLD),
                # An asynchronous event between attempts: its failed attempt ended long ago, its retry is
                # still to come (a long-lost job the workers' sweep will queue again).
                self.in_flight(OLD, "QUEUED", kind="Event", attempts=1, finished_at=OLD,
                               retry_at=OLD + timedelta(minutes=1))]
        self.assertEqual(retention.purge(now=NOW), len(gone))
        self.assertEqual(self.remaining(*gone, *kept), {i.pk for i in kept})

    def test_an_event_in_the_dead_letter_inbox_stays_until_it_is_redriven_or_purged_from_the_inbox(self):
        waiting, redriven, redrive = self.ended(OLD, status="FAILED"), self.ended(OLD, status="FAILED"), self.ended(OLD)
        DeadLetter.objects.create(function=self.fn, invocation=waiting, condition="RetriesExhausted", payload="{}")
        letter = DeadLetter.objects.create(function=self.fn, invocation=redriven, condition="RetriesExhausted",
                                           payload="{}", redriven_at=OLD, redrive=redrive)
        self.assertEqual(retention.purge(now=NOW), 2)
        self.assertEqual(self.remaining(waiting, redriven, redrive), {waiting.pk})
        # The redriven letter was history and went with its invocation; the waiting one is still in the inbox.
        self.assertFalse(DeadLetter.objects.filter(pk=letter.pk).exists())
        self.assertEqual(list(DeadLetter.objects.values_list("invocation_id", flat=True)), [waiting.pk])
        # Emptying the inbox lets its invocation go at the next purge.
        DeadLetter.objects.filter(invocation=waiting).delete()
        self.assertEqual(retention.purge(now=NOW), 1)

    def test_a_batch_its_stream_cursor_has_not_settled_stays_and_a_queue_message_lets_go(self):
        unsettled, received = self.ended(OLD, source="table"), self.ended(OLD, source="queue")
        trigger = self.add_trigger(self.fn, self.make_table())
        StreamCursor.objects.filter(trigger=trigger).update(invocation=unsettled, batch_last=1)
        message = Queue.objects.create(owner=self.alice, name="q").send("hello")
        Message.objects.filter(pk=message.pk).update(invocation=received)
        self.assertEqual(retention.purge(now=NOW), 1)
        self.assertEqual(self.remaining(unsettled, received), {unsettled.pk})
        self.assertEqual(self.cursor(trigger).invocation_id, unsettled.pk)
        message.refresh_from_db()
        self.assertIsNone(message.invocation_id)

    def test_every_relation_to_an_invocation_has_a_decision_in_retention(self):
        # invocations/retention.py says for each why it blocks a purge, cascades or is set null; a new one
        # needs a decision there, then here.
        relations = {f"{r.related_model._meta.label}.{r.field.name}"
                     for r in Invocation._meta.get_fields(include_hidden=True) if r.auto_created and not r.concrete}
        self.assertEqual(relations, {"invocations.DeadLetter.invocation", "invocations.DeadLetter.redrive",
                                     "tables.StreamCursor.invocation", "queues.Message.invocation"})

    def test_the_rollups_and_the_cost_page_are_the_same_after_a_purge(self):
        for minute in range(3):
            self.ended(OLD + timedelta(minutes=minute), billed_ms=100 * (minute + 1), memory=1024)
            self.ended(OLD + timedelta(days=1, minutes=minute), status="FAILED", billed_ms=7)
        self.ended(OLD, status="THROTTLED", billed_ms=None)
        self.ended(RECENT)
        self.client.force_login(self.alice)

        def cost_page():
            response = self.client.get(reverse("metrics:costs"), {"month": "2026-09"})
            self.assertEqual(response.status_code, 200)
            context = {key: response.context[key] for key in ("per_function", "per_day", "month_total", "billed")}
            csv = self.client.get(reverse("metrics:costs"), {"month": "2026-09", "format": "csv"}).content
            return context, csv

        rollups, page = snapshot(), cost_page()
        self.assertEqual(page[0]["month_total"]["requests"], 6)  # not the throttle
        self.assertEqual(page[0]["month_total"]["gb_seconds"], Decimal("0.6") + Decimal(3 * 7 * 128) / 1024000)
        self.assertEqual(retention.purge(now=NOW), 7)
        self.assertEqual(Invocation.objects.count(), 1)
        self.assertEqual(snapshot(), rollups)
        self.assertEqual(cost_page(), page)

    @override_settings(INVOCATION_RETENTION_DAYS=7)
    def test_the_functions_list_figures_are_the_same_after_a_purge(self):
        self.ended(datetime(2026, 10, 2, 9, 0, 30, tzinfo=dt_timezone.utc), billed_ms=500, memory=1024)
        self.ended(datetime(2026, 10, 14, 20, 0, 30, tzinfo=dt_timezone.utc), status="FAILED", billed_ms=7)

        def figures():
            functions = [self.fn]
            annotate_function_list(functions, NOW)
            f = functions[0]
            return f.last_invoked, f.invocations_24h, f.errors_24h, f.cost_month

        before = figures()
        self.assertEqual(before[:3], (datetime(2026, 10, 14, 20, 0, tzinfo=dt_timezone.utc), 1, 1))
        self.assertEqual(before[3], billing.cost(billing.gb_seconds(1024, 500)) + billing.cost(billing.gb_seconds(128, 7)))
        self.assertEqual(retention.purge(now=NOW), 1)  # the one of 2 October, this month's
        self.assertEqual(figures(), before)

    def test_last_invoked_is_not_moved_by_a_change_of_the_dead_letter_inbox(self):
        self.ended(datetime(2026, 10, 14, 20, 0, 30, tzinfo=dt_timezone.utc))
        record_dead_letters(self.fn.pk, now=datetime(2026, 10, 14, 23, 0, tzinfo=dt_timezone.utc))  # a purge, say
        functions = [self.fn]
        annotate_function_list(functions, NOW)
        self.assertEqual(functions[0].last_invoked, datetime(2026, 10, 14, 20, 0, tzinfo=dt_timezone.utc))

    def test_the_functions_list_reads_no_invocation_rows(self):
        self.ended(timezone.now() - timedelta(hours=1))
        self.client.force_login(self.alice)
        with CaptureQueriesContext(connection) as captured:
            response = self.client.get(reverse("functions:list"))
        self.assertContains(response, "kept-for-30-days")
        self.assertEqual(response.context["functions"][0].invocations_24h, 1)
        self.assertFalse([q["sql"] for q in captured.captured_queries if "invocations_invocation" in q["sql"]])

    def test_a_rebuild_after_a_purge_keeps_the_minutes_before_the_horizon_and_recomputes_the_rest(self):
        self.ended(OLD)
        self.ended(OLD + timedelta(minutes=1), status="TIMED_OUT", billed_ms=3000)
        self.ended(RECENT)
        self.ended(RECENT, cold_start=True)
        rollups = snapshot()
        retention.purge(now=NOW)
        MinuteRollup.objects.filter(minute__gte=NOW - timedelta(days=30)).update(invocations=99)
        self.assertEqual(rebuild(now=NOW), 1)  # the one recent minute
        self.assertEqual(snapshot(), rollups)
        self.assertEqual(MinuteRollup.objects.filter(minute__lt=NOW - timedelta(days=30)).count(), 2)

    def test_a_rebuild_after_retention_is_lengthened_or_turned_off_keeps_what_was_purged(self):
        self.ended(OLD)
        self.ended(RECENT)
        rollups = snapshot()
        retention.purge(now=NOW)
        for days in (90, 0):
            with override_settings(INVOCATION_RETENTION_DAYS=days):
                rebuild(now=NOW)
            # The minute of OLD has no rows any more; its rollup is all the history there is.
            self.assertEqual(snapshot(), rollups)

    def test_the_horizon_is_the_first_whole_minute_at_or_after_the_cutoff(self):
        self.assertEqual(retention.horizon(NOW), datetime(2026, 9, 15, tzinfo=dt_timezone.utc))
        self.assertEqual(retention.horizon(NOW + timedelta(seconds=1)),
                         datetime(2026, 9, 15, 0, 1, tzinfo=dt_timezone.utc))

    def test_a_purge_goes_a_batch_per_transaction_and_a_slice_stops_when_its_time_is_up(self):
        old = [self.ended(OLD + timedelta(seconds=s)) for s in range(5)]
        cutoff = retention.cutoff(NOW)
        # until=0: the time is up after the first batch.
        self.assertEqual(retention.purge_some(cutoff, batch=2, until=0), (2, False))
        self.assertEqual(self.remaining(*old), {i.pk for i in old[2:]})  # the oldest first
        self.assertEqual(retention.purge_some(cutoff, batch=2, until=0), (2, False))
        self.assertEqual(retention.purge_some(cutoff, batch=2, until=0), (1, True))
        self.assertEqual(retention.purge_some(cutoff, batch=2), (0, True))

    def test_one_of_two_runners_takes_the_hourly_turn(self):
        self.assertTrue(retention.take_turn())
        self.assertFalse(retention.take_turn())
        self.assertGreater(queue.connection().ttl(retention._turn_key()), 3500)

    def test_the_runner_that_takes_the_turn_purges_and_the_other_does_not(self):
        old = self.ended(timezone.now() - timedelta(days=31))
        outputs = io.StringIO(), io.StringIO()
        first, second = (RunEventSources(stdout=out) for out in outputs)
        first.purge_step(timezone.now())
        second.purge_step(timezone.now())
        self.assertFalse(Invocation.objects.filter(pk=old.pk).exists())
        self.assertIn("purged 1 invocations that ended before", outputs[0].getvalue())
        self.assertEqual(outputs[1].getvalue(), "")
        self.assertIsNone(first.purging)  # done: the next purge waits for the next turn

    @override_settings(INVOCATION_RETENTION_DAYS=0)
    def test_retention_0_keeps_every_invocation(self):
        old = self.ended(datetime(2020, 1, 1, tzinfo=dt_timezone.utc))
        self.assertEqual(retention.purge(), 0)
        self.assertIsNone(retention.horizon())
        out = io.StringIO()
        call_command("purge_invocations", stdout=out)
        self.assertEqual(out.getvalue(), "INVOCATION_RETENTION_DAYS is 0: every invocation is kept\n")
        runner = RunEventSources(stdout=io.StringIO())
        runner.purge_step(timezone.now())
        self.assertTrue(Invocation.objects.filter(pk=old.pk).exists())
        # And a rebuild recomputes every minute.
        MinuteRollup.objects.update(invocations=99)
        self.assertEqual(rebuild(), 1)
        self.assertEqual(MinuteRollup.objects.get().invocations, 1)

    def test_the_command_prints_how_many_went_and_a_dry_run_deletes_nothing(self):
        now = timezone.now()
        old = [self.ended(now - timedelta(days=40)), self.ended(now - timedelta(days=31))]
        recent = self.ended(now - timedelta(days=1))
        out = io.StringIO()
        call_command("purge_invocations", "--dry-run", stdout=out)
        self.assertRegex(out.getvalue(), r"^would purge 2 invocations that ended before \S+ \S+ UTC \(30 days\)\n$")
        self.assertEqual(len(self.remaining(*old, recent)), 3)
        out = io.StringIO()
        call_command("purge_invocations", stdout=out)
        self.assertRegex(out.getvalue(), r"^purged 2 invocations that ended before \S+ \S+ UTC \(30 days\)\n$")
        self.assertEqual(self.remaining(*old, recent), {recent.pk})

    def test_the_purge_reads_only_ids_never_the_events_and_logs_it_deletes(self):
        self.ended(OLD)
        with CaptureQueriesContext(connection) as queries:
            retention.purge(now=NOW)
        table = Invocation._meta.db_table
        read = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
        self.assertTrue(read)
        self.assertFalse([sql for sql in read if f'"{table}"."log"' in sql or f'"{table}"."event"' in sql])
