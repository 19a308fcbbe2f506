"""The 50 MB upload cap against the real server (gunicorn, as ./dev run serves the console), over raw HTTP.

../shared/reference/security-and-reliability.md §6 item 18: a 60 MB upload, with a Content-Length or
chunked without one, gets 413; nothing is stored and no upload temp file is left behind.

What gunicorn does when the console answers before reading the whole body (measured with gunicorn 27,
gthread worker): it sends the response, then closes the socket with the unread body still queued, so the
kernel resets the connection. The client sees EPIPE/ECONNRESET on its next send, but the response bytes
that arrived before the reset stay readable. So the client here stops sending as soon as a response is
readable, treats a failed send as "the server stopped listening", and then reads whatever response arrived.
"""

import glob
import http.client
import io
import os
import re
import select
import socket
import tempfile
import urllib.parse
import zipfile

import pytest
from django.conf import settings
from django.test import TransactionTestCase

from functions.forms import host_runtime
from functions.models import CodeArtifact, Function
from tests.base import World, stored_files

MiB = 1 << 20
BLOCK = bytes(256 * 1024)  # the zeros every big body is streamed from (no 60 MB string is ever built)


def upload_temp_files():
    """Return the Django upload temp files (tmpXXXX.upload.zip) present now."""
    return set(glob.glob(os.path.join(settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir(), "*.upload*")))


class Reply:
    def __init__(self, status, headers, body, sent, send_error, closed):
        self.status, self.headers, self.body = status, headers, body
        self.sent = sent  # bytes of the request body sent before the server answered or hung up
        self.send_error = send_error  # the OSError that stopped sending, if any
        self.closed = closed  # the server closed (or reset) the connection after its answer


class RawSession:
    """A signed-in browser, reduced to cookies and raw sockets."""

    def __init__(self, base_url):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies = {}

    def _cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body, {"Cookie": self._cookie_header(), **(headers or {})})
            response = conn.getresponse()
            content = response.read()
        finally:
            conn.close()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return response, content.decode()

    def form_token(self, path):
        response, page = self._request("GET", path)
        assert response.status == 200, f"GET {path}: {response.status} {response.getheader('Location')}"
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def login(self, username, password):
        token = self.form_token("/login/")
        assert "csrftoken" in self.cookies
        form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        response, _ = self._request("POST", "/login/", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status == 302 and response.getheader("Location") == "/functions/", response.status
        assert "sessionid" in self.cookies

    def post_file(self, path, fields, file_size=None, content=None, chunked=False, on_progress=None, headers=None,
                  watch_close=True):
        """POST multipart `fields` plus a `code` file of `file_size` zeros (or `content`), streamed.

        Sends with a Content-Length, or with Transfer-Encoding: chunked and none. Stops sending as soon as
        the server answers or hangs up; returns the Reply (with watch_close, after waiting a little to see
        whether the server ends the connection).
        """
        boundary = "----upload-limit-test-" + os.urandom(8).hex()
        head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                       for k, v in fields.items())
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="code"; filename="code.zip"\r\n'
                 f"Content-Type: application/zip\r\n\r\n")
        head, tail = head.encode(), f"\r\n--{boundary}--\r\n".encode()
        if content is not None:
            file_size = len(content)

        def pieces():
            yield head
            if content is not None:
                yield content
            else:
                for _ in range(file_size // len(BLOCK)):
                    yield BLOCK
                yield BLOCK[: file_size % len(BLOCK)]
            yield tail

        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Cookie: {self._cookie_header()}",
                 f"Content-Type: multipart/form-data; boundary={boundary}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append("Transfer-Encoding: chunked" if chunked else
                     f"Content-Length: {len(head) + file_size + len(tail)}")
        sock = socket.create_connection((self.host, self.port), timeout=60)
        sent, send_error = 0, None
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            for piece in pieces():
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered (or hung up) before the end of the body
                try:
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                except OSError as e:  # EPIPE / ECONNRESET: the server stopped reading
                    send_error = e
                    break
                sent += len(piece)
                if on_progress:
                    on_progress(sent)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            return self._read_reply(sock, sent, send_error, watch_close)
        finally:
            sock.close()

    @staticmethod
    def _read_reply(sock, sent, send_error, watch_close):
        data, closed = b"", False
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except ConnectionResetError:
            closed = True
        head, _, body = data.partition(b"\r\n\r\n")
        assert head, f"no response at all (sent {sent} bytes, send error {send_error!r})"
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        # Without a Content-Length the body ends where the connection does.
        length = int(headers.get("content-length", 1 << 62))
        try:
            while len(body) < length and not closed:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                body += chunk
            if watch_close and not closed:
                # Does the server keep the connection for another request, or end it? Wait a little to see.
                sock.settimeout(15)  # a loaded machine (the full suite) can take seconds to get there
                closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
        return Reply(int(status_line.split()[1]), headers, body.decode("utf-8", "replace"), sent, send_error, closed)


class UploadLimitTests(World, TransactionTestCase):
    """Runs against the gunicorn fixture, which serves this test database (rows must be committed)."""

    @pytest.fixture(autouse=True)
    def _server(self, gunicorn):
        self.base_url = gunicorn

    def setUp(self):
        self.make_world()
        self.session = RawSession(self.base_url)
        self.session.login("alice", "alice-password-1")
        self.fields = {
            "csrfmiddlewaretoken": self.session.form_token("/functions/new/"),
            "name": "big", "runtime": host_runtime(), "handler": "lambda_function.handler",
            "memory_size": "128", "timeout": "3",
        }
        self.stored_before = stored_files()
        self.temp_before = upload_temp_files()

    def assertTooLarge(self, reply):
        errors = re.findall(r'<ul class="errorlist"[^>]*><li>(.*?)</li>', reply.body)
        self.assertEqual(reply.status, 413, f"sent {reply.sent} bytes; the page's form errors: {errors}")
        self.assertIn("Request Entity Too Large: uploads are limited to 50.0", reply.body)
        self.assertFalse(Function.objects.exists())
        self.assertFalse(CodeArtifact.objects.exists())
        self.assertEqual(stored_files(), self.stored_before)
        self.assertEqual(upload_temp_files() - self.temp_before, set())

    def test_it_accepts_a_small_upload_sent_the_same_way(self):
        # The control: the same raw request with a real ZIP creates the function, so a 413 below is the cap.
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("lambda_function.py", "def handler(event, context):\n    return 'ok'\n")
        reply = self.session.post_file("/functions/new/", self.fields, content=buffer.getvalue(), watch_close=False)
        self.assertEqual(reply.status, 302, reply.body[:300])
        self.assertTrue(Function.objects.filter(owner=self.alice, name="big").exists())

    def test_it_refuses_a_60_mb_upload_with_a_content_length(self):
        reply = self.session.post_file("/functions/new/", self.fields, file_size=60 * MiB)
        self.assertTooLarge(reply)
        # Answered from the Content-Length alone: the client was still sending when the 413 came back,
        # and gunicorn ended the connection rather than read the rest of the body.
        self.assertLess(reply.sent, 60 * MiB)
        self.assertTrue(reply.closed)

    def test_it_refuses_a_60_mb_chunked_upload_without_a_content_length(self):
        # Without a Content-Length only the streaming count (UploadLimitHandler) can see the size.
        # The CSRF token also goes in a header, so that an unread body cannot turn this into a CSRF 403.
        # Measured (gunicorn 27, Django 5.2): gunicorn hands the app a chunked body with no CONTENT_LENGTH, and
        # Django reads such a request as an empty body (WSGIRequest limits wsgi.input to 0 bytes). So the
        # middleware's pre-check sees 0, the multipart parser reads nothing, UploadLimitHandler never counts
        # a byte, and the view re-renders the create form with "This field is required." everywhere (200;
        # a CSRF 403 without the header). gunicorn then drops the connection with the body unread (the client
        # gets EPIPE after about 3 MB). Nothing is stored, but the client is not told 413 either.
        reply = self.session.post_file("/functions/new/", self.fields, file_size=60 * MiB, chunked=True,
                                       headers={"X-CSRFToken": self.fields["csrfmiddlewaretoken"]})
        self.assertTooLarge(reply)
        self.assertTrue(reply.closed)

    def test_it_refuses_a_file_just_over_50_mb_while_it_streams_and_deletes_its_temp_file(self):
        # Content-Length within the allowance for form fields, so the pre-check lets it through and the
        # byte count must stop it; the file part has been spooling to a temp file meanwhile.
        limit = settings.MAX_UPLOAD_BYTES
        seen = set()

        def watch(sent):
            if sent > 8 * MiB and not seen:
                seen.update(upload_temp_files() - self.temp_before)

        reply = self.session.post_file("/functions/new/", self.fields, file_size=limit + 1, on_progress=watch)
        self.assertTrue(seen, "no upload temp file appeared while streaming: the temp-file check would prove nothing")
        self.assertTooLarge(reply)
        for path in seen:
            self.assertFalse(os.path.exists(path))
