"""Invoke: run a function and answer with its result (RequestResponse), queue it (Event), or check that it
could be invoked (DryRun), with Lambda's headers, status codes and error shapes.

A function's failure is a 200 with X-Amz-Function-Error, never a 5xx: an SDK retries a 5xx, and would run
the function again. A retry that does come (after a client's read timeout, say) carries the call's
amz-sdk-invocation-id again, and is answered with the invocation that id already started.
"""

import base64
import binascii
import json
import time
from datetime import timedelta

from django.db import IntegrityError
from django.http import HttpResponse
from django.utils import timezone

from console.lambda_api.api import function_arn, get_function, operation
from console.lambda_api.errors import ApiError, error_response, invalid, not_found
from functions.models import MAX_SYNC_PAYLOAD_BYTES, Alias, Version
from invocations.endpoints import waiting_slots
from invocations.invoke import (
    OUTCOME_FIELDS,
    WAIT_MARGIN_SECONDS,
    RequestTooLarge,
    invoke as start,
    longest_run_seconds,
    wait,
)
from invocations.models import Invocation

INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")
LOG_TYPES = ("None", "Tail")
# Lambda's limit on X-Amz-Client-Context, as sent (base64).
CLIENT_CONTEXT_MAX_BYTES = 3583
# X-Amz-Log-Result carries the end of the log.
LOG_TAIL_BYTES = 4096
# How long a call's amz-sdk-invocation-id is remembered: Lambda's maximum event age, so an event that is
# still being retried is never queued twice. SDKs retry within minutes; an id seen again after this is a
# new call.
CALL_MEMORY = timedelta(hours=6)
RETRY_POLL_SECONDS = 0.2


@operation("Invoke", max_body=MAX_SYNC_PAYLOAD_BYTES)
def invoke(request, function_name):
    invocation_type = _enum(request, "X-Amz-Invocation-Type", "invocationType", INVOCATION_TYPES, "RequestResponse")
    log_type = _enum(request, "X-Amz-Log-Type", "logType", LOG_TYPES, "None")
    function, qualifier = get_function(request, function_name, request.GET.get("Qualifier") or None)
    try:
        function.resolve(qualifier)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        raise not_found(f"Function not found: {function_arn(request.user, function.name, qualifier)}") from None
    client_context = _client_context(request)
    event = _event(request)
    if invocation_type == "DryRun":
        return HttpResponse(status=204)

    kind = Invocation.Kind.ASYNC if invocation_type == "Event" else Invocation.Kind.SYNC
    # The SDK's id for this call (a UUID); a longer one is no SDK's, and is not remembered.
    call_id = request.headers.get("amz-sdk-invocation-id")
    call_id = call_id if call_id and len(call_id) <= 64 else None
    earlier = _earlier_call(function, call_id)
    # Lambda passes the client context to synchronous invocations only.
    options = dict(kind=kind, qualifier=qualifier, client_request_id=call_id,
                   client_context=client_context if kind == Invocation.Kind.SYNC else None)
    if kind == Invocation.Kind.ASYNC or (earlier is not None and earlier.kind == Invocation.Kind.ASYNC):
        invocation = earlier or _start(function, event, options)[0]
        request.request_id = invocation.request_id
        return HttpResponse(status=202)

    slots = waiting_slots()
    if not slots.acquire(blocking=False):
        # Every request waiting for an invocation holds a web thread: keep some for the console.
        return _too_many_requests("ConcurrentInvocationLimitExceeded",
                                  "Rate Exceeded: too many synchronous invocations are waiting on this server.")
    try:
        invocation, ours = (earlier, False) if earlier is not None else _start(function, event, options)
        # Only the request that started the invocation may take the worker's wake-up (BLPOP wakes one).
        invocation = wait(invocation) if ours else _wait_for_earlier(invocation)
    finally:
        slots.release()
    request.request_id = invocation.request_id  # Lambda's x-amzn-RequestId is the function's aws_request_id
    return _answer(invocation, tail=log_type == "Tail")


# InvokeAsync's documented payload limit: smaller than Invoke's for the Event type (1 MB).
INVOKE_ASYNC_MAX_BYTES = 256 * 1024


@operation("InvokeAsync", max_body=INVOKE_ASYNC_MAX_BYTES)
def invoke_async(request, function_name):
    """The deprecated InvokeAsync: the body is the event, invoked as Invoke with the Event type does."""
    function, qualifier = get_function(request, function_name)
    try:
        function.resolve(qualifier)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        raise not_found(f"Function not found: {function_arn(request.user, function.name, qualifier)}") from None
    invocation, _ = _start(function, _event(request), dict(kind=Invocation.Kind.ASYNC, qualifier=qualifier,
                                                            client_request_id=None, client_context=None))
    request.request_id = invocation.request_id
    # botocore reads Status from the status code; the body says it too, for scripts that read the body.
    return HttpResponse(json.dumps({"Status": 202}), status=202, content_type="application/json")


def _start(function, event, options):
    """Start this call's invocation and return (it, True); or (the one a concurrent request of the same call
    started, False)."""
    try:
        return start(function, event, source="api", **options), True
    except RequestTooLarge as e:
        raise ApiError(413, RequestTooLarge.error_type, str(e)) from None
    except IntegrityError:
        return Invocation.objects.defer("event").get(function=function,
                                                     client_request_id=options["client_request_id"]), False


def _wait_for_earlier(invocation):
    """Wait for the invocation another request of the same call started (an earlier try, or a concurrent
    one). That request's own waiter takes the worker's wake-up (BLPOP wakes one), so this one polls the
    row: rare, and it keeps the wake-up simple."""
    deadline = time.monotonic() + longest_run_seconds(invocation.config) + WAIT_MARGIN_SECONDS
    while not invocation.is_finished and time.monotonic() < deadline:
        time.sleep(RETRY_POLL_SECONDS)
        invocation.refresh_from_db(fields=["status"])
    invocation.refresh_from_db(fields=OUTCOME_FIELDS)
    return invocation


def _enum(request, header, member, allowed, default):
    value = request.headers.get(header) or default
    if value not in allowed:
        raise invalid(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                      f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return value


def _client_context(request):
    """The decoded X-Amz-Client-Context (a JSON object), or None."""
    header = request.headers.get("X-Amz-Client-Context")
    if header is None:
        return None
    if len(header) > CLIENT_CONTEXT_MAX_BYTES:
        raise ApiError(400, "InvalidRequestContentException",
                       f"Client context must be at most {CLIENT_CONTEXT_MAX_BYTES} bytes of base64-encoded JSON.")
    try:
        data = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidRequestContentException",
                       "Client context must be a valid Base64-encoded JSON object.")
    return data


def _event(request):
    """The payload as the event's JSON text: any JSON value, `{}` when there is none."""
    if not request.body:
        return "{}"
    try:
        text = request.body.decode()
        json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "InvalidRequestContentException", f"Could not parse request body into json: {e}") from None
    return text


def _earlier_call(function, call_id):
    """The invocation an earlier request of the same call started, if it is to answer this one.

    A synchronous invocation that finished without running (throttled, or never queued) is forgotten: the
    SDK retries a throttle so that the function runs, not to hear the throttle again.
    """
    if call_id is None:
        return None
    earlier = Invocation.objects.defer("event").filter(function=function, client_request_id=call_id).first()
    if earlier is None:
        return None
    too_old = earlier.created_at < timezone.now() - CALL_MEMORY
    never_ran = earlier.kind == Invocation.Kind.SYNC and earlier.is_finished and earlier.attempts == 0
    if too_old or never_ran:
        Invocation.objects.filter(pk=earlier.pk).update(client_request_id=None)
        return None
    return earlier


def _too_many_requests(reason, message):
    response = error_response(ApiError(429, "TooManyRequestsException", message, Reason=reason))
    # botocore reads retryAfterSeconds from this header. A slot frees when an invocation ends: a second is a guess.
    response["Retry-After"] = "1"
    return response


def _answer(invocation, tail):
    """Lambda's answer to a synchronous invocation that has ended (or that the wait gave up on)."""
    if invocation.status == Invocation.Status.THROTTLED:
        return _too_many_requests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
    if not invocation.is_finished:
        # The platform did not get to it in time (a queue backlog, a lost wake-up): an SDK's retry of this
        # call waits for the same invocation again (amz-sdk-invocation-id) instead of starting another.
        raise ApiError(500, "ServiceException", f"Invocation {invocation.request_id} has not finished yet.")
    if invocation.error_type == "ServiceException" and not invocation.attempts:
        # Never ran (it could not be queued, or its job was lost): our failure, not the function's. A 5xx,
        # so the SDK retries, and the retry runs it (a call that never ran is forgotten, _earlier_call).
        raise ApiError(500, "ServiceException", f"Invocation {invocation.request_id} could not be run; try again.")
    response = HttpResponse(invocation.result, content_type="application/json")
    response["X-Amz-Executed-Version"] = invocation.version
    if invocation.status != Invocation.Status.SUCCEEDED:
        response["X-Amz-Function-Error"] = "Unhandled"
    if tail:
        response["X-Amz-Log-Result"] = base64.b64encode(invocation.log.encode()[-LOG_TAIL_BYTES:]).decode()
    return response
