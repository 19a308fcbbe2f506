"""invoke(): the row comes first, the job after commit, and a lost queue never strands a row."""

from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from invocations.invoke import invoke
from invocations.models import Invocation
from tests.base import BaseTestCase, handler_zip

UNREACHABLE_REDIS = {settings.INVOCATION_QUEUE: {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60}}


class InvokeTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip("def handler(e, c):\n    return e\n"))

    def test_it_records_the_invocation_with_a_copy_of_the_configuration(self):
        invocation = invoke(self.fn, '{"a": 1}')
        self.assertEqual(invocation.status, Invocation.Status.QUEUED)
        self.assertEqual(invocation.config["handler"], "lambda_function.handler")
        self.assertEqual(invocation.config["code_sha256"], self.fn.code_id)
        self.assertEqual(invocation.memory_size_mb, 128)
        # A later change to the function does not rewrite what this invocation ran with.
        self.fn.memory_size = 512
        self.fn.save()
        invocation.refresh_from_db()
        self.assertEqual(invocation.config["memory_size"], 128)

    @override_settings(RQ_QUEUES=UNREACHABLE_REDIS)
    def test_it_fails_the_invocation_visibly_when_the_queue_is_down(self):
        with self.captureOnCommitCallbacks(execute=True):
            invocation = invoke(self.fn, "{}")
        invocation.refresh_from_db()
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "ServiceException")
        self.assertIn("could not be queued", invocation.result)

    @override_settings(RQ_QUEUES=UNREACHABLE_REDIS)
    def test_the_console_shows_the_failed_invocation_when_the_queue_is_down(self):
        self.client.force_login(self.alice)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("functions:invoke", args=["hello"]), {"event": "{}"})
        invocation = Invocation.objects.get()
        self.assertRedirects(response, invocation.get_absolute_url())
        page = self.client.get(invocation.get_absolute_url())
        self.assertContains(page, "ServiceException")
        self.assertEqual(invocation.status, Invocation.Status.FAILED)

    def test_it_rejects_an_event_that_is_not_json(self):
        self.client.force_login(self.alice)
        response = self.client.post(reverse("functions:invoke", args=["hello"]), {"event": "{nope"})
        self.assertContains(response, "The event is not valid JSON", status_code=400)
        self.assertFalse(Invocation.objects.exists())
