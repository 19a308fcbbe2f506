"""The suite's small world: alice owns functions, bob is another user; and helpers to build ZIPs."""

import io
import os
import textwrap
import zipfile

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, TransactionTestCase

from functions.forms import FunctionForm, host_runtime
from invocations.invoke import invoke_and_wait


def stored_files():
    """Return {relative path: size} of everything under the artifact storage directory."""
    root = default_storage.location
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            path = os.path.join(dirpath, f)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


def make_zip(files):
    """Return the bytes of a ZIP holding {name: text} (text is dedented)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, textwrap.dedent(text) if isinstance(text, str) else text)
    return buffer.getvalue()


def handler_zip(body, module="lambda_function"):
    """Return a ZIP whose `module`.py is `body` (a whole module, dedented)."""
    return make_zip({f"{module}.py": body})


class World:
    def make_world(self):
        self.alice = User.objects.create_user("alice", password="alice-password-1")
        self.bob = User.objects.create_user("bob", password="bob-password-1")

    def create_function(self, code, name="hello", owner=None, handler="lambda_function.handler",
                        memory_size=128, timeout=3):
        """Create a function through the same form the console uses; fail the test if it is rejected."""
        form = FunctionForm(
            {"name": name, "runtime": host_runtime(), "handler": handler, "memory_size": memory_size,
             "timeout": timeout},
            {"code": SimpleUploadedFile("code.zip", code, content_type="application/zip")},
            owner=owner or self.alice,
        )
        assert form.is_valid(), form.errors.as_text()
        return form.save()


class BaseTestCase(World, TestCase):
    def setUp(self):
        self.make_world()


@pytest.mark.usefixtures("workers")
class WorkerTestCase(World, TransactionTestCase):
    """Runs invocations through the real RQ workers and sandboxed runtimes (rows must be committed)."""

    def setUp(self):
        self.make_world()

    def invoke(self, function, event="{}"):
        invocation = invoke_and_wait(function, event)
        assert invocation.is_finished, f"invocation still {invocation.status}"
        return invocation
