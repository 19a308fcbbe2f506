"""A function's settings: ephemeral storage, outbound network and reserved concurrency at creation and in the
configuration form, who may change them, the snapshot an invocation keeps, and the throttle at 0."""

import json
import re

import django_rq
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from functions.forms import host_runtime
from functions.models import CodeArtifact, Function
from invocations.invoke import invoke
from invocations.models import Invocation
from tests.base import BaseTestCase, handler_zip, make_zip

CODE = "def handler(event, context):\n    return 'hi'\n"

# What the configuration form is posted with when a test does not say otherwise.
VALID = {
    "handler": "lambda_function.handler", "memory_size": "256", "timeout": "10", "ephemeral_storage": "1024", "outbound_network": "on",
    "description": "does things", "reserved_concurrency": "5",
}


def function_state():
    return list(Function.objects.order_by("pk").values())


def config_row(response, label):
    """Return the text of the function page's configuration row `label` (its <td>)."""
    match = re.search(rf"<tr><th>{re.escape(label)}</th><td>(.*?)</td></tr>", response.content.decode())
    assert match, f"no configuration row {label!r} on the page"
    return match[1]


# These tests sign in with force_login: a fast hasher saves PBKDF2's 0.3 s per user created in setUp.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class ConfigurationTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(CODE), name="hello")
        self.url = reverse("functions:configure", args=["hello"])
        self.page = reverse("functions:detail", args=["hello"])

    def configure(self, client=None, **changes):
        data = {**VALID, **changes}
        return (client or self.client).post(self.url, {k: v for k, v in data.items() if v is not None})


class CreateTests(ConfigurationTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def create(self, name="other", **fields):
        data = {
            "name": name, "runtime": host_runtime(), "handler": "lambda_function.handler", "memory_size": "128",
            "timeout": "3", "code": SimpleUploadedFile("code.zip", handler_zip(CODE), content_type="application/zip"),
            **fields,
        }
        return self.client.post(reverse("functions:create"), data)

    def test_it_stores_ephemeral_storage_and_outbound_network_and_the_page_shows_them(self):
        response = self.create(ephemeral_storage="2048", outbound_network="on")
        self.assertRedirects(response, reverse("functions:detail", args=["other"]))
        fn = Function.objects.get(owner=self.alice, name="other")
        self.assertEqual(fn.ephemeral_storage, 2048)
        self.assertTrue(fn.outbound_network)
        self.assertIsNone(fn.reserved_concurrency)
        page = self.client.get(fn.get_absolute_url())
        self.assertEqual(config_row(page, "Ephemeral storage"), "2048 MB")
        self.assertEqual(config_row(page, "Outbound network"), "on (the internet; not this host nor private addresses)")
        self.assertEqual(config_row(page, "Reserved concurrency"), "none (limited by the workers)")

    def test_it_defaults_to_512_mb_and_no_network(self):
        self.assertRedirects(self.create(), reverse("functions:detail", args=["other"]))
        fn = Function.objects.get(owner=self.alice, name="other")
        self.assertEqual((fn.ephemeral_storage, fn.outbound_network), (512, False))
        page = self.client.get(fn.get_absolute_url())
        self.assertEqual(config_row(page, "Ephemeral storage"), "512 MB")
        self.assertEqual(config_row(page, "Outbound network"), "off")

    def test_it_rejects_ephemeral_storage_below_512_mb(self):
        before = function_state()
        response = self.create(ephemeral_storage="511")
        # The create view re-renders its form with 200 (function_create), unlike the configuration's 400.
        self.assertContains(response, "Ensure this value is greater than or equal to 512.")
        self.assertEqual(response.context["form"].errors["ephemeral_storage"],
                         ["Ensure this value is greater than or equal to 512."])
        self.assertEqual(function_state(), before)

    def test_it_rejects_ephemeral_storage_above_10240_mb(self):
        before = function_state()
        response = self.create(ephemeral_storage="10241")
        self.assertContains(response, "Ensure this value is less than or equal to 10240.")
        self.assertEqual(response.context["form"].errors["ephemeral_storage"],
                         ["Ensure this value is less than or equal to 10240."])
        self.assertEqual(function_state(), before)


class ConfigureTests(ConfigurationTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_it_saves_every_setting_and_redirects_to_the_function_page(self):
        response = self.configure()
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], f"{self.page}#configuration")
        self.fn.refresh_from_db()
        self.assertEqual(
            (self.fn.memory_size, self.fn.timeout, self.fn.ephemeral_storage, self.fn.outbound_network,
             self.fn.description, self.fn.reserved_concurrency),
            (256, 10, 1024, True, "does things", 5),
        )
        page = self.client.get(self.page)
        self.assertContains(page, "Saved the configuration.")
        self.assertEqual(config_row(page, "Memory"), "256 MB")
        self.assertEqual(config_row(page, "Timeout"), "10 s")
        self.assertEqual(config_row(page, "Ephemeral storage"), "1024 MB")
        self.assertEqual(config_row(page, "Outbound network"), "on (the internet; not this host nor private addresses)")
        self.assertEqual(config_row(page, "Reserved concurrency"), "5")
        self.assertContains(page, '<p class="description">does things</p>', html=True)

    def test_it_changes_the_handler_to_a_module_the_code_has(self):
        self.fn.replace_code(CodeArtifact.objects.get(pk=self.create_function(
            make_zip({"lambda_function.py": CODE, "other.py": CODE}), name="two-modules").code_id))
        self.assertEqual(self.configure(handler="other.handler").status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.handler, "other.handler")

    def test_it_refuses_a_handler_whose_module_is_not_in_the_code(self):
        response = self.configure(handler="missing.handler")
        self.assertContains(response, "The ZIP has no module &#x27;missing&#x27;", status_code=400)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).handler, "lambda_function.handler")

    def test_it_refuses_a_handler_that_is_not_module_dot_function(self):
        response = self.configure(handler="../x.handler")
        self.assertContains(response, "Use module.function", status_code=400)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).handler, "lambda_function.handler")

    def test_it_accepts_the_bounds(self):
        response = self.configure(memory_size="10240", timeout="900", ephemeral_storage="10240",
                                  reserved_concurrency="1000")
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual((self.fn.memory_size, self.fn.timeout, self.fn.ephemeral_storage,
                          self.fn.reserved_concurrency), (10240, 900, 10240, 1000))
        response = self.configure(memory_size="128", timeout="1", ephemeral_storage="512")
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual((self.fn.memory_size, self.fn.timeout, self.fn.ephemeral_storage), (128, 1, 512))

    def test_it_clears_reserved_concurrency_back_to_none(self):
        self.configure(reserved_concurrency="5")
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.reserved_concurrency, 5)
        response = self.configure(reserved_concurrency="")
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertIsNone(self.fn.reserved_concurrency)
        self.assertEqual(config_row(self.client.get(self.page), "Reserved concurrency"),
                         "none (limited by the workers)")

    def test_it_treats_a_missing_reserved_concurrency_as_none(self):
        self.configure(reserved_concurrency="7")
        self.assertEqual(self.configure(reserved_concurrency=None).status_code, 302)
        self.fn.refresh_from_db()
        self.assertIsNone(self.fn.reserved_concurrency)

    def test_it_saves_reserved_concurrency_0(self):
        response = self.configure(reserved_concurrency="0")
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        # 0 is a limit (throttle everything), not "no limit": it must not be stored as None.
        self.assertEqual(self.fn.reserved_concurrency, 0)
        self.assertEqual(config_row(self.client.get(self.page), "Reserved concurrency"),
                         "0 (every invocation is throttled)")

    def test_it_turns_outbound_network_off_when_the_box_is_unticked(self):
        self.configure(outbound_network="on")
        self.fn.refresh_from_db()
        self.assertTrue(self.fn.outbound_network)
        self.assertEqual(self.configure(outbound_network=None).status_code, 302)
        self.fn.refresh_from_db()
        self.assertFalse(self.fn.outbound_network)
        self.assertEqual(config_row(self.client.get(self.page), "Outbound network"), "off")

    def test_a_blank_ephemeral_storage_means_the_default_512_mb(self):
        self.configure(ephemeral_storage="4096")
        self.assertEqual(self.configure(ephemeral_storage="").status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.ephemeral_storage, 512)

    def test_it_clears_the_description(self):
        self.configure(description="something")
        self.assertEqual(self.configure(description="").status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.description, "")
        self.assertNotContains(self.client.get(self.page), '<p class="description">')

    def test_the_form_on_the_page_starts_from_the_current_values(self):
        self.configure(memory_size="384", timeout="42", ephemeral_storage="3072", reserved_concurrency="9")
        form = self.client.get(self.page).context["config_form"]
        self.assertEqual(form.initial["memory_size"], 384)
        self.assertEqual(form.initial["timeout"], 42)
        self.assertEqual(form.initial["ephemeral_storage"], 3072)
        self.assertEqual(form.initial["reserved_concurrency"], 9)
        self.assertTrue(form.initial["outbound_network"])

    def test_it_leaves_the_code_handler_and_runtime_alone(self):
        before = Function.objects.values("code_id", "handler", "runtime", "name", "owner_id").get(pk=self.fn.pk)
        self.configure()
        after = Function.objects.values("code_id", "handler", "runtime", "name", "owner_id").get(pk=self.fn.pk)
        self.assertEqual(after, before)


class InvalidConfigurationTests(ConfigurationTestCase):
    """Each bad value answers 400 with the page, the field's message and the details open; nothing is saved."""

    CASES = [
        ("memory_size", "127", "Ensure this value is greater than or equal to 128."),
        ("memory_size", "10241", "Ensure this value is less than or equal to 10240."),
        ("memory_size", "", "This field is required."),
        ("memory_size", "lots", "Enter a whole number."),
        ("timeout", "0", "Ensure this value is greater than or equal to 1."),
        ("timeout", "901", "Ensure this value is less than or equal to 900."),
        ("timeout", "1.5", "Enter a whole number."),
        ("ephemeral_storage", "100", "Ensure this value is greater than or equal to 512."),
        ("ephemeral_storage", "10241", "Ensure this value is less than or equal to 10240."),
        ("ephemeral_storage", "big", "Enter a whole number."),
        ("reserved_concurrency", "-1", "Ensure this value is greater than or equal to 0."),
        ("reserved_concurrency", "1001", "Ensure this value is less than or equal to 1000."),
        ("reserved_concurrency", "none", "Enter a whole number."),
        ("description", "x" * 257, "Ensure this value has at most 256 characters (it has 257)."),
    ]

    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_it_answers_400_with_the_message_and_changes_nothing(self):
        before = function_state()
        for field, value, message in self.CASES:
            with self.subTest(field=field, value=value):
                response = self.configure(**{field: value})
                self.assertContains(response, message, status_code=400)
                self.assertEqual(response.context["config_form"].errors[field], [message])
                # The whole form is rejected: the valid fields beside the bad one are not saved either.
                self.assertEqual(function_state(), before)
                # The page still shows the stored configuration, and the form open on the error.
                self.assertEqual(config_row(response, "Memory"), "128 MB")
                self.assertEqual(config_row(response, "Reserved concurrency"), "none (limited by the workers)")
                self.assertContains(response, "<details open>", status_code=400)


class WhoMayConfigureTests(ConfigurationTestCase):
    def test_another_user_gets_404_and_changes_nothing(self):
        self.client.force_login(self.bob)
        before = function_state()
        response = self.configure()
        self.assertEqual(response.status_code, 404)
        self.assertEqual(function_state(), before)

    def test_another_user_with_a_function_of_the_same_name_changes_only_his_own(self):
        bobs = self.create_function(handler_zip(CODE), name="hello", owner=self.bob)
        alices = list(Function.objects.filter(pk=self.fn.pk).values())
        self.client.force_login(self.bob)
        self.assertEqual(self.configure(memory_size="512").status_code, 302)
        bobs.refresh_from_db()
        self.assertEqual(bobs.memory_size, 512)
        self.assertEqual(list(Function.objects.filter(pk=self.fn.pk).values()), alices)

    def test_an_anonymous_post_is_sent_to_the_login_page(self):
        before = function_state()
        response = self.configure()
        self.assertRedirects(response, f"/login/?next={self.url}", fetch_redirect_response=False)
        self.assertEqual(function_state(), before)

    def test_a_get_is_not_allowed(self):
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get(self.url).status_code, 405)

    def test_a_post_without_a_csrf_token_is_refused(self):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.alice)
        before = function_state()
        response = self.configure(client=browser)
        self.assertContains(response, "CSRF", status_code=403)
        self.assertEqual(function_state(), before)
        # The control: with the page's token the same POST goes through, so the 403 is CSRF's.
        browser.get(self.page)
        response = self.configure(client=browser, csrfmiddlewaretoken=browser.cookies["csrftoken"].value)
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.memory_size, 256)


class SnapshotTests(ConfigurationTestCase):
    def test_an_invocation_keeps_the_configuration_it_was_created_with(self):
        # In a TestCase the job is never queued (on_commit does not run): the row is all there is.
        invocation = invoke(self.fn, "{}")
        snapshot = dict(invocation.config)
        self.assertEqual((snapshot["memory_size"], snapshot["timeout"], snapshot["ephemeral_storage"],
                          snapshot["outbound_network"]), (128, 3, 512, False))
        self.client.force_login(self.alice)
        self.assertEqual(self.configure(memory_size="1024", timeout="60", ephemeral_storage="2048",
                                        outbound_network="on", reserved_concurrency="3").status_code, 302)
        invocation.refresh_from_db()
        self.assertEqual(invocation.config, snapshot)
        self.assertEqual(invocation.memory_size_mb, 128)
        # ... while a new invocation gets the new configuration.
        self.fn.refresh_from_db()
        later = invoke(self.fn, "{}")
        self.assertEqual((later.config["memory_size"], later.config["timeout"], later.config["ephemeral_storage"],
                          later.config["outbound_network"]), (1024, 60, 2048, True))
        self.assertEqual(later.memory_size_mb, 1024)


class ThrottleTests(ConfigurationTestCase):
    def test_a_sync_console_invoke_at_reserved_concurrency_0_answers_429_without_a_job(self):
        self.client.force_login(self.alice)
        self.assertEqual(self.configure(reserved_concurrency="0").status_code, 302)
        queue = django_rq.get_queue(settings.INVOCATION_QUEUE)
        queued_before = queue.count
        # Run the on-commit callbacks as a real commit would, so a job queued after commit would be seen.
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            response = self.client.post(reverse("functions:invoke", args=["hello"]), {"event": "{}"})
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "TooManyRequestsException", status_code=429)
        self.assertContains(response, "Rate Exceeded", status_code=429)
        self.assertContains(response, '<span class="status throttled" id="status">Throttled</span>', html=True,
                            status_code=429)
        invocation = Invocation.objects.get()
        self.assertEqual(invocation.status, Invocation.Status.THROTTLED)
        self.assertEqual(invocation.kind, Invocation.Kind.SYNC)
        self.assertEqual(invocation.error_type, "TooManyRequestsException")
        self.assertEqual(json.loads(invocation.result), {
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded.",
        })
        self.assertIsNotNone(invocation.finished_at)
        # Lambda bills nothing for a throttled call.
        self.assertIsNone(invocation.cost)
        self.assertIsNone(invocation.billed_duration_ms)
        # No job: nothing registered for after commit, none under the invocation's id, and the queue did not grow
        # (no workers run in a BaseTestCase, so a job would still be there).
        self.assertEqual(callbacks, [])
        self.assertIsNone(queue.fetch_job(str(invocation.pk)))
        self.assertLessEqual(queue.count, queued_before)
        # The function page lists it as throttled.
        page = self.client.get(self.page)
        self.assertContains(page, '<span class="status throttled">Throttled</span>', html=True)

    def test_a_sync_invoke_with_a_reserved_concurrency_above_0_is_queued(self):
        # The control: a limit of 1 does not throttle at invoke time; the invocation waits for a worker.
        Function.objects.filter(pk=self.fn.pk).update(reserved_concurrency=1)
        self.fn.refresh_from_db()
        invocation = invoke(self.fn, "{}")
        self.assertEqual(invocation.status, Invocation.Status.QUEUED)
