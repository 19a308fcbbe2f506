"""Versions, aliases and layers through the Lambda API, with the real boto3 against gunicorn (issue 8): the
same models and forms as the console, so what one makes the other shows."""

import base64
import hashlib
import urllib.error
import urllib.request

from botocore.exceptions import ClientError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from functions.forms import host_runtime
from functions.models import Alias, Layer, LayerVersion, Trigger, Version
from tests.base import handler_zip, make_zip
from tests.lambda_api import ApiTestCase, lambda_client

CODE = handler_zip("def handler(event, context):\n    return 1\n")


class ApiCase(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(CODE, name="hello")
        # Raw values that botocore's own checks would stop before they reach the server.
        self.raw_lam = lambda_client(self.base_url, self.key.access_key_id, self.secret, parameter_validation=False)

    def change(self, memory_size):
        """Change $LATEST, so that the next publish makes a new version."""
        self.fn.memory_size = memory_size
        self.fn.save()

    def publish(self, *memory_sizes):
        for memory_size in memory_sizes:
            self.change(memory_size)
            self.lam.publish_version(FunctionName="hello")


class PublishVersionTests(ApiCase):
    def test_publishing_freezes_latest_and_unchanged_code_gives_back_the_same_version(self):
        first = self.lam.publish_version(FunctionName="hello", Description="first")
        self.assertEqual(first["ResponseMetadata"]["HTTPStatusCode"], 201)
        self.assertEqual(first["Version"], "1")
        self.assertEqual(first["FunctionArn"], f"{self.fn.arn}:1")
        self.assertEqual(first["Description"], "first")
        self.assertEqual(first["CodeSha256"], base64.b64encode(hashlib.sha256(CODE).digest()).decode())
        again = self.lam.publish_version(FunctionName="hello", Description="again")
        self.assertEqual((again["Version"], again["Description"]), ("1", "first"))
        self.change(256)
        second = self.lam.publish_version(FunctionName=self.fn.arn)
        self.assertEqual((second["Version"], second["MemorySize"]), ("2", 256))
        self.assertEqual(list(self.fn.versions.values_list("number", "description")), [(2, ""), (1, "first")])

    def test_code_sha256_and_revision_id_are_preconditions(self):
        latest = self.lam.list_versions_by_function(FunctionName="hello")["Versions"][0]
        with self.assertRaises(ClientError) as caught:
            self.lam.publish_version(FunctionName="hello", CodeSha256="A" * 43 + "=")
        self.assertIn("is different from current CodeSHA256 in $LATEST",
                      self.assertApiError(caught, "InvalidParameterValueException", 400))
        with self.assertRaises(ClientError) as caught:
            self.lam.publish_version(FunctionName="hello", RevisionId="not-the-revision")
        self.assertApiError(caught, "PreconditionFailedException", 412)
        self.assertFalse(self.fn.versions.exists())
        published = self.lam.publish_version(FunctionName="hello", CodeSha256=latest["CodeSha256"],
                                             RevisionId=latest["RevisionId"])
        self.assertEqual(published["Version"], "1")

    def test_a_description_past_256_characters_is_refused_by_the_console_form(self):
        with self.assertRaises(ClientError) as caught:
            self.raw_lam.publish_version(FunctionName="hello", Description="x" * 257)
        self.assertIn("Description: Ensure this value has at most 256 characters",
                      self.assertApiError(caught, "InvalidParameterValueException", 400))
        self.assertFalse(self.fn.versions.exists())

    def test_a_version_published_in_the_api_shows_on_the_console_page(self):
        self.lam.publish_version(FunctionName="hello", Description="from the api")
        self.client.force_login(self.alice)
        self.assertContains(self.client.get(self.fn.get_absolute_url()), "from the api")


class ListVersionsTests(ApiCase):
    def test_latest_comes_first_then_versions_ascending_in_pages(self):
        self.publish(129, 130, 131)
        first = self.lam.list_versions_by_function(FunctionName="hello", MaxItems=2)
        self.assertEqual([v["Version"] for v in first["Versions"]], ["$LATEST", "1"])
        self.assertEqual(first["Versions"][0]["FunctionArn"], self.fn.arn)
        self.assertEqual(first["Versions"][1]["MemorySize"], 129)
        second = self.lam.list_versions_by_function(FunctionName="hello", MaxItems=2, Marker=first["NextMarker"])
        self.assertEqual([v["Version"] for v in second["Versions"]], ["2", "3"])
        self.assertNotIn("NextMarker", second)
        pages = self.lam.get_paginator("list_versions_by_function").paginate(
            FunctionName="hello", PaginationConfig={"PageSize": 1})
        self.assertEqual([v["Version"] for page in pages for v in page["Versions"]], ["$LATEST", "1", "2", "3"])

    def test_bad_paging_parameters_are_invalid(self):
        for params in ({"Marker": "not-a-marker"}, {"MaxItems": 0}, {"MaxItems": 10001}):
            with self.subTest(params=params), self.assertRaises(ClientError) as caught:
                self.raw_lam.list_versions_by_function(FunctionName="hello", **params)
            self.assertApiError(caught, "InvalidParameterValueException", 400)


class AliasTests(ApiCase):
    def setUp(self):
        super().setUp()
        self.publish(129, 130)

    def test_an_alias_is_created_read_moved_with_a_weight_listed_and_deleted(self):
        created = self.lam.create_alias(FunctionName="hello", Name="live", FunctionVersion="1", Description="prod")
        self.assertEqual(created["ResponseMetadata"]["HTTPStatusCode"], 201)
        self.assertEqual((created["AliasArn"], created["FunctionVersion"], created["Description"]),
                         (f"{self.fn.arn}:live", "1", "prod"))
        self.assertNotIn("RoutingConfig", created)
        got = self.lam.get_alias(FunctionName="hello", Name="live")
        self.assertEqual(got["RevisionId"], created["RevisionId"])

        moved = self.lam.update_alias(FunctionName="hello", Name="live", FunctionVersion="2",
                                      RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}},
                                      RevisionId=created["RevisionId"])
        self.assertEqual(moved["FunctionVersion"], "2")
        self.assertEqual(moved["RoutingConfig"], {"AdditionalVersionWeights": {"1": 0.25}})
        self.assertEqual(moved["Description"], "prod")  # not sent: unchanged
        self.assertNotEqual(moved["RevisionId"], created["RevisionId"])
        alias = Alias.objects.get(function=self.fn, name="live")
        self.assertEqual((alias.version.number, alias.additional_version.number, alias.additional_weight), (2, 1, 0.25))
        # The console's rollback remembers where the API moved it from, and its page shows the canary.
        self.assertEqual((alias.has_previous, alias.previous_version.number), (True, 1))
        self.client.force_login(self.alice)
        self.assertContains(self.client.get(self.fn.get_absolute_url()), "0.25 of invocations to version 1")

        with self.assertRaises(ClientError) as caught:
            self.lam.update_alias(FunctionName="hello", Name="live", Description="stale",
                                  RevisionId=created["RevisionId"])
        self.assertApiError(caught, "PreconditionFailedException", 412)
        cleared = self.lam.update_alias(FunctionName="hello", Name="live", RoutingConfig={"AdditionalVersionWeights": {}})
        self.assertNotIn("RoutingConfig", cleared)

        deleted = self.lam.delete_alias(FunctionName="hello", Name="live")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertFalse(self.fn.aliases.exists())

    def test_deleting_an_alias_takes_its_triggers_as_the_console_does(self):
        self.lam.create_alias(FunctionName="hello", Name="live", FunctionVersion="1")
        Trigger.objects.create(function=self.fn, kind=Trigger.Kind.SCHEDULE, qualifier="live",
                               config={"expression": "rate(1 hour)"})
        self.lam.delete_alias(FunctionName="hello", Name="live")
        self.assertFalse(self.fn.triggers.exists())

    def test_aliases_list_in_pages_and_by_version(self):
        for name, version in (("a", "1"), ("b", "2"), ("c", "$LATEST"), ("d", "1")):
            self.lam.create_alias(FunctionName="hello", Name=name, FunctionVersion=version)
        first = self.lam.list_aliases(FunctionName="hello", MaxItems=3)
        self.assertEqual([a["Name"] for a in first["Aliases"]], ["a", "b", "c"])
        rest = self.lam.list_aliases(FunctionName="hello", MaxItems=3, Marker=first["NextMarker"])
        self.assertEqual(([a["Name"] for a in rest["Aliases"]], rest.get("NextMarker")), (["d"], None))
        by_version = self.lam.list_aliases(FunctionName="hello", FunctionVersion="1")
        self.assertEqual([a["Name"] for a in by_version["Aliases"]], ["a", "d"])
        on_latest = self.lam.list_aliases(FunctionName="hello", FunctionVersion="$LATEST")
        self.assertEqual([a["Name"] for a in on_latest["Aliases"]], ["c"])

    def test_an_alias_made_in_the_console_reads_the_same_through_the_api(self):
        self.client.force_login(self.alice)
        self.client.post(reverse("functions:save_alias", args=["hello"]), {
            "name": "canary", "version": "2", "additional_version": "1", "additional_weight": "0.1"})
        got = self.lam.get_alias(FunctionName="hello", Name="canary")
        self.assertEqual((got["FunctionVersion"], got["RoutingConfig"]), ("2", {"AdditionalVersionWeights": {"1": 0.1}}))

    def test_alias_errors_are_answered_as_lambda_does(self):
        self.lam.create_alias(FunctionName="hello", Name="live", FunctionVersion="1")
        cases = [
            ({"Name": "next", "FunctionVersion": "7"}, "ResourceNotFoundException", 404, f"{self.fn.arn}:7"),
            ({"Name": "next", "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"9": 0.5}}},
             "ResourceNotFoundException", 404, f"{self.fn.arn}:9"),
            ({"Name": "live", "FunctionVersion": "2"}, "ResourceConflictException", 409, f"{self.fn.arn}:live"),
            ({"Name": "next", "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"1": 1.5}}},
             "InvalidParameterValueException", 400, "less than or equal to 1"),
            ({"Name": "next", "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}},
             "InvalidParameterValueException", 400, "must differ"),
            ({"Name": "next", "FunctionVersion": "$LATEST", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}},
             "InvalidParameterValueException", 400, "An alias of $LATEST cannot"),
            ({"Name": "next", "FunctionVersion": "2",
              "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.1, "$LATEST": 0.1}}},
             "InvalidParameterValueException", 400, "one version"),
            ({"Name": "123", "FunctionVersion": "2"}, "InvalidParameterValueException", 400, "Name: "),
        ]
        for params, code, status, words in cases:
            with self.subTest(params=params), self.assertRaises(ClientError) as caught:
                self.raw_lam.create_alias(FunctionName="hello", **params)
            self.assertIn(words, self.assertApiError(caught, code, status))
        self.assertEqual(list(self.fn.aliases.values_list("name", flat=True)), ["live"])
        for call in (self.lam.get_alias, self.lam.delete_alias):
            with self.subTest(call=call), self.assertRaises(ClientError) as caught:
                call(FunctionName="hello", Name="nope")
            self.assertIn(f"Alias not found: {self.fn.arn}:nope", self.assertApiError(caught, "ResourceNotFoundException", 404))
        with self.assertRaises(ClientError) as caught:
            self.lam.update_alias(FunctionName="hello", Name="live", FunctionVersion="8")
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.assertEqual(Alias.objects.get(function=self.fn, name="live").version.number, 1)

    def test_bob_cannot_see_alices_versions_or_aliases(self):
        self.lam.create_alias(FunctionName="hello", Name="live", FunctionVersion="1")
        calls = [
            lambda name: self.bob_lam.list_versions_by_function(FunctionName=name),
            lambda name: self.bob_lam.publish_version(FunctionName=name),
            lambda name: self.bob_lam.get_alias(FunctionName=name, Name="live"),
            lambda name: self.bob_lam.list_aliases(FunctionName=name),
            lambda name: self.bob_lam.create_alias(FunctionName=name, Name="mine", FunctionVersion="1"),
            lambda name: self.bob_lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2"),
            lambda name: self.bob_lam.delete_alias(FunctionName=name, Name="live"),
        ]
        for call in calls:
            for name in ("hello", self.fn.arn):
                with self.subTest(name=name), self.assertRaises(ClientError) as caught:
                    call(name)
                self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.assertEqual(Version.objects.filter(function=self.fn).count(), 2)
        self.assertEqual(Alias.objects.get(function=self.fn, name="live").version.number, 1)


def fetch(url):
    """(status, Content-Type, body) of a GET; the socket is closed on return, an error's too (gunicorn's
    main loop waits up to 2 s for a client to close a "Connection: close" socket, and keep-alive
    connections with a request already sent can expire meanwhile)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Content-Type"], e.read()


class LayerTests(ApiCase):
    LIB = make_zip({"python/lib.py": "VALUE = 1\n"})

    def publish_layer(self, name="libs", archive=None, **params):
        params.setdefault("CompatibleRuntimes", [host_runtime()])
        return self.lam.publish_layer_version(LayerName=name, Content={"ZipFile": archive or self.LIB}, **params)

    def test_a_layer_is_published_read_listed_and_deleted(self):
        published = self.publish_layer(Description="first")
        self.assertEqual(published["ResponseMetadata"]["HTTPStatusCode"], 201)
        layer = Layer.objects.get(owner=self.alice, name="libs")
        self.assertEqual((published["LayerArn"], published["LayerVersionArn"], published["Version"]),
                         (layer.arn, f"{layer.arn}:1", 1))
        self.assertEqual(published["Content"]["CodeSha256"], base64.b64encode(hashlib.sha256(self.LIB).digest()).decode())
        self.assertEqual((published["Content"]["CodeSize"], published["CompatibleRuntimes"]), (len(self.LIB), [host_runtime()]))
        # Content.Location downloads the ZIP without signing in, as Lambda's presigned link does.
        self.assertEqual(fetch(published["Content"]["Location"]), (200, "application/zip", self.LIB))
        self.assertEqual(fetch(published["Content"]["Location"][:-3] + "xyz")[0], 404)

        second = self.publish_layer(archive=make_zip({"python/lib.py": "VALUE = 2\n"}), CompatibleRuntimes=[])
        self.assertEqual(second["Version"], 2)
        got = self.lam.get_layer_version(LayerName=layer.arn, VersionNumber=1)
        self.assertEqual((got["Description"], got["Content"]["CodeSha256"]), ("first", published["Content"]["CodeSha256"]))
        listed = self.lam.list_layers()["Layers"]
        self.assertEqual([(l["LayerName"], l["LatestMatchingVersion"]["Version"]) for l in listed], [("libs", 2)])
        # The newest version that declares the runtime.
        matching = self.lam.list_layers(CompatibleRuntime=host_runtime())["Layers"]
        self.assertEqual(matching[0]["LatestMatchingVersion"]["Version"], 1)
        self.assertEqual([v["Version"] for v in self.lam.list_layer_versions(LayerName="libs")["LayerVersions"]], [2, 1])

        deleted = self.lam.delete_layer_version(LayerName="libs", VersionNumber=1)
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        with self.assertRaises(ClientError) as caught:
            self.lam.get_layer_version(LayerName="libs", VersionNumber=1)
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        # Deleting what is not there is still a 204, as in Lambda.
        self.assertEqual(self.lam.delete_layer_version(LayerName="libs", VersionNumber=1)
                         ["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.lam.delete_layer_version(LayerName="libs", VersionNumber=2)
        self.assertEqual(self.lam.list_layers()["Layers"], [])
        # As in Lambda, numbers are never given again: publishing after every version is gone makes 3.
        self.assertEqual(self.publish_layer()["Version"], 3)

    def test_layers_and_versions_list_in_pages(self):
        for name in ("a", "b", "c"):
            self.publish_layer(name)
        for _ in range(2):
            self.publish_layer("c")
        first = self.lam.list_layers(MaxItems=2)
        self.assertEqual([l["LayerName"] for l in first["Layers"]], ["a", "b"])
        rest = self.lam.list_layers(MaxItems=2, Marker=first["NextMarker"])
        self.assertEqual(([l["LayerName"] for l in rest["Layers"]], rest.get("NextMarker")), (["c"], None))
        versions = self.lam.get_paginator("list_layer_versions").paginate(LayerName="c", PaginationConfig={"PageSize": 1})
        self.assertEqual([v["Version"] for page in versions for v in page["LayerVersions"]], [3, 2, 1])

    def test_a_version_a_function_uses_is_not_deleted(self):
        self.publish_layer()
        version = LayerVersion.objects.get(layer__name="libs")
        self.fn.set_layers([version])
        with self.assertRaises(ClientError) as caught:
            self.lam.delete_layer_version(LayerName="libs", VersionNumber=1)
        self.assertIn("is used by hello", self.assertApiError(caught, "ResourceConflictException", 409))
        self.assertTrue(LayerVersion.objects.filter(pk=version.pk).exists())

    def test_bad_layers_are_refused_with_the_console_forms_message(self):
        cases = [
            ({"archive": make_zip({"../escape.py": "x"})}, "Content.ZipFile: "),
            ({"CompatibleRuntimes": ["nodejs20.x"]}, "CompatibleRuntimes: "),
            ({"CompatibleArchitectures": ["arm64"]}, "CompatibleArchitectures: "),
            ({"Description": "x" * 257}, "Description: "),
        ]
        for params, words in cases:
            with self.subTest(params=params), self.assertRaises(ClientError) as caught:
                self.raw_lam.publish_layer_version(
                    LayerName="libs", Content={"ZipFile": params.pop("archive", self.LIB)}, **params)
            self.assertIn(words, self.assertApiError(caught, "InvalidParameterValueException", 400))
        with self.assertRaises(ClientError) as caught:
            self.raw_lam.publish_layer_version(LayerName="libs", Content={"S3Bucket": "b", "S3Key": "k"})
        self.assertApiError(caught, "InvalidParameterValueException", 400)
        self.assertFalse(Layer.objects.exists())

    def test_a_console_layer_shows_in_the_api_and_an_api_layer_in_the_console(self):
        self.client.force_login(self.alice)
        self.client.post(reverse("layers:layer_list"), {
            "name": "console-made", "description": "by hand", "compatible_runtimes": [host_runtime()],
            "code": SimpleUploadedFile("layer.zip", self.LIB, content_type="application/zip")})
        got = self.lam.get_layer_version(LayerName="console-made", VersionNumber=1)
        self.assertEqual((got["Description"], got["CompatibleRuntimes"]), ("by hand", [host_runtime()]))
        api_made = self.publish_layer("api-made", Description="through boto3")
        page = self.client.get(reverse("layers:layer", args=["api-made"]))
        self.assertContains(page, api_made["LayerVersionArn"])
        self.assertContains(page, "through boto3")

    def test_bob_cannot_see_alices_layers(self):
        published = self.publish_layer()
        self.assertEqual(self.bob_lam.list_layers()["Layers"], [])
        self.assertEqual(self.bob_lam.list_layer_versions(LayerName="libs")["LayerVersions"], [])
        for name in ("libs", published["LayerArn"]):
            with self.subTest(name=name), self.assertRaises(ClientError) as caught:
                self.bob_lam.get_layer_version(LayerName=name, VersionNumber=1)
            self.assertApiError(caught, "ResourceNotFoundException", 404)
        # Bob's delete of "libs" finds no layer of his: nothing of alice's goes.
        self.bob_lam.delete_layer_version(LayerName="libs", VersionNumber=1)
        self.assertTrue(LayerVersion.objects.filter(layer__owner=self.alice).exists())

    def test_a_layer_version_is_found_by_its_arn(self):
        self.publish_layer(Description="first")
        second = self.publish_layer(archive=make_zip({"python/lib.py": "VALUE = 2\n"}), Description="second")
        found = self.lam.get_layer_version_by_arn(Arn=f"{second['LayerArn']}:1")
        by_name = self.lam.get_layer_version(LayerName="libs", VersionNumber=1)
        for key in ("LayerArn", "LayerVersionArn", "Version", "Description", "CreatedDate", "CompatibleRuntimes",
                    "CompatibleArchitectures"):
            self.assertEqual(found[key], by_name[key], key)
        self.assertEqual((found["Version"], found["Description"]), (1, "first"))
        self.assertEqual(found["Content"]["CodeSha256"], base64.b64encode(hashlib.sha256(self.LIB).digest()).decode())
        with urllib.request.urlopen(found["Content"]["Location"], timeout=30) as download:
            self.assertEqual(download.read(), self.LIB)
        self.assertEqual(self.lam.get_layer_version_by_arn(Arn=second["LayerVersionArn"])["Description"], "second")
        # The same path without ?find=LayerVersion is still ListLayers.
        self.assertEqual([l["LayerName"] for l in self.lam.list_layers()["Layers"]], ["libs"])

    def test_a_layer_published_in_the_console_is_found_by_its_arn(self):
        self.client.force_login(self.alice)
        self.client.post(reverse("layers:layer_list"), {
            "name": "console-made", "description": "from the page", "compatible_runtimes": [host_runtime()],
            "code": SimpleUploadedFile("layer.zip", self.LIB, content_type="application/zip")})
        version = LayerVersion.objects.get(layer__name="console-made")
        found = self.lam.get_layer_version_by_arn(Arn=version.arn)
        self.assertEqual((found["LayerVersionArn"], found["Description"]), (version.arn, "from the page"))

    def test_unknown_malformed_and_other_users_layer_versions(self):
        published = self.publish_layer()
        arn = published["LayerVersionArn"]
        region, account = arn.split(":")[3], arn.split(":")[4]
        for missing in (f"{published['LayerArn']}:2", arn.replace(":libs:", ":other:"),
                        arn.replace(f":{region}:", ":eu-west-3:"), arn.replace(f":{account}:", ":000000000000:")):
            with self.subTest(missing), self.assertRaises(ClientError) as caught:
                self.lam.get_layer_version_by_arn(Arn=missing)
            self.assertEqual(self.assertApiError(caught, "ResourceNotFoundException", 404),
                             "The resource you requested does not exist.")
        with self.assertRaises(ClientError) as caught:
            self.bob_lam.get_layer_version_by_arn(Arn=arn)
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        for malformed in ("libs:1", published["LayerArn"], f"{published['LayerArn']}:one", f"{arn}:1"):
            with self.subTest(malformed), self.assertRaises(ClientError) as caught:
                self.raw_lam.get_layer_version_by_arn(Arn=malformed)
            self.assertIn("'arn'", self.assertApiError(caught, "InvalidParameterValueException", 400))
