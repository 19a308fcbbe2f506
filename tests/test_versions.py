"""Versions and aliases: publishing freezes code and configuration, aliases route (with canaries) and roll
back, and an invocation runs the version its qualifier names."""

import json

from django.urls import reverse

from functions.models import Alias, Function
from invocations.models import Invocation
from tests.base import BaseTestCase, WorkerTestCase, handler_zip, make_zip

ONE = "def handler(event, context):\n    return {'code': 'one', 'arn': context.invoked_function_arn}\n"
TWO = "def handler(event, context):\n    return {'code': 'two', 'arn': context.invoked_function_arn}\n"


class PublishTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ONE))

    def publish(self, description=""):
        return self.fn.publish(description)

    def test_publishing_freezes_code_and_configuration(self):
        v1, created = self.publish("first")
        self.assertTrue(created)
        self.assertEqual((v1.number, v1.description, v1.code_id), (1, "first", self.fn.code_id))
        self.assertEqual(v1.config["version"], "1")
        self.assertEqual(v1.config["arn"], f"{self.fn.arn}:1")
        self.fn.memory_size = 512
        self.fn.save()
        v1.refresh_from_db()
        self.assertEqual(v1.config["memory_size"], 128)

    def test_publishing_nothing_new_returns_the_latest_version(self):
        v1, _ = self.publish()
        self.fn.set_environment({"KEY1": "x"})
        v2, created = self.publish()
        self.assertTrue(created)
        self.fn.set_environment({"KEY1": "x"})  # the same values: a new token, nothing new to publish
        again, created = self.publish()
        self.assertFalse(created)
        self.assertEqual(again.pk, v2.pk)
        self.assertEqual(self.fn.versions.count(), 2)

    def test_the_console_publishes_and_says_when_nothing_changed(self):
        self.client.force_login(self.alice)
        url = reverse("functions:publish", args=[self.fn.name])
        self.client.post(url, {"description": "first"})
        page = self.client.post(url, {"description": "again"}, follow=True)
        self.assertContains(page, "Nothing changed since version 1")
        self.assertEqual(self.fn.versions.count(), 1)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.post(url).status_code, 404)


class AliasTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ONE))
        self.v1, _ = self.fn.publish()
        self.fn.memory_size = 256
        self.fn.save()
        self.v2, _ = self.fn.publish()
        self.client.force_login(self.alice)
        self.url = reverse("functions:save_alias", args=[self.fn.name])

    def save(self, **fields):
        return self.client.post(self.url, {"name": "live", "version": "1", **fields})

    def test_a_canary_gets_its_share_of_invocations(self):
        self.assertEqual(self.save(additional_version="2", additional_weight="0.1").status_code, 302)
        picked = [self.fn.resolve("live")["version"] for _ in range(4000)]
        canary = picked.count("2")
        # Binomial(4000, 0.1): mean 400, sd 19; 5 sd either side.
        self.assertTrue(305 <= canary <= 495, canary)
        self.assertEqual(set(picked), {"1", "2"})
        self.assertEqual(self.fn.resolve("live")["arn"], f"{self.fn.arn}:live")

    def test_bad_aliases_are_refused_with_a_message_and_change_nothing(self):
        self.save()
        cases = [
            ({"name": "live"}, "already has an alias named"),
            ({"name": "12"}, "not only digits"),
            ({"name": "$LATEST"}, "Use 1 to 128 letters"),
            ({"name": "canary", "additional_version": "2", "additional_weight": "1.5"}, "less than or equal to 1"),
            ({"name": "canary", "additional_version": "2", "additional_weight": "-0.1"}, "greater than or equal to 0"),
            ({"name": "canary", "version": "", "additional_version": "2", "additional_weight": "0.5"},
             "An alias of $LATEST cannot send a share"),
            ({"name": "canary", "additional_version": "1", "additional_weight": "0.5"}, "must differ"),
            ({"name": "canary", "additional_weight": "0.5"}, "A weight needs a canary version."),
            ({"name": "canary", "version": "9"}, "Select a valid choice"),
        ]
        for fields, message in cases:
            with self.subTest(fields):
                self.assertContains(self.save(**fields), message, status_code=400)
                self.assertEqual(list(self.fn.aliases.values_list("name", flat=True)), ["live"])

    def test_an_alias_can_point_at_latest_and_roll_back_to_it(self):
        self.assertEqual(self.save(name="head", version="").status_code, 302)
        alias = Alias.objects.get(function=self.fn, name="head")
        self.assertIsNone(alias.version)
        self.assertEqual(self.fn.resolve("head")["version"], "$LATEST")
        self.client.post(self.url, {"existing": "head", "version": "2"})
        self.client.post(reverse("functions:roll_back_alias", args=[self.fn.name, "head"]))
        alias.refresh_from_db()
        self.assertIsNone(alias.version)

    def test_an_alias_moves_and_rolls_back_in_one_click(self):
        self.save()
        self.client.post(self.url, {"existing": "live", "version": "2"})
        alias = Alias.objects.get(function=self.fn, name="live")
        self.assertEqual(alias.version, self.v2)
        self.client.post(reverse("functions:roll_back_alias", args=[self.fn.name, "live"]))
        alias.refresh_from_db()
        self.assertEqual(alias.version, self.v1)

    def test_another_users_aliases_are_404(self):
        self.save()
        self.client.force_login(self.bob)
        self.assertEqual(self.save(name="mine").status_code, 404)
        self.assertEqual(self.client.post(reverse("functions:delete_alias", args=[self.fn.name, "live"])).status_code, 404)
        self.assertTrue(self.fn.aliases.filter(name="live").exists())


class QualifiedInvokeTests(WorkerTestCase):
    def test_each_qualifier_runs_its_own_code(self):
        fn = self.create_function(handler_zip(ONE))
        fn.publish()
        other = self.create_function(handler_zip(TWO), name="two")
        fn.replace_code(other.code)
        Alias.objects.create(function=fn, name="live", version=fn.versions.get(number=1))
        self.client.force_login(self.alice)
        results = {}
        for qualifier in ("", "1", "live"):
            self.client.post(reverse("functions:invoke", args=[fn.name]), {"qualifier": qualifier, "event": "{}"})
            invocation = Invocation.objects.filter(function=fn).order_by("-created_at").first()
            self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
            results[qualifier] = (invocation.version, json.loads(invocation.result))
        self.assertEqual(results[""][0], "$LATEST")
        self.assertEqual(results[""][1]["code"], "two")
        self.assertEqual(results["1"], ("1", {"code": "one", "arn": f"{fn.arn}:1"}))
        self.assertEqual(results["live"], ("1", {"code": "one", "arn": f"{fn.arn}:live"}))
        self.assertEqual(Function.objects.get(pk=fn.pk).versions.count(), 1)


class DiffTests(BaseTestCase):
    def test_it_shows_file_configuration_and_environment_changes_but_no_values(self):
        fn = self.create_function(make_zip({"lambda_function.py": ONE, "old.txt": "bye\n", "same.txt": "same\n"}))
        fn.set_environment({"KEPT": "a", "GONE": "b"})
        fn.publish()
        new_code = self.create_function(make_zip({"lambda_function.py": TWO, "new.txt": "hi\n", "same.txt": "same\n"}),
                                        name="other").code
        fn.replace_code(new_code)
        fn.memory_size = 256
        fn.save()
        fn.set_environment({"KEPT": "secret-new-value", "ADDED": "c"})
        self.client.force_login(self.alice)
        page = self.client.get(reverse("functions:version_diff", args=[fn.name]), {"old": "1", "new": "$LATEST"})
        self.assertContains(page, "+ new.txt")
        self.assertContains(page, "− old.txt")
        self.assertContains(page, "~ lambda_function.py")
        self.assertNotContains(page, "same.txt")
        self.assertContains(page, "-    return {&#x27;code&#x27;: &#x27;one&#x27;")
        self.assertContains(page, "+    return {&#x27;code&#x27;: &#x27;two&#x27;")
        self.assertContains(page, '<tr><td>memory_size</td><td class="mono">128</td><td class="mono">256</td></tr>', html=True)
        for key, change in (("ADDED", "added"), ("GONE", "removed"), ("KEPT", "changed")):
            self.assertContains(page, f'<li><span class="mono">{key}</span> {change}</li>', html=True)
        self.assertNotContains(page, "secret-new-value")

    def test_the_same_version_twice_has_no_differences_and_strangers_get_404(self):
        fn = self.create_function(handler_zip(ONE))
        fn.publish()
        self.client.force_login(self.alice)
        url = reverse("functions:version_diff", args=[fn.name])
        self.assertContains(self.client.get(url, {"old": "1", "new": "$LATEST"}), "No differences")
        self.assertEqual(self.client.get(url, {"old": "7"}).status_code, 404)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(url).status_code, 404)
