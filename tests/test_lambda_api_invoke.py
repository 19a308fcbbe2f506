"""Invoke through the Lambda API, against the real server and workers, with the real boto3 and AWS CLI
(issue 8): results, logs, versions and aliases, errors as Lambda shapes them, and retried calls."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import override_settings

from functions.models import MAX_ASYNC_PAYLOAD_BYTES, MAX_SYNC_PAYLOAD_BYTES, Alias
from invocations.models import Invocation
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase, lambda_client

ECHO = """
    import uuid
    def handler(event, context):
        print("handling", event)
        return {"event": event, "version": context.function_version, "arn": context.invoked_function_arn,
                "request_id": context.aws_request_id, "nonce": uuid.uuid4().hex}
"""

SLOW = """
    import time, uuid
    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        return {"nonce": uuid.uuid4().hex}
"""


def payload(response):
    return json.loads(response["Payload"].read())


@pytest.mark.usefixtures("workers")
class InvokeTests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO))

    def test_a_request_response_invoke_answers_with_the_result_and_the_log_tail(self):
        response = self.lam.invoke(FunctionName="hello", Payload=json.dumps({"n": 1}), LogType="Tail")
        self.assertEqual(response["StatusCode"], 200)
        self.assertEqual(response["ExecutedVersion"], "$LATEST")
        self.assertNotIn("FunctionError", response)
        result = payload(response)
        self.assertEqual(result["event"], {"n": 1})
        self.assertEqual(result["version"], "$LATEST")
        log = base64.b64decode(response["LogResult"]).decode()
        self.assertIn(f"START RequestId: {result['request_id']} Version: $LATEST", log)
        self.assertIn("handling {'n': 1}", log)
        self.assertIn(f"END RequestId: {result['request_id']}", log)
        self.assertIn(f"REPORT RequestId: {result['request_id']}\tDuration: ", log)
        # x-amzn-RequestId is the function's aws_request_id, as in Lambda.
        self.assertEqual(response["ResponseMetadata"]["RequestId"], result["request_id"])
        invocation = Invocation.objects.get()
        self.assertEqual(str(invocation.id), result["request_id"])
        self.assertEqual(invocation.source, "api")
        self.assertEqual(invocation.kind, Invocation.Kind.SYNC)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)

    def test_the_log_tail_is_the_last_4_kb_of_the_log(self):
        self.create_function(handler_zip("def handler(e, c):\n    print('x' * 10000)\n    return 1\n"), name="loud")
        response = self.lam.invoke(FunctionName="loud", LogType="Tail")
        log = base64.b64decode(response["LogResult"])
        self.assertEqual(len(log), 4096)
        self.assertTrue(Invocation.objects.get().log.encode().endswith(log))
        self.assertIn(b"REPORT RequestId: ", log)

    def test_without_a_payload_the_event_is_an_empty_object_and_without_tail_there_is_no_log(self):
        response = self.lam.invoke(FunctionName="hello")
        self.assertEqual(payload(response)["event"], {})
        self.assertNotIn("LogResult", response)

    def test_any_json_value_is_an_event(self):
        response = self.lam.invoke(FunctionName="hello", Payload=b'[1, "two", null]')
        self.assertEqual(payload(response)["event"], [1, "two", None])

    def test_an_event_invoke_is_accepted_and_runs(self):
        response = self.lam.invoke(FunctionName="hello", InvocationType="Event", Payload=b'{"later": true}')
        self.assertEqual(response["StatusCode"], 202)
        self.assertEqual(response["Payload"].read(), b"")
        invocation = self.wait_finished(Invocation.objects.get())
        self.assertEqual(response["ResponseMetadata"]["RequestId"], str(invocation.id))
        self.assertEqual(invocation.kind, Invocation.Kind.ASYNC)
        self.assertEqual(invocation.source, "api")
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(json.loads(invocation.result)["event"], {"later": True})

    def test_a_dry_run_checks_the_function_and_runs_nothing(self):
        response = self.lam.invoke(FunctionName="hello", InvocationType="DryRun", Payload=b'{"a": 1}')
        self.assertEqual(response["StatusCode"], 204)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="hello", InvocationType="DryRun", Qualifier="9")
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="nope", InvocationType="DryRun")
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.assertFalse(Invocation.objects.exists())

    def test_a_qualifier_picks_a_version_or_an_alias(self):
        v1, _ = self.fn.publish()
        Alias.objects.create(function=self.fn, name="live", version=v1)
        arn = self.fn.arn
        for kwargs, version, invoked in [
            (dict(FunctionName="hello", Qualifier="1"), "1", f"{arn}:1"),
            (dict(FunctionName="hello", Qualifier="live"), "1", f"{arn}:live"),
            (dict(FunctionName="hello:1"), "1", f"{arn}:1"),
            (dict(FunctionName=f"{arn}:live"), "1", f"{arn}:live"),
            (dict(FunctionName=arn, Qualifier="$LATEST"), "$LATEST", arn),
        ]:
            response = self.lam.invoke(Payload=b"{}", **kwargs)
            self.assertEqual(response["ExecutedVersion"], version, kwargs)
            result = payload(response)
            self.assertEqual(result["version"], version, kwargs)
            self.assertEqual(result["arn"], invoked, kwargs)
        self.assertEqual(sorted(Invocation.objects.values_list("qualifier", flat=True)),
                         ["$LATEST", "1", "1", "live", "live"])
        for kwargs in (dict(FunctionName="hello", Qualifier="2"), dict(FunctionName="hello:nope")):
            with self.assertRaises(ClientError) as caught:
                self.lam.invoke(**kwargs)
            self.assertIn("Function not found", self.assertApiError(caught, "ResourceNotFoundException", 404))
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="hello:1", Qualifier="live")
        self.assertApiError(caught, "InvalidParameterValueException", 400)

    def test_a_function_error_is_a_200_with_lambdas_error_object(self):
        self.create_function(handler_zip("def handler(e, c):\n    return 1 / 0\n"), name="broken")
        response = self.lam.invoke(FunctionName="broken", LogType="Tail")
        self.assertEqual(response["StatusCode"], 200)
        self.assertEqual(response["FunctionError"], "Unhandled")
        error = payload(response)
        self.assertEqual(error["errorType"], "ZeroDivisionError")
        self.assertEqual(error["errorMessage"], "division by zero")
        self.assertEqual(error["requestId"], response["ResponseMetadata"]["RequestId"])
        self.assertTrue(error["stackTrace"])
        self.assertIn("[ERROR] ZeroDivisionError: division by zero", base64.b64decode(response["LogResult"]).decode())

    def test_a_timeout_is_a_200_with_lambdas_timeout_error(self):
        self.create_function(handler_zip(SLOW), name="slow", timeout=1)
        response = self.lam.invoke(FunctionName="slow", Payload=b'{"sleep": 5}', LogType="Tail")
        self.assertEqual(response["StatusCode"], 200)
        self.assertEqual(response["FunctionError"], "Unhandled")
        error = payload(response)
        self.assertEqual(error["errorType"], "Sandbox.Timedout")
        self.assertIn("Task timed out after 1.00 seconds", error["errorMessage"])
        self.assertIn("Task timed out after 1.00 seconds", base64.b64decode(response["LogResult"]).decode())
        self.assertEqual(Invocation.objects.get().status, Invocation.Status.TIMED_OUT)

    def test_a_function_without_concurrency_is_throttled_with_429(self):
        self.fn.reserved_concurrency = 0
        self.fn.save()
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="hello")
        self.assertEqual(self.assertApiError(caught, "TooManyRequestsException", 429), "Rate Exceeded.")
        error = caught.exception.response
        self.assertEqual(error["Reason"], "ReservedFunctionConcurrentInvocationLimitExceeded")
        self.assertEqual(error["retryAfterSeconds"], "1")
        self.assertEqual(Invocation.objects.get().status, Invocation.Status.THROTTLED)

    def test_a_payload_over_the_limits_is_413(self):
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="hello", Payload=b'"' + b"x" * MAX_SYNC_PAYLOAD_BYTES + b'"')
        self.assertIn(str(MAX_SYNC_PAYLOAD_BYTES), self.assertApiError(caught, "RequestTooLargeException", 413))
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="hello", InvocationType="Event",
                            Payload=b'"' + b"x" * MAX_ASYNC_PAYLOAD_BYTES + b'"')
        message = self.assertApiError(caught, "RequestTooLargeException", 413)
        self.assertIn("too large for the Event invocation type", message)
        self.assertFalse(Invocation.objects.exists())

    def test_a_payload_that_is_not_json_is_400(self):
        for body in (b"{nope", b"\xff\xfe"):
            with self.assertRaises(ClientError) as caught:
                self.lam.invoke(FunctionName="hello", Payload=body)
            message = self.assertApiError(caught, "InvalidRequestContentException", 400)
            self.assertTrue(message.startswith("Could not parse request body into json"), message)
        self.assertFalse(Invocation.objects.exists())

    def test_an_unknown_invocation_or_log_type_is_400(self):
        for kwargs in (dict(InvocationType="Sometime"), dict(LogType="Everything")):
            with self.assertRaises(ClientError) as caught:
                self.lam.invoke(FunctionName="hello", **kwargs)
            self.assertIn("enum value set", self.assertApiError(caught, "InvalidParameterValueException", 400))

    def test_the_client_context_reaches_the_handler(self):
        self.create_function(handler_zip("""
            def handler(event, context):
                cc = context.client_context
                if cc is None:
                    return None
                return {"custom": cc.custom, "env": cc.env, "app_title": cc.client.app_title,
                        "installation_id": cc.client.installation_id, "app_package_name": cc.client.app_package_name}
        """), name="mobile")
        sent = {"client": {"installation_id": "i-1", "app_title": "Notes"}, "custom": {"user": "ann"},
                "env": {"platform": "Android"}}
        encoded = base64.b64encode(json.dumps(sent).encode()).decode()
        result = payload(self.lam.invoke(FunctionName="mobile", ClientContext=encoded))
        self.assertEqual(result, {"custom": {"user": "ann"}, "env": {"platform": "Android"}, "app_title": "Notes",
                                  "installation_id": "i-1", "app_package_name": None})
        self.assertIsNone(payload(self.lam.invoke(FunctionName="mobile")))
        # Lambda passes it to synchronous invocations only.
        self.lam.invoke(FunctionName="mobile", ClientContext=encoded, InvocationType="Event")
        queued = self.wait_finished(Invocation.objects.get(kind=Invocation.Kind.ASYNC))
        self.assertEqual(queued.status, Invocation.Status.SUCCEEDED)
        self.assertIsNone(json.loads(queued.result))

    def test_a_bad_client_context_is_400(self):
        for bad in ("not base64!", base64.b64encode(b"{nope").decode(), base64.b64encode(b"[1]").decode(),
                    base64.b64encode(json.dumps({"custom": {"k": "v" * 3000}}).encode()).decode()):
            with self.assertRaises(ClientError) as caught:
                self.lam.invoke(FunctionName="hello", ClientContext=bad)
            message = self.assertApiError(caught, "InvalidRequestContentException", 400)
            self.assertIn("Client context must be", message)
        self.assertFalse(Invocation.objects.exists())

    def test_another_users_function_is_not_found(self):
        for name in ("hello", self.fn.arn):
            with self.assertRaises(ClientError) as caught:
                self.bob_lam.invoke(FunctionName=name, Payload=b"{}")
            self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.assertFalse(Invocation.objects.exists())

    def wait_finished(self, invocation, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            invocation.refresh_from_db()
            if invocation.is_finished:
                return invocation
            self.assertLess(time.monotonic(), deadline, f"invocation still {invocation.status}")
            time.sleep(0.05)


@pytest.mark.usefixtures("workers")
class RetriedCallTests(ApiTestCase):
    """An SDK sends the same amz-sdk-invocation-id on every retry of one call: the call runs once."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(SLOW), timeout=10)
        self.call_id = str(uuid.uuid4())

    def client_for_one_call(self, call_id):
        """A client whose every Invoke looks like a retry of the call `call_id`."""
        client = lambda_client(self.base_url, self.key.access_key_id, self.secret)

        def same_call(request, **kwargs):
            request.headers["amz-sdk-invocation-id"] = call_id  # not signed: the signature still holds

        client.meta.events.register("before-send.lambda.Invoke", same_call)
        return client

    def test_a_retried_request_response_call_answers_with_the_first_invocation(self):
        client = self.client_for_one_call(self.call_id)
        first = client.invoke(FunctionName="hello", Payload=b"{}")
        again = client.invoke(FunctionName="hello", Payload=b"{}")
        result = payload(first)
        self.assertEqual(payload(again), result)
        self.assertEqual(first["ResponseMetadata"]["RequestId"], again["ResponseMetadata"]["RequestId"])
        invocation = Invocation.objects.get()
        self.assertEqual(invocation.client_request_id, self.call_id)
        # A new call (the SDK's own new id) runs again.
        self.assertNotEqual(payload(self.lam.invoke(FunctionName="hello", Payload=b"{}")), result)
        self.assertEqual(Invocation.objects.count(), 2)

    def test_a_retry_while_the_first_request_still_waits_waits_for_the_same_invocation(self):
        client = self.client_for_one_call(self.call_id)
        answers = {}
        thread = threading.Thread(target=lambda: answers.update(
            first=payload(client.invoke(FunctionName="hello", Payload=b'{"sleep": 2}'))))
        thread.start()
        deadline = time.monotonic() + 15
        while not Invocation.objects.filter(status=Invocation.Status.RUNNING).exists():
            self.assertLess(time.monotonic(), deadline, "the first request never started its invocation")
            time.sleep(0.02)
        again = payload(client.invoke(FunctionName="hello", Payload=b'{"sleep": 2}'))
        thread.join()
        self.assertEqual(answers["first"], again)
        self.assertEqual(Invocation.objects.count(), 1)

    def test_a_retried_event_call_is_accepted_again_and_queued_once(self):
        client = self.client_for_one_call(self.call_id)
        for _ in range(2):
            self.assertEqual(client.invoke(FunctionName="hello", InvocationType="Event")["StatusCode"], 202)
        self.assertEqual(Invocation.objects.get().client_request_id, self.call_id)

    def test_a_retried_throttled_call_runs_once_the_function_may(self):
        client = self.client_for_one_call(self.call_id)
        self.fn.reserved_concurrency = 0
        self.fn.save()
        with self.assertRaises(ClientError) as caught:
            client.invoke(FunctionName="hello")
        self.assertApiError(caught, "TooManyRequestsException", 429)
        self.fn.reserved_concurrency = None
        self.fn.save()
        self.assertEqual(client.invoke(FunctionName="hello")["StatusCode"], 200)
        self.assertEqual(sorted(Invocation.objects.values_list("status", flat=True)),
                         [Invocation.Status.SUCCEEDED, Invocation.Status.THROTTLED])
        self.assertEqual(Invocation.objects.get(status=Invocation.Status.SUCCEEDED).client_request_id, self.call_id)

    def test_the_same_id_for_another_function_is_another_call(self):
        self.create_function(handler_zip(SLOW), name="other")
        client = self.client_for_one_call(self.call_id)
        client.invoke(FunctionName="hello")
        client.invoke(FunctionName="other")
        self.assertEqual(Invocation.objects.filter(client_request_id=self.call_id).count(), 2)


class WaitingLimitTests(ApiTestCase):
    """Synchronous invokes waiting for their invocation share the endpoints' cap (ENDPOINT_MAX_WAITING).
    The cap is the serving process's: this test signs a request for Django's test client, in this process."""

    def test_a_sync_invoke_over_the_waiting_limit_is_429_and_invokes_nothing(self):
        self.create_function(handler_zip(SLOW))
        path = "/2015-03-31/functions/hello/invocations"
        signed = AWSRequest(method="POST", url=f"http://testserver{path}", data=b"{}")
        credentials = Credentials(self.key.access_key_id, self.secret)
        SigV4Auth(credentials, "lambda", settings.LAMBDA_REGION).add_auth(signed)
        with override_settings(ENDPOINT_MAX_WAITING=0):  # every slot taken
            response = self.client.generic("POST", path, b"{}", content_type="", headers={"Host": "testserver", **signed.headers})
        self.assertEqual(response.status_code, 429, response.content)
        self.assertEqual(response["x-amzn-ErrorType"], "TooManyRequestsException")
        self.assertEqual(response["Retry-After"], "1")
        self.assertEqual(response.json()["Reason"], "ConcurrentInvocationLimitExceeded")
        self.assertFalse(Invocation.objects.exists())


@pytest.mark.usefixtures("workers")
class AwsCliTests(ApiTestCase):
    """The real AWS CLI (v1, in the venv), pointed at the server by its environment alone."""

    def aws(self, *args, cwd):
        env = {
            **os.environ, "AWS_ENDPOINT_URL_LAMBDA": self.base_url, "AWS_ACCESS_KEY_ID": self.key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": settings.LAMBDA_REGION,
            "AWS_CONFIG_FILE": str(Path(cwd) / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(Path(cwd) / "no-creds"),
            "AWS_MAX_ATTEMPTS": "1",
        }
        env.pop("AWS_PROFILE", None)
        aws = Path(sys.executable).with_name("aws")
        return subprocess.run([str(aws), "lambda", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)

    def test_aws_lambda_invoke_writes_the_result_and_prints_the_log_tail(self):
        self.create_function(handler_zip(ECHO))
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "in.json").write_text('{"from": "cli"}')
            done = self.aws("invoke", "--function-name", "hello", "--payload", "fileb://in.json",
                            "--log-type", "Tail", "out.json", cwd=tmp)
            self.assertEqual(done.returncode, 0, done.stderr)
            result = json.loads(Path(tmp, "out.json").read_text())
        self.assertEqual(result["event"], {"from": "cli"})
        printed = json.loads(done.stdout)
        self.assertEqual(printed["StatusCode"], 200)
        self.assertEqual(printed["ExecutedVersion"], "$LATEST")
        self.assertIn(f"END RequestId: {result['request_id']}", base64.b64decode(printed["LogResult"]).decode())
        self.assertEqual(Invocation.objects.get().source, "api")

    def test_aws_lambda_invoke_of_a_missing_function_exits_255(self):
        with tempfile.TemporaryDirectory() as tmp:
            done = self.aws("invoke", "--function-name", "nope", "out.json", cwd=tmp)
        self.assertEqual(done.returncode, 255, done.stdout)
        self.assertIn("ResourceNotFoundException", done.stderr)
        self.assertIn("Function not found", done.stderr)
