"""The function operations of the Lambda API (issue 8), against the real server with the real boto3: what the
API creates shows in the console and the other way round, and every error is AWS's."""

import base64
import hashlib
import urllib.error
import urllib.request

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.lambda_api.shapes import default_role
from functions.forms import LayerForm, host_runtime
from functions.models import Alias, Function, account_id
from tests.base import handler_zip, make_zip
from tests.lambda_api import ApiTestCase

CODE = handler_zip("def handler(event, context):\n    return {'v': 1}\n")
CODE_2 = handler_zip("def handler(event, context):\n    return {'v': 2}\n")
ROLE = "arn:aws:iam::123456789012:role/service-role/deployer"


def sha256_base64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class ApiFunctionTestCase(ApiTestCase):
    def create(self, name="hello", client=None, **params):
        params = {"FunctionName": name, "Role": ROLE, "Runtime": host_runtime(),
                  "Handler": "lambda_function.handler", "Code": {"ZipFile": CODE}, **params}
        return (client or self.lam).create_function(**params)


class DeployTests(ApiFunctionTestCase):
    def test_a_function_deployed_with_boto3_is_the_consoles_function(self):
        created = self.create(
            Description="first", Timeout=30, MemorySize=256, EphemeralStorage={"Size": 1024},
            Environment={"Variables": {"STAGE": "prod", "GREETING": "hi there"}},
        )
        self.assertEqual(created["ResponseMetadata"]["HTTPStatusCode"], 201)
        self.assertEqual(created["FunctionName"], "hello")
        self.assertEqual(created["FunctionArn"],
                         f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(self.alice)}:function:hello")
        self.assertEqual((created["Role"], created["Runtime"], created["Handler"]),
                         (ROLE, host_runtime(), "lambda_function.handler"))
        self.assertEqual((created["Timeout"], created["MemorySize"], created["EphemeralStorage"]["Size"]),
                         (30, 256, 1024))
        self.assertEqual(created["CodeSha256"], sha256_base64(CODE))
        self.assertEqual(created["CodeSize"], len(CODE))
        self.assertEqual(created["Version"], "$LATEST")
        self.assertEqual(created["Environment"]["Variables"], {"STAGE": "prod", "GREETING": "hi there"})
        self.assertEqual((created["State"], created["LastUpdateStatus"]), ("Active", "Successful"))

        function = Function.objects.get(owner=self.alice, name="hello")
        self.assertEqual((function.role, function.description, function.memory_size, function.timeout,
                          function.ephemeral_storage), (ROLE, "first", 256, 30, 1024))
        self.assertEqual(function.environment, {"STAGE": "prod", "GREETING": "hi there"})
        self.assertNotIn("prod", function.environment_token)  # encrypted at rest, as the console keeps them

        got = self.lam.get_function(FunctionName="hello")
        self.assertEqual(got["Configuration"]["CodeSha256"], created["CodeSha256"])
        self.assertEqual(got["Configuration"]["RevisionId"], created["RevisionId"])
        self.assertEqual(got["Code"]["RepositoryType"], "S3")
        self.assertEqual(got["Tags"], {})
        self.assertNotIn("Concurrency", got)
        with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as response:
            self.assertEqual(response.read(), CODE)
            self.assertEqual(response.headers["Content-Type"], "application/zip")
        self.assertEqual(self.lam.get_function_configuration(FunctionName="hello")["MemorySize"], 256)

    def test_code_and_configuration_updates_show_in_the_console(self):
        self.create(Environment={"Variables": {"KEEP": "1"}})
        updated = self.lam.update_function_code(FunctionName="hello", ZipFile=CODE_2)
        self.assertEqual(updated["CodeSha256"], sha256_base64(CODE_2))
        self.lam.get_waiter("function_updated_v2").wait(FunctionName="hello", WaiterConfig={"Delay": 1})

        configured = self.lam.update_function_configuration(FunctionName="hello", Timeout=60, Description="two")
        # Only what was sent changed.
        self.assertEqual((configured["Timeout"], configured["Description"], configured["MemorySize"]), (60, "two", 128))
        self.assertEqual(configured["Environment"]["Variables"], {"KEEP": "1"})
        self.assertEqual(configured["Role"], ROLE)

        function = Function.objects.select_related("code").get(owner=self.alice, name="hello")
        self.assertEqual(function.code.sha256_base64, sha256_base64(CODE_2))
        self.assertEqual((function.timeout, function.description, function.environment), (60, "two", {"KEEP": "1"}))
        self.client.force_login(self.alice)
        page = self.client.get(reverse("functions:detail", args=["hello"]))
        self.assertContains(page, "lambda_function.handler")
        self.assertContains(page, "two")

        # Environment replaces the whole set, as in Lambda; an empty one clears it.
        replaced = self.lam.update_function_configuration(FunctionName="hello",
                                                          Environment={"Variables": {"NEW": "x"}})
        self.assertEqual(replaced["Environment"]["Variables"], {"NEW": "x"})
        cleared = self.lam.update_function_configuration(FunctionName="hello", Environment={"Variables": {}})
        self.assertNotIn("Environment", cleared)
        self.assertEqual(Function.objects.get(name="hello").environment, {})

        role = "arn:aws:iam::123456789012:role/other"
        self.assertEqual(self.lam.update_function_configuration(FunctionName="hello", Role=role)["Role"], role)
        moved = self.lam.update_function_configuration(FunctionName="hello", MemorySize=512,
                                                       EphemeralStorage={"Size": 2048})
        self.assertEqual((moved["MemorySize"], moved["EphemeralStorage"]["Size"], moved["Timeout"]), (512, 2048, 60))

    def test_deleting_a_function_removes_it_everywhere(self):
        self.create(Publish=True)
        Alias.objects.create(function=Function.objects.get(name="hello"), name="live",
                             version=Function.objects.get(name="hello").versions.get())
        self.lam.delete_function(FunctionName="hello")
        self.assertFalse(Function.objects.filter(name="hello").exists())
        with self.assertRaises(ClientError) as caught:
            self.lam.get_function(FunctionName="hello")
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get(reverse("functions:detail", args=["hello"])).status_code, 404)

    def test_the_waiters_succeed(self):
        self.create()
        self.lam.get_waiter("function_exists").wait(FunctionName="hello", WaiterConfig={"Delay": 1})
        self.lam.get_waiter("function_active_v2").wait(FunctionName="hello", WaiterConfig={"Delay": 1})
        self.lam.update_function_configuration(FunctionName="hello", MemorySize=256)
        self.lam.get_waiter("function_updated_v2").wait(FunctionName="hello", WaiterConfig={"Delay": 1})
        self.lam.get_waiter("function_active").wait(FunctionName="hello", WaiterConfig={"Delay": 1})

    def test_a_function_created_in_the_console_shows_through_the_api(self):
        function = self.create_function(CODE, name="console-made", memory_size=384, timeout=9)
        got = self.lam.get_function(FunctionName="console-made")["Configuration"]
        self.assertEqual((got["FunctionName"], got["FunctionArn"], got["Handler"], got["Runtime"]),
                         ("console-made", function.arn, function.handler, function.runtime))
        self.assertEqual((got["MemorySize"], got["Timeout"], got["CodeSize"], got["CodeSha256"]),
                         (384, 9, function.code.size, function.code.sha256_base64))
        self.assertEqual(got["Role"], default_role(function))
        listed = self.lam.list_functions()["Functions"]
        self.assertEqual([f["FunctionName"] for f in listed], ["console-made"])
        self.assertEqual(listed[0]["CodeSha256"], got["CodeSha256"])

    def test_reserved_concurrency_shows_in_get_function(self):
        function = self.create_function(CODE)
        function.reserved_concurrency = 7
        function.save()
        self.assertEqual(self.lam.get_function(FunctionName="hello")["Concurrency"],
                         {"ReservedConcurrentExecutions": 7})

    def test_layers_are_attached_by_their_arns(self):
        form = LayerForm({"name": "libs"}, {"code": SimpleUploadedFile("l.zip", make_zip({"python/lib.py": "X = 1\n"}))},
                         owner=self.alice)
        self.assertTrue(form.is_valid(), form.errors)
        layer_version = form.save()
        created = self.create(Layers=[layer_version.arn])
        self.assertEqual([layer["Arn"] for layer in created["Layers"]], [layer_version.arn])
        function = Function.objects.get(name="hello")
        self.assertEqual([fl.layer_version for fl in function.function_layers.all()], [layer_version])
        self.assertEqual(self.lam.update_function_configuration(FunctionName="hello", Layers=[])["Layers"], [])
        self.assertFalse(function.function_layers.exists())
        # bob's layer is not alice's to use, and cannot be told from one that does not exist.
        bobs = LayerForm({"name": "theirs"}, {"code": SimpleUploadedFile("l.zip", make_zip({"python/b.py": ""}))},
                         owner=self.bob)
        self.assertTrue(bobs.is_valid(), bobs.errors)
        bobs_arn = bobs.save().arn
        for arn in (bobs_arn, f"{layer_version.layer.arn}:9"):
            self.assertInvalid(lambda: self.lam.update_function_configuration(FunctionName="hello", Layers=[arn]),
                               "does not exist", arn)
        self.assertInvalid(lambda: self.create(name="other", Layers=[bobs_arn]), "does not exist")
        self.assertFalse(Function.objects.filter(name="other").exists())


class VersionTests(ApiFunctionTestCase):
    def test_publish_on_create_and_on_code_update(self):
        created = self.create(Publish=True, Description="v1")
        self.assertEqual((created["Version"], created["FunctionArn"][-2:]), ("1", ":1"))
        updated = self.lam.update_function_code(FunctionName="hello", ZipFile=CODE_2, Publish=True)
        self.assertEqual(updated["Version"], "2")
        self.assertEqual(self.lam.get_function(FunctionName="hello", Qualifier="1")["Configuration"]["CodeSha256"],
                         sha256_base64(CODE))
        by_arn = self.lam.get_function_configuration(FunctionName=f"{created['FunctionArn'][:-2]}:2")
        self.assertEqual(by_arn["CodeSha256"], sha256_base64(CODE_2))
        code = self.lam.get_function(FunctionName="hello:1")["Code"]["Location"]
        with urllib.request.urlopen(code, timeout=10) as response:
            self.assertEqual(response.read(), CODE)
        self.assertEqual([v.number for v in Function.objects.get(name="hello").versions.all()], [2, 1])

        Alias.objects.create(function=Function.objects.get(name="hello"), name="live",
                             version=Function.objects.get(name="hello").versions.get(number=1))
        via_alias = self.lam.get_function_configuration(FunctionName="hello", Qualifier="live")
        self.assertEqual((via_alias["Version"], via_alias["FunctionArn"].rsplit(":", 1)[1]), ("1", "live"))

        listed = self.lam.list_functions(FunctionVersion="ALL")["Functions"]
        self.assertEqual([f["Version"] for f in listed], ["$LATEST", "1", "2"])
        self.assertEqual([f["Version"] for f in self.lam.list_functions()["Functions"]], ["$LATEST"])

    def test_deleting_a_version(self):
        self.create(Publish=True)
        self.lam.update_function_code(FunctionName="hello", ZipFile=CODE_2, Publish=True)
        function = Function.objects.get(name="hello")
        Alias.objects.create(function=function, name="live", version=function.versions.get(number=1))
        self.assertInvalid(lambda: self.lam.delete_function(FunctionName="hello", Qualifier="1"),
                           "aliases reference it: [live]", code="ResourceConflictException", status=409)
        self.assertInvalid(lambda: self.lam.delete_function(FunctionName="hello", Qualifier="$LATEST"),
                           "$LATEST version cannot be deleted without deleting the function")
        self.assertInvalid(lambda: self.lam.delete_function(FunctionName="hello", Qualifier="live"), "aliases")
        self.lam.delete_function(FunctionName="hello:2")
        self.assertEqual([v.number for v in function.versions.all()], [1])
        self.lam.delete_function(FunctionName="hello", Qualifier="2")  # gone already: no error, as in Lambda
        self.assertTrue(Function.objects.filter(name="hello").exists())
        with self.assertRaises(ClientError) as caught:
            self.lam.get_function(FunctionName="hello", Qualifier="2")
        self.assertIn(":function:hello:2", self.assertApiError(caught, "ResourceNotFoundException", 404))


class ListTests(ApiFunctionTestCase):
    def test_pages_cover_every_function_once(self):
        names = ["alpha", "bravo", "charlie", "delta", "echo"]
        for name in reversed(names):
            self.create(name=name)
        self.create_function(CODE, name="bobs", owner=self.bob)
        first = self.lam.list_functions(MaxItems=2)
        self.assertEqual([f["FunctionName"] for f in first["Functions"]], ["alpha", "bravo"])
        second = self.lam.list_functions(MaxItems=2, Marker=first["NextMarker"])
        self.assertEqual([f["FunctionName"] for f in second["Functions"]], ["charlie", "delta"])
        last = self.lam.list_functions(MaxItems=2, Marker=second["NextMarker"])
        self.assertEqual([f["FunctionName"] for f in last["Functions"]], ["echo"])
        self.assertNotIn("NextMarker", last)
        pages = self.lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3})
        self.assertEqual([f["FunctionName"] for page in pages for f in page["Functions"]], names)

    def test_versions_page_too(self):
        for name in ("one", "two"):
            self.create(name=name, Publish=True)
        self.lam.update_function_code(FunctionName="one", ZipFile=CODE_2, Publish=True)
        pages = self.lam.get_paginator("list_functions").paginate(FunctionVersion="ALL",
                                                                   PaginationConfig={"PageSize": 2})
        self.assertEqual([(f["FunctionName"], f["Version"]) for page in pages for f in page["Functions"]],
                         [("one", "$LATEST"), ("one", "1"), ("one", "2"), ("two", "$LATEST"), ("two", "1")])

    def test_bad_paging_parameters_are_invalid(self):
        raw = self.unvalidated()
        self.assertInvalid(lambda: raw.list_functions(Marker="not a marker"), "Marker")
        for items in (0, 10001):
            self.assertInvalid(lambda: raw.list_functions(MaxItems=items), "MaxItems")
        self.assertInvalid(lambda: raw.list_functions(FunctionVersion="SOME"), "functionVersion")


class ErrorTests(ApiFunctionTestCase):
    def test_a_duplicate_name_is_a_conflict(self):
        self.create()
        self.assertEqual(self.assertInvalid(lambda: self.create(), code="ResourceConflictException", status=409),
                         "Function already exist: hello")
        self.create_function(CODE, name="console-made")
        self.assertInvalid(lambda: self.create(name="console-made"), "Function already exist: console-made",
                           code="ResourceConflictException", status=409)

    def test_a_missing_function_is_not_found(self):
        for call in (lambda: self.lam.get_function(FunctionName="nope"),
                     lambda: self.lam.get_function_configuration(FunctionName="nope"),
                     lambda: self.lam.update_function_code(FunctionName="nope", ZipFile=CODE),
                     lambda: self.lam.update_function_configuration(FunctionName="nope", Timeout=5),
                     lambda: self.lam.delete_function(FunctionName="nope")):
            self.assertInvalid(call, f"Function not found: arn:aws:lambda:{settings.LAMBDA_REGION}:"
                                     f"{account_id(self.alice)}:function:nope",
                               code="ResourceNotFoundException", status=404)

    def test_a_bad_zip_is_refused_with_the_checkers_message(self):
        self.assertInvalid(lambda: self.create(Code={"ZipFile": b"not a zip"}), "Code.ZipFile")
        parent = make_zip({"../escape.py": "x = 1\n", "lambda_function.py": "def handler(e, c): pass\n"})
        self.assertInvalid(lambda: self.create(Code={"ZipFile": parent}), "'..' component")
        self.assertInvalid(lambda: self.create(Code={"ZipFile": handler_zip("x = 1\n", module="other")}),
                           "Handler", "no module 'lambda_function'")
        self.create()
        self.assertInvalid(lambda: self.lam.update_function_code(FunctionName="hello", ZipFile=b"PK\x05\x06junk"))
        self.assertEqual(Function.objects.get(name="hello").code.sha256_base64, sha256_base64(CODE))
        self.assertEqual(Function.objects.count(), 1)

    def test_settings_out_of_bounds_are_invalid(self):
        raw = self.unvalidated()
        self.assertInvalid(lambda: self.create(client=raw, MemorySize=100), "MemorySize", "128")
        self.assertInvalid(lambda: self.create(client=raw, Timeout=901), "Timeout", "900")
        self.assertInvalid(lambda: self.create(EphemeralStorage={"Size": 20000}), "EphemeralStorage.Size")
        self.assertInvalid(lambda: self.create(Handler="no dots here"), "Handler")
        message = self.assertInvalid(lambda: self.create(Runtime="python2.7"), "Runtime", "python2.7")
        self.assertIn(host_runtime(), message)
        self.assertInvalid(lambda: self.create(Role="not-a-role"), "role")
        self.assertInvalid(lambda: self.create(client=raw, Role=""), "Role")
        self.assertInvalid(lambda: self.create(client=raw, MemorySize="lots"), "MemorySize",
                           code="InvalidRequestContentException")
        self.assertInvalid(lambda: self.create(Environment={"Variables": {"AWS_REGION": "x"}}),
                           "Environment.Variables", "AWS_REGION is reserved")
        self.assertInvalid(lambda: self.create(Environment={"Variables": {"1bad": "x"}}), "not a valid key")
        self.assertInvalid(lambda: self.create(Code={"S3Bucket": "bucket", "S3Key": "code.zip"}), "ZipFile")
        self.assertFalse(Function.objects.exists())

        self.create()
        for params in ({"MemorySize": 99999}, {"Timeout": 0}, {"Handler": "a b"}, {"Runtime": "nodejs20.x"},
                       {"Environment": {"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}},
                       {"Handler": "missing_module.handler"}):
            self.assertInvalid(lambda: raw.update_function_configuration(FunctionName="hello", **params))
        function = Function.objects.get(name="hello")
        self.assertEqual((function.memory_size, function.timeout, function.handler, function.environment),
                         (128, 3, "lambda_function.handler", {}))

    def test_a_stale_revision_id_is_refused(self):
        created = self.create()
        self.lam.update_function_configuration(FunctionName="hello", Timeout=10, RevisionId=created["RevisionId"])
        self.assertInvalid(lambda: self.lam.update_function_configuration(FunctionName="hello", Timeout=11,
                                                                          RevisionId=created["RevisionId"]),
                           "Revision Id", code="PreconditionFailedException", status=412)
        self.assertEqual(Function.objects.get(name="hello").timeout, 10)

    def test_a_tampered_code_location_is_refused(self):
        self.create()
        location = self.lam.get_function(FunctionName="hello")["Code"]["Location"]
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(location[:-3] + ("AAA" if not location.endswith("AAA") else "BBB"), timeout=10)
        self.assertEqual(caught.exception.code, 404)


class OwnershipTests(ApiFunctionTestCase):
    def test_bob_cannot_see_get_update_or_delete_alices_function(self):
        self.create()
        self.assertEqual(self.bob_lam.list_functions()["Functions"], [])
        alices_arn = Function.objects.get(name="hello").arn
        for name in ("hello", alices_arn):
            for call in (lambda: self.bob_lam.get_function(FunctionName=name),
                         lambda: self.bob_lam.get_function_configuration(FunctionName=name),
                         lambda: self.bob_lam.update_function_code(FunctionName=name, ZipFile=CODE_2),
                         lambda: self.bob_lam.update_function_configuration(FunctionName=name, Timeout=9),
                         lambda: self.bob_lam.delete_function(FunctionName=name)):
                self.assertInvalid(call, code="ResourceNotFoundException", status=404)
        function = Function.objects.select_related("code").get(name="hello")
        self.assertEqual((function.timeout, function.code.sha256_base64), (3, sha256_base64(CODE)))
        # bob may have a function of the same name: names are per account.
        self.create(client=self.bob_lam)
        self.assertEqual(Function.objects.filter(name="hello").count(), 2)

    def test_names_as_partial_and_full_arns(self):
        created = self.create()
        arn = created["FunctionArn"]
        partial = f"{account_id(self.alice)}:function:hello"
        for name in (arn, partial, f"{arn}:$LATEST", "hello:$LATEST"):
            self.assertEqual(self.lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"], arn)
        self.assertEqual(self.lam.update_function_configuration(FunctionName=partial, Timeout=8)["Timeout"], 8)
        other_account = f"{int(account_id(self.alice)) + 1000:012d}"
        for name in (arn.replace(account_id(self.alice), other_account), f"{other_account}:function:hello"):
            self.assertInvalid(lambda: self.lam.get_function(FunctionName=name),
                               code="ResourceNotFoundException", status=404)
            self.assertInvalid(lambda: self.lam.delete_function(FunctionName=name),
                               code="ResourceNotFoundException", status=404)
        self.assertTrue(Function.objects.filter(name="hello").exists())
        # CreateFunction takes an ARN as well, in the caller's own account.
        made = self.create(name=arn.replace(":hello", ":by-arn"))
        self.assertEqual(made["FunctionName"], "by-arn")
        self.lam.delete_function(FunctionName=arn)
        self.assertFalse(Function.objects.filter(name="hello").exists())
