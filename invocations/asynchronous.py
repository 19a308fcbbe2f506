"""What becomes of an asynchronous event after each attempt, as in Lambda: a failure is retried after a
back-off while attempts and age allow; then the outcome goes to a destination (another function on
success or failure; the function's dead-letter inbox on failure when nothing else is set).

Every step is a database write in the transaction that records the attempt, so a worker dying at any
point leaves either the attempt to be made again or its outcome delivered, never a lost event.
"""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from functions.models import Alias, EventInvokeConfig, Function, Version, account_id
from invocations.invoke import RequestTooLarge, enqueue, invoke
from invocations.metrics.rollups import record_dead_letters
from invocations.models import DeadLetter, Invocation

log = logging.getLogger(__name__)

SUCCESS = "Success"


def retry_delay(attempts):
    """Seconds to wait before the next attempt, after `attempts` failed ones (Lambda: ~1 min, then ~2)."""
    delays = settings.ASYNC_RETRY_DELAYS
    return delays[min(attempts, len(delays)) - 1]


def age_seconds(invocation, now=None):
    return ((now or timezone.now()) - invocation.created_at).total_seconds()


def async_settings(invocation):
    """The asynchronous settings the event was queued with (Lambda's defaults for events queued before
    they were recorded)."""
    return invocation.config.get("async") or EventInvokeConfig().snapshot()


def maximum_event_age(invocation):
    return async_settings(invocation)["maximum_event_age_seconds"]


def conclude(invocation):
    """After an attempt of an asynchronous event has finished (its row SUCCEEDED, FAILED or TIMED_OUT):
    queue the next attempt, or send the outcome to its destination. Call inside a transaction."""
    if invocation.status == Invocation.Status.SUCCEEDED:
        deliver(invocation, SUCCESS)
        return
    if invocation.attempts > async_settings(invocation)["maximum_retry_attempts"]:
        deliver(invocation, DeadLetter.Condition.RETRIES_EXHAUSTED)
        return
    delay = retry_delay(invocation.attempts)
    if age_seconds(invocation) + delay > maximum_event_age(invocation):
        # Lambda discards an event that would be too old by its next attempt.
        deliver(invocation, DeadLetter.Condition.EVENT_AGE_EXCEEDED)
        return
    retry_at = timezone.now() + timedelta(seconds=delay)
    invocation.requeue(f"{invocation.pk}-attempt-{invocation.attempts + 1}", retry_at)
    transaction.on_commit(lambda: enqueue(invocation, at=retry_at))


def expire(invocation):
    """End a claimed event that is already older than its maximum age. Call inside a transaction."""
    invocation.expire()
    deliver(invocation, DeadLetter.Condition.EVENT_AGE_EXCEEDED)


def destination_record(invocation, condition):
    """The record Lambda sends to a destination (the "Invocation record" in Lambda's documentation)."""
    function_arn = f"{invocation.function.arn}:{invocation.qualifier or '$LATEST'}"
    record = {
        "version": "1.0",
        "timestamp": timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invocation.attempts,
        },
        "requestPayload": _json_or_text(invocation.event),
    }
    if invocation.attempts:  # an event that never ran has no response
        response_context = {"statusCode": 200, "executedVersion": invocation.config["version"]}
        if invocation.status != Invocation.Status.SUCCEEDED:
            response_context["functionError"] = "Unhandled"
        record["responseContext"] = response_context
        record["responsePayload"] = _json_or_text(invocation.result)
    return record


def deliver(invocation, condition):
    """Send the outcome to the destination for `condition`. A failure with no destination, or one that
    could not be delivered, lands in the dead-letter inbox. Call inside a transaction."""
    settings_ = async_settings(invocation)
    target = settings_["on_success"] if condition == SUCCESS else settings_["on_failure"]
    undelivered = None
    if target:
        try:
            delivered = send_to_destination(invocation, target, destination_record(invocation, condition))
        except Undeliverable as e:
            log.warning("destination %s of invocation %s failed: %s", target, invocation.pk, e)
            undelivered = f"{target} not delivered: {e}"
        else:
            _set_destination(invocation, f"{target} ({delivered})")
            return
    if condition == SUCCESS:
        if undelivered:
            _set_destination(invocation, undelivered)
        return
    DeadLetter.objects.create(function_id=invocation.function_id, invocation=invocation, condition=condition,
                              payload=invocation.event)
    record_dead_letters(invocation.function_id)
    _set_destination(invocation, f"dead-letter inbox ({undelivered})" if undelivered else "dead-letter inbox")


class Undeliverable(Exception):
    """The record cannot reach its destination; the text says why."""


# Lambda stops a recursive loop of functions after about 16 invocations; so does a chain of destinations.
MAX_DESTINATION_DEPTH = 16


def send_to_destination(invocation, target, record):
    """Send the record to `target`, an ARN of one of the owner's functions (invoked asynchronously with
    it), queues (as a message) or topics (published); return what was made, for the invocation page."""
    # Here, not at the top: the queue and topic apps import this app's models.
    from invocations.queues.models import InvalidMessage, Queue
    from invocations.topics.models import Topic

    owner = invocation.function.owner
    body = json.dumps(record)
    # Counted through topics too (a function subscribed to its own success topic): a queue ends a chain
    # by itself, its triggers invoking synchronously, without destinations.
    depth = async_settings(invocation).get("depth", 0) + 1
    # In Lambda, the setting of the function the loop would invoke next decides (Lambda "stops your function
    # being invoked"). Here the loop is stopped where it is sent on, and a queue or a topic has no function
    # yet: the setting of the function whose outcome is being sent decides, read now (not when it was
    # queued), so that switching it back to Terminate stops a loop already running.
    allowed = invocation.function.recursive_loop == Function.RecursiveLoop.ALLOW
    if depth > MAX_DESTINATION_DEPTH and not allowed:
        raise Undeliverable(f"a recursive loop of destinations was stopped after {MAX_DESTINATION_DEPTH} invocations")
    try:
        if target.startswith("arn:aws:sqs:"):
            return f"message {resource_for_arn(Queue, owner, target).send(body).pk}"
        if target.startswith("arn:aws:sns:"):
            return f"message {resource_for_arn(Topic, owner, target).publish(body, destination_depth=depth)}"
        function, qualifier = function_for_arn(owner, target)
        sent = invoke(function, body, kind=Invocation.Kind.ASYNC, source="destination", qualifier=qualifier,
                      destination_depth=depth)
        return f"invocation {sent.pk}"
    except (Function.DoesNotExist, Version.DoesNotExist, Alias.DoesNotExist, Queue.DoesNotExist,
            Topic.DoesNotExist):
        raise Undeliverable("it no longer exists") from None
    except (RequestTooLarge, InvalidMessage) as e:
        raise Undeliverable(str(e)) from None


def resource_for_arn(model, owner, arn):
    """The owner's queue or topic named by `arn`; raise model.DoesNotExist for any other."""
    account = account_id(owner)
    prefix, _, name = arn.rpartition(":")
    if prefix.split(":")[3:5] != [settings.LAMBDA_REGION, account]:
        raise model.DoesNotExist(arn)
    return model.objects.get(owner=owner, name=name)


def function_for_arn(owner, arn):
    """Return (function, qualifier or None) for a function ARN of `owner`; raise Function.DoesNotExist."""
    prefix = f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(owner)}:function:"
    if not arn.startswith(prefix):
        raise Function.DoesNotExist(f"{arn} is not one of your functions")
    name, _, qualifier = arn[len(prefix):].partition(":")
    function = Function.objects.get(owner=owner, name=name)
    if qualifier:
        function.resolve(qualifier)  # raises if the version or alias is gone
    return function, qualifier or None


def _set_destination(invocation, text):
    invocation.destination = text[:300]
    Invocation.objects.filter(pk=invocation.pk).update(destination=invocation.destination)


def _json_or_text(text):
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


def redrive(letter):
    """Invoke the dead letter's function again with its (perhaps edited) payload, through the qualifier
    first used and as it was invoked (an asynchronous event asynchronously; a table stream's batch, sent
    synchronously and up to 6 MB, the same way, with nobody waiting); return the new invocation, or None
    if the letter was already redriven. Raise Version.DoesNotExist or Alias.DoesNotExist if that qualifier
    is gone."""
    with transaction.atomic():
        invocation = invoke(letter.function, letter.payload, kind=letter.invocation.kind, source="redrive",
                            qualifier=letter.invocation.qualifier or None)
        # Whoever marks the letter redriven first keeps its invocation: a double click redrives once.
        if not DeadLetter.objects.filter(pk=letter.pk, redriven_at__isnull=True).update(
                redriven_at=timezone.now(), redrive=invocation):
            transaction.set_rollback(True)
            return None
        record_dead_letters(letter.function_id)
    return invocation
