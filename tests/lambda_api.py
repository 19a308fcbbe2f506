"""What the Lambda API tests share: boto3 clients signed with keys issued to alice and bob, against the
real gunicorn server (which serves the test database, so rows must be committed: TransactionTestCase)."""

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import TransactionTestCase

from console.models import AccessKey
from tests.base import World


def lambda_client(base_url, key_id, secret, **config):
    """A boto3 Lambda client for `base_url`. No retries by default: a test must see the first answer (a 5xx
    that boto3 retried three times would hide that the server erred)."""
    config = {"retries": {"max_attempts": 0}, "read_timeout": 30, **config}
    return boto3.client(
        "lambda", endpoint_url=base_url, region_name=settings.LAMBDA_REGION, aws_access_key_id=key_id,
        aws_secret_access_key=secret, config=Config(**config),
    )


class ApiTestCase(World, TransactionTestCase):
    """self.lam signs as alice, self.bob_lam as bob."""

    @pytest.fixture(autouse=True)
    def _server(self, gunicorn):
        self.base_url = gunicorn

    def setUp(self):
        self.make_world()
        self.key, self.secret = AccessKey.issue(self.alice)
        self.bob_key, self.bob_secret = AccessKey.issue(self.bob)
        self.lam = lambda_client(self.base_url, self.key.access_key_id, self.secret)
        self.bob_lam = lambda_client(self.base_url, self.bob_key.access_key_id, self.bob_secret)

    def unvalidated(self):
        """Alice's client without botocore's own parameter checks: the server's must hold by themselves."""
        return lambda_client(self.base_url, self.key.access_key_id, self.secret, parameter_validation=False)

    def assertApiError(self, context, code, status):
        """`context` is assertRaises(ClientError)'s: the error botocore parsed."""
        error = context.exception.response
        self.assertEqual(error["Error"]["Code"], code, error)
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], status, error)
        self.assertTrue(error["Error"]["Message"], error)
        self.assertTrue(error["ResponseMetadata"]["RequestId"], error)
        return error["Error"]["Message"]

    def assertError(self, call, code, status, *words):
        """`call()` fails with the API error `code` and `status`, its message holding each of `words`; return
        the message."""
        with self.assertRaises(ClientError) as caught:
            call()
        message = self.assertApiError(caught, code, status)
        for word in words:
            self.assertIn(word, message)
        return message

    def assertInvalid(self, call, *words, code="InvalidParameterValueException", status=400):
        return self.assertError(call, code, status, *words)
