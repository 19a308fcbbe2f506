"""Tags on functions through the Lambda API (TagResource, UntagResource, ListTags, and CreateFunction's and
GetFunction's Tags), with the real boto3 against the real gunicorn; the function page shows them."""

import base64


from functions.forms import host_runtime
from functions.models import Function
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase

CODE = base64.b64encode(handler_zip("def handler(event, context):\n    return 1\n")).decode()
ROLE = "arn:aws:iam::123456789012:role/deployer"


class TagTestCase(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip("def handler(event, context):\n    return 1\n"), name="hello")
        self.client.force_login(self.alice)

    def tags_row(self, function=None):
        """The function page's Tags cell."""
        page = self.client.get((function or self.fn).get_absolute_url()).content.decode()
        return page.split('id="function-tags">', 1)[1].split("</td>", 1)[0]


class TagTests(TagTestCase):
    def test_tag_list_and_untag_round_trip_and_show_on_the_function_page(self):
        self.assertEqual(self.lam.list_tags(Resource=self.fn.arn)["Tags"], {})
        self.assertIn("none", self.tags_row())
        modified = Function.objects.get(pk=self.fn.pk).last_modified

        tagged = self.lam.tag_resource(Resource=self.fn.arn, Tags={"team": "payments", "env": "prod"})
        self.assertEqual(tagged["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.lam.tag_resource(Resource=self.fn.arn, Tags={"env": "staging", "cost-center": ""})
        expected = {"team": "payments", "env": "staging", "cost-center": ""}
        self.assertEqual(self.lam.list_tags(Resource=self.fn.arn)["Tags"], expected)
        self.assertEqual(self.lam.get_function(FunctionName="hello")["Tags"], expected)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).tags, expected)
        self.assertEqual(self.tags_row(), '<span class="tag mono">cost-center=</span> · '
                                          '<span class="tag mono">env=staging</span> · '
                                          '<span class="tag mono">team=payments</span>')
        # Tagging is not a change of the function's configuration.
        self.assertEqual(Function.objects.get(pk=self.fn.pk).last_modified, modified)

        untagged = self.lam.untag_resource(Resource=self.fn.arn, TagKeys=["env", "team", "never-set"])
        self.assertEqual(untagged["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.lam.list_tags(Resource=self.fn.arn)["Tags"], {"cost-center": ""})

    def test_create_function_takes_tags_and_get_function_returns_them(self):
        self.lam.create_function(FunctionName="tagged", Role=ROLE, Runtime=host_runtime(),
                                 Handler="lambda_function.handler", Code={"ZipFile": base64.b64decode(CODE)},
                                 Tags={"owner": "alice@example.com", "tier": "1"})
        self.assertEqual(self.lam.get_function(FunctionName="tagged")["Tags"],
                         {"owner": "alice@example.com", "tier": "1"})
        self.assertIn("owner=alice@example.com", self.tags_row(Function.objects.get(name="tagged")))

    def test_create_function_with_bad_tags_creates_nothing(self):
        self.assertInvalid(lambda: self.lam.create_function(
            FunctionName="refused", Role=ROLE, Runtime=host_runtime(), Handler="lambda_function.handler",
            Code={"ZipFile": base64.b64decode(CODE)}, Tags={"aws:cloudformation:stack": "x"}), "aws:")
        self.assertFalse(Function.objects.filter(name="refused").exists())


class LimitTests(TagTestCase):
    def test_lambdas_limits_are_kept_and_a_refusal_changes_nothing(self):
        self.lam.tag_resource(Resource=self.fn.arn, Tags={f"k{i}": "v" for i in range(45)})
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=self.fn.arn,
                                                         Tags={f"n{i}": "v" for i in range(6)}), "at most 50", "51")
        # Replacing values of existing keys does not count twice.
        self.lam.tag_resource(Resource=self.fn.arn, Tags={f"k{i}": "w" for i in range(45)} | {"a": "1"})
        self.assertEqual(len(self.lam.list_tags(Resource=self.fn.arn)["Tags"]), 46)
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=self.fn.arn, Tags={"x" * 129: "v"}), "1–128")
        self.assertInvalid(lambda: self.unvalidated().tag_resource(Resource=self.fn.arn, Tags={"": "v"}), "1–128")
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=self.fn.arn, Tags={"long": "v" * 257}), "256")
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=self.fn.arn, Tags={"AWS:name": "v"}), "aws:")
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=self.fn.arn, Tags={"semi;colon": "v"}),
                           "letters, digits")
        self.assertInvalid(lambda: self.unvalidated().tag_resource(Resource=self.fn.arn, Tags={"n": 5}), "string")
        self.lam.tag_resource(Resource=self.fn.arn, Tags={"x" * 128: "v" * 256, "naïve key": "ünïcode @ ok"})
        tags = Function.objects.get(pk=self.fn.pk).tags
        self.assertEqual(len(tags), 48)
        self.assertEqual(tags["naïve key"], "ünïcode @ ok")


class ResourceTests(TagTestCase):
    def test_only_an_unqualified_function_arn_has_tags(self):
        self.assertInvalid(lambda: self.lam.list_tags(Resource=f"{self.fn.arn}:1"), "version or alias")
        mapping = f"{self.fn.arn.split(':function:')[0]}:event-source-mapping:14e0db71-5d35-4eb5-b481-8945cf9d10c2"
        self.assertInvalid(lambda: self.lam.tag_resource(Resource=mapping, Tags={"a": "b"}), "only functions")
        self.assertInvalid(lambda: self.lam.list_tags(Resource="hello"), "resource")
        self.assertError(lambda: self.lam.list_tags(Resource=self.fn.arn.replace("hello", "nope")),
                         "ResourceNotFoundException", 404)

    def test_bob_cannot_see_or_change_alices_tags(self):
        self.lam.tag_resource(Resource=self.fn.arn, Tags={"secret": "alice only"})
        for call in (lambda: self.bob_lam.list_tags(Resource=self.fn.arn),
                     lambda: self.bob_lam.tag_resource(Resource=self.fn.arn, Tags={"secret": "bob"}),
                     lambda: self.bob_lam.untag_resource(Resource=self.fn.arn, TagKeys=["secret"])):
            self.assertError(call, "ResourceNotFoundException", 404)
        # His own account's ARN with her function's name: no such function of his.
        bobs_arn = self.fn.arn.replace(f"{self.alice.pk:012d}", f"{self.bob.pk:012d}")
        self.assertError(lambda: self.bob_lam.list_tags(Resource=bobs_arn), "ResourceNotFoundException", 404)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).tags, {"secret": "alice only"})
