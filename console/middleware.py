"""Refuse uploads past MAX_UPLOAD_BYTES with 413, before anything reaches a view.

Three checks, because a client may send a false Content-Length or none at all: the declared length is
checked before the body is read, UploadLimitHandler counts the bytes as they stream in, and a chunked
body (no Content-Length) is counted while it is spooled by ChunkedBodyLimit, in front of Django.
"""

import tempfile

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat

# Room for the other form fields and the multipart boundaries around the file.
FORM_OVERHEAD = 64 * 1024


def too_large_message():
    limit = filesizeformat(settings.MAX_UPLOAD_BYTES)
    return f"Request Entity Too Large: uploads are limited to {limit} (Lambda's limit for a ZIP)."


def too_large_response():
    return HttpResponse(too_large_message(), status=413, content_type="text/plain; charset=utf-8")


class UploadLimitHandler(FileUploadHandler):
    """Count uploaded file bytes while they stream and stop the request past the limit."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            # connection_reset: do not read the rest of a body that may be endless.
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None


ENDPOINT_PREFIX = "/url/"


class UploadLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # HTTP endpoints (console/urls.py) pass the raw body, multipart or not, to their function.
        if (request.method == "POST" and request.content_type == "multipart/form-data"
                and not request.path.startswith(ENDPOINT_PREFIX)):
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
            if declared > settings.MAX_UPLOAD_BYTES + FORM_OVERHEAD:
                return too_large_response()
            request.FILES  # parse now, through UploadLimitHandler
            if getattr(request, "upload_too_large", False):
                return too_large_response()
        return self.get_response(request)


class ChunkedBodyLimit:
    """WSGI wrapper: spool a chunked request body (no Content-Length), refusing it past the limit.

    Django reads a body without CONTENT_LENGTH as empty, and gunicorn hands chunked bodies over that
    way; so count and spool the body first, then give Django a length to read it by.
    """

    SPOOL_IN_MEMORY = 2_621_440  # Django's own memory/disk threshold for uploads

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked or environ.get("CONTENT_LENGTH"):
            return self.app(environ, start_response)
        limit = settings.MAX_UPLOAD_BYTES + FORM_OVERHEAD
        body = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_IN_MEMORY, dir=settings.FILE_UPLOAD_TEMP_DIR)
        size = 0
        while chunk := environ["wsgi.input"].read(64 * 1024):
            size += len(chunk)
            if size > limit:
                body.close()
                message = too_large_message().encode()
                start_response("413 Request Entity Too Large",
                               [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(message))),
                                ("Connection", "close")])
                return [message]
            body.write(chunk)
        body.seek(0)
        environ["wsgi.input"] = body
        environ["CONTENT_LENGTH"] = str(size)
        return self.app(environ, start_response)
