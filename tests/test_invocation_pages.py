"""The invocation pages: search with filters and keyset pages, the detail timeline, replay, save as test
event, and the live tail's JSON endpoint."""

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from urllib.parse import unquote

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from functions.models import Alias, TestEvent, Trigger
from invocations import views
from invocations.invoke import invoke_and_wait
from invocations.models import Invocation
from tests.base import BaseTestCase, World, WorkerTestCase, handler_zip
from tests.browser import browser, page  # noqa: F401 (fixtures)
from tests.browser import sign_in

ECHO = "def handler(event, context):\n    print('saw', event)\n    return event\n"


def row(function, **fields):
    """Write an invocation row directly, as a finished one looks unless `fields` say otherwise."""
    defaults = dict(function=function, config={}, event="{}", memory_size_mb=128, status=Invocation.Status.SUCCEEDED)
    return Invocation.objects.create(**{**defaults, **fields})


def listed_ids(response):
    return re.findall(r'href="/invocations/([0-9a-f-]{36})/"', response.content.decode())


class SearchTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))
        self.other = self.create_function(handler_zip(ECHO), name="other")
        self.bobs = self.create_function(handler_zip(ECHO), name="hello", owner=self.bob)
        self.client.force_login(self.alice)
        self.now = timezone.now()

    def search(self, **query):
        response = self.client.get(reverse("invocations:list"), query)
        self.assertEqual(response.status_code, 200, response.content[:2000])
        return set(listed_ids(response))

    def test_each_filter_narrows_the_list(self):
        ok = row(self.fn, cold_start=True, created_at=self.now - timedelta(hours=2), log="START all fine\n")
        failed = row(self.fn, status=Invocation.Status.FAILED, cold_start=False, version="2", qualifier="live",
                     log="Traceback: KeyError 'User'\n")
        queued = row(self.fn, status=Invocation.Status.QUEUED, source="queue", version="1", qualifier="1")
        elsewhere = row(self.other, cold_start=False, source="schedule")
        everything = {str(i.id) for i in (ok, failed, queued, elsewhere)}
        self.assertEqual(self.search(), everything)
        self.assertEqual(self.search(function="other"), {str(elsewhere.id)})
        self.assertEqual(self.search(status="FAILED"), {str(failed.id)})
        # A version matches what ran; an alias matches what was invoked.
        self.assertEqual(self.search(qualifier="2"), {str(failed.id)})
        self.assertEqual(self.search(qualifier="live"), {str(failed.id)})
        self.assertEqual(self.search(qualifier="1"), {str(queued.id)})
        self.assertEqual(self.search(source="queue"), {str(queued.id)})
        self.assertEqual(self.search(start="cold"), {str(ok.id)})
        self.assertEqual(self.search(start="warm"), {str(failed.id), str(elsewhere.id)})
        self.assertEqual(self.search(until=(self.now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")), {str(ok.id)})
        self.assertEqual(self.search(since=(self.now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")),
                         everything - {str(ok.id)})
        # Text in the log, whatever its case.
        self.assertEqual(self.search(q="keyerror 'user'"), {str(failed.id)})
        self.assertEqual(self.search(function="hello", status="FAILED", q="KeyError"), {str(failed.id)})

    def test_it_filters_by_trigger(self):
        trigger = Trigger.objects.create(function=self.fn, kind=Trigger.Kind.SCHEDULE, config={"summary": "x"})
        fired = row(self.fn, source="schedule", trigger=trigger)
        row(self.fn, source="schedule")
        self.assertEqual(self.search(trigger=trigger.pk), {str(fired.id)})

    def test_a_bad_filter_is_a_clear_error(self):
        response = self.client.get(reverse("invocations:list"), {"status": "BOGUS"})
        self.assertContains(response, "Select a valid choice", status_code=400)
        response = self.client.get(reverse("invocations:list"),
                                   {"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"})
        self.assertContains(response, "must be before", status_code=400)
        response = self.client.get(reverse("invocations:list"), {"before": "garbage"})
        self.assertContains(response, "not valid", status_code=400)

    def test_bob_sees_none_of_alices_invocations(self):
        mine = row(self.fn)
        theirs = row(self.bobs)
        self.assertEqual(self.search(), {str(mine.id)})
        self.client.force_login(self.bob)
        self.assertEqual(self.search(), {str(theirs.id)})
        # Naming alice's function is not a way in: it is not one of bob's choices.
        response = self.client.get(reverse("invocations:list"), {"function": "other"})
        self.assertEqual(response.status_code, 400)
        for name in ("invocations:detail", "invocations:replay", "invocations:save_event"):
            method = self.client.get if name == "invocations:detail" else self.client.post
            self.assertEqual(method(reverse(name, args=[mine.pk])).status_code, 404)
        self.assertEqual(self.client.get(reverse("invocations:tail", args=["other"])).status_code, 404)
        self.assertEqual(self.client.get(reverse("invocations:tail_lines", args=["other"])).status_code, 404)

    def test_keyset_pages_list_every_row_once_even_with_equal_timestamps(self):
        # 130 rows, seven per instant: the pages of 50 end in the middle of an instant, so a cursor on
        # the time alone would skip (or, with <=, repeat) rows at each boundary.
        made = set()
        for n in range(130):
            made.add(str(row(self.fn, created_at=self.now - timedelta(seconds=n // 7)).id))
        seen, query, pages = [], {}, 0
        while True:
            response = self.client.get(reverse("invocations:list"), query)
            ids = listed_ids(response)
            self.assertLessEqual(len(ids), views.PAGE_SIZE)
            seen += ids
            pages += 1
            match = re.search(r'href="\?([^"]+)" id="next-page"', response.content.decode())
            if not match:
                break
            query = dict(pair.split("=", 1) for pair in match.group(1).replace("&amp;", "&").split("&"))
            query = {k: unquote(v) for k, v in query.items()}
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), 130)
        self.assertEqual(set(seen), made)
        # Newest first throughout.
        order = list(Invocation.objects.filter(function=self.fn).order_by("-created_at", "-id")
                     .values_list("id", flat=True))
        self.assertEqual(seen, [str(i) for i in order])

    def test_the_per_function_url_lists_that_function(self):
        response = self.client.get(reverse("invocations:function", args=["hello"]), {"status": "FAILED"})
        self.assertRedirects(response, reverse("invocations:list") + "?status=FAILED&function=hello")


class TimelineTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))
        self.client.force_login(self.alice)

    def test_a_cold_invocation_shows_queued_init_run_and_the_workers_share(self):
        t0 = timezone.now() - timedelta(seconds=10)
        invocation = row(self.fn, cold_start=True, created_at=t0, started_at=t0 + timedelta(milliseconds=40),
                         init_duration_ms=Decimal("120.50"), duration_ms=Decimal("30.25"),
                         finished_at=t0 + timedelta(milliseconds=200), billed_duration_ms=151,
                         cost=Decimal("0.0000003"), result='{"ok": true}', log="START\nEND\n")
        spans = {s["name"]: s for s in views.timeline(invocation)}
        self.assertEqual(list(spans), ["queued", "started", "init", "run", "finished"])
        self.assertAlmostEqual(spans["queued"]["duration_ms"], 40)
        self.assertAlmostEqual(spans["init"]["offset_ms"], 40)
        self.assertAlmostEqual(spans["init"]["duration_ms"], 120.5)
        self.assertAlmostEqual(spans["run"]["offset_ms"], 160.5)
        self.assertAlmostEqual(spans["run"]["duration_ms"], 30.25)
        # 160 ms in the worker, of which init and run took 150.75.
        self.assertAlmostEqual(spans["finished"]["duration_ms"], 9.25)
        self.assertAlmostEqual(spans["finished"]["offset_ms"], 200)
        page = self.client.get(invocation.get_absolute_url())
        for element in ('id="span-queued"', 'id="span-init"', 'id="span-run"', 'id="span-finished"',
                        "120.50 ms", "+160.50 ms", 'id="status"', 'id="result"', 'id="log"', 'id="event"',
                        'id="duration"', 'id="billed-duration"', 'id="cost"', 'id="init-duration"'):
            self.assertContains(page, element)

    def test_a_warm_queued_async_event_has_no_init_and_a_pending_destination(self):
        invocation = row(self.fn, status=Invocation.Status.QUEUED, kind=Invocation.Kind.ASYNC,
                         config={"async": {"maximum_retry_attempts": 2, "maximum_event_age_seconds": 60}})
        spans = {s["name"]: s for s in views.timeline(invocation)}
        self.assertEqual(list(spans), ["queued", "started", "run", "finished", "destination"])
        self.assertIsNone(spans["queued"]["duration_ms"])
        self.assertIsNone(spans["run"]["duration_ms"])
        page = self.client.get(invocation.get_absolute_url())
        self.assertContains(page, 'id="span-destination"')
        self.assertContains(page, 'id="attempts"')

    def test_a_huge_event_is_shown_capped(self):
        big = '{"data": "' + "x" * (300 * 1024) + '"}'
        invocation = row(self.fn, event=big)
        page = self.client.get(invocation.get_absolute_url())
        self.assertContains(page, "The first 256 KB of")
        self.assertLess(len(page.content), 300 * 1024)


class SaveAsTestEventTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))
        self.client.force_login(self.alice)
        self.invocation = row(self.fn, event='{"order": 42}')

    def test_it_saves_the_event_under_a_valid_name(self):
        response = self.client.post(reverse("invocations:save_event", args=[self.invocation.pk]),
                                    {"name": "order-42"})
        self.assertRedirects(response, self.invocation.get_absolute_url())
        saved = TestEvent.objects.get(function=self.fn)
        self.assertEqual((saved.name, saved.body), ("order-42", '{"order": 42}'))

    def test_a_bad_name_is_refused_and_nothing_is_saved(self):
        response = self.client.post(reverse("invocations:save_event", args=[self.invocation.pk]),
                                    {"name": "no spaces allowed!"})
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "errorlist", status_code=400)
        self.assertFalse(TestEvent.objects.exists())


class TailTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))
        self.client.force_login(self.alice)
        self.url = reverse("invocations:tail_lines", args=["hello"])

    def test_the_cursor_returns_each_finished_invocation_once_in_order(self):
        at = timezone.now()
        first = [row(self.fn, finished_at=at, log=f"line {n}\n") for n in range(3)]  # one instant, three rows
        row(self.fn, status=Invocation.Status.RUNNING, log="")  # not finished: not in the tail yet
        data = self.client.get(self.url).json()
        self.assertEqual([i["id"] for i in data["invocations"]], sorted(str(i.id) for i in first))
        cursor = data["cursor"]
        self.assertEqual(self.client.get(self.url, {"after": cursor}).json(), {"cursor": cursor, "invocations": []})
        later = row(self.fn, finished_at=at, log="same instant, later id\n", id=uuid.UUID(int=2**128 - 1))
        newest = row(self.fn, finished_at=at + timedelta(milliseconds=1), log="newest\n")
        data = self.client.get(self.url, {"after": cursor}).json()
        self.assertEqual([i["id"] for i in data["invocations"]], [str(later.id), str(newest.id)])
        self.assertEqual(data["invocations"][1]["log"], "newest\n")
        self.assertEqual(self.client.get(self.url, {"after": data["cursor"]}).json()["invocations"], [])

    def test_a_bad_cursor_is_a_400(self):
        response = self.client.get(self.url, {"after": "yesterday"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("cursor", response.json()["error"])

    def test_the_tail_page_loads_its_script(self):
        page = self.client.get(reverse("invocations:tail", args=["hello"]))
        self.assertContains(page, 'id="tail-pause"')
        self.assertContains(page, "js/invocations.js")
        self.assertContains(page, self.url)


class ReplayTests(WorkerTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))
        with transaction.atomic():
            self.v1, _ = self.fn.publish("one")
        Alias.objects.create(function=self.fn, name="live", version=self.v1)
        self.client.force_login(self.alice)
        self.original = self.invoke(self.fn, '{"replay": "me"}')

    def test_replay_runs_the_same_event_on_the_chosen_alias(self):
        response = self.client.post(reverse("invocations:replay", args=[self.original.pk]),
                                    {"qualifier": "live", "invocation_type": "RequestResponse"})
        again = Invocation.objects.exclude(pk=self.original.pk).get()
        self.assertRedirects(response, again.get_absolute_url())
        self.assertEqual(again.status, Invocation.Status.SUCCEEDED)
        self.assertEqual((again.event, again.qualifier, again.version), ('{"replay": "me"}', "live", "1"))
        self.assertEqual(again.result, '{"replay": "me"}')

    def test_replay_asynchronously_on_latest_queues_the_event(self):
        response = self.client.post(reverse("invocations:replay", args=[self.original.pk]),
                                    {"qualifier": "", "invocation_type": "Event"})
        again = Invocation.objects.exclude(pk=self.original.pk).get()
        self.assertRedirects(response, again.get_absolute_url(), fetch_redirect_response=False)
        self.assertEqual((again.kind, again.event, again.version), ("Event", '{"replay": "me"}', "$LATEST"))

    def test_replay_on_a_qualifier_that_is_not_a_choice_is_refused(self):
        response = self.client.post(reverse("invocations:replay", args=[self.original.pk]),
                                    {"qualifier": "nope", "invocation_type": "RequestResponse"})
        self.assertContains(response, "Select a valid choice", status_code=400)
        self.assertEqual(Invocation.objects.count(), 1)


@pytest.mark.django_db(transaction=True)
def test_the_live_tail_shows_new_lines_without_reloading_and_pauses(page):
    from playwright.sync_api import expect

    sign_in(page, "dave", "dave-password-1", start="/functions/")
    world = World()
    fn = world.create_function(handler_zip(ECHO), owner=User.objects.get(username="dave"))
    first = invoke_and_wait(fn, '{"n": "first"}')
    page.goto(reverse("invocations:tail", args=[fn.name]))
    expect(page.locator("#tail")).to_contain_text("saw {'n': 'first'}")
    # A new invocation appears on the next poll, with no reload (the first line is still there).
    invoke_and_wait(fn, '{"n": "second"}')
    expect(page.locator("#tail")).to_contain_text("saw {'n': 'second'}")
    expect(page.locator("#tail")).to_contain_text(str(first.id))
    page.click("#tail-pause")
    expect(page.locator("#tail-state")).to_have_text("paused")
    invoke_and_wait(fn, '{"n": "third"}')
    page.click("#tail-pause")  # resume: what finished while paused comes in
    expect(page.locator("#tail")).to_contain_text("saw {'n': 'third'}")
