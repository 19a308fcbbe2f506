"""Code uploads through the console's forms: every unsafe or unusable ZIP and bad setting is refused with a
message that names the problem, and nothing of it is stored (../shared/reference/security-and-reliability.md
§3 and §6 items 1-21)."""

import base64
import hashlib
import html
import io
import json
import os
import shutil
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from functions.codezip import ZipRejected, extract_zip
from functions.forms import host_runtime
from functions.models import CodeArtifact, Function
from invocations.models import Invocation
from tests.base import BaseTestCase, WorkerTestCase, make_zip, stored_files

MiB = 1 << 20
HANDLER = b"def handler(event, context):\n    return 'ok'\n"

# Raw ZIP records, for archives zipfile refuses to write (the layouts follow APPNOTE.TXT).
LOCAL = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, csize, size, name/extra len
CENTRAL = struct.Struct("<4s6H3L5H2L")  # ..., name/extra/comment len, disk, internal attr, external attr, offset
END = struct.Struct("<4s4H2LH")


def zip_info(name, mode=0o644, ftype=stat.S_IFREG):
    """Return a ZipInfo made on Unix, so its file type and mode bits count."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (ftype | mode) << 16
    return info


def build_zip(entries, compression=zipfile.ZIP_DEFLATED):
    """Return a ZIP of [(name or ZipInfo, bytes)], in that order, duplicates allowed."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names but writes them
        with zipfile.ZipFile(buffer, "w", compression) as z:
            for info, data in entries:
                if isinstance(info, str):
                    info = zip_info(info)
                info.compress_type = compression
                z.writestr(info, data)
    return buffer.getvalue()


def with_handler(*entries):
    """Return a ZIP holding a valid lambda_function.py first, then `entries`."""
    return build_zip([("lambda_function.py", HANDLER), *entries])


def local_header(name, crc, csize, size, method=zipfile.ZIP_DEFLATED, flags=0):
    return LOCAL.pack(b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, csize, size, len(name), 0) + name


def central_header(name, crc, csize, size, offset, method=zipfile.ZIP_DEFLATED, flags=0):
    return CENTRAL.pack(b"PK\x01\x02", (3 << 8) | 20, 20, flags, method, 0, 0x21, crc, csize, size,
                        len(name), 0, 0, 0, 0, (stat.S_IFREG | 0o644) << 16, offset) + name


def assemble(body, centrals):
    directory = b"".join(centrals)
    return body + directory + END.pack(b"PK\x05\x06", 0, 0, len(centrals), len(centrals), len(directory), len(body), 0)


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_bomb(gib=1):
    """Return a one-entry ZIP that inflates to `gib` GiB of zeros (about 1 MB per GiB).

    A full flush ends each 1 MiB deflate block on a byte boundary with a fresh history, so one compressed
    block repeated is a valid stream: no need to push a whole GiB through zlib (that takes seconds).
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    payload = block * (1024 * gib) + c.flush()
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(zeros, crc)
    size, name = gib << 30, b"zeros.bin"
    return assemble(local_header(name, crc, len(payload), size) + payload,
                    [central_header(name, crc, len(payload), size, 0)])


def overlapped_bomb(copies=50):
    """Return a ZIP whose central directory lists one local entry (1 MiB of zeros) `copies` times under
    different names: the CVE-2024-0450 class of bomb, which zipfile on 3.11.7 happily extracts 50 times."""
    data = bytes(MiB)
    payload, crc = deflate(data), zlib.crc32(data)
    body = local_header(b"a00.bin", crc, len(payload), len(data)) + payload
    return assemble(body, [central_header(f"a{i:02d}.bin".encode(), crc, len(payload), len(data), 0)
                           for i in range(copies)])


def lying_size(crc_of="all"):
    """Return a ZIP whose entry declares 10 bytes but whose deflate stream inflates to 5 MiB.

    crc_of="all": the CRC is that of the 5 MiB (as zip_probe.py builds it); "declared": the CRC of the
    first 10 bytes, so a reader that stops at the declared size sees a matching CRC.
    """
    handler_crc, stored = zlib.crc32(HANDLER), zipfile.ZIP_STORED
    body = local_header(b"lambda_function.py", handler_crc, len(HANDLER), len(HANDLER), method=stored) + HANDLER
    centrals = [central_header(b"lambda_function.py", handler_crc, len(HANDLER), len(HANDLER), 0, method=stored)]
    data = b"A" * (5 * MiB)
    payload = deflate(data)
    crc = zlib.crc32(data if crc_of == "all" else data[:10])
    centrals.append(central_header(b"small.txt", crc, len(payload), 10, len(body)))
    body += local_header(b"small.txt", crc, len(payload), 10) + payload
    return assemble(body, centrals)


def patch_flags(data, set_bits):
    """Set general-purpose flag bits in the first local header and the first central header."""
    b = bytearray(data)
    b[6] |= set_bits
    cd = b.find(b"PK\x01\x02")
    b[cd + 8] |= set_bits
    return bytes(b)


def patch_method(data, method):
    b = bytearray(data)
    b[8:10] = struct.pack("<H", method)
    cd = b.find(b"PK\x01\x02")
    b[cd + 10:cd + 12] = struct.pack("<H", method)
    return bytes(b)


def code_sha256_b64(code):
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def upload(code, name="code.zip"):
    return SimpleUploadedFile(name, code, content_type="application/zip")


# These tests sign in with force_login: a fast hasher saves PBKDF2's 0.3 s per user created in setUp.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class UploadTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def post_create(self, code=None, **fields):
        """POST the console's create form as the logged-in user; remember what storage held before."""
        data = {"name": "hello", "runtime": host_runtime(), "handler": "lambda_function.handler",
                "memory_size": "128", "timeout": "3", "description": "", **fields}
        if code is not None:
            data["code"] = upload(code)
        self.stored_before = stored_files()
        return self.client.post(reverse("functions:create"), data)

    def assertRejected(self, response, field, text, functions=0, artifacts=0):
        """The form came back with `text` among `field`'s errors, and nothing was created or stored."""
        self.assertEqual(response.status_code, 200, f"not refused: {response.status_code} {response.get('Location')}")
        self.assertTemplateUsed(response, "functions/create.html")
        errors = response.context["form"].errors.get(field, [])
        self.assertTrue(any(text in e for e in errors), f"{text!r} not in the errors of {field}: {errors}")
        self.assertIn(text, html.unescape(response.content.decode()))
        self.assertEqual(Function.objects.count(), functions)
        self.assertEqual(CodeArtifact.objects.count(), artifacts)
        self.assertEqual(stored_files(), self.stored_before)

    def assertBadZip(self, code, text):
        self.assertRejected(self.post_create(code), "code", text)


class ZipPathTests(UploadTestCase):
    def test_it_rejects_a_parent_path(self):
        self.assertBadZip(with_handler(("../../x", b"pwn")), "has a '..' component: it would leave the code directory")

    def test_it_rejects_a_traversal_in_the_middle_of_a_path(self):
        self.assertBadZip(with_handler(("lib/../../../outside/evil2.txt", b"pwn")),
                          "'lib/../../../outside/evil2.txt' has a '..' component")

    def test_it_rejects_an_absolute_path(self):
        self.assertBadZip(with_handler(("/etc/cron.d/x", b"* * * * * root id\n")),
                          "'/etc/cron.d/x' has an absolute path")

    def test_it_rejects_a_backslash_path(self):
        self.assertBadZip(with_handler(("..\\..\\outside\\win.txt", b"pwn")), "uses a backslash in its path")

    def test_it_rejects_a_drive_letter_path(self):
        self.assertBadZip(with_handler(("C:/evil/c2.txt", b"pwn")), "'C:/evil/c2.txt' starts with a drive letter")

    def test_it_rejects_a_symlink_entry(self):
        link = zip_info("link", 0o777, stat.S_IFLNK)
        self.assertBadZip(with_handler((link, b"/etc/passwd")), "'link' is a symbolic link; links are not allowed")

    def test_it_rejects_a_symlinked_dir_followed_by_a_file_through_it(self):
        link = zip_info("esc", 0o777, stat.S_IFLNK)
        self.assertBadZip(with_handler((link, b"/tmp"), ("esc/through.txt", b"pwn")), "'esc' is a symbolic link")

    def test_it_rejects_duplicate_names(self):
        code = build_zip([("lambda_function.py", HANDLER),
                          ("lambda_function.py", b"def handler(event, context):\n    return 'EVIL'\n")])
        self.assertBadZip(code, "'lambda_function.py' appears more than once")

    def test_it_rejects_names_that_differ_only_in_case(self):
        code = with_handler(("Handler.py", b"A = 1\n"), ("handler.py", b"B = 2\n"))
        self.assertBadZip(code, "'Handler.py' and 'handler.py' differ only in letter case")

    def test_it_rejects_a_nul_in_a_name(self):
        # zipfile cuts names at NUL when writing: write a placeholder and patch both headers.
        code = with_handler(("evil_.py", b"x = 1\n")).replace(b"evil_.py", b"evil\x00.py")
        self.assertEqual(code.count(b"evil\x00.py"), 2)
        self.assertBadZip(code, "has a NUL character in its name")

    def test_it_rejects_a_newline_in_a_name(self):
        self.assertBadZip(with_handler(("new\nline.py", b"y = 1\n")), "has a control character (U+000A) in its name")

    def test_it_rejects_a_bidi_override_in_a_name(self):
        self.assertBadZip(with_handler(("\u202egnp.py", b"z = 1\n")),
                          "has a bidirectional control character (U+202E) in its name")

    def test_it_rejects_a_300_byte_path_component(self):
        self.assertBadZip(with_handler(("a" * 297 + ".py", b"x = 1\n")), "has a name longer than 255 bytes")

    def test_it_rejects_a_5_kb_path(self):
        path = "/".join(["d" * 200] * 25) + "/f.py"
        self.assertGreater(len(path), 5000)
        self.assertBadZip(with_handler((path, b"x = 1\n")), "has a path longer than 1024 bytes")

    def test_it_rejects_a_file_that_is_also_a_directory(self):
        self.assertBadZip(with_handler(("pkg", b"file"), ("pkg/mod.py", b"x = 1\n")),
                          "'pkg' is both a file and a directory")


class ZipFormatTests(UploadTestCase):
    def test_it_rejects_an_encrypted_entry(self):
        code = patch_flags(build_zip([("lambda_function.py", HANDLER)], zipfile.ZIP_STORED), 0x1)
        self.assertBadZip(code, "'lambda_function.py' is encrypted; upload an unencrypted ZIP")

    def test_it_rejects_compression_method_99(self):
        code = patch_method(build_zip([("lambda_function.py", HANDLER)], zipfile.ZIP_STORED), 99)
        self.assertBadZip(code, "uses compression method 99; only stored and deflated are supported")

    def test_it_rejects_an_empty_file(self):
        self.assertBadZip(b"", "The submitted file is empty.")

    def test_it_rejects_a_truncated_zip(self):
        code = with_handler(*[(f"lib/{i}.py", os.urandom(64)) for i in range(50)])
        self.assertBadZip(code[: len(code) // 2], "The file is not a valid ZIP archive.")

    def test_it_rejects_plain_text_renamed_zip(self):
        self.assertBadZip(b"#!/bin/sh\nrm -rf /\n", "The file is not a valid ZIP archive.")

    def test_it_rejects_a_zip_with_prepended_junk(self):
        code = b"\x7fELF" + bytes(4000) + with_handler(("lib/util.py", b"x = 1\n"))
        with zipfile.ZipFile(io.BytesIO(code)) as z:  # zipfile itself reads it without complaint
            self.assertEqual(z.read("lambda_function.py"), HANDLER)
        self.assertBadZip(code, "The file has unexpected data before the first ZIP entry.")

    def test_it_rejects_a_declared_unzipped_size_over_250_mb(self):
        code = zeros_bomb(gib=1)
        self.assertLess(len(code), 2 * MiB)
        self.assertBadZip(code, "Unzipped size must be smaller than 262144000 bytes (this archive declares 1073741824)")

    def test_it_rejects_more_than_10000_entries(self):
        code = build_zip([("lambda_function.py", HANDLER)] + [(f"f/{i}.txt", b"") for i in range(10_000)],
                         zipfile.ZIP_STORED)
        self.assertBadZip(code, "The ZIP archive has 10,001 entries; the limit is 10,000.")

    def test_it_rejects_overlapped_entries(self):
        self.assertBadZip(overlapped_bomb(), "overlaps another entry (a known ZIP bomb technique)")

    def test_it_rejects_an_entry_whose_stream_is_larger_than_its_declared_size(self):
        self.assertBadZip(lying_size(crc_of="all"), "'small.txt' is larger than its declared size")

    def test_it_rejects_an_entry_whose_stream_is_larger_than_its_declared_size_and_crc(self):
        # The CRC matches the 10 declared bytes, so only the leftover deflate data shows the lie.
        self.assertBadZip(lying_size(crc_of="declared"), "'small.txt' is larger than its declared size")


class HandlerAndSettingsTests(UploadTestCase):
    def test_it_rejects_a_handler_whose_module_is_missing(self):
        response = self.post_create(make_zip({"app.py": HANDLER}))
        self.assertRejected(response, "handler", "The ZIP has no module 'lambda_function': "
                                                 "expected lambda_function.py or lambda_function/__init__.py.")

    def test_it_rejects_a_handler_with_a_path_in_it(self):
        response = self.post_create(with_handler(), handler="../x.handler")
        self.assertRejected(response, "handler", "Use module.function, e.g. lambda_function.handler")

    def test_it_rejects_a_handler_naming_a_module_that_is_not_in_the_zip(self):
        # os.system is module.function in form; os.py is not in the ZIP, so it must not pass.
        response = self.post_create(with_handler(), handler="os.system")
        self.assertRejected(response, "handler", "The ZIP has no module 'os': expected os.py or os/__init__.py.")

    def test_it_rejects_an_empty_name(self):
        self.assertRejected(self.post_create(with_handler(), name=""), "name", "This field is required.")

    def test_it_rejects_a_65_character_name(self):
        self.assertRejected(self.post_create(with_handler(), name="a" * 65), "name",
                            "Ensure this value has at most 64 characters (it has 65).")

    def test_it_rejects_a_name_with_a_space_and_punctuation(self):
        self.assertRejected(self.post_create(with_handler(), name="bad name!"), "name",
                            "Use 1 to 64 letters, digits, hyphens (-) and underscores (_).")

    def test_it_rejects_a_name_the_owner_already_uses_but_not_one_another_user_uses(self):
        self.create_function(with_handler(), name="hello")
        response = self.post_create(with_handler(("other.py", b"x = 1\n")), name="hello")
        self.assertRejected(response, "name", "You already have a function named 'hello'.", functions=1, artifacts=1)

        self.client.force_login(self.bob)
        response = self.post_create(with_handler(("other.py", b"x = 1\n")), name="hello")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(Function.objects.filter(name="hello", owner=self.bob).count(), 1)
        self.assertEqual(Function.objects.filter(name="hello", owner=self.alice).count(), 1)

    def test_it_rejects_127_mb_of_memory(self):
        self.assertRejected(self.post_create(with_handler(), memory_size="127"), "memory_size",
                            "Ensure this value is greater than or equal to 128.")

    def test_it_rejects_10241_mb_of_memory(self):
        self.assertRejected(self.post_create(with_handler(), memory_size="10241"), "memory_size",
                            "Ensure this value is less than or equal to 10240.")

    def test_it_rejects_a_timeout_of_0_seconds(self):
        self.assertRejected(self.post_create(with_handler(), timeout="0"), "timeout",
                            "Ensure this value is greater than or equal to 1.")

    def test_it_rejects_a_timeout_of_901_seconds(self):
        self.assertRejected(self.post_create(with_handler(), timeout="901"), "timeout",
                            "Ensure this value is less than or equal to 900.")

    def test_it_refuses_101_files_in_one_request(self):
        self.stored_before = stored_files()
        data = {"name": "hello", "runtime": host_runtime(), "handler": "lambda_function.handler",
                "memory_size": "128", "timeout": "3", "code": [upload(with_handler(), f"c{i}.zip") for i in range(101)]}
        response = self.client.post(reverse("functions:create"), data)
        self.assertEqual(response.status_code, 400)
        self.assertFalse(Function.objects.exists())
        self.assertFalse(CodeArtifact.objects.exists())
        self.assertEqual(stored_files(), self.stored_before)
        # The same request with 100 files is within Django's limit and goes through.
        data["code"] = [upload(with_handler(), f"c{i}.zip") for i in range(100)]
        self.assertEqual(self.client.post(reverse("functions:create"), data).status_code, 302)


class AcceptedUploadTests(UploadTestCase):
    def test_it_creates_the_function_and_redirects_to_its_page(self):
        code = with_handler()
        response = self.post_create(code, name="hello")
        fn = Function.objects.get(owner=self.alice, name="hello")
        self.assertEqual(fn.code.sha256, hashlib.sha256(code).hexdigest())
        self.assertTrue(default_storage.exists(fn.code.storage_name))
        self.assertRedirects(response, reverse("functions:detail", args=["hello"]))

    def test_it_accepts_setuid_and_world_writable_modes_and_unpacks_with_safe_modes(self):
        code = build_zip([
            (zip_info("lambda_function.py", 0o4755), HANDLER),
            (zip_info("lib/", 0o777, stat.S_IFDIR), b""),
            (zip_info("lib/util.py", 0o777), b"x = 1\n"),
            (zip_info("bin/run.sh", 0o6777), b"#!/bin/sh\nid\n"),
        ])
        response = self.post_create(code)
        self.assertEqual(response.status_code, 302)
        fn = Function.objects.get(owner=self.alice, name="hello")

        # What a worker does with it: unpack the stored artifact.
        parent = tempfile.mkdtemp(prefix="test-unpack-")
        self.addCleanup(shutil.rmtree, parent, ignore_errors=True)
        dest = os.path.join(parent, "code")
        self.assertTrue(extract_zip(default_storage.path(fn.code.storage_name), dest))
        modes = {}
        for dirpath, dirnames, filenames in os.walk(dest):
            for n in dirnames + filenames:
                path = os.path.join(dirpath, n)
                modes[os.path.relpath(path, dest)] = stat.S_IMODE(os.lstat(path).st_mode)
        self.assertEqual(modes, {
            "lambda_function.py": 0o644, "lib": 0o755, "lib/util.py": 0o644, "bin": 0o755, "bin/run.sh": 0o644,
        })
        self.assertEqual(stat.S_IMODE(os.stat(dest).st_mode), 0o755)
        with open(os.path.join(dest, "bin/run.sh"), "rb") as f:
            self.assertEqual(f.read(), b"#!/bin/sh\nid\n")
        self.assertEqual(os.listdir(parent), ["code"])

    def test_its_worker_side_extraction_leaves_nothing_behind_for_a_symlinked_dir(self):
        code = with_handler((zip_info("esc", 0o777, stat.S_IFLNK), b"/tmp"), ("esc/through.txt", b"pwn"))
        parent = tempfile.mkdtemp(prefix="test-unpack-")
        self.addCleanup(shutil.rmtree, parent, ignore_errors=True)
        path = os.path.join(parent, "code.zip")
        with open(path, "wb") as f:
            f.write(code)
        with self.assertRaisesRegex(ZipRejected, "'esc' is a symbolic link"):
            extract_zip(path, os.path.join(parent, "code"))
        self.assertEqual(os.listdir(parent), ["code.zip"])


class ReplaceCodeTests(UploadTestCase):
    def setUp(self):
        super().setUp()
        self.old_code = with_handler()
        self.fn = self.create_function(self.old_code, name="hello")
        self.detail_url = reverse("functions:detail", args=["hello"])

    def post_code(self, code):
        self.stored_before = stored_files()
        return self.client.post(reverse("functions:upload_code", args=["hello"]), {"code": upload(code)})

    def test_it_replaces_the_code_with_a_new_zip(self):
        self.assertContains(self.client.get(self.detail_url), code_sha256_b64(self.old_code))
        new_code = build_zip([("lambda_function.py", b"def handler(event, context):\n    return 'v2'\n")])

        response = self.post_code(new_code)

        self.assertEqual(response.status_code, 302)
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.code.sha256, hashlib.sha256(new_code).hexdigest())
        self.assertTrue(default_storage.exists(self.fn.code.storage_name))
        page = self.client.get(self.detail_url)
        self.assertContains(page, f'<td class="mono" id="code-sha256">{code_sha256_b64(new_code)}</td>', html=True)
        self.assertNotContains(page, code_sha256_b64(self.old_code))

    def test_it_redirects_to_the_functions_page_after_new_code(self):
        response = self.post_code(with_handler(("extra.py", b"x = 1\n")))
        self.assertRedirects(response, self.detail_url)

    def test_it_rejects_a_bad_zip_and_keeps_the_old_code(self):
        response = self.post_code(with_handler(("../../x", b"pwn")))
        self.assertEqual(response.status_code, 400)
        self.assertTemplateUsed(response, "functions/detail.html")
        errors = response.context["code_form"].errors["code"]
        self.assertIn("has a '..' component: it would leave the code directory", errors[0])
        self.assertIn("'../../x' has a '..' component", html.unescape(response.content.decode()))
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.code.sha256, hashlib.sha256(self.old_code).hexdigest())
        self.assertEqual(CodeArtifact.objects.count(), 1)
        self.assertEqual(stored_files(), self.stored_before)
        self.assertContains(self.client.get(self.detail_url), code_sha256_b64(self.old_code))

    def test_it_rejects_new_code_without_the_handlers_module(self):
        response = self.post_code(make_zip({"app.py": HANDLER}))
        self.assertEqual(response.status_code, 400)
        self.assertIn("The ZIP has no module 'lambda_function'", html.unescape(response.content.decode()))
        self.fn.refresh_from_db()
        self.assertEqual(self.fn.code.sha256, hashlib.sha256(self.old_code).hexdigest())
        self.assertEqual(CodeArtifact.objects.count(), 1)
        self.assertEqual(stored_files(), self.stored_before)


class ShadowingModulesTests(WorkerTestCase):
    def test_it_runs_a_zip_that_ships_json_typing_and_sitecustomize(self):
        boom = "raise RuntimeError('the function\\'s {} was imported by the runtime')\n"
        fn = self.create_function(make_zip({
            "lambda_function.py": "def handler(event, context):\n    return {'got': event['n'], 'ok': True}\n",
            "json.py": boom.format("json.py"),
            "typing.py": boom.format("typing.py"),
            "sitecustomize.py": boom.format("sitecustomize.py"),
        }))
        invocation = self.invoke(fn, '{"n": 7}')
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.log)
        self.assertEqual(json.loads(invocation.result), {"got": 7, "ok": True})
        self.assertNotIn("was imported by the runtime", invocation.log)
