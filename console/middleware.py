"""Refuse uploads past MAX_UPLOAD_BYTES with 413, before anything reaches a view.

Two checks, because a client may send no Content-Length (chunked) or a false one: the declared length is
checked before the body is read, and UploadLimitHandler counts the bytes as they stream in.
"""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat

# Room for the other form fields and the multipart boundaries around the file.
FORM_OVERHEAD = 64 * 1024


def too_large_response():
    limit = filesizeformat(settings.MAX_UPLOAD_BYTES)
    return HttpResponse(
        f"Request Entity Too Large: uploads are limited to {limit} (Lambda's limit for a ZIP).",
        status=413,
        content_type="text/plain; charset=utf-8",
    )


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


class UploadLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.content_type == "multipart/form-data":
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
            if declared > settings.MAX_UPLOAD_BYTES + FORM_OVERHEAD:
                return too_large_response()
            request.FILES  # parse now, through UploadLimitHandler
            if getattr(request, "upload_too_large", False):
                return too_large_response()
        return self.get_response(request)
