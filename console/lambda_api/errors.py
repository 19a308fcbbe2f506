"""Errors as the Lambda API sends them, and as botocore parses them: the code in x-amzn-ErrorType, the
message in the body's `message` (or `Message`, for the shapes the service model spells that way)."""

import json

from botocore.loaders import Loader
from django.http import HttpResponse

# The error shapes whose message member the service model capitalizes (botocore reads either, but the
# model is the reference).
CAPITALIZED = frozenset(
    name for name, shape in Loader().load_service_model("lambda", "service-2")["shapes"].items()
    if shape.get("exception") and "Message" in shape.get("members", {})
)


class ApiError(Exception):
    def __init__(self, status, error_type, message, **extra):
        super().__init__(message)
        self.status, self.error_type, self.message, self.extra = status, error_type, message, extra


def not_found(message):
    return ApiError(404, "ResourceNotFoundException", message)


def conflict(message):
    return ApiError(409, "ResourceConflictException", message)


def invalid(message):
    return ApiError(400, "InvalidParameterValueException", message)


def error_response(error):
    body = {"Type": "User" if error.status < 500 else "Service",
            "Message" if error.error_type in CAPITALIZED else "message": error.message, **error.extra}
    response = HttpResponse(json.dumps(body), status=error.status, content_type="application/json")
    response["x-amzn-ErrorType"] = error.error_type
    return response
