"""Storage buckets: names, keys that cannot be paths, uploads streamed to disk, browsing, deleting, notifications
with S3's event (against AWS's documented example), their filters and overlaps, and the read-only mount a
function with a notification reads its bucket through."""

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import stat
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.test import TransactionTestCase, override_settings
from django.urls import reverse

from functions.models import Alias, Trigger
from invocations.buckets import notifications, storage
from invocations.buckets.models import Bucket, Object
from invocations.buckets.notifications import Requester, encode_key
from invocations.buckets.storage import IncompleteBody
from invocations.models import Invocation
from tests.base import BaseTestCase, World, WorkerTestCase, handler_zip
from tests.processes import marked_processes, use_queue, wait_for

ECHO = "def handler(event, context):\n    return event\n"

# The example S3 notification event of the Lambda developer guide ("Using AWS Lambda with Amazon S3"):
# https://docs.aws.amazon.com/lambda/latest/dg/with-s3.html
# (awsdocs/aws-lambda-developer-guide, doc_source/with-s3.md)
AWS_EXAMPLE = json.loads("""
{
  "Records": [
    {
      "eventVersion": "2.1",
      "eventSource": "aws:s3",
      "awsRegion": "us-east-2",
      "eventTime": "2019-09-03T19:37:27.192Z",
      "eventName": "ObjectCreated:Put",
      "userIdentity": {
        "principalId": "AWS:AIDAINPONIXQXHT3IKHL2"
      },
      "requestParameters": {
        "sourceIPAddress": "205.255.255.255"
      },
      "responseElements": {
        "x-amz-request-id": "D82B88E5F771F645",
        "x-amz-id-2": "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="
      },
      "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "828aa6fc-f7b5-4305-8584-487c791949c1",
        "bucket": {
          "name": "DOC-EXAMPLE-BUCKET",
          "ownerIdentity": {
            "principalId": "A3I5XTEXAMAI3E"
          },
          "arn": "arn:aws:s3:::lambda-artifacts-deafc19498e3f2df"
        },
        "object": {
          "key": "b21b84d653bb07b05b1e6b33684dc11b",
          "size": 1305107,
          "eTag": "b21b84d653bb07b05b1e6b33684dc11b",
          "sequencer": "0C0F6F405D6ED209E1"
        }
      }
    }
  ]
}
""")


def shape(value):
    """The structure of a JSON value: its keys, nesting and scalar types, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def files_under(path):
    """{relative path: bytes} of every file under `path` (hidden staging folders included)."""
    found = {}
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = f.read()
    return found


class BucketWorld:
    def use_own_buckets_dir(self):
        """Objects of this test only (TestCase rolls back rows, not files); tests without workers may."""
        path = tempfile.mkdtemp(dir=settings.DATA_DIR, prefix="buckets-")
        os.chmod(path, 0o711)
        self.addCleanup(shutil.rmtree, path)
        self.enterContext(override_settings(BUCKETS_DIR=Path(path)))

    def make_bucket(self, name="photos", owner=None):
        return Bucket.create(owner or self.alice, name)

    def put(self, bucket, key, data=b"hello", content_type="text/plain", client=None):
        """PUT `data` to the object's URL as the browser page does (raw body, session and CSRF)."""
        url = reverse("buckets:object", args=[bucket.name, key])
        return (client or self.client).put(url, data, content_type=content_type)

    def put_quoted(self, bucket, quoted_key, data=b"hello"):
        """PUT to a key given percent-encoded (for keys no URL path can carry as they are)."""
        return self.client.put(f"/buckets/{bucket.name}/objects/{quoted_key}", data, content_type="text/plain")

    def notify_to(self, function, bucket, events=("s3:ObjectCreated:*",), prefix="", suffix="", qualifier=""):
        """Add a bucket notification through the trigger page, as the console does; return it."""
        response = self.client.post(reverse("functions:new_trigger", args=[function.name, "bucket"]), {
            "bucket": bucket.pk, "events": list(events), "prefix": prefix, "suffix": suffix,
            "qualifier": qualifier, "enabled": "on"})
        assert response.status_code == 302, response.content.decode()
        return Trigger.objects.filter(function=function, kind=Trigger.Kind.BUCKET).latest("created_at")

    def requester(self):
        return Requester(self.alice, "127.0.0.1")


class BucketPageTests(BucketWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.use_own_buckets_dir()
        self.client.force_login(self.alice)

    def test_it_creates_a_bucket_with_a_directory_sandboxes_can_read(self):
        response = self.client.post(reverse("buckets:list"), {"name": "my-photos.2026"})
        bucket = Bucket.objects.get(name="my-photos.2026")
        self.assertRedirects(response, bucket.get_absolute_url())
        self.assertEqual(bucket.owner, self.alice)
        self.assertEqual(bucket.arn, "arn:aws:s3:::my-photos.2026")
        self.assertEqual(stat.S_IMODE(os.stat(bucket.directory).st_mode), 0o755)
        self.assertEqual(os.listdir(bucket.directory), [])
        page = self.client.get(reverse("buckets:list"))
        self.assertContains(page, "my-photos.2026")

    def test_it_refuses_names_that_break_s3s_rules(self):
        cases = {
            "ab": "3 to 63 characters",
            "a" * 64: "3 to 63 characters",
            "My-Photos": "only lower-case letters",
            "under_score": "only lower-case letters",
            "-photos": "starts and ends with a letter or digit",
            "photos.": "starts and ends with a letter or digit",
            "my..photos": "no two adjacent dots",
            "192.168.1.20": "not an IP address",
            "xn--photos": "S3 reserves them",
            "photos-s3alias": "S3 reserves them",
        }
        for name, message in cases.items():
            with self.subTest(name=name):
                response = self.client.post(reverse("buckets:list"), {"name": name})
                self.assertEqual(response.status_code, 400)
                self.assertIn(message, " ".join(response.context["form"].errors["name"]))
        self.assertFalse(Bucket.objects.exists())
        self.assertEqual([d for d in os.listdir(settings.BUCKETS_DIR) if not d.startswith(".")], [])

    def test_a_name_is_unique_across_users(self):
        self.make_bucket("photos", owner=self.bob)
        response = self.client.post(reverse("buckets:list"), {"name": "photos"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("That name is taken", response.context["form"].errors["name"][0])
        self.assertEqual(Bucket.objects.get().owner, self.bob)

    def test_an_upload_is_stored_with_its_md5_etag_and_increasing_sequencers(self):
        bucket = self.make_bucket()
        response = self.put(bucket, "albums/2026/cat.txt", b"meow" * 1000, content_type="text/plain")
        self.assertEqual(response.status_code, 200, response.content)
        md5 = hashlib.md5(b"meow" * 1000).hexdigest()
        self.assertEqual(response["ETag"], f'"{md5}"')
        self.assertEqual(response.json(), {"Key": "albums/2026/cat.txt", "Size": 4000, "ETag": f'"{md5}"',
                                           "Location": "/buckets/photos/objects/albums/2026/cat.txt"})
        first = Object.objects.get(bucket=bucket, key="albums/2026/cat.txt")
        self.assertEqual((first.size, first.etag, first.content_type), (4000, f'"{md5}"', "text/plain"))
        path = bucket.directory / "albums/2026/cat.txt"
        self.assertEqual(path.read_bytes(), b"meow" * 1000)
        # Readable by the sandboxes' uids, writable only by the console's.
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644)
        for folder in (bucket.directory / "albums", bucket.directory / "albums/2026"):
            self.assertEqual(stat.S_IMODE(folder.stat().st_mode), 0o755)

        # Replacing it: new bytes, new ETag, a later sequencer; still one object.
        self.assertEqual(self.put(bucket, "albums/2026/cat.txt", b"purr").status_code, 200)
        second = Object.objects.get(bucket=bucket, key="albums/2026/cat.txt")
        self.assertEqual(path.read_bytes(), b"purr")
        self.assertEqual(second.etag, f'"{hashlib.md5(b"purr").hexdigest()}"')
        self.assertRegex(first.sequencer, r"^[0-9A-F]{18}$")
        self.assertGreater(second.sequencer, first.sequencer)
        self.assertEqual(Object.objects.count(), 1)
        # Nothing left in the staging folders.
        self.assertEqual(files_under(os.path.join(settings.BUCKETS_DIR, ".uploads")), {})

    def test_keys_with_url_characters_round_trip_through_their_url(self):
        bucket = self.make_bucket()
        key = "odd/what?#%& +name;é.txt"
        # As the page's script builds the URL: each folder and the name percent-encoded.
        response = self.put_quoted(bucket, "/".join(urllib.parse.quote(part, safe="") for part in key.split("/")),
                                   b"odd")
        self.assertEqual(response.status_code, 200, response.content)
        obj = Object.objects.get()
        self.assertEqual(obj.key, key)
        self.assertEqual((bucket.directory / key).read_bytes(), b"odd")
        self.assertEqual(b"".join(self.client.get(obj.get_absolute_url()).streaming_content), b"odd")

    def test_without_a_content_type_it_is_guessed_from_the_key(self):
        bucket = self.make_bucket()
        response = self.client.generic("PUT", f"/buckets/{bucket.name}/objects/page.html", b"<p>hi</p>",
                                       content_type="")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(Object.objects.get().content_type, "text/html")

    def test_it_refuses_forbidden_keys_and_writes_nothing(self):
        bucket = self.make_bucket()
        cases = {
            "%2Fetc%2Fpasswd": "starts with /",
            "a//b": "empty folder name",
            "folder/": "empty folder name",
            "a/%2E%2E/b": "“..” folder name",
            "%2E%2E": "“..” folder name",
            "a/./b": "“.” folder name",
            "a%5Cb": "backslash",
            "bell%07.txt": "control character U+0007",
            "nul%00.txt": "control character U+0000",
            "line%0Abreak": "control character U+000A",
            "del%7F": "control character U+007F",
            urllib.parse.quote("invoice\u202egpj.exe"): "bidirectional control character U+202E",
            "x" * 1025: "longer than 1024 bytes",
            urllib.parse.quote("é" * 513): "longer than 1024 bytes",  # 513 characters, 1026 bytes
            "d/" + "n" * 256: "longer than 255 bytes",
        }
        for quoted, message in cases.items():
            with self.subTest(key=quoted):
                response = self.put_quoted(bucket, quoted)
                self.assertEqual(response.status_code, 400, response.content)
                self.assertEqual(response.json()["__type"], "InvalidArgument")
                self.assertIn(message, response.json()["message"])
        self.assertFalse(Object.objects.exists())
        self.assertEqual(files_under(settings.BUCKETS_DIR), {})
        self.assertEqual(Bucket.objects.get().sequence, 0)

    def test_an_empty_key_is_refused(self):
        bucket = self.make_bucket()
        with self.assertRaisesMessage(Exception, "The key is empty."):
            bucket.put_object("", io.BytesIO(b"x"), 1, "text/plain", self.requester())
        self.assertFalse(Object.objects.exists())

    def test_a_key_cannot_be_both_an_object_and_a_folder(self):
        bucket = self.make_bucket()
        self.assertEqual(self.put(bucket, "a/b", b"1").status_code, 200)
        self.assertEqual(self.put(bucket, "c", b"2").status_code, 200)
        for key, message in [("a", "“a” is a folder of other objects"),
                             ("c/d", "“c” is an object, so it cannot also be a folder of “c/d”"),
                             ("c/d/e", "“c” is an object")]:
            with self.subTest(key=key):
                response = self.put(bucket, key, b"3")
                self.assertEqual(response.status_code, 409)
                self.assertEqual(response.json()["__type"], "KeyConflict")
                self.assertIn(message, response.json()["message"])
        self.assertEqual(sorted(Object.objects.values_list("key", flat=True)), ["a/b", "c"])
        self.assertEqual(files_under(bucket.directory), {"a/b": b"1", "c": b"2"})
        # Keys differing only in case are different keys (the prefix test is exact, even on SQLite).
        self.assertEqual(self.put(bucket, "A", b"4").status_code, 200)
        self.assertEqual(self.put(bucket, "C/d", b"5").status_code, 200)

    def test_an_object_over_the_limit_is_refused_before_its_body_is_read(self):
        bucket = self.make_bucket()
        with override_settings(BUCKET_MAX_OBJECT_BYTES=10):
            response = self.put(bucket, "big.bin", b"x" * 11)
            self.assertEqual(response.status_code, 413)
            self.assertEqual(response.json()["__type"], "EntityTooLarge")
            self.assertEqual(self.put(bucket, "fits.bin", b"x" * 10).status_code, 200)
        self.assertEqual(list(Object.objects.values_list("key", flat=True)), ["fits.bin"])

    def test_a_body_shorter_than_declared_stores_nothing(self):
        bucket = self.make_bucket()
        with self.assertRaisesMessage(IncompleteBody, "ended after 5 of the 100 bytes"):
            bucket.put_object("short.txt", io.BytesIO(b"hello"), 100, "text/plain", self.requester())
        self.assertFalse(Object.objects.exists())
        self.assertEqual(files_under(settings.BUCKETS_DIR), {})

    def test_a_failure_in_the_transaction_keeps_the_old_object_and_its_file(self):
        bucket = self.make_bucket()
        fn = self.create_function(handler_zip(ECHO))
        self.notify_to(fn, bucket, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])
        self.put(bucket, "doc.txt", b"old")
        old = Object.objects.get()
        attempts = [
            lambda: bucket.put_object("doc.txt", io.BytesIO(b"new!"), 4, "text/plain", self.requester()),
            lambda: bucket.put_object("new/doc.txt", io.BytesIO(b"new!"), 4, "text/plain", self.requester()),
            lambda: bucket.delete_object("doc.txt", self.requester()),
        ]
        # The notification's invocation cannot be recorded: the object's change is rolled back with it.
        with mock.patch.object(notifications, "send", side_effect=RuntimeError("database went away")):
            for attempt in attempts:
                with self.assertRaisesMessage(RuntimeError, "database went away"):
                    attempt()
        # The last step fails after the file has moved (as a failed commit would): the move is undone.
        with mock.patch.object(storage, "_fsync_dir", side_effect=OSError("disk went away")):
            for attempt in attempts[:2]:
                with self.assertRaisesMessage(OSError, "disk went away"):
                    attempt()
        with mock.patch.object(storage, "_prune", side_effect=OSError("disk went away")):
            with self.assertRaisesMessage(OSError, "disk went away"):
                attempts[2]()
        self.assertEqual(list(Object.objects.all()), [old])
        self.assertEqual(Object.objects.get().etag, old.etag)
        self.assertEqual(files_under(bucket.directory), {"doc.txt": b"old"})
        self.assertEqual(os.listdir(bucket.directory), ["doc.txt"])  # no folder "new" left either
        self.assertEqual(Invocation.objects.count(), 1)  # the first upload's
        self.assertEqual(files_under(os.path.join(settings.BUCKETS_DIR, ".uploads")), {})

    def test_the_bucket_page_browses_by_prefix_with_folders(self):
        bucket = self.make_bucket()
        for key in ["top.txt", "docs/a.txt", "docs/b.txt", "docs/deep/c.txt", "Docs/upper.txt", "my folder/x+y.txt"]:
            self.assertEqual(self.put(bucket, key, key.encode()).status_code, 200)
        root = self.client.get(bucket.get_absolute_url())
        self.assertEqual(root.context["folders"], [("Docs", 1), ("docs", 3), ("my folder", 1)])
        self.assertEqual([o.key for o in root.context["objects"]], ["top.txt"])
        self.assertContains(root, 'href="?prefix=my%20folder%2F"')
        docs = self.client.get(bucket.get_absolute_url(), {"prefix": "docs/"})
        # Exact: "Docs/upper.txt" is not under "docs/" (SQLite's LIKE would say it is).
        self.assertEqual(docs.context["folders"], [("deep", 1)])
        self.assertEqual([o.key for o in docs.context["objects"]], ["docs/a.txt", "docs/b.txt"])
        self.assertEqual(docs.context["crumbs"], [("docs", "docs/")])
        self.assertContains(docs, "/buckets/photos/objects/docs/a.txt")
        self.assertEqual(docs.context["totals"], {"count": 6, "size": sum(len(k) for k in [
            "top.txt", "docs/a.txt", "docs/b.txt", "docs/deep/c.txt", "Docs/upper.txt", "my folder/x+y.txt"])})

    def test_a_download_is_a_streamed_attachment(self):
        bucket = self.make_bucket()
        self.put(bucket, "pics/my photo+1.html", b"<script>alert(1)</script>", content_type="text/html")
        response = self.client.get(Object.objects.get().get_absolute_url())
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.streaming)
        self.assertEqual(b"".join(response.streaming_content), b"<script>alert(1)</script>")
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="my photo+1.html"')
        self.assertEqual(response["Content-Security-Policy"], "sandbox")
        self.assertEqual(response["ETag"], Object.objects.get().etag)
        self.assertEqual(self.client.get("/buckets/photos/objects/pics/missing").status_code, 404)

    def test_deleting_an_object_removes_its_file_and_empty_folders(self):
        bucket = self.make_bucket()
        self.put(bucket, "a/b/c.txt", b"1")
        self.put(bucket, "a/d.txt", b"2")
        response = self.client.post(reverse("buckets:delete_object", args=[bucket.name]), {"key": "a/b/c.txt"})
        self.assertRedirects(response, f"{bucket.get_absolute_url()}?prefix=a%2Fb%2F", fetch_redirect_response=False)
        self.assertEqual(list(Object.objects.values_list("key", flat=True)), ["a/d.txt"])
        self.assertFalse((bucket.directory / "a/b").exists())
        # The folder is gone, so "a/b" may now be an object.
        self.assertEqual(self.put(bucket, "a/b", b"3").status_code, 200)
        # The API's DELETE, then for a key that is not there: 204 both, as S3 answers.
        self.assertEqual(self.client.delete("/buckets/photos/objects/a/d.txt").status_code, 204)
        self.assertEqual(self.client.delete("/buckets/photos/objects/a/d.txt").status_code, 204)
        self.assertEqual(files_under(bucket.directory), {"a/b": b"3"})

    def test_a_bucket_with_objects_is_deleted_only_when_confirmed(self):
        bucket = self.make_bucket()
        fn = self.create_function(handler_zip(ECHO))
        self.notify_to(fn, bucket)
        self.put(bucket, "x.txt", b"1")
        directory = bucket.directory
        response = self.client.post(reverse("buckets:delete", args=[bucket.name]), follow=True)
        self.assertContains(response, "holds 1 object(s)")
        self.assertTrue(Bucket.objects.exists())
        response = self.client.post(reverse("buckets:delete", args=[bucket.name]), {"with_objects": "on"})
        self.assertRedirects(response, reverse("buckets:list"))
        self.assertFalse(Bucket.objects.exists() or Object.objects.exists())
        self.assertFalse(fn.triggers.exists())  # its notification went with it
        fn.refresh_from_db()
        self.assertEqual(fn.mounts, [])
        self.assertFalse(directory.exists())

    def test_another_user_gets_404_for_a_bucket_and_its_objects(self):
        bucket = self.make_bucket()
        self.put(bucket, "secret.txt", b"alice's")
        self.client.force_login(self.bob)
        for response in [
            self.client.get(bucket.get_absolute_url()),
            self.client.get("/buckets/photos/objects/secret.txt"),
            self.put(bucket, "planted.txt", b"bob's"),
            self.client.delete("/buckets/photos/objects/secret.txt"),
            self.client.post(reverse("buckets:delete_object", args=["photos"]), {"key": "secret.txt"}),
            self.client.post(reverse("buckets:delete", args=["photos"]), {"with_objects": "on"}),
        ]:
            self.assertEqual(response.status_code, 404)
        self.assertNotContains(self.client.get(reverse("buckets:list")), "photos")
        # A program with bob's name and password: the same.
        self.client.logout()
        basic = base64.b64encode(b"bob:bob-password-1").decode()
        response = self.client.put("/buckets/photos/objects/planted.txt", b"bob's", content_type="text/plain",
                                   HTTP_AUTHORIZATION=f"Basic {basic}")
        self.assertEqual(response.status_code, 404)
        self.assertEqual(list(Object.objects.values_list("key", flat=True)), ["secret.txt"])
        self.assertEqual(files_under(bucket.directory), {"secret.txt": b"alice's"})

    def test_a_program_uploads_with_http_basic_and_a_page_needs_its_csrf_token(self):
        bucket = self.make_bucket()
        basic = base64.b64encode(b"alice:alice-password-1").decode()
        anonymous = self.client_class()
        response = anonymous.put("/buckets/photos/objects/by-program.txt", b"hi", content_type="text/plain",
                                 HTTP_AUTHORIZATION=f"Basic {basic}")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(anonymous.put("/buckets/photos/objects/x.txt", b"hi").status_code, 401)
        browser = self.client_class(enforce_csrf_checks=True)
        browser.force_login(self.alice)
        self.assertEqual(self.put(bucket, "no-token.txt", client=browser).status_code, 403)
        self.assertEqual(list(Object.objects.values_list("key", flat=True)), ["by-program.txt"])


class NotificationFormTests(BucketWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.use_own_buckets_dir()
        self.client.force_login(self.alice)
        self.fn = self.create_function(handler_zip(ECHO))
        self.bucket = self.make_bucket()

    def post(self, **data):
        fields = {"bucket": self.bucket.pk, "events": ["s3:ObjectCreated:*"], "prefix": "", "suffix": "",
                  "qualifier": "", "enabled": "on", **data}
        return self.client.post(reverse("functions:new_trigger", args=[self.fn.name, "bucket"]), fields)

    def test_it_saves_a_notification_and_mounts_the_bucket(self):
        trigger = self.notify_to(self.fn, self.bucket, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"],
                                 prefix="uploads/", suffix=".jpg")
        self.assertEqual(trigger.config["bucket"], self.bucket.pk)
        self.assertEqual(trigger.config["events"], ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"])
        self.assertEqual((trigger.config["prefix"], trigger.config["suffix"]), ("uploads/", ".jpg"))
        uuid.UUID(trigger.config["id"])  # its configurationId
        self.assertEqual(trigger.config["summary"],
                         "photos · s3:ObjectCreated:*, s3:ObjectRemoved:Delete · prefix uploads/ · suffix .jpg")
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.mounts, [{"bucket": "photos", "directory": self.bucket.directory_name}])
        page = self.client.get(self.fn.get_absolute_url())
        self.assertContains(page, "photos · s3:ObjectCreated:*")

    def test_the_functions_mounts_follow_its_notifications(self):
        other = self.make_bucket("archive")
        first = self.notify_to(self.fn, self.bucket)
        self.notify_to(self.fn, other)
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive", "photos"])
        self.client.post(reverse("functions:toggle_trigger", args=[self.fn.name, first.pk]))
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive"])
        self.client.post(reverse("functions:toggle_trigger", args=[self.fn.name, first.pk]))
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive", "photos"])
        self.client.post(reverse("functions:delete_trigger", args=[self.fn.name, first.pk]))
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive"])
        # A notification through an alias goes when the alias does.
        self.fn.publish()
        Alias.objects.create(function=self.fn, name="live", version=self.fn.versions.get())
        self.notify_to(self.fn, self.bucket, qualifier="live")
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive", "photos"])
        self.client.post(reverse("functions:delete_alias", args=[self.fn.name, "live"]))
        self.fn.refresh_from_db()
        self.assertEqual([m["bucket"] for m in self.fn.mounts], ["archive"])

    def test_another_users_bucket_cannot_be_chosen(self):
        bobs = self.make_bucket("bobs-bucket", owner=self.bob)
        page = self.client.get(reverse("functions:new_trigger", args=[self.fn.name, "bucket"]))
        self.assertNotContains(page, "bobs-bucket")
        response = self.post(bucket=bobs.pk)
        self.assertEqual(response.status_code, 400)
        self.assertIn("Select a valid choice", response.context["form"].errors["bucket"][0])
        self.assertFalse(Trigger.objects.exists())
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.mounts, [])

    def test_overlapping_notifications_on_a_bucket_are_refused_as_s3_does(self):
        self.notify_to(self.fn, self.bucket, events=["s3:ObjectCreated:*"], prefix="images/", suffix=".jpg")
        other_fn = self.create_function(handler_zip(ECHO), name="other")
        overlapping = [
            dict(events=["s3:ObjectCreated:Put"], prefix="images/", suffix=".jpg"),  # Put is in ObjectCreated:*
            dict(events=["s3:ObjectCreated:*"], prefix="", suffix=""),  # empty filters overlap everything
            dict(events=["s3:ObjectCreated:*"], prefix="images/2026/", suffix=""),  # one prefix starts the other
            dict(events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], prefix="im", suffix="g"),
        ]
        for data in overlapping:
            for fn in (self.fn, other_fn):  # across all the bucket's notifications, whichever function
                with self.subTest(data=data, function=fn.name):
                    response = self.client.post(reverse("functions:new_trigger", args=[fn.name, "bucket"]), {
                        "bucket": self.bucket.pk, "qualifier": "", "enabled": "on", **data})
                    self.assertEqual(response.status_code, 400)
                    self.assertIn("Configurations overlap. Configurations on the same bucket cannot share a common "
                                  "event type", response.content.decode())
        self.assertEqual(Trigger.objects.count(), 1)
        distinct = [
            dict(events=["s3:ObjectRemoved:*"], prefix="images/", suffix=".jpg"),  # no common event type
            dict(events=["s3:ObjectCreated:*"], prefix="videos/", suffix=".jpg"),  # neither prefix starts the other
            dict(events=["s3:ObjectCreated:Put"], prefix="images/", suffix=".png"),  # neither suffix ends the other
        ]
        for data in distinct:
            with self.subTest(data=data):
                self.assertEqual(self.client.post(reverse("functions:new_trigger", args=[other_fn.name, "bucket"]), {
                    "bucket": self.bucket.pk, "qualifier": "", "enabled": "on", **data}).status_code, 302)
        self.assertEqual(Trigger.objects.count(), 4)

    def test_editing_a_notification_does_not_overlap_with_itself(self):
        trigger = self.notify_to(self.fn, self.bucket, prefix="a/")
        response = self.client.post(reverse("functions:trigger", args=[self.fn.name, trigger.pk]), {
            "bucket": self.bucket.pk, "events": ["s3:ObjectCreated:*"], "prefix": "a/b/", "suffix": "",
            "qualifier": "", "enabled": "on"})
        self.assertEqual(response.status_code, 302)
        trigger.refresh_from_db()
        self.assertEqual(trigger.config["prefix"], "a/b/")

    def test_at_least_one_event_type_is_needed(self):
        response = self.post(events=[])
        self.assertEqual(response.status_code, 400)
        self.assertIn("Choose at least one event type.", response.context["form"].errors["events"])


class EventTests(BucketWorld, BaseTestCase):
    """S3's event, field by field against AWS's example, and which uploads and deletes invoke what (the rows
    are written in the transaction; the workers are not needed to see them)."""

    def setUp(self):
        super().setUp()
        self.use_own_buckets_dir()
        self.client.force_login(self.alice)
        self.fn = self.create_function(handler_zip(ECHO))
        self.bucket = self.make_bucket()

    def events_of(self, trigger):
        return [json.loads(i.event) for i in Invocation.objects.filter(trigger=trigger).order_by("created_at")]

    def test_an_upload_sends_s3s_event_shaped_as_awss_example(self):
        trigger = self.notify_to(self.fn, self.bucket)
        self.put(self.bucket, "b21b84d653bb07b05b1e6b33684dc11b", b"x" * 1234, content_type="application/zip")
        invocation = Invocation.objects.get(trigger=trigger)
        self.assertEqual((invocation.kind, invocation.source, invocation.function), ("Event", "bucket", self.fn))
        self.assertIn("async", invocation.config)  # Lambda's asynchronous retries and destinations apply
        event = json.loads(invocation.event)
        self.assertEqual(shape(event), shape(AWS_EXAMPLE))
        record, example = event["Records"][0], AWS_EXAMPLE["Records"][0]
        for name in ("eventVersion", "eventSource", "eventName"):
            self.assertEqual(record[name], example[name])
        self.assertEqual(record["s3"]["s3SchemaVersion"], example["s3"]["s3SchemaVersion"])
        self.assertEqual(record["awsRegion"], settings.LAMBDA_REGION)
        self.assertRegex(record["eventTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(record["userIdentity"]["principalId"], f"AWS:{self.alice.pk:012d}")
        self.assertEqual(record["requestParameters"]["sourceIPAddress"], "127.0.0.1")
        self.assertRegex(record["responseElements"]["x-amz-request-id"], r"^[0-9A-F]{16}$")
        self.assertEqual(len(record["responseElements"]["x-amz-id-2"]),
                         len(example["responseElements"]["x-amz-id-2"]))
        base64.b64decode(record["responseElements"]["x-amz-id-2"], validate=True)
        s3 = record["s3"]
        self.assertEqual(s3["configurationId"], trigger.config["id"])
        self.assertEqual(s3["bucket"], {"name": "photos", "ownerIdentity": {"principalId": f"{self.alice.pk:012d}"},
                                        "arn": "arn:aws:s3:::photos"})
        obj = Object.objects.get()
        self.assertEqual(s3["object"], {"key": "b21b84d653bb07b05b1e6b33684dc11b", "size": 1234,
                                        "eTag": hashlib.md5(b"x" * 1234).hexdigest(), "sequencer": obj.sequencer})
        self.assertRegex(s3["object"]["sequencer"], r"^[0-9A-F]{18}$")  # as the example's 0C0F6F405D6ED209E1

    def test_keys_are_url_encoded_as_s3_does(self):
        self.assertEqual(encode_key("my photo+1.jpg"), "my+photo%2B1.jpg")
        self.assertEqual(encode_key("red flower.jpg"), "red+flower.jpg")  # S3's own example
        self.assertEqual(encode_key("dt=2026-01-01/a:b.json"), "dt%3D2026-01-01/a%3Ab.json")
        self.assertEqual(encode_key("it's (1)*!_-.~"), "it's+(1)*!_-.%7E")
        self.assertEqual(encode_key("ünï/日本.txt"), "%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC.txt")
        for key in ["my photo+1.jpg", "a%20b/c&d?e#f.txt", "ünï/日本.txt"]:
            self.assertEqual(urllib.parse.unquote_plus(encode_key(key)), key)
        trigger = self.notify_to(self.fn, self.bucket)
        self.put(self.bucket, "albums/my photo+1.jpg", b"jpg")
        self.assertEqual(self.events_of(trigger)[0]["Records"][0]["s3"]["object"]["key"], "albums/my+photo%2B1.jpg")

    def test_a_delete_sends_object_removed_with_only_key_and_sequencer(self):
        trigger = self.notify_to(self.fn, self.bucket, events=["s3:ObjectRemoved:*"])
        self.put(self.bucket, "gone soon.txt", b"bye")
        self.assertEqual(self.events_of(trigger), [])  # ObjectCreated is not asked for
        created = Object.objects.get()
        self.client.post(reverse("buckets:delete_object", args=["photos"]), {"key": "gone soon.txt"})
        [event] = self.events_of(trigger)
        record = event["Records"][0]
        self.assertEqual(record["eventName"], "ObjectRemoved:Delete")
        # S3 leaves size and eTag out of ObjectRemoved events.
        self.assertEqual(set(record["s3"]["object"]), {"key", "sequencer"})
        self.assertEqual(record["s3"]["object"]["key"], "gone+soon.txt")
        self.assertGreater(record["s3"]["object"]["sequencer"], created.sequencer)
        # Deleting a key that is not there changes nothing and sends nothing.
        self.client.delete("/buckets/photos/objects/gone soon.txt")
        self.assertEqual(len(self.events_of(trigger)), 1)

    def test_prefix_and_suffix_filters_choose_the_keys(self):
        jpgs = self.notify_to(self.fn, self.bucket, prefix="uploads/", suffix=".jpg")
        other_fn = self.create_function(handler_zip(ECHO), name="other")
        everything_removed = self.notify_to(other_fn, self.bucket, events=["s3:ObjectRemoved:Delete"])
        for key in ["uploads/cat.jpg", "uploads/sub/dog.jpg", "uploads/cat.png", "other/cat.jpg", "uploads.jpg",
                    "Uploads/cat.jpg", "uploads/cat.JPG"]:
            self.put(self.bucket, key, b"x")
        self.assertEqual([e["Records"][0]["s3"]["object"]["key"] for e in self.events_of(jpgs)],
                         ["uploads/cat.jpg", "uploads/sub/dog.jpg"])
        self.assertEqual(self.events_of(everything_removed), [])
        self.client.delete("/buckets/photos/objects/uploads/cat.png")
        self.assertEqual([e["Records"][0]["eventName"] for e in self.events_of(everything_removed)],
                         ["ObjectRemoved:Delete"])
        self.assertEqual(len(self.events_of(jpgs)), 2)

    def test_a_disabled_notification_sends_nothing(self):
        trigger = self.notify_to(self.fn, self.bucket)
        Trigger.objects.filter(pk=trigger.pk).update(enabled=False)
        self.put(self.bucket, "quiet.txt")
        self.assertFalse(Invocation.objects.exists())

    def test_fire_now_sends_the_newest_matching_object(self):
        trigger = self.notify_to(self.fn, self.bucket, suffix=".txt")
        self.put(self.bucket, "older.txt", b"1")
        self.put(self.bucket, "newest.txt", b"22")
        self.put(self.bucket, "not-me.bin", b"333")
        Invocation.objects.all().delete()
        response = self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]))
        invocation = Invocation.objects.get(trigger=trigger)
        self.assertRedirects(response, invocation.get_absolute_url(), fetch_redirect_response=False)
        record = json.loads(invocation.event)["Records"][0]
        self.assertEqual((record["eventName"], record["s3"]["object"]["key"], record["s3"]["object"]["size"]),
                         ("ObjectCreated:Put", "newest.txt", 2))
        # A notification of deletions only gets a deletion; with no object to name, a made-up key.
        removals = self.notify_to(self.fn, self.bucket, events=["s3:ObjectRemoved:*"], prefix="gone/")
        self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, removals.pk]))
        record = json.loads(Invocation.objects.get(trigger=removals).event)["Records"][0]
        self.assertEqual((record["eventName"], record["s3"]["object"]["key"]), ("ObjectRemoved:Delete", "gone/example"))


# Reads the object its event names through /mnt, then tries to change the bucket and to see others.
MOUNT_READER = """
import errno
import hashlib
import os
import urllib.parse


def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as e:
        return errno.errorcode[e.errno]


def handler(event, context):
    s3 = event["Records"][0]["s3"]
    bucket = "/mnt/" + s3["bucket"]["name"]
    path = bucket + "/" + urllib.parse.unquote_plus(s3["object"]["key"])
    with open(path, "rb") as f:
        data = f.read()
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
        "mnt": sorted(os.listdir("/mnt")),
        "listing": sorted(os.listdir(os.path.dirname(path))),
        "append": attempt(lambda: open(path, "ab").close()),
        "create": attempt(lambda: open(bucket + "/planted.txt", "wb").close()),
        "remove": attempt(lambda: os.remove(path)),
        "mkdir": attempt(lambda: os.mkdir(bucket + "/new-folder")),
    }
"""


class DeliveryTests(BucketWorld, WorkerTestCase):
    """Through the real workers: the events arrive, and the function reads the bucket read-only at /mnt."""

    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def finished(self, trigger, count=1):
        done = wait_for(lambda: list(Invocation.objects.filter(trigger=trigger, status__in=Invocation.FINISHED)
                                     .order_by("created_at")) if Invocation.objects.filter(
            trigger=trigger, status__in=Invocation.FINISHED).count() >= count else None, 60)
        self.assertTrue(done, f"not {count} finished invocations: "
                              f"{list(Invocation.objects.filter(trigger=trigger).values_list('status', flat=True))}")
        return done

    def test_created_and_removed_events_reach_the_function(self):
        fn = self.create_function(handler_zip(ECHO))
        bucket = self.make_bucket()
        trigger = self.notify_to(fn, bucket, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])
        self.assertEqual(self.put(bucket, "in/report 1.csv", b"a,b\n1,2\n").status_code, 200)
        self.client.post(reverse("buckets:delete_object", args=["photos"]), {"key": "in/report 1.csv"})
        created, removed = self.finished(trigger, 2)
        for invocation in (created, removed):
            self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
            self.assertEqual(json.loads(invocation.result), json.loads(invocation.event))
        self.assertEqual([json.loads(i.result)["Records"][0]["eventName"] for i in (created, removed)],
                         ["ObjectCreated:Put", "ObjectRemoved:Delete"])
        self.assertEqual(json.loads(created.result)["Records"][0]["s3"]["object"]["key"], "in/report+1.csv")
        # The function page's Triggers card counts them.
        page = self.client.get(fn.get_absolute_url())
        self.assertRegex(page.content.decode(), rf'<tr id="trigger-{trigger.pk}"[\s\S]*?trigger-count">2<')

    def test_the_function_reads_the_object_through_a_read_only_mount_and_sees_no_other_bucket(self):
        fn = self.create_function(handler_zip(MOUNT_READER), timeout=10)
        bucket = self.make_bucket("in-bucket")
        self.make_bucket("alices-other")  # no notification to fn: not mounted
        self.make_bucket("bobs-bucket", owner=self.bob)
        trigger = self.notify_to(fn, bucket)
        data = os.urandom(300_000)
        self.assertEqual(self.put(bucket, "docs/my photo+1.jpg", data, content_type="image/jpeg").status_code, 200)
        [invocation] = self.finished(trigger)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        result = json.loads(invocation.result)
        self.assertEqual((result["md5"], result["size"]), (hashlib.md5(data).hexdigest(), len(data)))
        self.assertEqual(result["mnt"], ["in-bucket"])
        self.assertEqual(result["listing"], ["my photo+1.jpg"])
        for action in ("append", "create", "remove", "mkdir"):
            self.assertIn(result[action], ("EROFS", "EACCES"), action)
        self.assertEqual(files_under(bucket.directory), {"docs/my photo+1.jpg": data})
        self.assertEqual(invocation.config["mounts"], [{"bucket": "in-bucket", "directory": bucket.directory_name}])

    def test_an_object_uploaded_after_the_environment_started_is_visible_to_it(self):
        fn = self.create_function(handler_zip(MOUNT_READER), timeout=10)
        bucket = self.make_bucket("live-bucket")
        trigger = self.notify_to(fn, bucket)
        self.put(bucket, "one.txt", b"1")
        self.finished(trigger, 1)
        self.put(bucket, "two/two.txt", b"22")  # a new folder, in a bucket mounted by a warm environment
        second = self.finished(trigger, 2)[1]
        self.assertEqual(second.status, Invocation.Status.SUCCEEDED, second.result)
        self.assertEqual(json.loads(second.result)["size"], 2)


# Fails its first attempt at each object (its warm environment's /tmp remembers), then reads the object.
FLAKY_READER = """
import os
import urllib.parse


def handler(event, context):
    s3 = event["Records"][0]["s3"]
    key = urllib.parse.unquote_plus(s3["object"]["key"])
    marker = "/tmp/seen-" + key.replace("/", "_")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("not this time")
    with open("/mnt/" + s3["bucket"]["name"] + "/" + key) as f:
        return {"text": f.read()}
"""


@pytest.mark.usefixtures("solo_worker")
class RetryTests(BucketWorld, World, TransactionTestCase):
    """A notification's event is an asynchronous invocation: Lambda's retries apply (here after 1 s)."""

    worker_env = {"ASYNC_RETRY_DELAYS": "1,1"}

    def setUp(self):
        self.make_world()
        self.enterContext(use_queue(self.queue))
        self.client.force_login(self.alice)

    def test_a_failed_notification_is_retried_and_then_succeeds(self):
        fn = self.create_function(handler_zip(FLAKY_READER), timeout=10)
        bucket = self.make_bucket("retried")
        trigger = self.notify_to(fn, bucket)
        self.put(bucket, "notes/today.txt", b"second time lucky")
        done = wait_for(lambda: Invocation.objects.filter(trigger=trigger, status__in=Invocation.FINISHED).first(), 60)
        self.assertIsNotNone(done, f"still {Invocation.objects.get(trigger=trigger).status}")
        self.assertEqual((done.status, done.attempts), (Invocation.Status.SUCCEEDED, 2), done.log)
        self.assertIn("not this time", done.log)  # the first attempt's error, in its log
        self.assertEqual(json.loads(done.result), {"text": "second time lucky"})


class LargeUploadTests(BucketWorld, WorkerTestCase):
    """A 30 MB object through the real server (gunicorn): streamed to disk in chunks, never held in memory."""

    SIZE = 30 * 1024 * 1024

    @pytest.fixture(autouse=True)
    def _server(self, gunicorn):
        self.base_url = gunicorn

    def test_a_large_upload_is_streamed_with_bounded_memory(self):
        bucket = self.make_bucket("big-uploads")
        address = self.base_url.removeprefix("http://")
        host, port = address.split(":")
        authorization = "Basic " + base64.b64encode(b"alice:alice-password-1").decode()
        # A small upload first: what the first one loads (modules, connections) is not what is measured.
        warm_up = http.client.HTTPConnection(host, int(port), timeout=30)
        warm_up.request("PUT", "/buckets/big-uploads/objects/small.txt", b"hi", {"Authorization": authorization})
        self.assertEqual(warm_up.getresponse().status, 200)
        warm_up.close()
        # The server's processes (its command line names its port): reset each one's peak RSS to its RSS now.
        pids = [pid for pid, _ in marked_processes(address)]
        self.assertTrue(pids, "no gunicorn process found")
        for pid in pids:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        before = {pid: proc_status(pid, "VmRSS") for pid in pids}

        block = os.urandom(1024 * 1024)
        digest = hashlib.md5()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.putrequest("PUT", "/buckets/big-uploads/objects/videos/big.bin")
        connection.putheader("Authorization", authorization)
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(self.SIZE))
        connection.endheaders()
        for n in range(self.SIZE // len(block)):
            chunk = bytes([n]) + block[1:]  # every MiB different
            digest.update(chunk)
            connection.send(chunk)
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()

        self.assertEqual(response.status, 200, body)
        self.assertEqual(body["ETag"], f'"{digest.hexdigest()}"')
        obj = Object.objects.get(bucket=bucket, key="videos/big.bin")
        self.assertEqual(obj.size, self.SIZE)
        with open(obj.path, "rb") as f:
            self.assertEqual(hashlib.file_digest(f, "md5").hexdigest(), digest.hexdigest())
        # The server's peak resident memory grew by a small fraction of the object.
        growth = max(proc_status(pid, "VmHWM") - before[pid] for pid in pids)
        self.assertLess(growth, 12 * 1024 * 1024,
                        f"gunicorn's peak RSS grew {growth} bytes for a {self.SIZE} byte upload")


def proc_status(pid, field):
    """A memory figure of /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")
