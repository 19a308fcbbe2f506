"""Reserved concurrency, asynchronous invocation settings and function URLs through the Lambda API, with the
real boto3 against the real gunicorn: each set through the API shows in the console, and the other way round."""

import json
import re
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from django.urls import reverse

from functions.models import EventInvokeConfig, Trigger
from invocations.forms import EventInvokeConfigForm, HttpEndpointForm
from invocations.models import Invocation
from invocations.queues.models import Queue
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"path": event["rawPath"], "arn": context.invoked_function_arn})}
"""


def concurrency_row(response):
    """The function page's "Reserved concurrency" configuration cell."""
    match = re.search(r"<tr><th>Reserved concurrency</th><td>(.*?)</td></tr>", response.content.decode())
    assert match, "no reserved concurrency row on the function page"
    return match[1]


class SettingsTestCase(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="hello")
        self.client.force_login(self.alice)

    def assertNotFound(self, call):
        with self.assertRaises(ClientError) as caught:
            call()
        return self.assertApiError(caught, "ResourceNotFoundException", 404)


class ConcurrencyTests(SettingsTestCase):
    def test_put_get_and_delete_round_trip_and_show_on_the_function_page(self):
        self.assertNotIn("ReservedConcurrentExecutions", self.lam.get_function_concurrency(FunctionName="hello"))
        put = self.lam.put_function_concurrency(FunctionName="hello", ReservedConcurrentExecutions=5)
        self.assertEqual(put["ReservedConcurrentExecutions"], 5)
        self.assertEqual(self.lam.get_function_concurrency(FunctionName=self.fn.arn)["ReservedConcurrentExecutions"], 5)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.reserved_concurrency, 5)
        self.assertEqual(concurrency_row(self.client.get(self.fn.get_absolute_url())), "5")
        self.assertEqual(self.lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"], 995)

        deleted = self.lam.delete_function_concurrency(FunctionName="hello")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNotIn("ReservedConcurrentExecutions", self.lam.get_function_concurrency(FunctionName="hello"))
        self.fn.refresh_from_db()
        self.assertIsNone(self.fn.reserved_concurrency)
        self.assertIn("none", concurrency_row(self.client.get(self.fn.get_absolute_url())))

    def test_zero_is_a_reservation_not_its_absence(self):
        self.lam.put_function_concurrency(FunctionName="hello", ReservedConcurrentExecutions=0)
        self.assertEqual(self.lam.get_function_concurrency(FunctionName="hello")["ReservedConcurrentExecutions"], 0)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.reserved_concurrency, 0)
        self.assertIn("every invocation is throttled", concurrency_row(self.client.get(self.fn.get_absolute_url())))

    def test_a_value_set_in_the_console_shows_through_the_api(self):
        data = {"handler": "lambda_function.handler", "memory_size": "128", "timeout": "3",
                "ephemeral_storage": "512", "description": "", "reserved_concurrency": "7"}
        response = self.client.post(reverse("functions:configure", args=["hello"]), data)
        self.assertEqual(response.status_code, 302)
        self.assertEqual(self.lam.get_function_concurrency(FunctionName="hello")["ReservedConcurrentExecutions"], 7)

    def test_the_console_forms_bounds_apply(self):
        self.assertInvalid(lambda: self.lam.put_function_concurrency(FunctionName="hello",
                                                                     ReservedConcurrentExecutions=1001),
                           "ReservedConcurrentExecutions", "less than or equal to 1000")
        self.assertInvalid(lambda: self.unvalidated().put_function_concurrency(FunctionName="hello",
                                                                               ReservedConcurrentExecutions=-1),
                           "ReservedConcurrentExecutions", "greater than or equal to 0")
        self.assertInvalid(lambda: self.unvalidated().put_function_concurrency(FunctionName="hello",
                                                                               ReservedConcurrentExecutions="many"),
                           "Enter a whole number")
        self.fn.refresh_from_db()
        self.assertIsNone(self.fn.reserved_concurrency)

    def test_a_version_or_alias_has_no_concurrency_of_its_own(self):
        self.assertInvalid(lambda: self.lam.put_function_concurrency(FunctionName="hello:1",
                                                                     ReservedConcurrentExecutions=3),
                           "without a version or alias")

    def test_missing_and_other_users_functions_are_not_found(self):
        self.lam.put_function_concurrency(FunctionName="hello", ReservedConcurrentExecutions=4)
        self.assertIn("Function not found", self.assertNotFound(
            lambda: self.lam.get_function_concurrency(FunctionName="nope")))
        self.assertNotFound(lambda: self.bob_lam.get_function_concurrency(FunctionName="hello"))
        self.assertNotFound(lambda: self.bob_lam.put_function_concurrency(FunctionName="hello",
                                                                          ReservedConcurrentExecutions=1))
        self.assertNotFound(lambda: self.bob_lam.delete_function_concurrency(FunctionName=self.fn.arn))
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.reserved_concurrency, 4)


class EventInvokeConfigTests(SettingsTestCase):
    def setUp(self):
        super().setUp()
        self.other = self.create_function(handler_zip(ECHO), name="other")
        self.bobs = self.create_function(handler_zip(ECHO), name="other", owner=self.bob)

    def test_put_and_get_round_trip_and_show_in_the_console(self):
        failures = Queue.objects.create(owner=self.alice, name="failures")
        put = self.lam.put_function_event_invoke_config(
            FunctionName="hello", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=3600,
            DestinationConfig={"OnSuccess": {"Destination": self.other.arn},
                               "OnFailure": {"Destination": failures.arn}})
        expected = {
            "FunctionArn": f"{self.fn.arn}:$LATEST", "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 3600,
            "DestinationConfig": {"OnSuccess": {"Destination": self.other.arn},
                                  "OnFailure": {"Destination": failures.arn}},
        }
        self.assertEqual({k: put[k] for k in expected}, expected)
        got = self.lam.get_function_event_invoke_config(FunctionName="hello")
        self.assertEqual({k: got[k] for k in expected}, expected)
        config = EventInvokeConfig.objects.get(function=self.fn)
        self.assertEqual(config.snapshot(), {"maximum_retry_attempts": 0, "maximum_event_age_seconds": 3600,
                                             "on_success": self.other.arn, "on_failure": failures.arn})
        self.assertEqual(got["LastModified"].timestamp(), pytest.approx(config.updated_at.timestamp(), abs=0.001))
        page = self.client.get(reverse("functions:async_config", args=["hello"]))
        self.assertContains(page, failures.arn)
        self.assertContains(page, "3600 s")

    def test_put_replaces_the_whole_configuration(self):
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=0,
                                                  MaximumEventAgeInSeconds=60,
                                                  DestinationConfig={"OnFailure": {"Destination": self.other.arn}})
        again = self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=1)
        self.assertEqual((again["MaximumRetryAttempts"], again["MaximumEventAgeInSeconds"], again["DestinationConfig"]),
                         (1, 21600, {"OnSuccess": {}, "OnFailure": {}}))
        self.assertEqual(EventInvokeConfig.objects.get(function=self.fn).on_failure, "")

    def test_each_alias_or_version_has_its_own(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        self.lam.put_function_event_invoke_config(FunctionName="hello", Qualifier="live", MaximumRetryAttempts=1)
        self.lam.put_function_event_invoke_config(FunctionName=f"{self.fn.arn}:1", MaximumRetryAttempts=2)
        got = self.lam.get_function_event_invoke_config(FunctionName="hello:live")
        self.assertEqual((got["FunctionArn"], got["MaximumRetryAttempts"]), (f"{self.fn.arn}:live", 1))
        self.assertEqual(sorted(EventInvokeConfig.objects.values_list("qualifier", "maximum_retry_attempts")),
                         [("1", 2), ("live", 1)])
        message = self.assertNotFound(lambda: self.lam.get_function_event_invoke_config(FunctionName="hello"))
        self.assertEqual(message, f"The function {self.fn.arn}:$LATEST doesn't have an EventInvokeConfig")
        self.assertNotFound(lambda: self.lam.put_function_event_invoke_config(FunctionName="hello", Qualifier="nope",
                                                                              MaximumRetryAttempts=1))
        self.assertNotFound(lambda: self.lam.get_function_event_invoke_config(FunctionName="hello:7"))

    def test_settings_saved_in_the_console_show_through_the_api(self):
        form = EventInvokeConfigForm({"qualifier": "", "maximum_retry_attempts": "1",
                                      "maximum_event_age_seconds": "120", "on_success": "",
                                      "on_failure": self.other.arn}, function=self.fn)
        self.assertTrue(form.is_valid(), form.errors)
        form.save()
        got = self.lam.get_function_event_invoke_config(FunctionName="hello", Qualifier="$LATEST")
        self.assertEqual((got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"], got["DestinationConfig"]),
                         (1, 120, {"OnSuccess": {}, "OnFailure": {"Destination": self.other.arn}}))

    def test_out_of_range_values_are_refused_with_the_forms_messages(self):
        client = self.unvalidated()
        cases = [
            ({"MaximumRetryAttempts": 3}, "MaximumRetryAttempts: Ensure this value is less than or equal to 2."),
            ({"MaximumRetryAttempts": -1}, "MaximumRetryAttempts: Ensure this value is greater than or equal to 0."),
            ({"MaximumEventAgeInSeconds": 59},
             "MaximumEventAgeInSeconds: Ensure this value is greater than or equal to 60."),
            ({"MaximumEventAgeInSeconds": 21601},
             "MaximumEventAgeInSeconds: Ensure this value is less than or equal to 21600."),
        ]
        for params, message in cases:
            with self.subTest(params):
                self.assertEqual(self.assertInvalid(
                    lambda: client.put_function_event_invoke_config(FunctionName="hello", **params)), message)
        self.assertFalse(EventInvokeConfig.objects.exists())

    def test_destinations_are_the_callers_other_functions_queues_and_topics(self):
        for arn in (self.bobs.arn, self.fn.arn, f"{self.fn.arn[:-5]}nope",
                    f"arn:aws:sqs:us-east-1:{self.fn.arn.split(':')[4]}:no-such-queue"):
            for outcome in ("OnSuccess", "OnFailure"):
                with self.subTest(arn=arn, outcome=outcome):
                    self.assertInvalid(lambda: self.lam.put_function_event_invoke_config(
                        FunctionName="hello", DestinationConfig={outcome: {"Destination": arn}}),
                        f"DestinationConfig.{outcome}.Destination", arn)
        self.assertFalse(EventInvokeConfig.objects.exists())

    def test_other_users_functions_are_not_found(self):
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=0)
        self.assertNotFound(lambda: self.bob_lam.get_function_event_invoke_config(FunctionName="hello"))
        self.assertNotFound(lambda: self.bob_lam.get_function_event_invoke_config(FunctionName=self.fn.arn))
        self.assertNotFound(lambda: self.bob_lam.put_function_event_invoke_config(FunctionName=self.fn.arn,
                                                                                  MaximumRetryAttempts=2))
        self.assertNotFound(lambda: self.lam.put_function_event_invoke_config(FunctionName="missing",
                                                                              MaximumRetryAttempts=2))
        self.assertEqual(EventInvokeConfig.objects.get().maximum_retry_attempts, 0)


@pytest.mark.usefixtures("workers")
class FunctionUrlTests(SettingsTestCase):
    def test_a_url_made_through_the_api_runs_the_function(self):
        made = self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
        self.assertEqual(made["ResponseMetadata"]["HTTPStatusCode"], 201)
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.HTTP)
        self.assertEqual(made["FunctionUrl"], f"{self.base_url}/url/{trigger.url_id}/")
        self.assertEqual((made["FunctionArn"], made["AuthType"], made["InvokeMode"]), (self.fn.arn, "NONE", "BUFFERED"))
        self.assertNotIn("Cors", made)
        self.assertRegex(made["CreationTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        with urllib.request.urlopen(made["FunctionUrl"] + "some/path?x=1", timeout=60) as reply:
            self.assertEqual(reply.status, 200)
            self.assertEqual(json.loads(reply.read()), {"path": "/some/path", "arn": self.fn.arn})
            request_id = reply.headers["X-Amzn-RequestId"]
        invocation = Invocation.objects.get(pk=request_id)
        self.assertEqual((invocation.function_id, invocation.status, invocation.trigger_id),
                         (self.fn.pk, Invocation.Status.SUCCEEDED, trigger.pk))

        page = self.client.get(self.fn.get_absolute_url())
        self.assertContains(page, f"/url/{trigger.url_id}/")

    def test_get_answers_what_create_made_and_a_second_create_conflicts(self):
        cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"],
                "AllowHeaders": ["Content-Type"], "ExposeHeaders": ["X-Total"], "MaxAge": 300,
                "AllowCredentials": True}
        made = self.lam.create_function_url_config(FunctionName=self.fn.arn, AuthType="NONE", Cors=cors)
        got = self.lam.get_function_url_config(FunctionName="hello")
        expected_cors = {**cors, "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-total"]}
        self.assertEqual(made["Cors"], expected_cors)
        self.assertEqual(got["Cors"], expected_cors)
        for key in ("FunctionUrl", "FunctionArn", "AuthType", "CreationTime", "InvokeMode"):
            self.assertEqual(got[key], made[key], key)
        # Both are set as the endpoint is saved (Trigger.created_at and updated_at), a moment apart.
        self.assertGreaterEqual(got["LastModifiedTime"], got["CreationTime"])
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.HTTP)
        self.assertEqual(trigger.config["cors"]["allow_origins"], ["https://example.com"])
        self.assertEqual(trigger.config["cors"]["max_age"], 300)

        with self.assertRaises(ClientError) as caught:
            self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
        self.assertIn("FunctionUrlConfig exists", self.assertApiError(caught, "ResourceConflictException", 409))
        self.assertEqual(Trigger.objects.filter(kind=Trigger.Kind.HTTP).count(), 1)

    def test_a_url_belongs_to_the_function_or_an_alias_never_a_version(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        made = self.lam.create_function_url_config(FunctionName="hello", Qualifier="live", AuthType="NONE")
        self.assertEqual(made["FunctionArn"], f"{self.fn.arn}:live")
        got = self.lam.get_function_url_config(FunctionName="hello:live")
        self.assertEqual(got["FunctionUrl"], made["FunctionUrl"])
        self.assertNotFound(lambda: self.lam.get_function_url_config(FunctionName="hello"))  # none unqualified
        for qualifier in ("1", "$LATEST"):
            with self.subTest(qualifier):
                self.assertInvalid(lambda: self.lam.create_function_url_config(
                    FunctionName="hello", Qualifier=qualifier, AuthType="NONE"), "qualifier")
        self.assertNotFound(lambda: self.lam.create_function_url_config(FunctionName="hello", Qualifier="nope",
                                                                        AuthType="NONE"))
        self.assertEqual(list(Trigger.objects.values_list("qualifier", flat=True)), ["live"])

    def test_an_endpoint_made_in_the_console_shows_through_the_api(self):
        form = HttpEndpointForm({"qualifier": "", "auth_type": "KEY", "allow_origins": "*", "allow_methods": "GET",
                                 "allow_headers": "", "expose_headers": "", "max_age": ""}, function=self.fn)
        self.assertTrue(form.is_valid(), form.errors)
        trigger, _ = form.save()
        got = self.lam.get_function_url_config(FunctionName="hello")
        # A secret-key endpoint is not public: of the model's two values, AWS_IAM says so.
        self.assertEqual(got["AuthType"], "AWS_IAM")
        self.assertEqual(got["FunctionUrl"], f"{self.base_url}/url/{trigger.url_id}/")
        self.assertEqual(got["Cors"], {"AllowOrigins": ["*"], "AllowMethods": ["GET"], "AllowHeaders": [],
                                       "ExposeHeaders": [], "MaxAge": 0, "AllowCredentials": False})

    def test_unsupported_and_invalid_settings_are_refused(self):
        self.assertInvalid(lambda: self.lam.create_function_url_config(FunctionName="hello", AuthType="AWS_IAM"),
                           "AWS_IAM is not supported", "NONE", "x-api-key")
        self.assertInvalid(lambda: self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE",
                                                                       InvokeMode="RESPONSE_STREAM"), "BUFFERED")
        self.assertInvalid(lambda: self.lam.create_function_url_config(
            FunctionName="hello", AuthType="NONE", Cors={"AllowOrigins": ["example.com"]}),
            "Cors.AllowOrigins", "'example.com' is not an origin")
        self.assertInvalid(lambda: self.lam.create_function_url_config(
            FunctionName="hello", AuthType="NONE", Cors={"AllowOrigins": ["*"], "AllowCredentials": True}),
            "Cors.AllowCredentials")
        self.assertInvalid(lambda: self.lam.create_function_url_config(
            FunctionName="hello", AuthType="NONE", Cors={"AllowOrigins": ["*"], "AllowMethods": ["FETCH"]}),
            "Cors.AllowMethods", "FETCH")
        self.assertInvalid(lambda: self.unvalidated().create_function_url_config(
            FunctionName="hello", AuthType="NONE", Cors={"AllowOrigins": ["*"], "MaxAge": 86401}),
            "Cors.MaxAge", "less than or equal to 86400")
        self.assertFalse(Trigger.objects.exists())

    def test_missing_and_other_users_functions_are_not_found(self):
        self.assertEqual(self.assertNotFound(lambda: self.lam.get_function_url_config(FunctionName="hello")),
                         "The resource you requested does not exist.")
        self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
        self.assertNotFound(lambda: self.bob_lam.get_function_url_config(FunctionName="hello"))
        self.assertNotFound(lambda: self.bob_lam.create_function_url_config(FunctionName=self.fn.arn, AuthType="NONE"))
        self.assertNotFound(lambda: self.lam.create_function_url_config(FunctionName="missing", AuthType="NONE"))
        self.assertEqual(Trigger.objects.count(), 1)


def async_config_rows(response):
    """The asynchronous invocation page's "Settings in force" rows: (applies to, retries, age, on failure)."""
    rows = re.findall(r'<tr><td>([^<]*)</td><td class="num">(\d+)</td><td class="num">(\d+) s</td>\s*'
                      r'<td class="mono">[^<]*</td><td class="mono">([^<]*)</td></tr>', response.content.decode())
    return [(qualifier, int(retries), int(age), on_failure) for qualifier, retries, age, on_failure in rows]


class EventInvokeConfigChangeTests(SettingsTestCase):
    """UpdateFunctionEventInvokeConfig, DeleteFunctionEventInvokeConfig and ListFunctionEventInvokeConfigs."""

    def setUp(self):
        super().setUp()
        self.other = self.create_function(handler_zip(ECHO), name="other")
        self.bobs = self.create_function(handler_zip(ECHO), name="other", owner=self.bob)
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)

    def test_update_changes_only_what_it_sends_and_the_console_shows_it(self):
        put = self.lam.put_function_event_invoke_config(
            FunctionName="hello", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=3600,
            DestinationConfig={"OnFailure": {"Destination": self.other.arn}})
        updated = self.lam.update_function_event_invoke_config(FunctionName="hello", MaximumEventAgeInSeconds=120)
        self.assertEqual(
            (updated["FunctionArn"], updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"],
             updated["DestinationConfig"]),
            (f"{self.fn.arn}:$LATEST", 0, 120, {"OnSuccess": {}, "OnFailure": {"Destination": self.other.arn}}))
        self.assertGreaterEqual(updated["LastModified"], put["LastModified"])
        got = self.lam.get_function_event_invoke_config(FunctionName="hello")
        self.assertEqual({k: got[k] for k in updated if k != "ResponseMetadata"},
                         {k: v for k, v in updated.items() if k != "ResponseMetadata"})
        self.assertEqual(EventInvokeConfig.objects.get(function=self.fn).snapshot(), {
            "maximum_retry_attempts": 0, "maximum_event_age_seconds": 120, "on_success": "",
            "on_failure": self.other.arn})
        page = self.client.get(reverse("functions:async_config", args=["hello"]))
        self.assertEqual(async_config_rows(page), [("$LATEST", 0, 120, self.other.arn)])

        # DestinationConfig is one parameter: sent, it sets both destinations.
        failures = Queue.objects.create(owner=self.alice, name="failures")
        again = self.lam.update_function_event_invoke_config(
            FunctionName=self.fn.arn, Qualifier="$LATEST",
            DestinationConfig={"OnSuccess": {"Destination": failures.arn}})
        self.assertEqual((again["MaximumRetryAttempts"], again["MaximumEventAgeInSeconds"], again["DestinationConfig"]),
                         (0, 120, {"OnSuccess": {"Destination": failures.arn}, "OnFailure": {}}))
        self.assertEqual(async_config_rows(self.client.get(reverse("functions:async_config", args=["hello"]))),
                         [("$LATEST", 0, 120, "dead-letter inbox")])

    def test_update_changes_a_configuration_made_in_the_console_for_an_alias(self):
        form = EventInvokeConfigForm({"qualifier": "live", "maximum_retry_attempts": "1",
                                      "maximum_event_age_seconds": "600", "on_success": "", "on_failure": ""},
                                     function=self.fn)
        self.assertTrue(form.is_valid(), form.errors)
        form.save()
        updated = self.lam.update_function_event_invoke_config(FunctionName="hello:live", MaximumRetryAttempts=2)
        self.assertEqual((updated["FunctionArn"], updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]),
                         (f"{self.fn.arn}:live", 2, 600))
        self.assertEqual(list(EventInvokeConfig.objects.values_list("qualifier", "maximum_retry_attempts")),
                         [("live", 2)])

    def test_update_needs_an_existing_configuration_and_something_to_change(self):
        message = self.assertNotFound(lambda: self.lam.update_function_event_invoke_config(
            FunctionName="hello", MaximumRetryAttempts=1))
        self.assertEqual(message, f"The function {self.fn.arn}:$LATEST doesn't have an EventInvokeConfig")
        self.assertNotFound(lambda: self.lam.update_function_event_invoke_config(
            FunctionName="hello", Qualifier="nope", MaximumRetryAttempts=1))
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=1)
        self.assertInvalid(lambda: self.lam.update_function_event_invoke_config(FunctionName="hello"),
                           "at least one of error handling or destination setting")
        self.assertEqual(list(EventInvokeConfig.objects.values_list("qualifier", "maximum_retry_attempts")),
                         [("$LATEST", 1)])

    def test_update_is_refused_with_the_forms_messages_and_changes_nothing(self):
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=1,
                                                  MaximumEventAgeInSeconds=300)
        client = self.unvalidated()
        self.assertEqual(self.assertInvalid(lambda: client.update_function_event_invoke_config(
            FunctionName="hello", MaximumRetryAttempts=3)),
            "MaximumRetryAttempts: Ensure this value is less than or equal to 2.")
        self.assertEqual(self.assertInvalid(lambda: client.update_function_event_invoke_config(
            FunctionName="hello", MaximumEventAgeInSeconds=59)),
            "MaximumEventAgeInSeconds: Ensure this value is greater than or equal to 60.")
        self.assertInvalid(lambda: self.lam.update_function_event_invoke_config(
            FunctionName="hello", DestinationConfig={"OnFailure": {"Destination": self.bobs.arn}}),
            "DestinationConfig.OnFailure.Destination", self.bobs.arn)
        self.assertEqual(EventInvokeConfig.objects.get().snapshot(), {
            "maximum_retry_attempts": 1, "maximum_event_age_seconds": 300, "on_success": "", "on_failure": ""})

    def test_delete_removes_one_qualifiers_configuration_and_the_console_shows_the_defaults(self):
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=0)
        self.lam.put_function_event_invoke_config(FunctionName="hello", Qualifier="live", MaximumRetryAttempts=1)
        deleted = self.lam.delete_function_event_invoke_config(FunctionName="hello", Qualifier="live")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNotFound(lambda: self.lam.get_function_event_invoke_config(FunctionName="hello:live"))
        self.assertEqual(self.lam.get_function_event_invoke_config(FunctionName="hello")["MaximumRetryAttempts"], 0)
        url = reverse("functions:async_config", args=["hello"])
        self.assertEqual(async_config_rows(self.client.get(url)), [("$LATEST", 0, 21600, "dead-letter inbox")])

        self.lam.delete_function_event_invoke_config(FunctionName=self.fn.arn)
        self.assertFalse(EventInvokeConfig.objects.exists())
        self.assertContains(self.client.get(url), "Defaults everywhere.")
        message = self.assertNotFound(lambda: self.lam.delete_function_event_invoke_config(FunctionName="hello"))
        self.assertEqual(message, f"The function {self.fn.arn}:$LATEST doesn't have an EventInvokeConfig")
        self.assertNotFound(lambda: self.lam.delete_function_event_invoke_config(FunctionName="hello:7"))

    def test_list_pages_through_each_qualifiers_configuration(self):
        listed = self.lam.list_function_event_invoke_configs(FunctionName="hello")
        self.assertEqual((listed["FunctionEventInvokeConfigs"], listed.get("NextMarker")), ([], None))
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=0)
        self.lam.put_function_event_invoke_config(FunctionName="hello:live", MaximumRetryAttempts=1)
        form = EventInvokeConfigForm({"qualifier": "1", "maximum_retry_attempts": "2",
                                      "maximum_event_age_seconds": "60", "on_success": "", "on_failure": ""},
                                     function=self.fn)
        self.assertTrue(form.is_valid(), form.errors)
        form.save()  # made in the console

        first = self.lam.list_function_event_invoke_configs(FunctionName="hello", MaxItems=2)
        self.assertEqual([(c["FunctionArn"], c["MaximumRetryAttempts"]) for c in first["FunctionEventInvokeConfigs"]],
                         [(f"{self.fn.arn}:$LATEST", 0), (f"{self.fn.arn}:1", 2)])
        rest = self.lam.list_function_event_invoke_configs(FunctionName=self.fn.arn, MaxItems=2,
                                                           Marker=first["NextMarker"])
        self.assertEqual([c["FunctionArn"] for c in rest["FunctionEventInvokeConfigs"]], [f"{self.fn.arn}:live"])
        self.assertNotIn("NextMarker", rest)
        pages = self.lam.get_paginator("list_function_event_invoke_configs").paginate(
            FunctionName="hello", PaginationConfig={"PageSize": 1})
        self.assertEqual([c["MaximumEventAgeInSeconds"] for page in pages for c in page["FunctionEventInvokeConfigs"]],
                         [21600, 60, 21600])

        client = self.unvalidated()
        self.assertInvalid(lambda: self.lam.list_function_event_invoke_configs(FunctionName="hello:live"),
                           "without a version or alias")
        self.assertInvalid(lambda: client.list_function_event_invoke_configs(FunctionName="hello", MaxItems=51),
                           "MaxItems")
        self.assertInvalid(lambda: client.list_function_event_invoke_configs(FunctionName="hello", Marker="nope"),
                           "Marker")

    def test_bob_cannot_touch_alices(self):
        self.lam.put_function_event_invoke_config(FunctionName="hello", MaximumRetryAttempts=0)
        for name in ("hello", self.fn.arn):
            with self.subTest(name):
                self.assertNotFound(lambda: self.bob_lam.update_function_event_invoke_config(
                    FunctionName=name, MaximumRetryAttempts=2))
                self.assertNotFound(lambda: self.bob_lam.delete_function_event_invoke_config(FunctionName=name))
                self.assertNotFound(lambda: self.bob_lam.list_function_event_invoke_configs(FunctionName=name))
        # Bob's own function of the same name as alice's other one lists his (none), not hers.
        self.lam.put_function_event_invoke_config(FunctionName="other", MaximumRetryAttempts=1)
        self.assertEqual(self.bob_lam.list_function_event_invoke_configs(FunctionName="other")
                         ["FunctionEventInvokeConfigs"], [])
        self.assertEqual(sorted(EventInvokeConfig.objects.values_list("function__name", "maximum_retry_attempts")),
                         [("hello", 0), ("other", 1)])


def preflight(url, origin):
    """A CORS preflight for a GET from `origin`: (status, Access-Control-Allow-Origin)."""
    request = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers["Access-Control-Allow-Origin"]
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Access-Control-Allow-Origin"]


class FunctionUrlChangeTests(SettingsTestCase):
    """UpdateFunctionUrlConfig, DeleteFunctionUrlConfig and ListFunctionUrlConfigs."""

    def setUp(self):
        super().setUp()
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        self.fn.aliases.create(name="next", version=version)

    def console_endpoint(self, qualifier="", **fields):
        form = HttpEndpointForm({"qualifier": qualifier, "auth_type": "NONE", "allow_origins": "",
                                 "allow_methods": "", "allow_headers": "", "expose_headers": "", "max_age": "",
                                 **fields}, function=self.fn)
        self.assertTrue(form.is_valid(), form.errors)
        return form.save()[0]

    def test_update_changes_only_what_it_sends_and_the_console_and_the_url_follow(self):
        made = self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE", Cors={
            "AllowOrigins": ["https://a.example"], "AllowMethods": ["GET"], "MaxAge": 300})
        self.assertEqual(preflight(made["FunctionUrl"], "https://a.example"), (200, "https://a.example"))

        updated = self.lam.update_function_url_config(FunctionName="hello", Cors={
            "AllowOrigins": ["https://b.example"], "AllowHeaders": ["X-Custom"]})
        # A Cors sent replaces the whole of it: MaxAge and AllowMethods go back to none.
        self.assertEqual(updated["Cors"], {"AllowOrigins": ["https://b.example"], "AllowMethods": [],
                                           "AllowHeaders": ["x-custom"], "ExposeHeaders": [], "MaxAge": 0,
                                           "AllowCredentials": False})
        for key in ("FunctionUrl", "FunctionArn", "AuthType", "CreationTime", "InvokeMode"):
            self.assertEqual(updated[key], made[key], key)
        self.assertGreaterEqual(updated["LastModifiedTime"], made["CreationTime"])
        got = self.lam.get_function_url_config(FunctionName="hello")
        self.assertEqual((got["Cors"], got["LastModifiedTime"]), (updated["Cors"], updated["LastModifiedTime"]))
        self.assertEqual(preflight(made["FunctionUrl"], "https://b.example"), (200, "https://b.example"))
        self.assertEqual(preflight(made["FunctionUrl"], "https://a.example"), (403, None))

        trigger = Trigger.objects.get(kind=Trigger.Kind.HTTP)
        page = self.client.get(reverse("functions:trigger", args=["hello", trigger.pk]))
        self.assertContains(page, 'value="https://b.example"')
        self.assertContains(page, 'value="x-custom"')
        self.assertNotContains(page, "https://a.example")

        # Without Cors, the CORS settings stay.
        kept = self.lam.update_function_url_config(FunctionName=self.fn.arn, AuthType="NONE")
        self.assertEqual(kept["Cors"], updated["Cors"])
        emptied = self.lam.update_function_url_config(FunctionName="hello", Cors={})
        self.assertNotIn("Cors", emptied)
        trigger.refresh_from_db()
        self.assertEqual(trigger.config, {"auth_type": "NONE", "cors": {}})
        self.assertNotIn("· CORS", self.client.get(self.fn.get_absolute_url()).content.decode())

    def test_a_secret_key_endpoint_keeps_its_key_when_aws_iam_is_sent_back(self):
        trigger = self.console_endpoint(auth_type="KEY")
        key_sha256 = trigger.key_sha256
        self.assertTrue(key_sha256)
        same = self.lam.update_function_url_config(FunctionName="hello", AuthType="AWS_IAM",
                                                   Cors={"AllowOrigins": ["*"]})
        self.assertEqual((same["AuthType"], same["Cors"]["AllowOrigins"]), ("AWS_IAM", ["*"]))
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["auth_type"], trigger.key_sha256), ("KEY", key_sha256))

        public = self.lam.update_function_url_config(FunctionName="hello", AuthType="NONE")
        self.assertEqual(public["AuthType"], "NONE")
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["auth_type"], trigger.key_sha256), ("NONE", ""))
        self.assertIn("auth NONE", self.client.get(self.fn.get_absolute_url()).content.decode())
        # Making a URL secret again takes a new key, which only the console can show.
        self.assertInvalid(lambda: self.lam.update_function_url_config(FunctionName="hello", AuthType="AWS_IAM"),
                           "AWS_IAM is not supported")

    def test_update_refuses_what_create_refuses_and_changes_nothing(self):
        self.assertEqual(self.assertNotFound(lambda: self.lam.update_function_url_config(
            FunctionName="hello", AuthType="NONE")), "The resource you requested does not exist.")
        self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE",
                                            Cors={"AllowOrigins": ["https://a.example"]})
        before = Trigger.objects.get().config
        self.assertInvalid(lambda: self.lam.update_function_url_config(
            FunctionName="hello", Cors={"AllowOrigins": ["example.com"]}),
            "Cors.AllowOrigins", "'example.com' is not an origin")
        self.assertInvalid(lambda: self.lam.update_function_url_config(
            FunctionName="hello", Cors={"AllowOrigins": ["*"], "AllowCredentials": True}), "Cors.AllowCredentials")
        self.assertInvalid(lambda: self.lam.update_function_url_config(
            FunctionName="hello", InvokeMode="RESPONSE_STREAM"), "BUFFERED")
        self.assertInvalid(lambda: self.unvalidated().update_function_url_config(
            FunctionName="hello", AuthType="OPEN"), "authType")
        self.assertInvalid(lambda: self.lam.update_function_url_config(
            FunctionName="hello", Qualifier="1", AuthType="NONE"), "qualifier")
        self.assertNotFound(lambda: self.lam.update_function_url_config(FunctionName="hello:live", AuthType="NONE"))
        self.assertEqual(Trigger.objects.get().config, before)

    def test_delete_removes_the_url_and_the_console_shows_it_gone(self):
        own = self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
        live = self.lam.create_function_url_config(FunctionName="hello", Qualifier="live", AuthType="NONE")
        live_id = Trigger.objects.get(qualifier="live").url_id
        self.assertContains(self.client.get(self.fn.get_absolute_url()), f"/url/{live_id}/")

        deleted = self.lam.delete_function_url_config(FunctionName="hello:live")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNotFound(lambda: self.lam.get_function_url_config(FunctionName="hello", Qualifier="live"))
        self.assertEqual(self.lam.get_function_url_config(FunctionName="hello")["FunctionUrl"], own["FunctionUrl"])
        self.assertNotContains(self.client.get(self.fn.get_absolute_url()), f"/url/{live_id}/")
        with self.assertRaises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(live["FunctionUrl"], timeout=30)
        gone.exception.close()
        self.assertEqual(gone.exception.code, 404)

        self.assertNotFound(lambda: self.lam.delete_function_url_config(FunctionName="hello", Qualifier="live"))
        self.assertNotFound(lambda: self.lam.delete_function_url_config(FunctionName="hello:nope"))
        self.assertInvalid(lambda: self.lam.delete_function_url_config(FunctionName="hello", Qualifier="1"),
                           "qualifier")
        self.assertEqual(list(Trigger.objects.values_list("qualifier", flat=True)), [""])

    def test_list_pages_through_the_functions_and_its_aliases_urls(self):
        self.assertEqual(self.lam.list_function_url_configs(FunctionName="hello")["FunctionUrlConfigs"], [])
        self.lam.create_function_url_config(FunctionName="hello", Qualifier="next", AuthType="NONE")
        self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE")
        console_made = self.console_endpoint("live", auth_type="KEY")

        first = self.lam.list_function_url_configs(FunctionName="hello", MaxItems=2)
        self.assertEqual([(c["FunctionArn"], c["AuthType"]) for c in first["FunctionUrlConfigs"]],
                         [(self.fn.arn, "NONE"), (f"{self.fn.arn}:live", "AWS_IAM")])
        self.assertEqual(first["FunctionUrlConfigs"][1]["FunctionUrl"], f"{self.base_url}/url/{console_made.url_id}/")
        rest = self.lam.list_function_url_configs(FunctionName=self.fn.arn, MaxItems=2, Marker=first["NextMarker"])
        self.assertEqual([c["FunctionArn"] for c in rest["FunctionUrlConfigs"]], [f"{self.fn.arn}:next"])
        self.assertNotIn("NextMarker", rest)
        pages = self.lam.get_paginator("list_function_url_configs").paginate(
            FunctionName="hello", PaginationConfig={"PageSize": 1})
        self.assertEqual(len([c for page in pages for c in page["FunctionUrlConfigs"]]), 3)
        for listed in rest["FunctionUrlConfigs"]:
            self.assertEqual(listed, {k: v for k, v in self.lam.get_function_url_config(
                FunctionName="hello:next").items() if k != "ResponseMetadata"})

        client = self.unvalidated()
        self.assertInvalid(lambda: client.list_function_url_configs(FunctionName="hello:live"),
                           "without a version or alias")
        self.assertInvalid(lambda: client.list_function_url_configs(FunctionName="hello", MaxItems=0), "MaxItems")
        self.assertInvalid(lambda: client.list_function_url_configs(FunctionName="hello", Marker="%%%"), "Marker")

    def test_bob_cannot_touch_alices(self):
        self.lam.create_function_url_config(FunctionName="hello", AuthType="NONE",
                                            Cors={"AllowOrigins": ["https://a.example"]})
        before = Trigger.objects.get().config
        for name in ("hello", self.fn.arn):
            with self.subTest(name):
                self.assertNotFound(lambda: self.bob_lam.update_function_url_config(FunctionName=name, Cors={}))
                self.assertNotFound(lambda: self.bob_lam.delete_function_url_config(FunctionName=name))
                self.assertNotFound(lambda: self.bob_lam.list_function_url_configs(FunctionName=name))
        self.assertEqual(Trigger.objects.get().config, before)
