"""Recursive loop detection (Get/PutFunctionRecursionConfig, the console's setting, and what it does to a loop
of destinations) and the deprecated InvokeAsync, through the Lambda API against the real server and workers."""

import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.conf import settings
from django.urls import reverse

from functions.models import EventInvokeConfig, Function
from invocations.asynchronous import MAX_DESTINATION_DEPTH
from invocations.models import Invocation
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase
from tests.processes import wait_for

ECHO = """
    def handler(event, context):
        return {"event": event}
"""

# Returns nothing of its event: each record in the loop holds the one before it, and no more.
LOOP = "def handler(event, context):\n    return 1\n"

STOPPED = "recursive loop"  # in the destination of the invocation whose outcome the loop detection stopped


class RecursionConfigTests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")
        self.client.force_login(self.alice)

    def test_terminate_is_the_default_and_put_and_get_round_trip(self):
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Terminate")
        put = self.lam.put_function_recursion_config(FunctionName=self.fn.arn, RecursiveLoop="Allow")
        self.assertEqual(put["RecursiveLoop"], "Allow")
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Allow")
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.recursive_loop, Function.RecursiveLoop.ALLOW)
        self.lam.put_function_recursion_config(FunctionName="hello", RecursiveLoop="Terminate")
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.recursive_loop, Function.RecursiveLoop.TERMINATE)

    def test_a_value_outside_the_choices_or_none_is_refused(self):
        self.assertInvalid(lambda: self.unvalidated().put_function_recursion_config(FunctionName="hello",
                                                                                    RecursiveLoop="Forever"),
                           "RecursiveLoop", "Forever")
        self.assertInvalid(lambda: self.unvalidated().put_function_recursion_config(FunctionName="hello"),
                           "RecursiveLoop is required")
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.recursive_loop, Function.RecursiveLoop.TERMINATE)

    def test_a_version_or_alias_has_no_setting_of_its_own(self):
        self.lam.publish_version(FunctionName="hello")
        self.assertInvalid(lambda: self.lam.put_function_recursion_config(FunctionName="hello:1",
                                                                          RecursiveLoop="Allow"), "without a version")
        self.assertInvalid(lambda: self.lam.get_function_recursion_config(FunctionName="hello:1"), "without a version")

    def test_an_unknown_or_another_users_function_is_not_found(self):
        self.assertError(lambda: self.lam.get_function_recursion_config(FunctionName="nope"),
                         "ResourceNotFoundException", 404)
        self.assertError(lambda: self.bob_lam.get_function_recursion_config(FunctionName="hello"),
                         "ResourceNotFoundException", 404)
        self.assertError(lambda: self.bob_lam.put_function_recursion_config(FunctionName="hello",
                                                                            RecursiveLoop="Allow"),
                         "ResourceNotFoundException", 404)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.recursive_loop, Function.RecursiveLoop.TERMINATE)

    def test_the_console_shows_and_sets_it(self):
        page = self.client.get(self.fn.get_absolute_url()).content.decode()
        self.assertIn("<tr><th>Recursive loops</th><td>Terminate: stop a recursive loop after 16 invocations", page)
        self.assertIn('name="recursive_loop"', page)
        data = {"handler": "lambda_function.handler", "memory_size": "128", "timeout": "3",
                "ephemeral_storage": "512", "description": "", "recursive_loop": "Allow"}
        response = self.client.post(reverse("functions:configure", args=["hello"]), data)
        self.assertEqual(response.status_code, 302)
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Allow")
        self.assertIn("<tr><th>Recursive loops</th><td>Allow:",
                      self.client.get(self.fn.get_absolute_url()).content.decode())
        # A form posted without the field (one rendered before it existed) leaves it as it is.
        del data["recursive_loop"]
        self.assertEqual(self.client.post(reverse("functions:configure", args=["hello"]), data).status_code, 302)
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Allow")
        response = self.client.post(reverse("functions:configure", args=["hello"]), {**data, "recursive_loop": "Maybe"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("Select a valid choice", response.content.decode())
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Allow")

    def test_update_function_configuration_keeps_it(self):
        self.lam.put_function_recursion_config(FunctionName="hello", RecursiveLoop="Allow")
        self.lam.update_function_configuration(FunctionName="hello", Timeout=5)
        self.assertEqual(self.lam.get_function_recursion_config(FunctionName="hello")["RecursiveLoop"], "Allow")


@pytest.mark.usefixtures("workers")
class RecursiveLoopTests(ApiTestCase):
    """A function whose on-success destination is itself: a loop of asynchronous invocations, one at a time."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(LOOP), name="loop")
        EventInvokeConfig.objects.create(function=self.fn, on_success=self.fn.arn)
        # Whatever a test leaves, the loop ends: a destination that no longer exists is not delivered to.
        self.addCleanup(lambda: Function.objects.filter(pk=self.fn.pk).delete())

    def stopped(self, timeout=60):
        """The invocation whose outcome the loop detection did not send on, once there is one."""
        last = wait_for(lambda: Invocation.objects.filter(function=self.fn, destination__contains=STOPPED).first(),
                        timeout)
        self.assertIsNotNone(last, f"{Invocation.objects.count()} invocations, none stopped the loop")
        return last

    def test_terminate_stops_the_loop_after_16_invocations(self):
        self.lam.invoke(FunctionName="loop", InvocationType="Event", Payload=b'{"n": 0}')
        last = self.stopped()
        self.assertEqual(last.config["async"]["depth"], MAX_DESTINATION_DEPTH)
        self.assertEqual(Invocation.objects.count(), MAX_DESTINATION_DEPTH + 1)  # the first, then 16 destinations

    def test_allow_lets_it_run_past_16_until_terminate_stops_it(self):
        self.lam.put_function_recursion_config(FunctionName="loop", RecursiveLoop="Allow")
        self.lam.invoke(FunctionName="loop", InvocationType="Event", Payload=b'{"n": 0}')
        seen = wait_for(lambda: Invocation.objects.filter(function=self.fn).count() >= MAX_DESTINATION_DEPTH + 4, 60)
        try:
            self.assertTrue(seen, f"only {Invocation.objects.count()} invocations of an allowed loop")
            self.assertFalse(Invocation.objects.filter(destination__contains=STOPPED).exists())
        finally:
            # Switched back, the loop is already past 16: the next outcome is not sent on.
            self.lam.put_function_recursion_config(FunctionName="loop", RecursiveLoop="Terminate")
        last = self.stopped()
        self.assertGreater(last.config["async"]["depth"], MAX_DESTINATION_DEPTH)
        count = Invocation.objects.count()
        self.assertEqual(Invocation.objects.filter(status__in=Invocation.FINISHED).count(), count)
        self.assertEqual(Invocation.objects.filter(destination__contains=STOPPED).count(), 1)


@pytest.mark.usefixtures("workers")
class InvokeAsyncTests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")

    def finished(self):
        invocation = wait_for(lambda: Invocation.objects.filter(status__in=Invocation.FINISHED).first(), 30)
        self.assertIsNotNone(invocation, f"the invocation did not finish: {Invocation.objects.get().status}")
        return invocation

    def test_it_answers_202_and_the_event_runs_asynchronously(self):
        response = self.lam.invoke_async(FunctionName="hello", InvokeArgs=b'{"old": "script"}')
        self.assertEqual(response["Status"], 202)
        invocation = self.finished()
        self.assertEqual(response["ResponseMetadata"]["RequestId"], str(invocation.id))
        self.assertEqual((invocation.kind, invocation.source), (Invocation.Kind.ASYNC, "api"))
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(json.loads(invocation.result), {"event": {"old": "script"}})

    def test_the_path_with_a_trailing_slash_is_invoke_async_too(self):
        # Older botocore models and AWS's API reference end the path with a slash. Signed for Django's test
        # client, in this process; the workers run the invocation.
        path = "/2014-11-13/functions/hello/invoke-async/"
        signed = AWSRequest(method="POST", url=f"http://testserver{path}", data=b'{"slash": 1}')
        SigV4Auth(Credentials(self.key.access_key_id, self.secret), "lambda", settings.LAMBDA_REGION).add_auth(signed)
        response = self.client.generic("POST", path, b'{"slash": 1}', content_type="",
                                       headers={"Host": "testserver", **signed.headers})
        self.assertEqual(response.status_code, 202, response.content)
        self.assertEqual(response.json(), {"Status": 202})
        self.assertEqual(json.loads(self.finished().result), {"event": {"slash": 1}})

    def test_bob_cannot_invoke_alices_function(self):
        self.assertError(lambda: self.bob_lam.invoke_async(FunctionName="hello", InvokeArgs=b"{}"),
                         "ResourceNotFoundException", 404)
        self.assertError(lambda: self.bob_lam.invoke_async(FunctionName=self.fn.arn, InvokeArgs=b"{}"),
                         "ResourceNotFoundException", 404)
        self.assertFalse(Invocation.objects.exists())

    def test_a_bad_or_too_large_event_is_refused_and_runs_nothing(self):
        self.assertError(lambda: self.lam.invoke_async(FunctionName="hello", InvokeArgs=b"{not json"),
                         "InvalidRequestContentException", 400)
        big = json.dumps({"x": "a" * 256 * 1024}).encode()
        self.assertError(lambda: self.lam.invoke_async(FunctionName="hello", InvokeArgs=big),
                         "RequestTooLargeException", 413, "InvokeAsync")
        self.assertError(lambda: self.lam.invoke_async(FunctionName="hello:7", InvokeArgs=b"{}"),
                         "ResourceNotFoundException", 404)
        self.assertFalse(Invocation.objects.exists())
