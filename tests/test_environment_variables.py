"""Environment variables: Lambda's rules in the editor, encrypted at rest, masked on the function page,
handed to the function's environment, and keys that rotate."""

import json

from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from functions import envvars
from functions.models import Function
from invocations.invoke import invoke
from tests.base import BaseTestCase, WorkerTestCase, handler_zip

SECRET = "s3cr3t-value-that-must-not-leak"


def rows(*pairs, initial=0):
    """POST data for the editor's formset: one row per (key, value[, delete])."""
    data = {"form-TOTAL_FORMS": str(len(pairs)), "form-INITIAL_FORMS": str(initial),
            "form-MIN_NUM_FORMS": "0", "form-MAX_NUM_FORMS": "1000"}
    for i, pair in enumerate(pairs):
        data[f"form-{i}-key"], data[f"form-{i}-value"] = pair[0], pair[1]
        if len(pair) > 2 and pair[2]:
            data[f"form-{i}-DELETE"] = "on"
    return data


class EditorTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip("def handler(e, c):\n    return 1\n"))
        self.client.force_login(self.alice)
        self.url = f"/functions/{self.fn.name}/environment/"

    def test_it_saves_variables_encrypted_and_the_function_page_shows_only_the_keys(self):
        response = self.client.post(self.url, rows(("DB_PASSWORD", SECRET), ("MODE", "prod"), ("", "")))
        self.assertRedirects(response, f"/functions/{self.fn.name}/#environment", fetch_redirect_response=False)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.environment, {"DB_PASSWORD": SECRET, "MODE": "prod"})
        # At rest: the column holds a token, not the value.
        self.assertNotIn(SECRET, self.fn.environment_token)
        with connection.cursor() as cursor:
            cursor.execute("SELECT environment_token FROM functions_function WHERE id = %s", [self.fn.pk])
            self.assertNotIn(SECRET, cursor.fetchone()[0])
        page = self.client.get(f"/functions/{self.fn.name}/")
        self.assertContains(page, "DB_PASSWORD")
        self.assertContains(page, "••••••")
        self.assertNotContains(page, SECRET)
        # The editor is the explicit reveal.
        self.assertContains(self.client.get(self.url), SECRET)

    def test_it_edits_and_removes_rows(self):
        self.fn.set_environment({"A1": "x", "B2": "y"})
        response = self.client.post(self.url, rows(("A1", "changed"), ("B2", "y", True), ("C3", ""), initial=2))
        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.environment, {"A1": "changed", "C3": ""})

    def test_it_refuses_bad_rows_with_a_message_and_changes_nothing(self):
        self.fn.set_environment({"KEEP": "me"})
        token = Function.objects.get(pk=self.fn.pk).environment_token
        cases = [
            (rows(("AWS_REGION", "eu-west-1")), "AWS_REGION is reserved"),
            (rows(("_HANDLER", "x.y")), "_HANDLER is reserved"),
            (rows(("1ABC", "x")), "is not a valid key"),
            (rows(("A", "x")), "is not a valid key"),  # Lambda's pattern wants two characters at least
            (rows(("A-B", "x")), "is not a valid key"),
            (rows(("", "orphan value")), "A value needs a key."),
            (rows(("DUP", "1"), ("DUP", "2")), "The key DUP appears twice."),
            (rows(("BIG", "x" * 4094)), "take 4097 bytes; Lambda allows 4096"),
        ]
        for data, message in cases:
            with self.subTest(message):
                response = self.client.post(self.url, data)
                self.assertContains(response, message, status_code=400)
                self.assertEqual(Function.objects.get(pk=self.fn.pk).environment_token, token)

    def test_exactly_four_kilobytes_is_allowed(self):
        response = self.client.post(self.url, rows(("BIG", "x" * (4096 - 3))))
        self.assertEqual(response.status_code, 302)

    def test_another_user_gets_404_and_changes_nothing(self):
        self.fn.set_environment({"KEEP": SECRET})
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.client.post(self.url, rows(("KEEP", "bob"))).status_code, 404)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).environment, {"KEEP": SECRET})

    def test_the_admin_never_shows_the_variables(self):
        self.fn.set_environment({"KEEP": SECRET})
        admin = User.objects.create_superuser("root", password="root-password-1")
        self.client.force_login(admin)
        page = self.client.get(f"/admin/functions/function/{self.fn.pk}/change/")
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, SECRET)
        self.assertNotContains(page, self.fn.environment_token)

    def test_an_invocation_records_the_token_never_the_values(self):
        self.fn.set_environment({"KEEP": SECRET})
        invocation = invoke(self.fn, "{}")
        self.assertNotIn(SECRET, json.dumps(invocation.config))
        self.assertEqual(envvars.decrypt(invocation.config["environment_token"]), {"KEEP": SECRET})


class RotationTests(BaseTestCase):
    def test_rotating_keys_reencrypts_functions_versions_and_waiting_invocations(self):
        fn = self.create_function(handler_zip("def handler(e, c):\n    return 1\n"))
        old, new = settings.ENVIRONMENT_KEYS[0], Fernet.generate_key().decode()
        fn.set_environment({"KEEP": SECRET})
        version, _ = fn.publish()
        waiting = invoke(fn, "{}")
        with override_settings(ENVIRONMENT_KEYS=[new]):
            with self.assertRaises(envvars.InvalidToken):
                Function.objects.get(pk=fn.pk).environment
        with override_settings(ENVIRONMENT_KEYS=[new, old]):
            call_command("rotate_environment_keys", stdout=open("/dev/null", "w"))
        with override_settings(ENVIRONMENT_KEYS=[new]):
            self.assertEqual(Function.objects.get(pk=fn.pk).environment, {"KEEP": SECRET})
            waiting.refresh_from_db()
            self.assertEqual(envvars.decrypt(waiting.config["environment_token"]), {"KEEP": SECRET})
            version.refresh_from_db()
            self.assertEqual(envvars.decrypt(version.config["environment_token"]), {"KEEP": SECRET})


class RuntimeTests(WorkerTestCase):
    def test_the_function_sees_its_variables_and_lambdas_defaults(self):
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                return {k: os.environ.get(k) for k in ("DB_PASSWORD", "TZ", "LANG", "PATH", "AWS_REGION")}
        """))
        fn.set_environment({"DB_PASSWORD": SECRET, "TZ": "Europe/Paris"})
        invocation = self.invoke(fn)
        answer = json.loads(invocation.result)
        self.assertEqual(answer["DB_PASSWORD"], SECRET)
        self.assertEqual(answer["TZ"], "Europe/Paris")  # a function may set TZ, LANG, PATH
        self.assertEqual(answer["LANG"], "en_US.UTF-8")
        self.assertEqual(answer["AWS_REGION"], settings.LAMBDA_REGION)
        self.assertNotIn(SECRET, invocation.log)

    def test_variables_no_key_can_open_fail_the_invocation_as_lambda_does(self):
        fn = self.create_function(handler_zip("def handler(e, c):\n    return 1\n"))
        foreign = Fernet(Fernet.generate_key()).encrypt(b'{"A1": "x"}').decode()
        Function.objects.filter(pk=fn.pk).update(environment_token=foreign)
        fn.refresh_from_db()
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, "FAILED")
        self.assertEqual(invocation.error_type, "KMSAccessDeniedException")
        self.assertEqual(json.loads(invocation.result)["requestId"], str(invocation.id))
