"""Access keys in the console (issue 8, item 1): create (the secret shown once), list, deactivate, activate,
delete, the limit of two, and the keys signing real boto3 calls to the live server."""

import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import TransactionTestCase, override_settings
from django.urls import reverse

from console.models import MAX_KEYS_PER_USER, AccessKey
from tests.base import BaseTestCase, World
from tests.lambda_api import lambda_client

LIST = reverse("access_keys")
CREATE = reverse("create_access_key")


def _action(name, key):
    return reverse(f"{name}_access_key", args=[key.access_key_id])


class KeyPagesMixin:
    def create_key(self):
        """Create a key through the page; return (the AccessKey, the secret the page showed)."""
        response = self.client.post(CREATE)
        self.assertEqual(response.status_code, 200)
        key, secret = response.context["key"], response.context["secret"]
        self.assertContains(response, f'<td class="mono" id="secret-access-key">{secret}</td>', html=True)
        return AccessKey.objects.get(pk=key.pk), secret


# These tests sign in with force_login: a fast hasher saves PBKDF2's 0.3 s per user created in setUp.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class AccessKeyPageTests(KeyPagesMixin, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_the_list_says_never_for_a_key_never_used(self):
        key, _ = AccessKey.issue(self.alice)
        response = self.client.get(LIST)
        self.assertContains(response, key.access_key_id)
        self.assertContains(response, '<td class="last-used">never</td>', html=True)
        self.assertContains(response, '<td class="key-status">Active</td>', html=True)

    @override_settings(ALLOWED_HOSTS=["testserver", "console.example.org"])
    def test_create_shows_the_secret_and_the_lines_to_paste_once(self):
        response = self.client.post(CREATE, HTTP_HOST="console.example.org:8443", secure=True)
        secret = response.context["secret"]
        key = AccessKey.objects.get(user=self.alice)
        self.assertEqual(len(secret), 40)
        self.assertEqual(key.secret, secret)
        self.assertIn("no-store", response["Cache-Control"])
        self.assertContains(response, "only time the secret access key is shown")
        for line in (f"export AWS_ACCESS_KEY_ID={key.access_key_id}", f"export AWS_SECRET_ACCESS_KEY={secret}",
                     f"export AWS_DEFAULT_REGION={settings.LAMBDA_REGION}",
                     "export AWS_ENDPOINT_URL_LAMBDA=https://console.example.org:8443\n"):
            self.assertContains(response, line)
        self.assertContains(response, "aws lambda list-functions")
        # Nothing the browser keeps or sends back holds the secret: neither a cookie (messages) nor the session.
        for cookie in self.client.cookies.values():
            self.assertNotIn(secret, cookie.value)
        self.assertNotIn(secret, str(dict(self.client.session)))
        # The list, loaded again and again, shows the key but never its secret.
        for _ in range(2):
            listed = self.client.get(LIST)
            self.assertContains(listed, key.access_key_id)
            self.assertNotContains(listed, secret)

    def test_the_secret_is_stored_encrypted(self):
        key, secret = self.create_key()
        stored = AccessKey.objects.filter(pk=key.pk).values_list("secret_token", flat=True).get()
        self.assertNotIn(secret, stored)
        self.assertTrue(stored.startswith("gAAAAA"), stored)  # a Fernet token
        self.assertEqual(key.secret, secret)

    def test_a_third_key_is_refused_naming_the_limit(self):
        self.create_key()
        self.create_key()
        listed = self.client.get(LIST)
        self.assertContains(listed, 'id="create-key" disabled')
        response = self.client.post(CREATE, follow=True)
        self.assertRedirects(response, LIST)
        self.assertContains(response, f"You already have {MAX_KEYS_PER_USER} access keys, the limit per user")
        self.assertNotIn("secret", response.context)
        self.assertEqual(AccessKey.objects.filter(user=self.alice).count(), MAX_KEYS_PER_USER)

    def test_the_limit_is_per_user(self):
        AccessKey.issue(self.bob)
        AccessKey.issue(self.bob)
        self.create_key()
        self.create_key()
        self.assertEqual(AccessKey.objects.filter(user=self.alice).count(), 2)

    def test_deactivate_and_activate(self):
        key, _ = self.create_key()
        response = self.client.post(_action("deactivate", key), follow=True)
        self.assertRedirects(response, LIST)
        self.assertContains(response, '<td class="key-status">Inactive</td>', html=True)
        key.refresh_from_db()
        self.assertFalse(key.is_active)
        self.client.post(_action("activate", key))
        key.refresh_from_db()
        self.assertTrue(key.is_active)

    def test_deactivate_refuses_a_get(self):
        key, _ = self.create_key()
        self.assertEqual(self.client.get(_action("deactivate", key)).status_code, 405)
        key.refresh_from_db()
        self.assertTrue(key.is_active)

    def test_delete_asks_for_confirmation_then_deletes(self):
        key, secret = self.create_key()
        confirm = self.client.get(_action("delete", key))
        self.assertContains(confirm, f"Delete <span class=\"mono\">{key.access_key_id}</span>?")
        self.assertContains(confirm, 'id="delete-key"')
        self.assertNotContains(confirm, secret)
        self.assertTrue(AccessKey.objects.filter(pk=key.pk).exists())
        response = self.client.post(_action("delete", key), follow=True)
        self.assertRedirects(response, LIST)
        self.assertContains(response, f"Deleted {key.access_key_id}.")
        self.assertFalse(AccessKey.objects.filter(pk=key.pk).exists())

    def test_the_nav_links_to_the_keys(self):
        self.assertContains(self.client.get(LIST), f'<a href="{LIST}">Access keys</a>', html=True)


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class OtherUserTests(BaseTestCase):
    """bob, signed in, aims at alice's key: 404 everywhere, nothing changes."""

    def setUp(self):
        super().setUp()
        self.key, _ = AccessKey.issue(self.alice)
        self.client.force_login(self.bob)

    def assertUnchanged(self):
        self.assertEqual(list(AccessKey.objects.values("pk", "is_active")), [{"pk": self.key.pk, "is_active": True}])

    def test_bob_does_not_see_alices_key(self):
        response = self.client.get(LIST)
        self.assertNotContains(response, self.key.access_key_id)
        self.assertContains(response, "No access keys yet.")

    def test_bob_cannot_deactivate_activate_or_delete_it(self):
        for name in ("deactivate", "activate", "delete"):
            self.assertEqual(self.client.post(_action(name, self.key)).status_code, 404, name)
        self.assertEqual(self.client.get(_action("delete", self.key)).status_code, 404)
        self.assertUnchanged()

    def test_alices_keys_do_not_count_towards_bobs_limit(self):
        AccessKey.issue(self.alice)
        self.assertEqual(self.client.post(CREATE).status_code, 200)
        self.assertEqual(AccessKey.objects.filter(user=self.bob).count(), 1)


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class AnonymousTests(BaseTestCase):
    def test_anonymous_visitors_are_sent_to_sign_in(self):
        key, _ = AccessKey.issue(self.alice)
        for method, url in (("get", LIST), ("post", CREATE), ("post", _action("deactivate", key)),
                            ("post", _action("activate", key)), ("get", _action("delete", key)),
                            ("post", _action("delete", key))):
            response = getattr(self.client, method)(url)
            self.assertRedirects(response, f"{reverse('login')}?next={url}", fetch_redirect_response=False)
        self.assertEqual(list(AccessKey.objects.values("pk", "is_active")), [{"pk": key.pk, "is_active": True}])


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class LiveKeyTests(KeyPagesMixin, World, TransactionTestCase):
    """A key made on the page signs real boto3 calls to the real gunicorn (rows committed for it to see)."""

    @pytest.fixture(autouse=True)
    def _server(self, gunicorn):
        self.base_url = gunicorn

    def setUp(self):
        self.make_world()
        self.client.force_login(self.alice)

    def assertUnrecognized(self, lam):
        with self.assertRaises(ClientError) as caught:
            lam.get_account_settings()
        error = caught.exception.response
        self.assertEqual(error["Error"]["Code"], "UnrecognizedClientException", error)
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], 403, error)

    def test_a_key_created_on_the_page_signs_api_calls_until_deactivated_or_deleted(self):
        key, secret = self.create_key()
        lam = lambda_client(self.base_url, key.access_key_id, secret)
        self.assertEqual(lam.get_account_settings()["AccountUsage"]["FunctionCount"], 0)

        self.client.post(_action("deactivate", key))
        self.assertUnrecognized(lam)
        self.client.post(_action("activate", key))
        self.assertEqual(lam.get_account_settings()["AccountUsage"]["FunctionCount"], 0)

        self.client.post(_action("delete", key))
        self.assertUnrecognized(lam)

    def test_the_list_shows_when_a_key_was_last_used(self):
        key, secret = self.create_key()
        self.assertContains(self.client.get(LIST), '<td class="last-used">never</td>', html=True)
        lambda_client(self.base_url, key.access_key_id, secret).get_account_settings()
        key.refresh_from_db()
        self.assertIsNotNone(key.last_used_at)
        listed = self.client.get(LIST)
        self.assertNotContains(listed, '<td class="last-used">never</td>', html=True)
        self.assertContains(listed, f'<td class="last-used">{key.last_used_at:%Y-%m-%d %H:%M} UTC</td>', html=True)
