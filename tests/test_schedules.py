"""Schedules (invocations.schedules): EventBridge's Scheduled Event, firing due ticks exactly once (also with
two schedulers racing), and the schedule form's preview and errors. The expressions themselves are tested in
test_schedule_expressions.py."""

import json
import re
import subprocess
import sys
import uuid
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from functions.models import Alias, Trigger, account_id
from invocations import schedules
from invocations.forms import ScheduleForm
from invocations.models import Invocation
from tests.base import BaseTestCase, WorkerTestCase, handler_zip
from tests.processes import ROOT, child_env, log_dir, stop, wait_for

ECHO = "def handler(event, context):\n    return event\n"

# EventBridge's Scheduled Event, as AWS publishes it: the example in AWS's own Lambda event library
# (aws/aws-lambda-rust-runtime, lambda-events/src/fixtures/example-eventbridge-schedule.json;
# https://docs.rs/crate/aws_lambda_events/1.1.3/source/src/fixtures/example-eventbridge-schedule.json), the
# event of https://docs.aws.amazon.com/lambda/latest/dg/with-scheduled-events.html ("Using Lambda with
# EventBridge (CloudWatch Events)", whose older revision showed the same fields in another order).
DOC_SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2015-10-08T16:53:06Z",
    "region": "us-east-1",
    "resources": [
        "arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"
    ],
    "detail": {}
}

UTC = dt_timezone.utc


class ScheduleWorld:
    def make_schedule(self, function, expression="rate(5 minutes)", qualifier="", enabled=True, next_fire_at=None,
                      tz="UTC"):
        trigger = Trigger.objects.create(function=function, kind=Trigger.Kind.SCHEDULE, qualifier=qualifier,
                                         enabled=enabled, config={"expression": expression, "timezone": tz})
        if next_fire_at is not None:
            Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=next_fire_at)
            trigger.refresh_from_db()
        return trigger


class ScheduledEventTests(ScheduleWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="nightly")
        self.trigger = self.make_schedule(self.fn)

    def test_the_event_has_the_documented_keys_and_types(self):
        event = schedules.scheduled_event(self.trigger, datetime(2015, 10, 8, 16, 53, 6, tzinfo=UTC))
        self.assertEqual(list(event), list(DOC_SCHEDULED_EVENT))  # same keys, in the documented order
        for key, documented in DOC_SCHEDULED_EVENT.items():
            self.assertIs(type(event[key]), type(documented), key)
        self.assertEqual(json.loads(json.dumps(event)), event)  # plain JSON

    def test_each_field_is_what_eventbridge_sends(self):
        tick = datetime(2015, 10, 8, 16, 53, 6, 250000, tzinfo=UTC)
        event = schedules.scheduled_event(self.trigger, tick)
        account = account_id(self.alice)
        region = settings.LAMBDA_REGION
        self.assertEqual(event["version"], "0")
        self.assertEqual(str(uuid.UUID(event["id"])), event["id"])  # a canonical lower-case UUID
        self.assertEqual(event["detail-type"], "Scheduled Event")
        self.assertEqual(event["source"], "aws.events")
        self.assertRegex(event["account"], r"^\d{12}$")
        self.assertEqual(event["account"], account)
        # The tick, to the second, in UTC, in the documented format.
        self.assertEqual(event["time"], "2015-10-08T16:53:06Z")
        self.assertEqual(len(event["time"]), len(DOC_SCHEDULED_EVENT["time"]))
        self.assertEqual(event["region"], region)
        self.assertEqual(len(event["resources"]), 1)
        self.assertRegex(event["resources"][0], rf"^arn:aws:events:{region}:{account}:rule/[A-Za-z0-9._-]+$")
        self.assertEqual(event["resources"][0], self.trigger.rule_arn)
        self.assertEqual(event["detail"], {})

    def test_the_time_is_the_tick_in_utc_whatever_its_zone(self):
        paris = datetime(2024, 7, 1, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
        self.assertEqual(schedules.scheduled_event(self.trigger, paris)["time"], "2024-07-01T12:00:00Z")

    def test_the_id_is_stable_for_a_tick_and_differs_between_ticks_and_schedules(self):
        tick = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
        first = schedules.scheduled_event(self.trigger, tick)["id"]
        self.assertEqual(schedules.scheduled_event(self.trigger, tick)["id"], first)
        # The same instant, from the database (a fresh read of the row) also gives the same id.
        self.assertEqual(schedules.scheduled_event(Trigger.objects.get(pk=self.trigger.pk), tick)["id"], first)
        self.assertNotEqual(schedules.scheduled_event(self.trigger, tick + timedelta(minutes=5))["id"], first)
        other = self.make_schedule(self.fn)
        self.assertNotEqual(schedules.scheduled_event(other, tick)["id"], first)


class FireDueTests(ScheduleWorld, BaseTestCase):
    """fire_due against the database; nothing is queued (the test's transaction never commits, and the
    callbacks that would queue are captured, not run)."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="ticker")
        self.now = timezone.now()

    def fire_due(self, now=None):
        with self.captureOnCommitCallbacks(execute=False) as queued:
            fired = schedules.fire_due(now or self.now)
        self.assertEqual(len(queued), len(fired), "one job is queued per invocation made")
        return fired

    def test_a_due_schedule_fires_once_and_moves_past_now(self):
        trigger = self.make_schedule(self.fn, next_fire_at=self.now - timedelta(seconds=10))
        fired = self.fire_due()
        self.assertEqual(len(fired), 1)
        self.assertEqual(fired[0].trigger_id, trigger.pk)
        trigger.refresh_from_db()
        self.assertGreater(trigger.next_fire_at, self.now)
        self.assertEqual(trigger.next_fire_at, schedules.next_tick(trigger, self.now))
        # The same moment again: that tick is gone.
        self.assertEqual(self.fire_due(), [])
        self.assertEqual(Invocation.objects.count(), 1)

    def test_a_schedule_not_yet_due_does_not_fire(self):
        ahead = self.now + timedelta(seconds=30)
        trigger = self.make_schedule(self.fn, next_fire_at=ahead)
        self.assertEqual(self.fire_due(), [])
        trigger.refresh_from_db()
        self.assertEqual(trigger.next_fire_at, ahead)
        self.assertEqual(len(self.fire_due(ahead)), 1)  # and at its tick, it does

    def test_a_disabled_schedule_never_fires(self):
        past = self.now - timedelta(minutes=10)
        trigger = self.make_schedule(self.fn, enabled=False, next_fire_at=past)
        for later in (self.now, self.now + timedelta(hours=1), self.now + timedelta(days=30)):
            self.assertEqual(self.fire_due(later), [])
        trigger.refresh_from_db()
        self.assertEqual(trigger.next_fire_at, past)
        self.assertFalse(Invocation.objects.exists())

    def test_ticks_missed_while_down_fire_once_as_the_first_missed_tick(self):
        trigger = self.make_schedule(self.fn, expression="rate(1 minute)")
        created = self.now - timedelta(days=1, seconds=17)
        missed = created + timedelta(hours=20)  # a tick on the schedule's grid, 4 hours before now
        Trigger.objects.filter(pk=trigger.pk).update(created_at=created, next_fire_at=missed)
        fired = self.fire_due()
        self.assertEqual(len(fired), 1, "240 missed ticks make one late invocation")
        event = json.loads(fired[0].event)
        self.assertEqual(event["time"], missed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        trigger.refresh_from_db()
        # The next tick is the first one after now, on the schedule's grid.
        self.assertGreater(trigger.next_fire_at, self.now)
        self.assertLessEqual(trigger.next_fire_at, self.now + timedelta(minutes=1))
        self.assertEqual((trigger.next_fire_at - created) % timedelta(minutes=1), timedelta(0))
        self.assertEqual(self.fire_due(), [])
        self.assertEqual(Invocation.objects.count(), 1)

    def test_missed_cron_ticks_fire_once_too(self):
        missed = (self.now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
        trigger = self.make_schedule(self.fn, expression="cron(0 * * * ? *)", next_fire_at=missed)
        fired = self.fire_due()
        self.assertEqual(len(fired), 1)
        self.assertEqual(json.loads(fired[0].event)["time"], missed.strftime("%Y-%m-%dT%H:%M:%SZ"))
        trigger.refresh_from_db()
        top_of_next_hour = (self.now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        self.assertEqual(trigger.next_fire_at, top_of_next_hour)

    def test_the_invocation_is_an_asynchronous_scheduled_event_through_the_qualifier(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        trigger = self.make_schedule(self.fn, qualifier="live", next_fire_at=self.now - timedelta(seconds=1))
        [invocation] = self.fire_due()
        invocation.refresh_from_db()
        self.assertEqual(invocation.kind, Invocation.Kind.ASYNC)
        self.assertEqual(invocation.kind, "Event")
        self.assertEqual(invocation.source, "schedule")
        self.assertEqual(invocation.trigger_id, trigger.pk)
        self.assertEqual(invocation.qualifier, "live")
        self.assertEqual(invocation.version, "1")  # what the alias points at, not $LATEST
        self.assertEqual(invocation.status, Invocation.Status.QUEUED)
        self.assertIn("async", invocation.config)  # retries and destinations apply, as to any event
        event = json.loads(invocation.event)
        self.assertEqual(event["detail-type"], "Scheduled Event")
        self.assertEqual(event["resources"], [trigger.rule_arn])
        self.assertEqual(event["time"], (self.now - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def test_an_unqualified_schedule_invokes_latest(self):
        self.fn.publish()
        self.make_schedule(self.fn, next_fire_at=self.now)
        [invocation] = self.fire_due()
        self.assertEqual((invocation.qualifier, invocation.version), ("", "$LATEST"))

    def test_a_schedule_on_a_deleted_alias_skips_its_tick_and_the_others_still_fire(self):
        version, _ = self.fn.publish()
        alias = self.fn.aliases.create(name="gone", version=version)
        orphan = self.make_schedule(self.fn, qualifier="gone", next_fire_at=self.now - timedelta(seconds=5))
        healthy = self.make_schedule(self.fn, next_fire_at=self.now - timedelta(seconds=5))
        alias.delete()
        with self.assertLogs("invocations.schedules", "WARNING") as logs:
            fired = self.fire_due()
        self.assertEqual([i.trigger_id for i in fired], [healthy.pk])
        self.assertIn("tick", logs.output[0])
        self.assertFalse(Invocation.objects.filter(trigger=orphan).exists())
        orphan.refresh_from_db()
        self.assertGreater(orphan.next_fire_at, self.now)  # skipped, not retried every second
        self.assertEqual(self.fire_due(), [])
        self.assertFalse(Alias.objects.filter(name="gone").exists())


class EditRaceTests(ScheduleWorld, BaseTestCase):
    def test_saving_a_schedule_edited_before_its_tick_fired_does_not_fire_the_tick_again(self):
        fn = self.create_function(handler_zip(ECHO), name="edited")
        tick = timezone.now() - timedelta(seconds=1)
        trigger = self.make_schedule(fn, next_fire_at=tick)
        on_the_page = Trigger.objects.get(pk=trigger.pk)  # the edit page loaded it, tick still to come
        with self.captureOnCommitCallbacks(execute=False):
            self.assertEqual(len(schedules.fire_due()), 1)  # a scheduler fires the tick meanwhile
        form = ScheduleForm({"qualifier": "", "expression": "rate(10 minutes)", "timezone": "UTC",
                             "enabled": "on"}, function=fn, trigger=on_the_page)
        self.assertTrue(form.is_valid(), form.errors)
        polls = []

        def arm_after_a_poll(trigger):
            # A scheduler's poll lands between the form's writes: the saved row must not be due again.
            with self.captureOnCommitCallbacks(execute=False):
                polls.append(schedules.fire_due())
            schedules.arm(trigger)

        with mock.patch("invocations.forms.arm", arm_after_a_poll):
            form.save()
        self.assertEqual(polls, [[]])
        self.assertEqual(fn.invocations.count(), 1)
        self.assertGreater(Trigger.objects.get(pk=trigger.pk).next_fire_at, timezone.now())


class TwoSchedulersTests(ScheduleWorld, WorkerTestCase):
    """Two real `manage.py run_event_sources` processes on the test database, and the shared workers: each tick
    fires once."""

    def start_scheduler(self, name):
        log = open(log_dir() / f"{name}.log", "w")
        self.addCleanup(log.close)
        process = subprocess.Popen([sys.executable, "manage.py", "run_event_sources"], cwd=ROOT,
                                   env=child_env(PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop, [process])
        return process, log.name

    def test_two_schedulers_fire_each_tick_exactly_once(self):
        schedulers = [self.start_scheduler(f"scheduler-{i}") for i in range(2)]
        for process, log_name in schedulers:
            started = wait_for(lambda: process.poll() is not None or "firing schedules" in Path(log_name).read_text(),
                               30)
            self.assertTrue(started and process.poll() is None, f"run_event_sources did not start; see {log_name}")

        fn = self.create_function(handler_zip(ECHO), name="every-minute")
        trigger = self.make_schedule(fn, expression="rate(1 minute)")
        # Anchor the rate's own grid a day ahead, so that only the ticks set below come due during the test.
        Trigger.objects.filter(pk=trigger.pk).update(created_at=timezone.now() + timedelta(days=1))

        ticks = []
        for n in range(1, 4):
            tick = timezone.now() + timedelta(seconds=1)
            ticks.append(tick)
            Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=tick)
            fired = wait_for(lambda: Invocation.objects.filter(trigger=trigger).count() >= n, 20)
            self.assertTrue(fired, f"tick {n} did not fire")
        # A second firing of the last tick would come within a poll (1 s) of the first.
        self.assertFalse(wait_for(lambda: Invocation.objects.filter(trigger=trigger).count() > 3, 2.5))

        invocations = list(Invocation.objects.filter(trigger=trigger).order_by("created_at"))
        self.assertEqual([json.loads(i.event)["time"] for i in invocations],
                         [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in ticks])
        self.assertEqual(len({json.loads(i.event)["id"] for i in invocations}), 3)
        for invocation, tick in zip(invocations, ticks):
            self.assertGreaterEqual(invocation.created_at, tick)  # not before its time
            self.assertEqual((invocation.kind, invocation.source), ("Event", "schedule"))
            done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED)
                            .first(), 30)
            self.assertIsNotNone(done, f"invocation {invocation.pk} did not finish")
            self.assertEqual(done.status, Invocation.Status.SUCCEEDED, done.result)
            self.assertTrue(done.worker)
            self.assertEqual(json.loads(done.result), json.loads(invocation.event))

        # Both schedulers report what they fired: three lines between them.
        for process, _ in schedulers:
            process.terminate()
        for process, log_name in schedulers:
            try:
                self.assertEqual(process.wait(timeout=10), 0, f"see {log_name}")
            except subprocess.TimeoutExpired:
                self.fail(f"run_event_sources did not stop on SIGTERM; see {log_name}")
        fired_lines = [line for _, log_name in schedulers for line in Path(log_name).read_text().splitlines()
                       if re.match(rf"fired {trigger.pk}: invocation ", line)]
        self.assertEqual(len(fired_lines), 3, fired_lines)

    def test_many_schedules_due_at_once_each_fire_once(self):
        # Both schedulers find the same due rows and work through them in the same order: they contend for
        # every one of them, which a lost conditional UPDATE would show as a second invocation.
        schedulers = [self.start_scheduler(f"scheduler-many-{i}") for i in range(2)]
        for process, log_name in schedulers:
            started = wait_for(lambda: process.poll() is not None or "firing schedules" in Path(log_name).read_text(),
                               30)
            self.assertTrue(started and process.poll() is None, f"run_event_sources did not start; see {log_name}")
        fn = self.create_function(handler_zip(ECHO), name="crowd")
        triggers = [self.make_schedule(fn, expression="rate(1 day)") for _ in range(30)]
        tick = timezone.now() + timedelta(seconds=1)
        Trigger.objects.filter(pk__in=[t.pk for t in triggers]).update(next_fire_at=tick)
        self.assertTrue(wait_for(lambda: Invocation.objects.filter(function=fn).count() >= 30, 30))
        self.assertFalse(wait_for(lambda: Invocation.objects.filter(function=fn).count() > 30, 2.5))
        self.assertEqual(sorted(Invocation.objects.values_list("trigger_id", flat=True)),
                         sorted(t.pk for t in triggers))
        for process, _ in schedulers:
            process.terminate()
        for process, log_name in schedulers:
            self.assertEqual(process.wait(timeout=10), 0, f"see {log_name}")
        # Let the workers finish them before the test's rows are flushed.
        self.assertTrue(wait_for(lambda: not Invocation.objects.exclude(status__in=Invocation.FINISHED).exists(), 60))
        self.assertEqual(Invocation.objects.filter(status=Invocation.Status.SUCCEEDED).count(), 30)


class ScheduleFormTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="noon")

    def form(self, expression, tz="UTC", **extra):
        return ScheduleForm({"qualifier": "", "expression": expression, "timezone": tz, "enabled": "on", **extra},
                            function=self.fn)

    def test_preview_gives_the_next_five_fire_times_in_the_time_zone(self):
        form = self.form("cron(0 12 * * ? *)", "Europe/Paris")
        self.assertTrue(form.is_valid(), form.errors)
        before = timezone.now()
        times = form.preview()
        paris = ZoneInfo("Europe/Paris")
        today = before.astimezone(paris)
        first_day = today.date() if today.hour < 12 else today.date() + timedelta(days=1)
        expected = [datetime.combine(first_day + timedelta(days=d), time(12), paris) for d in range(5)]
        self.assertEqual(times, expected)
        for t in times:  # shown as noon in Paris, not as the UTC instant
            self.assertEqual((t.hour, t.minute, str(t.tzinfo)), (12, 0, "Europe/Paris"))
        self.assertGreater(times[0], before)

    def test_preview_of_a_rate_counts_from_now(self):
        form = self.form("rate(2 hours)")
        self.assertTrue(form.is_valid(), form.errors)
        before = timezone.now()
        times = form.preview()
        self.assertEqual(len(times), 5)
        self.assertTrue(before + timedelta(hours=2) <= times[0] <= timezone.now() + timedelta(hours=2))
        self.assertEqual([b - a for a, b in zip(times, times[1:])], [timedelta(hours=2)] * 4)

    def test_invalid_expressions_are_field_errors(self):
        cases = {
            "rate(5 minute)": "use the plural unit 'minutes'",
            "rate(30 seconds)": "can't be finer than 1 minute",
            "cron(0 12 * * * *)": "Use ? in either day-of-month or day-of-week",
            "cron(0 12 * *)": "cron() needs six fields",
            "every day": "A schedule must be rate(value unit) or cron(",
            "at(2030-01-01T00:00:00)": "One-time at() schedules are not supported",
        }
        for expression, message in cases.items():
            with self.subTest(expression):
                form = self.form(expression)
                self.assertFalse(form.is_valid())
                self.assertEqual(list(form.errors), ["expression"])
                self.assertIn(message, form.errors["expression"][0])
                self.assertEqual(form.preview(), [])

    def test_an_unknown_time_zone_is_a_field_error(self):
        for name in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/Pariss"):
            with self.subTest(name):
                form = self.form("cron(0 12 * * ? *)", name)
                self.assertFalse(form.is_valid())
                self.assertEqual(list(form.errors), ["timezone"])
                self.assertEqual(form.errors["timezone"], [f"Unknown time zone {name!r}"])

    def test_an_empty_time_zone_means_utc(self):
        form = self.form("cron(0 12 * * ? *)", "")
        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.cleaned_data["timezone"], "UTC")

    def test_a_rejected_schedule_creates_nothing(self):
        self.client.force_login(self.alice)
        url = reverse("functions:new_trigger", args=[self.fn.name, "schedule"])
        bad = [("rate(0 minutes)", "UTC", "rate() value must be a positive whole number"),
               ("cron(0 12 * * ? *)", "Nowhere/Town", "Unknown time zone")]
        for expression, tz, message in bad:
            response = self.client.post(url, {"expression": expression, "timezone": tz, "enabled": "on"})
            self.assertContains(response, message, status_code=400)
        self.assertFalse(Trigger.objects.exists())
