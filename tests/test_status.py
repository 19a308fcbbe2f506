"""/status/: the health check load balancers and people read, with the host's isolation layers."""

import os
import re
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings

from invocations import queue
from tests.base import BaseTestCase
from tests.processes import use_queue


class StatusTests(BaseTestCase):
    def test_it_answers_anonymously_with_the_database_redis_and_isolation_layers(self):
        response = Client().get("/status/")
        self.assertContains(response, "Status: <span class=\"ok\">OK</span>")
        for layer in ("bubblewrap", "uid per environment", "memory cgroup", "rlimits"):
            self.assertContains(response, layer)
        self.assertEqual(response["Cache-Control"], "max-age=0, no-cache, no-store, must-revalidate, private")

    def test_it_answers_503_when_redis_is_unreachable(self):
        queues = {settings.INVOCATION_QUEUE: {"URL": "redis://127.0.0.1:1/0"}}
        with override_settings(RQ_QUEUES=queues):
            response = Client().get("/status/")
        self.assertContains(response, "unhealthy", status_code=503)
        self.assertContains(response, "FAILING", status_code=503)


def redis_url_without_password(url):
    """Return `url` with any password (and user) taken out of it, pointing at the same server and database."""
    parts = urlsplit(url)
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if parts.hostname and ":" in parts.hostname:  # an IPv6 address
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def layer_row(response, name):
    """Return (state, explanation) of the isolation layer `name` on the status page."""
    match = re.search(
        rf'<tr><th>{re.escape(name)}</th>\s*<td class="(?:ok|warn)">(active|MISSING)</td>\s*<td>(.*?)</td></tr>',
        response.content.decode(), re.S,
    )
    assert match, f"no layer row {name!r} on the status page"
    return match[1], match[2]


class StatusLayerTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = settings.RQ_QUEUES[settings.INVOCATION_QUEUE]["URL"]

    def test_it_lists_the_disk_backed_tmp_freezing_and_redis_password_rows(self):
        response = Client().get("/status/")
        for name in ("disk-backed /tmp", "freezing", "Redis password"):
            state, explanation = layer_row(response, name)
            self.assertIn(state, ("active", "MISSING"))
            self.assertTrue(explanation, f"{name} has no explanation")

    def test_the_redis_password_row_is_missing_when_redis_url_has_none(self):
        url = redis_url_without_password(self.url)
        self.assertIsNone(urlsplit(url).password)
        # Reachable only if the server itself has no password; with one, the same URL is refused (NOAUTH).
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
            reachable = True
        except redis.RedisError:
            reachable = False
        with override_settings(RQ_QUEUES={settings.INVOCATION_QUEUE: {"URL": url}}):
            response = Client().get("/status/")
        self.assertEqual(response.status_code, 200 if reachable else 503)
        state, explanation = layer_row(response, "Redis password")
        self.assertEqual(state, "MISSING")
        self.assertIn("REDIS_URL has none", explanation)
        self.assertContains(response, '<td class="warn">MISSING</td>', status_code=response.status_code)

    def test_the_redis_password_row_is_active_when_redis_url_has_one(self):
        # The row reads REDIS_URL only. Against a server without a password the AUTH fails, so the page
        # may be 503 for that: the row must say "active" either way.
        parts = urlsplit(redis_url_without_password(self.url))
        url = urlunsplit(parts._replace(netloc=f":made-up-password@{parts.netloc}"))
        with override_settings(RQ_QUEUES={settings.INVOCATION_QUEUE: {"URL": url}}):
            response = Client().get("/status/")
        self.assertIn(response.status_code, (200, 503))
        state, explanation = layer_row(response, "Redis password")
        self.assertEqual((state, explanation), ("active", "REDIS_URL has a password"))


def background_row(response, name):
    match = re.search(rf"<th>{re.escape(name)}</th><td class=\"(\w+)\">([^<]+)</td><td>([^<]*)</td>",
                      response.content.decode())
    assert match, f"no background row {name!r} on the status page"
    return match.group(2), match.group(3)


@pytest.mark.usefixtures("workers")
class BackgroundTests(BaseTestCase):
    """The workers and the event source runner: shown, never making the web unhealthy."""

    def test_it_shows_the_workers_listening_on_the_queue(self):
        response = Client().get("/status/")
        state, text = background_row(response, "RQ workers")
        self.assertEqual(state, "running")
        self.assertIn(f"listening on {settings.INVOCATION_QUEUE}", text)

    def test_it_warns_when_nothing_listens_or_fires_schedules_and_stays_healthy(self):
        from invocations import schedules

        lonely = f"{settings.INVOCATION_QUEUE}-nobody-{uuid.uuid4().hex[:6]}"
        with use_queue(lonely):
            response = Client().get("/status/")
            self.assertEqual(response.status_code, 200)
            self.assertEqual(background_row(response, "RQ workers")[0], "NOT RUNNING")
            self.assertEqual(background_row(response, "event source runner")[0], "NOT RUNNING")
            schedules.beat()  # what run_event_sources does at each pass
            self.addCleanup(queue.connection().delete, f"{lonely}:schedule-runner")
            state, text = background_row(Client().get("/status/"), "event source runner")
        self.assertEqual(state, "running")
        self.assertIn(f":{os.getpid()} polling", text)
