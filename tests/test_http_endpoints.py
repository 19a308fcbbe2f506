"""HTTP endpoints (function URLs) end to end: real requests to the real gunicorn, invoking through the real
RQ workers and sandboxes.

Requests are sent with http.client, header by header, so repeated headers and exact bodies reach the
server as written. Endpoints are made with the console's own form (HttpEndpointForm).
"""

import base64
import json
import http.client
import threading
import urllib.parse
import uuid

import pytest
from django.test import TransactionTestCase

from functions.models import Alias, Trigger
from invocations.forms import HttpEndpointForm
from invocations.models import Invocation
from tests.base import World, handler_zip
from tests.processes import wait_for

ECHO = """
def handler(event, context):
    return event
"""

# What a function may answer, chosen by the request's path.
RESPONDER = """
import base64

def handler(event, context):
    path = event["rawPath"]
    if path == "/created":
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Custom": "yes"},
            "cookies": ["first=1; Path=/; HttpOnly", "second=2; Max-Age=60"],
            "body": "made it",
        }
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "isBase64Encoded": True,
            "body": base64.b64encode(bytes(range(256))).decode(),
        }
    if path == "/dict":
        return {"hello": "world", "n": 1}
    if path == "/string":
        return "Hello, world!"
    if path == "/console-cookies":
        return {"statusCode": 200, "cookies": ["sessionid=stolen; Path=/", "csrftoken=fixed", "mine=1"],
                "headers": {"content-type": "text/html"}, "body": "<script>fetch('/admin/')</script>"}
    if path == "/bad-cookie":
        return {"statusCode": 200, "cookies": ["a=1\\r\\nX-Injected: yes"], "body": "x"}
    if path == "/bad-header-name":
        return {"statusCode": 200, "headers": {"Bad Name": "1"}, "body": "x"}
    if path == "/bad-header-value":
        return {"statusCode": 200, "headers": {"X-Nul": "a\\x00b"}, "body": "x"}
    return {"statusCode": 404, "body": "no such path"}
"""


class Reply:
    def __init__(self, response, body):
        self.status = response.status
        self.headers = response.msg  # email.message.Message: case-insensitive, get_all() for repeats
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def request_id(self):
        return self.headers["X-Amzn-RequestId"]


@pytest.mark.usefixtures("workers", "gunicorn")
class EndpointTestCase(World, TransactionTestCase):
    @pytest.fixture(autouse=True)
    def _server(self, gunicorn):
        self.base_url = gunicorn
        parts = urllib.parse.urlsplit(gunicorn)
        self.host, self.port = parts.hostname, parts.port

    def setUp(self):
        self.make_world()

    def endpoint(self, function, **fields):
        """Make an HTTP endpoint through the console's form; return (trigger, secret key or None)."""
        data = {"qualifier": "", "auth_type": "NONE", "allow_origins": "", "allow_methods": "",
                "allow_headers": "", "expose_headers": "", "max_age": "", **fields}
        form = HttpEndpointForm(data, function=function)
        assert form.is_valid(), form.errors.as_text()
        return form.save()

    def request(self, method, path, body=None, headers=(), timeout=60):
        """Send one request with `headers` as a list of (name, value), repeats allowed; return a Reply."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return Reply(response, response.read())
        finally:
            conn.close()

    def assertMessage(self, reply, status, message):
        self.assertEqual(reply.status, status, reply.body)
        self.assertEqual(reply.headers["Content-Type"], "application/json")
        self.assertEqual(reply.json(), {"message": message})

    def row(self, reply):
        """The invocation behind an invoked answer (its X-Amzn-RequestId)."""
        return Invocation.objects.get(pk=reply.request_id)


class EventTests(EndpointTestCase):
    def test_the_function_gets_a_payload_2_0_event(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, key = self.endpoint(fn)
        self.assertIsNone(key)
        body = b'{"greeting": "hello"}'
        reply = self.request(
            "POST", f"/url/{trigger.url_id}/my/path?parameter1=value1&parameter1=value2&parameter2=value",
            body=body,
            headers=[("Content-Type", "application/json"), ("Header1", "value1"), ("Header2", "value1"),
                     ("Header2", "value2"), ("Cookie", "cookie1=one; cookie2=two"), ("User-Agent", "test-agent/1.0")],
        )
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Content-Type"], "application/json")
        event = reply.json()
        row = self.row(reply)
        self.assertEqual(row.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(row.source, "http")
        self.assertEqual(row.trigger_id, trigger.pk)
        self.assertEqual(json.loads(row.event), event, "the answer is not the event the function received")

        self.assertEqual(event["version"], "2.0")
        self.assertEqual(event["routeKey"], "$default")
        self.assertEqual(event["rawPath"], "/my/path")
        self.assertEqual(event["rawQueryString"], "parameter1=value1&parameter1=value2&parameter2=value")
        self.assertEqual(event["cookies"], ["cookie1=one", "cookie2=two"])
        self.assertEqual(event["headers"], {
            "host": f"{self.host}:{self.port}",
            "content-type": "application/json",
            "content-length": str(len(body)),
            "header1": "value1",
            "header2": "value1,value2",
            "user-agent": "test-agent/1.0",
            "accept-encoding": "identity",  # http.client's own
        })
        self.assertEqual(event["queryStringParameters"], {"parameter1": "value1,value2", "parameter2": "value"})
        self.assertEqual(event["body"], body.decode())
        self.assertIs(event["isBase64Encoded"], False)

        context = event["requestContext"]
        self.assertEqual(context["http"], {
            "method": "POST", "path": "/my/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
            "userAgent": "test-agent/1.0",
        })
        self.assertEqual(context["routeKey"], "$default")
        self.assertEqual(context["stage"], "$default")
        self.assertEqual(context["apiId"], trigger.url_id)
        self.assertEqual(len(trigger.url_id), 32)
        self.assertEqual(context["domainName"], f"{self.host}:{self.port}")
        self.assertEqual(context["domainPrefix"], "127")
        uuid.UUID(context["requestId"])
        self.assertRegex(context["time"], r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")
        self.assertIsInstance(context["timeEpoch"], int)
        self.assertAlmostEqual(context["timeEpoch"] / 1000, row.created_at.timestamp(), delta=5)

    def test_a_binary_body_arrives_base64_encoded(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn)
        body = bytes(range(256)) + b"\xff\xfe\x00"
        reply = self.request("POST", f"/url/{trigger.url_id}/upload", body=body,
                             headers=[("Content-Type", "application/octet-stream")])
        self.assertEqual(reply.status, 200, reply.body)
        event = reply.json()
        self.assertIs(event["isBase64Encoded"], True)
        self.assertEqual(base64.b64decode(event["body"]), body)
        self.assertEqual(event["headers"]["content-type"], "application/octet-stream")
        self.assertEqual(event["rawPath"], "/upload")
        self.assertEqual(event["rawQueryString"], "")
        self.assertNotIn("queryStringParameters", event)
        self.assertNotIn("cookies", event)

    def test_the_root_path_and_a_get_without_body(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertEqual(reply.status, 200, reply.body)
        event = reply.json()
        self.assertEqual(event["rawPath"], "/")
        self.assertEqual(event["requestContext"]["http"]["method"], "GET")
        self.assertNotIn("body", event)
        self.assertIs(event["isBase64Encoded"], False)


class ResponseTests(EndpointTestCase):
    def setUp(self):
        super().setUp()
        self.trigger, _ = self.endpoint(self.create_function(handler_zip(RESPONDER), name="responder"))

    def get(self, path):
        return self.request("GET", f"/url/{self.trigger.url_id}{path}")

    def test_status_headers_and_cookies(self):
        reply = self.get("/created")
        self.assertEqual(reply.status, 201, reply.body)
        self.assertEqual(reply.body, b"made it")
        self.assertEqual(reply.headers["Content-Type"], "text/plain")
        self.assertEqual(reply.headers["X-Custom"], "yes")
        self.assertEqual(sorted(reply.headers.get_all("Set-Cookie")),
                         ["first=1; Path=/; HttpOnly", "second=2; Max-Age=60"])
        self.assertEqual(self.row(reply).status, Invocation.Status.SUCCEEDED)

    def test_a_base64_body_is_sent_as_raw_bytes(self):
        reply = self.get("/binary")
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Content-Type"], "image/png")
        self.assertEqual(reply.body, bytes(range(256)))
        self.assertEqual(reply.headers["Content-Length"], "256")

    def test_a_plain_object_is_200_json(self):
        reply = self.get("/dict")
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Content-Type"], "application/json")
        self.assertEqual(reply.json(), {"hello": "world", "n": 1})
        self.assertIsNone(reply.headers.get("Set-Cookie"))

    def test_a_string_is_200_with_its_json_text(self):
        reply = self.get("/string")
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Content-Type"], "application/json")
        self.assertEqual(reply.body, b'"Hello, world!"')  # with its quotes, as Lambda sends it

    def test_a_response_no_server_may_send_is_502(self):
        # Not a bare 500 from gunicorn (which refuses such headers after the view has answered), and
        # never a header injected into the answer.
        for path in ("/bad-cookie", "/bad-header-name", "/bad-header-value"):
            with self.subTest(path):
                reply = self.get(path)
                self.assertMessage(reply, 502, "Internal Server Error")
                self.assertIsNone(reply.headers["X-Injected"])
                self.assertEqual(self.row(reply).status, Invocation.Status.SUCCEEDED)


class ConsoleOriginTests(EndpointTestCase):
    """Endpoints share the console's host: they must not see, set or act with the console's cookies."""

    def test_the_function_never_sees_the_consoles_cookies(self):
        fn = self.create_function(handler_zip(ECHO), name="cookie-echo")
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/", headers=[
            ("Cookie", "sessionid=secret-session; csrftoken=secret-token; messages=m; theme=dark")])
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.json()["cookies"], ["theme=dark"])
        self.assertNotIn(b"secret", reply.body)

    def test_the_function_cannot_set_the_consoles_cookies_or_act_as_a_console_page(self):
        fn = self.create_function(handler_zip(RESPONDER), name="cookie-setter")
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/console-cookies")
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers.get_all("Set-Cookie"), ["mine=1"])
        self.assertTrue(reply.headers["Content-Security-Policy"].startswith("sandbox "))
        self.assertNotIn("allow-same-origin", reply.headers["Content-Security-Policy"])
        # Every answer of an endpoint URL, also the ones no function made.
        missing = self.request("GET", "/url/nosuchendpoint/")
        self.assertEqual(missing.status, 404)
        self.assertTrue(missing.headers["Content-Security-Policy"].startswith("sandbox "))

    def test_a_multipart_form_reaches_the_function_as_its_raw_body(self):
        fn = self.create_function(handler_zip(ECHO), name="form-echo")
        trigger, _ = self.endpoint(fn)
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n")
        reply = self.request("POST", f"/url/{trigger.url_id}/form", body=body,
                             headers=[("Content-Type", "multipart/form-data; boundary=XyZ")])
        self.assertEqual(reply.status, 200, reply.body)
        event = reply.json()
        self.assertTrue(event["isBase64Encoded"])
        self.assertEqual(base64.b64decode(event["body"]), body)


class KeyAuthTests(EndpointTestCase):
    def test_only_the_right_key_invokes(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, key = self.endpoint(fn, auth_type="KEY")
        self.assertTrue(key)
        path = f"/url/{trigger.url_id}/"

        self.assertMessage(self.request("GET", path), 403, "Forbidden")
        self.assertMessage(self.request("GET", path, headers=[("x-api-key", key + "x")]), 403, "Forbidden")
        self.assertMessage(self.request("GET", path, headers=[("x-api-key", "")]), 403, "Forbidden")
        self.assertEqual(Invocation.objects.count(), 0, "a refused request invoked the function")

        reply = self.request("GET", path, headers=[("X-Api-Key", key)])
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.json()["headers"]["x-api-key"], key)  # Lambda passes the header on too
        self.assertEqual(Invocation.objects.count(), 1)
        self.assertEqual(self.row(reply).status, Invocation.Status.SUCCEEDED)


class CorsTests(EndpointTestCase):
    GOOD = "https://good.example"
    EVIL = "https://evil.example"

    def setUp(self):
        super().setUp()
        fn = self.create_function(handler_zip(ECHO), name="echo")
        self.trigger, _ = self.endpoint(
            fn, allow_origins=self.GOOD, allow_methods="GET, POST", allow_headers="Content-Type, X-Custom",
            expose_headers="X-Exposed", max_age="600")
        self.path = f"/url/{self.trigger.url_id}/things"

    def preflight(self, origin):
        return self.request("OPTIONS", self.path, headers=[
            ("Origin", origin), ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type")])

    def test_a_preflight_from_an_allowed_origin(self):
        reply = self.preflight(self.GOOD)
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Access-Control-Allow-Origin"], self.GOOD)
        self.assertEqual(reply.headers["Access-Control-Allow-Methods"], "GET,POST")
        self.assertEqual(reply.headers["Access-Control-Allow-Headers"], "content-type,x-custom")
        self.assertEqual(reply.headers["Access-Control-Max-Age"], "600")
        self.assertIn("Origin", reply.headers["Vary"])
        self.assertEqual(Invocation.objects.count(), 0, "a preflight invoked the function")

    def test_a_preflight_from_another_origin_gets_no_allow_origin(self):
        reply = self.preflight(self.EVIL)
        self.assertNotEqual(reply.status, 200)
        self.assertIsNone(reply.headers["Access-Control-Allow-Origin"])
        self.assertIsNone(reply.headers["Access-Control-Allow-Methods"])
        self.assertEqual(Invocation.objects.count(), 0)

    def test_a_request_from_an_allowed_origin_may_be_read(self):
        reply = self.request("GET", self.path, headers=[("Origin", self.GOOD)])
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.headers["Access-Control-Allow-Origin"], self.GOOD)
        self.assertEqual(reply.headers["Access-Control-Expose-Headers"], "x-exposed")
        self.assertIsNone(reply.headers["Access-Control-Max-Age"])
        self.assertEqual(reply.json()["headers"]["origin"], self.GOOD)

    def test_a_request_from_another_origin_runs_but_may_not_be_read(self):
        reply = self.request("GET", self.path, headers=[("Origin", self.EVIL)])
        self.assertEqual(reply.status, 200, reply.body)
        self.assertIsNone(reply.headers["Access-Control-Allow-Origin"])
        self.assertIsNone(reply.headers["Access-Control-Expose-Headers"])
        self.assertIn("Origin", reply.headers["Vary"])


class ErrorTests(EndpointTestCase):
    def test_a_function_error_is_502(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                print("about to fail")
                raise ValueError("boom")
        """), name="raiser")
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertMessage(reply, 502, "Internal Server Error")
        row = self.row(reply)
        self.assertEqual(row.status, Invocation.Status.FAILED)
        self.assertEqual(row.error_type, "ValueError")
        self.assertEqual(json.loads(row.result)["errorMessage"], "boom")
        self.assertIn("about to fail\n", row.log)
        self.assertIn("[ERROR] ValueError: boom\n", row.log)
        self.assertIn(f"END RequestId: {row.id}", row.log)
        self.assertNotIn(b"boom", reply.body, "the function's error leaked to the caller")

    def test_a_function_that_times_out_is_504(self):
        fn = self.create_function(handler_zip("""
            import time
            def handler(event, context):
                time.sleep(30)
        """), name="sleeper", timeout=1)
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertMessage(reply, 504, "Endpoint request timed out")
        row = self.row(reply)
        self.assertEqual(row.status, Invocation.Status.TIMED_OUT)
        self.assertIn(f"{row.id} Task timed out after 1.00 seconds", row.log)

    def test_a_throttled_invocation_is_429(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        fn.reserved_concurrency = 0
        fn.save()
        trigger, _ = self.endpoint(fn)
        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertMessage(reply, 429, "Too Many Requests")
        row = self.row(reply)
        self.assertEqual(row.status, Invocation.Status.THROTTLED)
        self.assertEqual(row.error_type, "TooManyRequestsException")
        self.assertEqual(row.trigger_id, trigger.pk)

    def test_a_disabled_endpoint_is_403(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn)
        trigger.enabled = False
        trigger.save()
        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertMessage(reply, 403, "Forbidden")
        self.assertIsNone(reply.headers["X-Amzn-RequestId"])
        self.assertEqual(Invocation.objects.count(), 0)

    def test_a_disabled_endpoint_refuses_cors_preflights_too(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn, allow_origins="https://good.example", allow_methods="*")
        trigger.enabled = False
        trigger.save()
        reply = self.request("OPTIONS", f"/url/{trigger.url_id}/", headers=[
            ("Origin", "https://good.example"), ("Access-Control-Request-Method", "POST")])
        self.assertMessage(reply, 403, "Forbidden")
        self.assertIsNone(reply.headers["Access-Control-Allow-Methods"])

    def test_an_unknown_endpoint_is_404(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn)
        unknown = "z" * 32
        self.assertNotEqual(unknown, trigger.url_id)
        self.assertMessage(self.request("GET", f"/url/{unknown}/"), 404, "Not Found")
        self.assertMessage(self.request("POST", f"/url/{unknown}/a/b", body=b"{}"), 404, "Not Found")
        self.assertEqual(Invocation.objects.count(), 0)

    def test_a_body_over_the_sync_payload_limit_is_413(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        trigger, _ = self.endpoint(fn)
        reply = self.request("POST", f"/url/{trigger.url_id}/", body=b"x" * (6 * 1024 * 1024 + 1),
                             headers=[("Content-Type", "text/plain")])
        self.assertMessage(reply, 413, "Request Entity Too Large")
        self.assertEqual(Invocation.objects.count(), 0, "an event over the limit was recorded")


class ConcurrencyTests(EndpointTestCase):
    def test_a_waiting_request_does_not_block_the_site(self):
        fn = self.create_function(handler_zip("""
            import time
            def handler(event, context):
                time.sleep(4)
                return {"slept": 4}
        """), name="slow", timeout=10)
        trigger, _ = self.endpoint(fn)
        slow_done = threading.Event()
        slow = {}

        def call_slow():
            try:
                slow["reply"] = self.request("GET", f"/url/{trigger.url_id}/")
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                slow["error"] = e
            finally:
                slow_done.set()

        thread = threading.Thread(target=call_slow, daemon=True)
        thread.start()
        try:
            # In flight: a worker has claimed the invocation, so the web thread is waiting for it.
            running = wait_for(lambda: Invocation.objects.filter(
                trigger=trigger, status=Invocation.Status.RUNNING).exists(), timeout=30)
            self.assertTrue(running, f"the slow invocation never started: {slow}")
            self.assertFalse(slow_done.is_set(), slow)

            login = self.request("GET", "/login/", timeout=30)
            login_done_first = not slow_done.is_set()
            self.assertEqual(login.status, 200)
            self.assertTrue(login_done_first, "/login/ answered only after the slow endpoint request completed")
        finally:
            thread.join(timeout=60)
        self.assertTrue(slow_done.is_set(), "the slow request never completed")
        self.assertNotIn("error", slow)
        self.assertEqual(slow["reply"].status, 200, slow["reply"].body)
        self.assertEqual(slow["reply"].json(), {"slept": 4})


class AliasTests(EndpointTestCase):
    def test_an_alias_endpoint_runs_the_aliased_version(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                return {"version": context.function_version, "arn": context.invoked_function_arn}
        """), name="versioned")
        v1, _ = fn.publish()
        self.assertEqual(v1.number, 1)
        Alias.objects.create(function=fn, name="live", version=v1)
        trigger, _ = self.endpoint(fn, qualifier="live")
        self.assertEqual(trigger.qualifier, "live")
        self.assertEqual(Trigger.objects.get(pk=trigger.pk).qualifier, "live")

        reply = self.request("GET", f"/url/{trigger.url_id}/")
        self.assertEqual(reply.status, 200, reply.body)
        answer = reply.json()
        self.assertEqual(answer["version"], "1")
        self.assertTrue(answer["arn"].endswith(":function:versioned:live"), answer["arn"])
        row = self.row(reply)
        self.assertEqual(row.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(row.version, "1")
        self.assertEqual(row.qualifier, "live")
        self.assertEqual(row.trigger_id, trigger.pk)


class WaitingLimitTests(World, TransactionTestCase):
    """Endpoint requests waiting for an invocation are bounded per web process (ENDPOINT_MAX_WAITING)."""

    def setUp(self):
        self.make_world()

    def test_a_request_over_the_waiting_limit_is_429_and_invokes_nothing(self):
        from django.test import override_settings

        fn = self.create_function(handler_zip(ECHO), name="busy")
        form = HttpEndpointForm({"qualifier": "", "auth_type": "NONE"}, function=fn)
        self.assertTrue(form.is_valid(), form.errors)
        trigger, _ = form.save()
        with override_settings(ENDPOINT_MAX_WAITING=0):  # every slot taken
            response = self.client.get(f"/url/{trigger.url_id}/")
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.json(), {"message": "Too Many Requests"})
        self.assertFalse(Invocation.objects.exists())
