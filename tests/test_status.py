"""/status/: the health check load balancers and people read, with the host's isolation layers."""

from django.conf import settings
from django.test import Client, override_settings

from tests.base import BaseTestCase


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
