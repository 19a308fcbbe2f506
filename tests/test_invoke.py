"""invoke(): the row comes first, the job after commit, and a lost queue never strands a row."""

import json
import os
import socket
import subprocess
import time

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


class OrphanTests(BaseTestCase):
    """A worker killed outright cannot record anything; the others' sweep must end its invocation."""

    def running_on(self, pid):
        fn = self.create_function(handler_zip("def handler(e, c):\n    return e\n"), name=f"fn{pid}")
        invocation = invoke(fn, "{}")
        Invocation.objects.filter(pk=invocation.pk).update(
            status=Invocation.Status.RUNNING, worker=f"{socket.gethostname()}:{pid}"
        )
        return invocation

    def test_it_fails_an_invocation_whose_worker_died(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        orphan = self.running_on(dead.pid)
        alive = self.running_on(os.getpid())
        self.assertEqual([i.pk for i in Invocation.fail_orphans()], [orphan.pk])
        orphan.refresh_from_db()
        alive.refresh_from_db()
        self.assertEqual(orphan.status, Invocation.Status.FAILED)
        self.assertEqual(orphan.error_type, "ServiceException")
        self.assertIn("stopped before it finished", json.loads(orphan.result)["errorMessage"])
        self.assertEqual(alive.status, Invocation.Status.RUNNING)

    def test_a_killed_worker_not_yet_reaped_counts_as_dead(self):
        zombie = subprocess.Popen(["sleep", "60"])
        zombie.kill()
        time.sleep(0.2)  # not waited for: it stays a zombie
        orphan = self.running_on(zombie.pid)
        try:
            self.assertEqual([i.pk for i in Invocation.fail_orphans()], [orphan.pk])
        finally:
            zombie.wait()

    def test_it_leaves_invocations_of_other_hosts_alone(self):
        other = self.running_on(os.getpid())
        Invocation.objects.filter(pk=other.pk).update(worker="some-other-host:1")
        self.assertEqual(Invocation.fail_orphans(), [])
        other.refresh_from_db()
        self.assertEqual(other.status, Invocation.Status.RUNNING)
