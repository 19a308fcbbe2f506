"""The event sources' small JSON API (queues, topics, tables, bucket objects): how a program authenticates,
and how errors look.

A program sends HTTP Basic credentials (the console user's name and password); the browser's own pages
may call the same URLs with their session and CSRF token. Errors are JSON objects with AWS's names:
{"__type": "...", "message": "..."}.

A browser must never send Basic credentials by itself: no answer asks for them (no WWW-Authenticate, so
no browser prompts for or caches them), and a POST must be application/json, which no cross-site form can
send without the site's consent (a CORS preflight this API never grants).
"""

import base64
import binascii
import functools
import json

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt


def error(status, error_type, message):
    return JsonResponse({"__type": error_type, "message": message}, status=status)


def read_json(request):
    """The request's JSON object body; raise ApiError naming the problem."""
    try:
        data = json.loads(request.body or b"{}")
    except RecursionError:
        raise ApiError(400, "SerializationException", "The body is nested too deeply.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "SerializationException", f"The body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "SerializationException", "The body must be a JSON object.")
    return data


class ApiError(Exception):
    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _basic_user(request):
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return authenticate(request, username=username, password=password)


def api_view(view):
    """Authenticate by HTTP Basic or the session (then with CSRF); answer ApiError as its JSON error."""

    @csrf_exempt  # checked below for session callers; see the module's note for Basic ones
    @login_not_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if "Authorization" in request.headers:
            user = _basic_user(request)
            if user is None:
                return error(401, "UnrecognizedClientException", "The user name or password is wrong.")
            request.user = user
        elif request.user.is_authenticated:
            rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
            if rejected is not None:
                return error(403, "AccessDeniedException", "CSRF check failed: send the X-CSRFToken header.")
        else:
            return error(401, "MissingAuthenticationTokenException",
                         "Sign in, or send HTTP Basic credentials of a console user.")
        if request.method == "POST" and request.content_type != "application/json":
            return error(415, "UnsupportedMediaTypeException", "Send the body as application/json.")
        try:
            return view(request, *args, **kwargs)
        except ApiError as e:
            return error(e.status, e.error_type, e.message)
        except Http404 as e:  # an owner check (get_object_or_404): the resource is not the caller's
            return error(404, "ResourceNotFoundException", str(e) or "No such resource.")

    wrapped.is_api = True  # for the access tests: anonymous callers get 401, not the sign-in page
    return wrapped
