"""SigV4 on the Lambda API, against the real server with the real boto3 (issue 8, item 2)."""

import datetime
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from django.conf import settings

from console.models import AccessKey
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase, lambda_client
from tests.test_upload_limits import RawSession


class SignatureTests(ApiTestCase):
    def test_a_signed_request_is_answered_as_its_keys_user(self):
        self.create_function(handler_zip("def handler(e, c):\n    return 1\n"), name="mine")
        self.create_function(handler_zip("def handler(e, c):\n    return 1\n"), name="theirs", owner=self.bob)
        settings_ = self.lam.get_account_settings()
        self.assertEqual(settings_["AccountUsage"]["FunctionCount"], 1)
        self.assertEqual(settings_["AccountLimit"]["CodeSizeZipped"], settings.MAX_UPLOAD_BYTES)
        self.assertTrue(settings_["ResponseMetadata"]["RequestId"])
        self.key.refresh_from_db()
        self.assertIsNotNone(self.key.last_used_at)

    def test_a_wrong_secret_is_an_invalid_signature(self):
        client = lambda_client(self.base_url, self.key.access_key_id, self.secret[:-1] + "x")
        with self.assertRaises(ClientError) as caught:
            client.get_account_settings()
        self.assertIn("signature we calculated does not match", self.assertApiError(caught, "InvalidSignatureException", 403))

    def test_an_unknown_key_is_unrecognized(self):
        client = lambda_client(self.base_url, "AKIAUNKNOWNUNKNOWN00", self.secret)
        with self.assertRaises(ClientError) as caught:
            client.get_account_settings()
        self.assertApiError(caught, "UnrecognizedClientException", 403)

    def test_a_deactivated_key_is_unrecognized_until_activated_again(self):
        self.key.deactivate()
        with self.assertRaises(ClientError) as caught:
            self.lam.get_account_settings()
        self.assertApiError(caught, "UnrecognizedClientException", 403)
        self.key.activate()
        self.assertEqual(self.lam.get_account_settings()["AccountUsage"]["FunctionCount"], 0)

    def test_a_deleted_key_is_unrecognized(self):
        AccessKey.objects.filter(pk=self.key.pk).delete()
        with self.assertRaises(ClientError) as caught:
            self.lam.get_account_settings()
        self.assertApiError(caught, "UnrecognizedClientException", 403)

    def test_a_request_signed_more_than_5_minutes_away_has_expired(self):
        for minutes, words in ((-6, "Signature expired"), (6, "Signature not yet current")):
            skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
            with mock.patch("botocore.auth.get_current_datetime", return_value=skewed):
                with self.assertRaises(ClientError) as caught:
                    self.lam.get_account_settings()
            self.assertIn(words, self.assertApiError(caught, "InvalidSignatureException", 403))
        # 4 minutes is within AWS's allowance.
        within = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=4)
        with mock.patch("botocore.auth.get_current_datetime", return_value=within):
            self.lam.get_account_settings()

    def test_a_body_changed_after_signing_is_refused(self):
        def tamper(request, **kwargs):
            request.body = request.body.replace(b"tampered", b"tampereD")

        self.lam.meta.events.register("before-send.lambda.Invoke", tamper)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName="anything", Payload=json.dumps({"x": "tampered"}))
        self.assertApiError(caught, "InvalidSignatureException", 403)

    def test_a_content_hash_header_must_match_the_body(self):
        def wrong_hash(request, **kwargs):
            request.headers["X-Amz-Content-SHA256"] = "0" * 64

        self.lam.meta.events.register("before-sign.lambda.GetAccountSettings", wrong_hash)
        with self.assertRaises(ClientError) as caught:
            self.lam.get_account_settings()
        self.assertApiError(caught, "InvalidSignatureException", 400)

    def test_the_credential_scope_must_name_lambda_and_this_region(self):
        other_region = "eu-west-3" if settings.LAMBDA_REGION != "eu-west-3" else "us-west-2"
        client = boto3.client("lambda", endpoint_url=self.base_url, region_name=other_region,
                              aws_access_key_id=self.key.access_key_id, aws_secret_access_key=self.secret)
        with self.assertRaises(ClientError) as caught:
            client.get_account_settings()
        self.assertIn("region", self.assertApiError(caught, "InvalidSignatureException", 403))

    def test_the_session_cookie_never_authenticates_an_api_call(self):
        session = RawSession(self.base_url)
        session.login("alice", "alice-password-1")
        request = urllib.request.Request(f"{self.base_url}/2016-08-19/account-settings",
                                         headers={"Cookie": session._cookie_header()})
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 403)
        self.assertEqual(caught.exception.headers["x-amzn-ErrorType"], "MissingAuthenticationTokenException")
        # A POST without a CSRF token is refused by the signature check, not by CSRF (an HTML 403).
        post = urllib.request.Request(f"{self.base_url}/2015-03-31/functions", data=b"{}", method="POST",
                                      headers={"Cookie": session._cookie_header()})
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(post, timeout=10)
        self.assertEqual(caught.exception.headers["x-amzn-ErrorType"], "MissingAuthenticationTokenException")
        self.assertEqual(caught.exception.headers["Content-Type"], "application/json")

    def test_an_x_amz_header_added_after_signing_is_refused(self):
        # Invoke obeys X-Amz-Log-Type: an eavesdropper adding Tail to a captured request must not read the log.
        def add_header(request, **kwargs):
            request.headers["X-Amz-Log-Type"] = "Tail"

        self.lam.meta.events.register("before-send.lambda.GetAccountSettings", add_header)
        with self.assertRaises(ClientError) as caught:
            self.lam.get_account_settings()
        self.assertIn("x-amz-log-type", self.assertApiError(caught, "InvalidSignatureException", 403))

    def test_an_unsigned_payload_is_refused(self):
        def unsigned_payload(request, **kwargs):
            request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"

        self.lam.meta.events.register("before-sign.lambda.GetAccountSettings", unsigned_payload)
        with self.assertRaises(ClientError) as caught:
            self.lam.get_account_settings()
        self.assertIn("UNSIGNED-PAYLOAD", self.assertApiError(caught, "InvalidSignatureException", 403))

    def test_an_unknown_key_is_answered_before_its_body_is_read(self):
        # 50 MB announced, none sent: a server that read the body first would wait for it until the timeout.
        parts = urllib.parse.urlsplit(self.base_url)
        now = datetime.datetime.now(datetime.timezone.utc)
        head = (f"POST /2015-03-31/functions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: AWS4-HMAC-SHA256 Credential=AKIAUNKNOWNUNKNOWN00/{now:%Y%m%d}/"
                f"{settings.LAMBDA_REGION}/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}\r\n"
                f"X-Amz-Date: {now:%Y%m%dT%H%M%SZ}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 50000000\r\n\r\n")
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head.encode())
            answer = sock.recv(65536).decode("latin-1")
        self.assertTrue(answer.startswith("HTTP/1.1 403"), answer[:200])
        self.assertIn("x-amzn-ErrorType: UnrecognizedClientException", answer)
