"""HTTP endpoints, like Lambda function URLs: /url/<url id>/<path> invokes the function synchronously with
an API Gateway HTTP API (payload 2.0) event and answers with what it returned.

The request waits on a gunicorn thread (`./dev run` gives each web process several), so a slow function
does not hold up the rest of the site.
"""

import json
import threading
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.views.decorators.csrf import csrf_exempt

from functions.models import Alias, Trigger, Version
from invocations.invoke import RequestTooLarge, invoke_and_wait
from invocations.models import Invocation
from invocations.sources import http


def console_cookies():
    """The console's own cookies. Endpoints share the console's host, so a browser sends them there too:
    a function must neither read them (a session is a sign-in) nor set them."""
    return {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME,
            CookieStorage.cookie_name}


# An endpoint's answer is the function's: it must never act as a console page. `sandbox` gives the
# document an origin of its own, so its scripts can neither read the console's pages nor send them
# requests as the signed-in user.
SANDBOX_POLICY = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


@csrf_exempt  # called by programs, authenticated (if at all) by its own key, never by a session
@login_not_required
def endpoint(request, url_id, path=""):
    trigger = (Trigger.objects.select_related("function__owner", "function__code")
               .filter(kind=Trigger.Kind.HTTP, url_id=url_id).first())
    if trigger is None:
        response = http.error_response(404, "Not Found")
    else:
        cors = trigger.config.get("cors") or {}
        # A disabled endpoint answers nothing else, CORS preflights included (serve() checks it for the rest).
        response = http.preflight_response(request, cors) if trigger.enabled else None
        if response is None:
            response = serve(request, trigger, "/" + path)
        http.apply_cors(request, response, cors)
    response["Content-Security-Policy"] = SANDBOX_POLICY
    return response


def serve(request, trigger, raw_path, authenticated=False):
    """Invoke the endpoint's function for `request` and map its outcome to an HTTP answer."""
    if not trigger.enabled:
        return http.error_response(403, "Forbidden")
    if (trigger.config.get("auth_type") == Trigger.Auth.KEY and not authenticated
            and not trigger.check_key(request.headers.get("x-api-key", ""))):
        return http.error_response(403, "Forbidden")
    waiting = waiting_slots()
    if not waiting.acquire(blocking=False):
        # Every request waiting for an invocation holds a web thread: keep some for the console.
        return http.error_response(*http.THROTTLED)
    try:
        event = http.build_event(request, raw_path=raw_path, api_id=trigger.url_id, request_id=str(uuid.uuid4()),
                                 hidden_cookies=console_cookies())
        invocation = invoke_and_wait(trigger.function, json.dumps(event), source="http",
                                     qualifier=trigger.qualifier or None, trigger=trigger)
    except (RequestDataTooBig, RequestTooLarge):
        return http.error_response(413, "Request Entity Too Large")
    except (Version.DoesNotExist, Alias.DoesNotExist):
        return http.error_response(404, "Not Found")
    finally:
        waiting.release()
    response = _answer(invocation)
    hidden = console_cookies()
    for key, morsel in list(response.cookies.items()):
        if morsel.key in hidden:
            del response.cookies[key]
    response["X-Amzn-RequestId"] = invocation.request_id
    return response


_slots = {}
_slots_lock = threading.Lock()


def waiting_slots():
    """This web process's semaphore for requests waiting on an invocation (endpoints and the Lambda API's
    Invoke share it: each holds a web thread)."""
    limit = settings.ENDPOINT_MAX_WAITING
    with _slots_lock:
        return _slots.setdefault(limit, threading.BoundedSemaphore(limit))


def _answer(invocation):
    status = invocation.status
    if status == Invocation.Status.SUCCEEDED:
        return http.response_from_result(invocation.result)
    if status == Invocation.Status.THROTTLED:
        return http.error_response(*http.THROTTLED)
    if status == Invocation.Status.TIMED_OUT or not invocation.is_finished:
        # Also when the wait ran out: the invocation record shows the rest when it ends.
        return http.error_response(*http.TIMED_OUT)
    return http.error_response(*http.FUNCTION_ERROR)


def sample_request(console_request, trigger):
    """A GET of the endpoint's root, as the console's "fire now" sends it through serve()."""
    sample = HttpRequest()
    sample.method = "GET"
    sample.path = sample.path_info = f"/url/{trigger.url_id}/"
    sample.META = {
        "REQUEST_METHOD": "GET", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": console_request.get_host(), "REMOTE_ADDR": console_request.META.get("REMOTE_ADDR", ""),
        "HTTP_USER_AGENT": "lambda-console (fire now)", "HTTP_ACCEPT": "*/*",
    }
    sample._body = b""
    return sample
