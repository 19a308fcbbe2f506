"""The inline code editor: read a file of the package, save a change as new code, invoke it."""

import io
import json
import os
import zipfile

from django.core.files.storage import default_storage

from functions.editor import MAX_EDITABLE_BYTES
from functions.models import CodeArtifact, Function
from tests.base import BaseTestCase, WorkerTestCase, make_zip

HANDLER = "import helper\n\ndef handler(event, context):\n    return helper.greeting()\n"
HELPER = "def greeting():\n    return 'hello'\n"


def package_files(function):
    """Return {name: (bytes, unix mode)} of the function's stored ZIP."""
    with default_storage.open(function.code.storage_name) as f, zipfile.ZipFile(f) as zf:
        return {i.filename: (zf.read(i), i.external_attr >> 16) for i in zf.infolist()}


def package_with_a_script():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("lambda_function.py", HANDLER)
        zf.writestr("helper.py", HELPER)
        script = zipfile.ZipInfo("bin/run.sh")
        script.external_attr = 0o100755 << 16
        zf.writestr(script, "#!/bin/sh\necho hi\n")
        zf.writestr("data.bin", bytes(range(256)))
    return buffer.getvalue()


class EditorTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(package_with_a_script())
        self.client.force_login(self.alice)
        self.url = f"/functions/{self.fn.name}/code/edit/"

    def test_it_opens_the_handlers_file_and_lists_the_others(self):
        page = self.client.get(self.url)
        self.assertContains(page, "import helper")
        for name in ("lambda_function.py", "helper.py", "bin/run.sh", "data.bin"):
            self.assertContains(page, name)
        self.assertContains(self.client.get(self.url, {"path": "helper.py"}), "return &#x27;hello&#x27;")

    def test_saving_makes_new_code_with_only_that_file_changed(self):
        before = package_files(self.fn)
        response = self.client.post(self.url, {"path": "helper.py", "text": "def greeting():\r\n    return 'edited'\r\n"})
        self.assertRedirects(response, f"/functions/{self.fn.name}/#test", fetch_redirect_response=False)
        self.fn.refresh_from_db()
        after = package_files(self.fn)
        self.assertEqual(after["helper.py"][0], b"def greeting():\n    return 'edited'\n")
        self.assertEqual({k: v for k, v in after.items() if k != "helper.py"},
                         {k: v for k, v in before.items() if k != "helper.py"})
        self.assertEqual(after["bin/run.sh"][1] & 0o777, 0o755)
        self.assertEqual(CodeArtifact.objects.count(), 2)  # the old version stays stored

    def test_a_binary_file_is_not_editable(self):
        self.assertContains(self.client.get(self.url, {"path": "data.bin"}), "is not UTF-8 text")

    def test_a_file_not_in_the_package_is_404(self):
        self.assertEqual(self.client.get(self.url, {"path": "../etc/passwd"}).status_code, 404)
        response = self.client.post(self.url, {"path": "new.py", "text": "x = 1\n"})
        self.assertEqual(response.status_code, 404)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).code_id, self.fn.code_id)

    def test_another_user_gets_404_and_changes_nothing(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.client.post(self.url, {"path": "helper.py", "text": "x"}).status_code, 404)
        self.assertEqual(Function.objects.get(pk=self.fn.pk).code_id, self.fn.code_id)

    def test_a_package_over_three_megabytes_is_not_edited_here(self):
        big = self.create_function(make_zip({"lambda_function.py": HANDLER, "blob.bin": os.urandom(MAX_EDITABLE_BYTES)}),
                                   name="big")
        response = self.client.get(f"/functions/{big.name}/code/edit/", follow=True)
        self.assertContains(response, "The package is larger than 3 MB")
        self.assertNotContains(self.client.get(f"/functions/{big.name}/"), "Edit the code here")
        self.assertContains(self.client.get(f"/functions/{self.fn.name}/"), "Edit the code here")


class EditAndInvokeTests(WorkerTestCase):
    def test_the_edited_code_is_what_runs(self):
        fn = self.create_function(package_with_a_script())
        self.assertEqual(json.loads(self.invoke(fn).result), "hello")
        self.client.force_login(self.alice)
        self.client.post(f"/functions/{fn.name}/code/edit/", {"path": "helper.py",
                                                             "text": "def greeting():\n    return 'edited'\n"})
        fn.refresh_from_db()
        self.assertEqual(json.loads(self.invoke(fn).result), "edited")
