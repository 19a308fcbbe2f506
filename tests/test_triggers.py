"""The console's trigger pages (HTTP endpoints and schedules), asynchronous settings and dead-letter inbox,
through Django's test client; real workers where something runs."""

import hashlib
import html
import json
import re
import secrets
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from functions.models import EventInvokeConfig, Trigger
from invocations import schedules
from invocations.invoke import invoke, invoke_and_wait
from invocations.models import DeadLetter, Invocation
from tests.base import BaseTestCase, WorkerTestCase, handler_zip
from tests.processes import wait_for

ECHO = "def handler(event, context):\n    return event\n"

# Fails when the event asks it to, or when a schedule invokes it; otherwise echoes the event.
PICKY = """
    def handler(event, context):
        if event.get("fail"):
            raise ValueError("asked to fail")
        if event.get("source") == "aws.events":
            raise RuntimeError("no schedules today")
        return {"echo": event}
"""


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def card_row(response, trigger):
    """The HTML of one trigger's row in the function page's Triggers card."""
    content = response.content.decode()
    card = content[content.index('id="triggers"'):]
    match = re.search(rf'<tr id="trigger-{trigger.pk}".*?</tr>', card, re.DOTALL)
    assert match, f"no row for trigger {trigger.pk}"
    return match.group(0)


def select_options(response, name):
    content = response.content.decode()
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', content, re.DOTALL)
    assert select, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def wait_finished(invocation, timeout=30):
    done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED).first(),
                    timeout)
    assert done is not None, f"invocation {invocation.pk} is still {Invocation.objects.get(pk=invocation.pk).status}"
    return done


class TriggerPagesTests(BaseTestCase):
    """Adding and changing triggers; nothing runs here."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")
        self.client.force_login(self.alice)

    def test_deleting_an_alias_deletes_its_triggers_and_async_settings_but_not_their_invocations(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        self.assertEqual(self.post_http(qualifier="live").status_code, 302)
        self.assertEqual(self.post_http().status_code, 302)  # $LATEST's endpoint stays
        EventInvokeConfig.objects.create(function=self.fn, qualifier="live", maximum_retry_attempts=0)
        endpoint = self.fn.triggers.get(qualifier="live")
        with self.captureOnCommitCallbacks(execute=False):
            fired = invoke(self.fn, "{}", qualifier="live", trigger=endpoint)
        response = self.client.post(reverse("functions:delete_alias", args=[self.fn.name, "live"]))
        self.assertIn("Deleted alias live and its 1 trigger(s).", messages_of(self.client.get(response.url)))
        self.assertEqual(list(self.fn.triggers.values_list("qualifier", flat=True)), [""])
        self.assertFalse(EventInvokeConfig.objects.exists())
        fired.refresh_from_db()
        self.assertIsNone(fired.trigger)

    def new_url(self, kind):
        return reverse("functions:new_trigger", args=[self.fn.name, kind])

    def post_http(self, **fields):
        data = {"qualifier": "", "auth_type": "NONE", "allow_origins": "", "allow_methods": "", "allow_headers": "",
                "expose_headers": "", "max_age": "", **fields}
        return self.client.post(self.new_url("http"), data)

    def post_schedule(self, url=None, **fields):
        data = {"qualifier": "", "expression": "rate(5 minutes)", "timezone": "UTC", "enabled": "on", **fields}
        return self.client.post(url or self.new_url("schedule"), data)

    def shown_key(self, response):
        self.assertEqual(response.status_code, 200)
        found = re.search(r'<pre class="mono" id="secret-key">([^<]+)</pre>', response.content.decode())
        self.assertIsNotNone(found, "no secret key on the page")
        return html.unescape(found.group(1))

    # ---- HTTP endpoints ----

    def test_adding_an_open_http_endpoint(self):
        self.assertContains(self.client.get(self.new_url("http")), 'id="trigger-form"')
        response = self.post_http()
        self.assertRedirects(response, f"{self.fn.get_absolute_url()}#triggers", fetch_redirect_response=False)
        trigger = Trigger.objects.get()
        self.assertEqual((trigger.kind, trigger.qualifier, trigger.enabled), ("http", "", True))
        self.assertEqual(trigger.config, {"auth_type": "NONE", "cors": {}})
        self.assertRegex(trigger.url_id, r"^[a-z0-9]{32}$")
        self.assertEqual(trigger.key_sha256, "")
        page = self.client.get(self.fn.get_absolute_url())
        self.assertContains(page, reverse("endpoint", args=[trigger.url_id]))
        self.assertIn("auth NONE", card_row(page, trigger))

    def test_a_key_endpoint_shows_its_key_once_and_keeps_only_its_hash(self):
        self.fn.publish()
        response = self.post_http(qualifier="1", auth_type="KEY")
        self.assertEqual(response.status_code, 200)
        key = self.shown_key(response)
        self.assertGreaterEqual(len(key), 32)
        trigger = Trigger.objects.get()
        self.assertEqual((trigger.qualifier, trigger.config["auth_type"]), ("1", "KEY"))
        self.assertContains(response, reverse("endpoint", args=[trigger.url_id]))  # its URL, with the key
        self.assertEqual(trigger.key_sha256, hashlib.sha256(key.encode()).hexdigest())
        self.assertTrue(trigger.check_key(key))
        self.assertFalse(trigger.check_key(key + "x"))
        stored = json.dumps([getattr(trigger, f.attname) for f in Trigger._meta.concrete_fields], default=str)
        self.assertNotIn(key, stored)
        # Not shown again: neither on its page nor on the function page.
        self.assertNotContains(self.client.get(reverse("functions:trigger", args=[self.fn.name, trigger.pk])), key)
        self.assertNotContains(self.client.get(self.fn.get_absolute_url()), key)
        # Saving its settings again keeps the key.
        self.client.post(reverse("functions:trigger", args=[self.fn.name, trigger.pk]),
                         {"auth_type": "KEY", "allow_origins": "", "allow_methods": "", "allow_headers": "",
                          "expose_headers": "", "max_age": ""})
        trigger.refresh_from_db()
        self.assertTrue(trigger.check_key(key))

    def test_a_key_can_be_required_later_replaced_and_dropped(self):
        self.post_http()
        trigger = Trigger.objects.get()
        key_url = reverse("functions:trigger_key", args=[self.fn.name, trigger.pk])
        first = self.shown_key(self.client.post(key_url))
        trigger.refresh_from_db()
        self.assertEqual(trigger.config["auth_type"], "KEY")
        self.assertTrue(trigger.check_key(first))
        second = self.shown_key(self.client.post(key_url))
        trigger.refresh_from_db()
        self.assertNotEqual(first, second)
        self.assertFalse(trigger.check_key(first))  # the old key no longer opens it
        self.assertTrue(trigger.check_key(second))
        self.client.post(reverse("functions:trigger", args=[self.fn.name, trigger.pk]),
                         {"auth_type": "NONE", "allow_origins": "", "allow_methods": "", "allow_headers": "",
                          "expose_headers": "", "max_age": ""})
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["auth_type"], trigger.key_sha256), ("NONE", ""))

    def test_a_second_endpoint_for_the_same_qualifier_is_refused(self):
        self.post_http()
        response = self.post_http(auth_type="KEY")
        self.assertContains(response, "hello already has an HTTP endpoint (Lambda allows one URL per function or alias)",
                            status_code=400)
        self.assertNotContains(response, 'id="secret-key"', status_code=400)
        self.assertEqual(Trigger.objects.count(), 1)
        self.assertEqual(Trigger.objects.get().config["auth_type"], "NONE")
        # Another qualifier may have its own.
        self.fn.publish()
        self.assertEqual(self.post_http(qualifier="1").status_code, 302)
        self.assertEqual(Trigger.objects.count(), 2)

    def test_cors_with_credentials_and_any_origin_is_refused(self):
        response = self.post_http(allow_origins="*", allow_methods="GET", allow_credentials="on")
        self.assertContains(response, "Browsers refuse credentials with the origin *: name the origins.",
                            status_code=400)
        self.assertFalse(Trigger.objects.exists())
        response = self.post_http(allow_origins="https://example.com", allow_methods="get", allow_credentials="on")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(Trigger.objects.get().config["cors"]["allow_methods"], ["GET"])

    # ---- schedules ----

    def test_the_preview_button_shows_five_times_and_saves_nothing(self):
        response = self.post_schedule(expression="cron(0 12 * * ? *)", timezone="Europe/Paris", preview="")
        self.assertEqual(response.status_code, 200)
        preview = re.search(r'<div id="preview">(.*?)</div>', response.content.decode(), re.DOTALL).group(1)
        times = re.findall(r"<li[^>]*>([^<]+)</li>", preview)
        self.assertEqual(len(times), 5)
        for shown in times:
            self.assertRegex(shown, r"^\d{4}-\d\d-\d\d 12:00:00 CES?T \(\w+day\)$")
        self.assertEqual(len(set(times)), 5)
        self.assertFalse(Trigger.objects.exists())
        # An invalid expression previews nothing and says why.
        response = self.post_schedule(expression="cron(0 12 * * * *)", preview="")
        self.assertContains(response, "Use ? in either day-of-month or day-of-week", status_code=400)
        self.assertContains(response, "Fix the expression to see when it fires.", status_code=400)
        self.assertFalse(Trigger.objects.exists())

    def test_saving_a_schedule_arms_its_next_tick(self):
        before = timezone.now()
        response = self.post_schedule()
        self.assertRedirects(response, f"{self.fn.get_absolute_url()}#triggers", fetch_redirect_response=False)
        trigger = Trigger.objects.get()
        self.assertEqual(trigger.config, {"expression": "rate(5 minutes)", "timezone": "UTC"})
        self.assertEqual(trigger.next_fire_at, trigger.created_at + timedelta(minutes=5))
        self.assertGreater(trigger.next_fire_at, before)
        page = self.client.get(self.fn.get_absolute_url())
        self.assertIn("rate(5 minutes)", card_row(page, trigger))
        self.assertIn(f"next {timezone.localtime(trigger.next_fire_at):%Y-%m-%d %H:%M}", card_row(page, trigger))
        # Changing it re-arms it.
        edit = reverse("functions:trigger", args=[self.fn.name, trigger.pk])
        self.assertContains(self.client.get(edit), 'id="preview"')
        self.assertEqual(self.post_schedule(edit, expression="cron(30 4 * * ? *)").status_code, 302)
        trigger.refresh_from_db()
        self.assertEqual((trigger.next_fire_at.hour, trigger.next_fire_at.minute), (4, 30))
        self.assertLessEqual(trigger.next_fire_at - timezone.now(), timedelta(days=1))

    def test_a_schedule_saved_disabled_is_not_armed(self):
        self.post_schedule(enabled="")
        trigger = Trigger.objects.get()
        self.assertEqual((trigger.enabled, trigger.next_fire_at), (False, None))

    def test_disable_clears_the_next_tick_and_enable_re_arms_from_now(self):
        self.post_schedule()
        trigger = Trigger.objects.get()
        toggle = reverse("functions:toggle_trigger", args=[self.fn.name, trigger.pk])
        response = self.client.post(toggle, follow=True)
        self.assertIn("Disabled the schedule.", messages_of(response))
        trigger.refresh_from_db()
        self.assertEqual((trigger.enabled, trigger.next_fire_at), (False, None))
        self.assertIn("(disabled)", card_row(response, trigger))
        # Disabled for a while: its ticks passed.
        created = timezone.now() - timedelta(hours=3, seconds=20)
        Trigger.objects.filter(pk=trigger.pk).update(created_at=created)
        before = timezone.now()
        response = self.client.post(toggle, follow=True)
        self.assertIn("Enabled the schedule.", messages_of(response))
        trigger.refresh_from_db()
        self.assertTrue(trigger.enabled)
        self.assertGreater(trigger.next_fire_at, before)
        self.assertLessEqual(trigger.next_fire_at, before + timedelta(minutes=5))
        self.assertEqual((trigger.next_fire_at - created) % timedelta(minutes=5), timedelta(0))

    def test_an_http_endpoint_is_toggled_and_deleted(self):
        self.post_http()
        trigger = Trigger.objects.get()
        self.client.post(reverse("functions:toggle_trigger", args=[self.fn.name, trigger.pk]))
        trigger.refresh_from_db()
        self.assertFalse(trigger.enabled)
        self.assertEqual(self.client.get(reverse("endpoint", args=[trigger.url_id])).status_code, 403)
        response = self.client.post(reverse("functions:delete_trigger", args=[self.fn.name, trigger.pk]), follow=True)
        self.assertIn("Deleted the HTTP endpoint.", messages_of(response))
        self.assertFalse(Trigger.objects.exists())
        self.assertEqual(self.client.get(reverse("endpoint", args=[trigger.url_id])).status_code, 404)

    def test_fire_now_on_a_schedule_whose_alias_is_gone_says_so(self):
        version, _ = self.fn.publish()
        alias = self.fn.aliases.create(name="live", version=version)
        self.post_schedule(qualifier="live")
        trigger = Trigger.objects.get()
        alias.delete()
        response = self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]), follow=True)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(any("live" in m and "no longer exists" in m for m in messages_of(response)),
                        messages_of(response))
        self.assertFalse(Invocation.objects.exists())


class AsyncSettingsTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")
        self.other = self.create_function(handler_zip(ECHO), name="other")
        self.bobs = self.create_function(handler_zip(ECHO), name="other", owner=self.bob)
        self.url = reverse("functions:async_config", args=[self.fn.name])
        self.client.force_login(self.alice)

    def post(self, **fields):
        data = {"qualifier": "", "maximum_retry_attempts": "1", "maximum_event_age_seconds": "120",
                "on_success": "", "on_failure": "", **fields}
        return self.client.post(self.url, data)

    def test_settings_are_saved_per_qualifier(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        response = self.post(on_success=self.other.arn)
        self.assertRedirects(response, self.url, fetch_redirect_response=False)
        self.post(qualifier="live", maximum_retry_attempts="0", maximum_event_age_seconds="21600",
                  on_failure=self.other.arn)
        self.post(maximum_retry_attempts="2", maximum_event_age_seconds="60")  # $LATEST again: updated
        configs = {c.qualifier: c.snapshot() for c in EventInvokeConfig.objects.filter(function=self.fn)}
        self.assertEqual(configs, {
            "$LATEST": {"maximum_retry_attempts": 2, "maximum_event_age_seconds": 60, "on_success": "",
                        "on_failure": ""},
            "live": {"maximum_retry_attempts": 0, "maximum_event_age_seconds": 21600, "on_success": "",
                     "on_failure": self.other.arn},
        })
        page = self.client.get(self.url)
        self.assertContains(page, 'id="async-configs"')
        self.assertContains(page, self.other.arn)
        # What an invocation through each qualifier carries.
        with self.captureOnCommitCallbacks(execute=False):
            through_live = invoke(self.fn, "{}", kind=Invocation.Kind.ASYNC, qualifier="live")
            unqualified = invoke(self.fn, "{}", kind=Invocation.Kind.ASYNC)
        self.assertEqual(through_live.config["async"], {**configs["live"], "depth": 0})
        self.assertEqual(unqualified.config["async"], {**configs["$LATEST"], "depth": 0})

    def test_out_of_range_values_are_refused_and_nothing_is_saved(self):
        self.post()
        saved = list(EventInvokeConfig.objects.values())
        cases = [
            ({"maximum_retry_attempts": "3"}, "Ensure this value is less than or equal to 2."),
            ({"maximum_retry_attempts": "-1"}, "Ensure this value is greater than or equal to 0."),
            ({"maximum_event_age_seconds": "59"}, "Ensure this value is greater than or equal to 60."),
            ({"maximum_event_age_seconds": "21601"}, "Ensure this value is less than or equal to 21600."),
        ]
        for fields, message in cases:
            with self.subTest(fields):
                self.assertContains(self.post(**fields), message, status_code=400)
        self.assertEqual(list(EventInvokeConfig.objects.values()), saved)

    def test_destinations_are_the_owners_other_functions_only(self):
        page = self.client.get(self.url)
        self.assertEqual(select_options(page, "on_success"), ["", self.other.arn])
        self.assertEqual(select_options(page, "on_failure"), ["", self.other.arn])
        self.assertNotEqual(self.bobs.arn, self.other.arn)  # same name, bob's account
        for arn in (self.fn.arn, self.bobs.arn, f"{self.bobs.arn}:$LATEST"):
            for field in ("on_success", "on_failure"):
                with self.subTest(arn=arn, field=field):
                    self.assertContains(self.post(**{field: arn}), "Select a valid choice", status_code=400)
        self.assertFalse(EventInvokeConfig.objects.exists())


class FireNowTests(WorkerTestCase):
    """The "Fire now" button takes the path real events take, and runs on the workers."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(PICKY), name="picky")
        self.client.force_login(self.alice)

    def add(self, kind, function=None, **config):
        return Trigger.objects.create(function=function or self.fn, kind=kind, config=config,
                                      url_id=secrets.token_hex(16) if kind == "http" else None)

    def fire(self, trigger):
        response = self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]))
        invocation = Invocation.objects.filter(trigger=trigger).order_by("-created_at").first()
        self.assertIsNotNone(invocation)
        self.assertRedirects(response, reverse("invocations:detail", args=[invocation.pk]),
                             fetch_redirect_response=False)
        return invocation

    def test_fire_now_on_a_schedule_queues_a_scheduled_event_that_runs(self):
        echo = self.create_function(handler_zip(ECHO), name="echo")
        trigger = self.add("schedule", function=echo, expression="rate(1 hour)", timezone="UTC")
        schedules.arm(trigger)
        before = timezone.now().replace(microsecond=0)
        response = self.client.post(reverse("functions:fire_trigger", args=[echo.name, trigger.pk]))
        invocation = Invocation.objects.get(trigger=trigger)
        self.assertRedirects(response, reverse("invocations:detail", args=[invocation.pk]),
                             fetch_redirect_response=False)
        self.assertEqual((invocation.kind, invocation.source), ("Event", "schedule"))
        event = json.loads(invocation.event)
        self.assertEqual((event["detail-type"], event["source"], event["resources"]),
                         ("Scheduled Event", "aws.events", [trigger.rule_arn]))
        self.assertGreaterEqual(event["time"], before.strftime("%Y-%m-%dT%H:%M:%SZ"))
        done = wait_finished(invocation)
        self.assertEqual(done.status, Invocation.Status.SUCCEEDED, done.result)
        self.assertEqual(json.loads(done.result), event)
        self.assertEqual(done.attempts, 1)
        next_tick = trigger.next_fire_at
        trigger.refresh_from_db()
        self.assertEqual(trigger.next_fire_at, next_tick)  # firing by hand leaves the schedule's own ticks alone

    def test_fire_now_on_an_http_endpoint_invokes_with_a_get_event(self):
        trigger = self.add("http", auth_type="NONE", cors={})
        invocation = self.fire(trigger)
        self.assertEqual((invocation.kind, invocation.source, invocation.status),
                         ("RequestResponse", "http", "SUCCEEDED"))
        event = json.loads(invocation.event)
        self.assertEqual(event["version"], "2.0")
        self.assertEqual(event["requestContext"]["http"]["method"], "GET")
        self.assertEqual((event["rawPath"], event["requestContext"]["apiId"]), ("/", trigger.url_id))
        self.assertEqual(json.loads(invocation.result), {"echo": event})
        page = self.client.get(reverse("invocations:detail", args=[invocation.pk]))
        self.assertContains(page, str(invocation.pk))
        self.assertTrue(any(m.startswith("GET ") and m.endswith("answered 200.") for m in messages_of(page)))

    def test_fire_now_on_a_key_endpoint_needs_no_key(self):
        trigger = self.add("http", auth_type="KEY", cors={})
        trigger.new_key()
        trigger.save()
        # A caller without the key is refused; the console's owner is not.
        self.assertEqual(self.client.get(reverse("endpoint", args=[trigger.url_id])).status_code, 403)
        self.assertFalse(Invocation.objects.exists())
        invocation = self.fire(trigger)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertNotIn("x-api-key", json.loads(invocation.event)["headers"])

    def test_the_triggers_card_shows_each_triggers_count_and_last_error(self):
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=0)
        endpoint = self.add("http", auth_type="NONE", cors={})
        schedule = self.add("schedule", expression="rate(1 day)", timezone="UTC")
        self.fire(endpoint)
        self.fire(endpoint)
        failed = wait_finished(self.fire(schedule))
        self.assertEqual((failed.status, failed.error_type), ("FAILED", "RuntimeError"))
        self.invoke(self.fn, '{"fail": true}')  # from the console: no trigger's

        page = self.client.get(self.fn.get_absolute_url())
        endpoint_row, schedule_row = card_row(page, endpoint), card_row(page, schedule)
        count = r'<td class="num trigger-count">(\d+)</td>'
        self.assertEqual(re.search(count, endpoint_row).group(1), "2")
        self.assertEqual(re.search(count, schedule_row).group(1), "1")
        self.assertIn("<td>—</td>", endpoint_row)  # no error of its own, though the function had one
        self.assertNotIn("ValueError", endpoint_row)
        self.assertIn(f'<a href="{failed.get_absolute_url()}">RuntimeError</a>', schedule_row)

        # The HTTP endpoint's latest failure shows on its row.
        failing = invoke_and_wait(self.fn, '{"fail": true}', source="http", trigger=endpoint)
        self.assertEqual(failing.status, "FAILED")
        page = self.client.get(self.fn.get_absolute_url())
        self.assertIn(f'<a href="{failing.get_absolute_url()}">ValueError</a>', card_row(page, endpoint))
        self.assertEqual(re.search(count, card_row(page, endpoint)).group(1), "3")


class DeadLetterInboxTests(WorkerTestCase):
    """Failed events in the inbox, edited, redriven and purged through its pages."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(PICKY), name="flaky")
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=0)
        self.inbox = reverse("functions:dead_letters", args=[self.fn.name])
        self.client.force_login(self.alice)

    def dead_letter(self, event):
        invocation = invoke(self.fn, json.dumps(event), kind=Invocation.Kind.ASYNC)
        letter = wait_for(lambda: DeadLetter.objects.filter(invocation=invocation).first(), 30)
        self.assertIsNotNone(letter, f"no dead letter for {invocation.pk}: "
                                     f"{Invocation.objects.get(pk=invocation.pk).status}")
        return letter

    def save_url(self, letter):
        return reverse("functions:save_dead_letter", args=[self.fn.name, letter.pk])

    def test_a_failed_event_shows_with_its_error_attempts_and_log(self):
        letter = self.dead_letter({"fail": True, "n": 1})
        invocation = letter.invocation
        self.assertEqual((invocation.status, invocation.attempts), ("FAILED", 1))
        page = self.client.get(self.inbox)
        self.assertContains(page, "1 failed event")
        article = re.search(rf'<article class="dead-letter" id="dead-letter-{letter.pk}">.*?</article>',
                            page.content.decode(), re.DOTALL).group(0)
        self.assertIn(str(invocation.pk), article)
        self.assertIn("RetriesExhausted", article)
        self.assertIn('<span class="error-type">ValueError</span>', article)
        self.assertIn("asked to fail", article)
        self.assertIn("<tr><th>Attempts</th><td>1</td></tr>", article)
        self.assertIn(f"START RequestId: {invocation.pk}", article)
        self.assertIn(f"REPORT RequestId: {invocation.pk}", article)
        self.assertIn(html.escape(json.dumps({"fail": True, "n": 1})), article)  # the payload, to edit
        self.assertContains(self.client.get(self.fn.get_absolute_url()), "Dead-letter inbox (1)")

    def test_an_invalid_payload_is_refused_and_nothing_changes(self):
        letter = self.dead_letter({"fail": True})
        response = self.client.post(self.save_url(letter), {f"{letter.pk}-payload": '{"fail": tru'}, follow=True)
        self.assertRedirects(response, self.inbox)
        self.assertTrue(any(str(letter.invocation_id) in m and "The event is not valid JSON" in m
                            for m in messages_of(response)), messages_of(response))
        # Also with the redrive button: nothing is redriven.
        self.client.post(self.save_url(letter), {f"{letter.pk}-payload": "[", "redrive": ""})
        letter.refresh_from_db()
        self.assertEqual(letter.payload, json.dumps({"fail": True}))
        self.assertIsNone(letter.redriven_at)
        self.assertEqual(Invocation.objects.count(), 1)

    def test_save_keeps_it_in_the_inbox_and_save_and_redrive_runs_the_edited_payload(self):
        letter = self.dead_letter({"fail": True})
        response = self.client.post(self.save_url(letter), {f"{letter.pk}-payload": '{"fixed": 1}'}, follow=True)
        self.assertIn(f"Saved the payload of event {letter.invocation_id}.", messages_of(response))
        letter.refresh_from_db()
        self.assertEqual((letter.payload, letter.redriven_at), ('{"fixed": 1}', None))
        self.assertContains(response, html.escape('{"fixed": 1}'))
        self.assertEqual(Invocation.objects.count(), 1)

        response = self.client.post(self.save_url(letter), {f"{letter.pk}-payload": '{"fixed": 2}', "redrive": ""},
                                    follow=True)
        again = Invocation.objects.get(source="redrive")
        self.assertIn(f"Redrove event {letter.invocation_id} as invocation {again.pk}.", messages_of(response))
        self.assertEqual((again.kind, again.event), ("Event", '{"fixed": 2}'))
        done = wait_finished(again)
        self.assertEqual(done.status, Invocation.Status.SUCCEEDED, done.result)
        self.assertEqual(json.loads(done.result), {"echo": {"fixed": 2}})
        letter.refresh_from_db()
        self.assertEqual(letter.redrive_id, again.pk)
        page = self.client.get(self.inbox)
        self.assertContains(page, 'id="inbox-empty"')
        self.assertContains(page, 'id="redriven"')
        self.assertContains(page, str(again.pk))
        # A redriven letter can't be redriven again.
        url = reverse("functions:redrive_dead_letter", args=[self.fn.name, letter.pk])
        self.assertEqual(self.client.post(url).status_code, 404)
        self.assertEqual(Invocation.objects.filter(source="redrive").count(), 1)

    def test_redrive_all(self):
        letters = [self.dead_letter({"fail": True, "n": n}) for n in (1, 2)]
        DeadLetter.objects.filter(pk=letters[0].pk).update(payload='{"n": 1}')  # fixed; the other still fails
        response = self.client.post(reverse("functions:redrive_dead_letters", args=[self.fn.name]), follow=True)
        self.assertIn("Redrove 2 events.", messages_of(response))
        redriven = {i.event: wait_finished(i) for i in Invocation.objects.filter(source="redrive")}
        self.assertEqual(set(redriven), {'{"n": 1}', json.dumps({"fail": True, "n": 2})})
        self.assertEqual(redriven['{"n": 1}'].status, "SUCCEEDED")
        self.assertEqual(redriven[json.dumps({"fail": True, "n": 2})].status, "FAILED")
        for letter in letters:
            letter.refresh_from_db()
            self.assertIsNotNone(letter.redriven_at)
        # The one that failed again is back in the inbox, as a new event.
        back = wait_for(lambda: DeadLetter.objects.filter(redriven_at__isnull=True).first(), 10)
        self.assertEqual(back.invocation_id, redriven[json.dumps({"fail": True, "n": 2})].pk)

    def test_purge_empties_the_inbox_but_keeps_the_invocations(self):
        letters = [self.dead_letter({"fail": True, "n": n}) for n in (1, 2)]
        invocations = set(Invocation.objects.values_list("pk", flat=True))
        response = self.client.post(reverse("functions:purge_dead_letters", args=[self.fn.name]), follow=True)
        self.assertIn("Purged 2 events from the inbox.", messages_of(response))
        self.assertContains(response, 'id="inbox-empty"')
        self.assertFalse(DeadLetter.objects.exists())
        self.assertEqual(set(Invocation.objects.values_list("pk", flat=True)), invocations)
        for letter in letters:
            self.assertContains(self.client.get(letter.invocation.get_absolute_url()), "asked to fail")
        self.assertContains(self.client.get(self.fn.get_absolute_url()), "Dead-letter inbox (0)")


class AccessTests(BaseTestCase):
    """Bob reaches none of alice's triggers, settings or inbox, and changes nothing by trying."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")
        self.http = Trigger.objects.create(function=self.fn, kind="http", url_id="a" * 32,
                                           config={"auth_type": "NONE", "cors": {}})
        self.schedule = Trigger.objects.create(function=self.fn, kind="schedule", next_fire_at=timezone.now(),
                                               config={"expression": "rate(1 hour)", "timezone": "UTC"})
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=1)
        with self.captureOnCommitCallbacks(execute=False):
            invocation = invoke(self.fn, '{"a": 1}', kind=Invocation.Kind.ASYNC)
        self.letter = DeadLetter.objects.create(function=self.fn, invocation=invocation,
                                                condition="RetriesExhausted", payload='{"a": 1}')
        self.bobs = self.create_function(handler_zip(ECHO), name="mine", owner=self.bob)
        self.client.force_login(self.bob)

    def state(self):
        return (list(Trigger.objects.order_by("pk").values()), list(EventInvokeConfig.objects.values()),
                list(DeadLetter.objects.values()), Invocation.objects.count())

    def test_bob_gets_404_for_alices_pages_and_actions(self):
        name, letter = self.fn.name, self.letter.pk
        gets = [
            reverse("functions:new_trigger", args=[name, "http"]),
            reverse("functions:new_trigger", args=[name, "schedule"]),
            reverse("functions:trigger", args=[name, self.http.pk]),
            reverse("functions:trigger", args=[name, self.schedule.pk]),
            reverse("functions:async_config", args=[name]),
            reverse("functions:dead_letters", args=[name]),
        ]
        posts = gets + [
            reverse(view, args=[name, trigger.pk])
            for view in ("functions:delete_trigger", "functions:fire_trigger", "functions:toggle_trigger",
                         "functions:trigger_key")
            for trigger in (self.http, self.schedule)
        ] + [
            reverse("functions:save_dead_letter", args=[name, letter]),
            reverse("functions:redrive_dead_letter", args=[name, letter]),
            reverse("functions:redrive_dead_letters", args=[name]),
            reverse("functions:purge_dead_letters", args=[name]),
        ]
        before = self.state()
        data = {"expression": "rate(1 minute)", "timezone": "UTC", "enabled": "on", "auth_type": "KEY",
                "maximum_retry_attempts": "0", "maximum_event_age_seconds": "60", f"{letter}-payload": "{}",
                "redrive": ""}
        for url in gets:
            with self.subTest("GET", url=url):
                self.assertEqual(self.client.get(url).status_code, 404)
        for url in posts:
            with self.subTest("POST", url=url):
                self.assertEqual(self.client.post(url, data).status_code, 404)
        self.assertEqual(self.state(), before)

    def test_bob_cant_reach_alices_objects_through_his_own_function(self):
        name, letter = self.bobs.name, self.letter.pk
        urls = [reverse("functions:trigger", args=[name, self.http.pk]),
                reverse("functions:trigger", args=[name, self.schedule.pk])]
        urls += [reverse(view, args=[name, self.schedule.pk])
                 for view in ("functions:delete_trigger", "functions:fire_trigger", "functions:toggle_trigger")]
        urls += [reverse("functions:trigger_key", args=[name, self.http.pk]),
                 reverse("functions:save_dead_letter", args=[name, letter]),
                 reverse("functions:redrive_dead_letter", args=[name, letter])]
        before = self.state()
        for url in urls:
            with self.subTest(url=url):
                self.assertEqual(self.client.post(url, {f"{letter}-payload": "{}"}).status_code, 404)
        # His own inbox and settings pages work, and show nothing of alice's.
        for url in (reverse("functions:dead_letters", args=[name]), reverse("functions:async_config", args=[name])):
            response = self.client.get(url)
            self.assertEqual(response.status_code, 200)
            self.assertNotContains(response, str(self.letter.invocation_id))
            self.assertNotContains(response, self.fn.arn)
        self.client.post(reverse("functions:redrive_dead_letters", args=[name]))
        self.client.post(reverse("functions:purge_dead_letters", args=[name]))
        self.assertEqual(self.state(), before)
