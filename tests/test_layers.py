"""Layers: uploaded as versions with the same ZIP safety as code, attached (at most 5, in order) to a
function, and seen at /opt with Lambda's import paths."""

import json
import sys

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from functions.codezip import MAX_UNZIPPED_BYTES
from functions.forms import host_runtime
from functions.models import CodeArtifact, Layer, LayerVersion
from tests.base import BaseTestCase, WorkerTestCase, handler_zip, make_zip


def upload(client, name, files, description=""):
    return client.post(reverse("layers:layer_list"), {
        "name": name, "description": description, "compatible_runtimes": [host_runtime()],
        "code": SimpleUploadedFile("layer.zip", make_zip(files), content_type="application/zip"),
    })


def attach(client, function, *versions):
    return client.post(reverse("functions:layers", args=[function.name]),
                       {"layer": [str(v.pk) for v in versions]})


class LayerTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)
        self.fn = self.create_function(handler_zip("def handler(e, c):\n    return 1\n"))

    def test_uploading_makes_numbered_versions(self):
        self.assertEqual(upload(self.client, "libs", {"python/a.py": "A = 1\n"}, "first").status_code, 302)
        self.assertEqual(upload(self.client, "libs", {"python/a.py": "A = 2\n"}).status_code, 302)
        layer = Layer.objects.get(owner=self.alice, name="libs")
        self.assertEqual([v.number for v in layer.versions.all()], [2, 1])
        self.assertTrue(layer.versions.get(number=1).arn.endswith(":layer:libs:1"))

    def test_an_unsafe_zip_is_refused_and_nothing_is_created(self):
        response = upload(self.client, "libs", {"../escape.py": "x"})
        self.assertContains(response, "..", status_code=400)
        self.assertFalse(Layer.objects.exists())

    def test_attaching_records_the_order_and_the_layer_page_shows_who_uses_it(self):
        upload(self.client, "one", {"python/a.py": "A = 1\n"})
        upload(self.client, "two", {"python/b.py": "B = 1\n"})
        one, two = LayerVersion.objects.get(layer__name="one"), LayerVersion.objects.get(layer__name="two")
        self.assertEqual(attach(self.client, self.fn, two, one).status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual([layer["arn"] for layer in self.fn.layers], [two.arn, one.arn])
        self.assertContains(self.client.get(one.layer.get_absolute_url()), f'>{self.fn.name}</a>')
        self.assertEqual(attach(self.client, self.fn).status_code, 302)  # none: detached
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.layers, [])

    def test_bad_layer_lists_are_refused_and_change_nothing(self):
        for i in range(6):
            upload(self.client, f"l{i}", {f"python/m{i}.py": "X = 1\n"})
        mine = list(LayerVersion.objects.order_by("layer__name"))
        self.client.force_login(self.bob)
        upload(self.client, "bobs", {"python/b.py": "B = 1\n"})
        bobs = LayerVersion.objects.get(layer__name="bobs")
        self.client.force_login(self.alice)
        upload(self.client, "l0", {"python/m0.py": "X = 2\n"})
        l0_v2 = LayerVersion.objects.get(layer__name="l0", number=2)
        big = mine[5]
        CodeArtifact.objects.filter(pk=big.code_id).update(unzipped_size=MAX_UNZIPPED_BYTES)
        cases = [
            (mine[:6], "at most 5 layers"),
            ([bobs], "does not exist"),
            ([mine[0], l0_v2], "attached twice"),
            ([big], "Lambda allows 262144000 together"),
        ]
        for versions, message in cases:
            with self.subTest(message):
                response = attach(self.client, self.fn, *versions)
                self.assertContains(response, message, status_code=400)
                self.fn.refresh_from_db()
                self.assertEqual(self.fn.layers, [])


class LayerRuntimeTests(WorkerTestCase):
    def test_the_handler_imports_from_its_layers_at_opt(self):
        site = f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
        self.client.force_login(self.alice)
        upload(self.client, "base", {"python/shared.py": "WHO = 'base'\n", f"{site}/deep.py": "DEEP = 'site'\n"})
        upload(self.client, "override", {"python/shared.py": "WHO = 'override'\n"})
        fn = self.create_function(handler_zip("""
            import os
            import deep, shared
            def handler(event, context):
                try:
                    open("/opt/python/new.py", "w")
                    writable = True
                except OSError:
                    writable = False
                return {"who": shared.WHO, "deep": deep.DEEP, "opt_writable": writable}
        """))
        base, override = LayerVersion.objects.get(layer__name="base"), LayerVersion.objects.get(layer__name="override")
        self.assertEqual(attach(self.client, fn, base, override).status_code, 302)
        fn.refresh_from_db()
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, "SUCCEEDED", invocation.result)
        # The later layer wins where both have a file, as in Lambda.
        self.assertEqual(json.loads(invocation.result), {"who": "override", "deep": "site", "opt_writable": False})


class MergeTests(BaseTestCase):
    def test_a_later_layer_wins_even_where_a_file_meets_a_directory(self):
        import tempfile
        from pathlib import Path

        from invocations.runtime.pool import _merge_into

        with tempfile.TemporaryDirectory() as root:
            root = Path(root)
            first, second, merged = root / "first", root / "second", root / "merged"
            (first / "python" / "pkg").mkdir(parents=True)
            (first / "python" / "pkg" / "a.py").write_text("first")
            (first / "python" / "mod").write_text("a file")
            (second / "python" / "mod").mkdir(parents=True)
            (second / "python" / "mod" / "b.py").write_text("second")
            (second / "python" / "pkg").write_text("now a file")
            merged.mkdir()
            _merge_into(first, merged)
            _merge_into(second, merged)
            self.assertEqual((merged / "python" / "pkg").read_text(), "now a file")
            self.assertEqual((merged / "python" / "mod" / "b.py").read_text(), "second")
