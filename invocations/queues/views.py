"""Queue pages (list and create, a queue's messages and settings, send, purge, delete) and the JSON API
(SendMessage, ReceiveMessage with long polling, DeleteMessage, ChangeMessageVisibility)."""

import json
import time
from contextlib import contextmanager

from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.models import Trigger, account_id
from invocations.endpoints import waiting_slots
from invocations.queues import attributes
from invocations.queues.forms import QueueForm, ReceiveMessageForm, SendMessageForm
from invocations.queues.models import (VISIBILITY_TIMEOUT_MAX, MessageNotInflight, Queue, ReceiptHandleExpired,
                                       ReceiptHandleIsInvalid)
from invocations.sources.api import ApiError, api_view, read_json
from invocations.sources.pages import create_from_form

# Messages a queue page shows, oldest first; the rest are counted.
BROWSE_LIMIT = 100
# The API's names for SendMessageForm's fields, in its error messages.
API_NAMES = {"body": "MessageBody", "message_attributes": "MessageAttributes", "delay_seconds": "DelaySeconds",
             "__all__": "Message"}
RECEIVE_NAMES = {"max_number_of_messages": "MaxNumberOfMessages", "visibility_timeout": "VisibilityTimeout",
                 "wait_time_seconds": "WaitTimeSeconds", "message_attribute_names": "MessageAttributeNames"}
# How often a long poll looks for a message: one short query each time.
LONG_POLL_INTERVAL = 0.2


def _get_queue_for_user(request, name):
    return get_object_or_404(Queue.objects.select_related("owner", "dead_letter_queue"), owner=request.user,
                             name=name)


def queue_list(request):
    if request.method == "POST":
        form = QueueForm(request.POST, owner=request.user)
        if form.is_valid():
            taken = f"You already have a queue named {form.cleaned_data['name']!r}."
            created = create_from_form(request, form, "queue", taken)
            if created is not None:
                return created
    else:
        form = QueueForm(owner=request.user)
    now = timezone.now()
    queues = Queue.objects.filter(owner=request.user).select_related("owner", "dead_letter_queue").annotate(
        visible=Count("messages", filter=Q(messages__visible_at__lte=now)),
        hidden=Count("messages", filter=Q(messages__visible_at__gt=now)),
    )
    return render(request, "queues/list.html", {"queues": queues, "form": form},
                  status=400 if form.errors else 200)


def queue_detail(request, name, send_form=None, settings_form=None):
    queue = _get_queue_for_user(request, name)
    now = timezone.now()
    shown = list(queue.messages.order_by("sent_at")[:BROWSE_LIMIT])
    for message in shown:
        message.state = ("in flight" if message.invocation_id and message.visible_at > now
                         else "hidden" if message.visible_at > now else "visible")
    counts = queue.messages.aggregate(visible=Count("pk", filter=Q(visible_at__lte=now)),
                                      hidden=Count("pk", filter=Q(visible_at__gt=now)))
    triggers = Trigger.objects.filter(kind=Trigger.Kind.QUEUE, function__owner=request.user,
                                      config__queue_id=queue.pk).select_related("function")
    bound = send_form is not None or settings_form is not None
    return render(request, "queues/detail.html", {
        "queue": queue, "shown": shown, "counts": counts, "total": counts["visible"] + counts["hidden"],
        "triggers": triggers, "source_queues": queue.source_queues.all(),
        "send_form": send_form or SendMessageForm(queue=queue),
        "settings_form": settings_form or QueueForm(instance=queue, owner=request.user),
    }, status=400 if bound else 200)


@require_POST
def queue_send(request, name):
    queue = _get_queue_for_user(request, name)
    form = SendMessageForm(request.POST, queue=queue)
    if not form.is_valid():
        return queue_detail(request, name, send_form=form)
    message = form.save(sender_id=account_id(request.user))
    messages.success(request, f"Sent message {message.pk}.")
    return redirect(queue)


@require_POST
def queue_settings(request, name):
    queue = _get_queue_for_user(request, name)
    form = QueueForm(request.POST, instance=queue, owner=request.user)
    if not form.is_valid():
        return queue_detail(request, name, settings_form=form)
    with transaction.atomic():
        form.save()
    messages.success(request, f"Saved the settings of {queue.name}.")
    return redirect(queue)


@require_POST
def queue_purge(request, name):
    queue = _get_queue_for_user(request, name)
    deleted = queue.purge()
    messages.success(request, f"Purged {queue.name}: deleted {deleted} message{'s' if deleted != 1 else ''}.")
    return redirect(queue)


@require_POST
def queue_delete(request, name):
    queue = _get_queue_for_user(request, name)
    queue.delete_with_triggers()
    messages.success(request, f"Deleted queue {queue.name}, its messages and its triggers.")
    return redirect("queues:list")


def _get_api_queue(request, name, verb):
    """The caller's queue for a JSON API call; another owner's queue does not exist for them."""
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", f"POST to {verb}.")
    queue = Queue.objects.filter(owner=request.user, name=name).select_related("owner").first()
    if queue is None:
        raise ApiError(404, "QueueDoesNotExist", f"You have no queue named {name!r}.")
    return queue


@api_view
def api_messages(request, name):
    """POST: SQS's SendMessage, {"MessageBody", "MessageAttributes", "DelaySeconds"} → {"MessageId",
    "MD5OfMessageBody"(, "MD5OfMessageAttributes")}."""
    queue = _get_api_queue(request, name, "send a message")
    data = read_message(request)
    form = SendMessageForm({
        "body": data["MessageBody"], "message_attributes": json.dumps(data.get("MessageAttributes") or {}),
        "delay_seconds": data.get("DelaySeconds", 0),
    }, queue=queue)
    if not form.is_valid():
        text = " ".join(f"{API_NAMES[field]}: {' '.join(errors)}" for field, errors in form.errors.items())
        raise ApiError(400, "MessageTooLong" if form.has_error("body", "too_large") else "InvalidParameterValue",
                       text)
    message = form.save(sender_id=account_id(request.user))
    answer = {"MessageId": str(message.pk), "MD5OfMessageBody": message.md5_of_body}
    if message.md5_of_message_attributes:
        answer["MD5OfMessageAttributes"] = message.md5_of_message_attributes
    return JsonResponse(answer)


def read_message(request):
    data = read_json(request)
    if not isinstance(data.get("MessageBody"), str):
        raise ApiError(400, "MissingParameter", "MessageBody is required, as a string.")
    delay = data.get("DelaySeconds", 0)
    if not isinstance(delay, int) or isinstance(delay, bool):
        raise ApiError(400, "InvalidParameterValue", "DelaySeconds must be a whole number of seconds.")
    return data


@api_view
def api_receive(request, name):
    """POST: SQS's ReceiveMessage, {"MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds",
    "MessageAttributeNames"} → {"Messages": [...]} (an empty list when none came within the wait)."""
    queue = _get_api_queue(request, name, "receive messages")
    data = read_json(request)
    form = ReceiveMessageForm({field: data.get(api_name) for field, api_name in RECEIVE_NAMES.items()})
    if not form.is_valid():
        raise ApiError(400, "InvalidParameterValue", " ".join(
            f"{RECEIVE_NAMES[field]}: {' '.join(errors)}" for field, errors in form.errors.items()))
    options = form.cleaned_data
    count, timeout = options["max_number_of_messages"] or 1, options["visibility_timeout"]
    received = queue.receive(count, timeout)
    if not received and options["wait_time_seconds"]:
        received = long_poll(queue, count, timeout, options["wait_time_seconds"])
    names = options["message_attribute_names"]
    return JsonResponse({"Messages": [api_message(message, names) for message in received]})


def long_poll(queue, count, timeout, wait):
    """Receive until a message comes or `wait` seconds pass. Each try is a short query of its own: the wait
    holds no transaction and no lock, only a web thread, so it takes one of the process's waiting slots."""
    slots = waiting_slots()
    if not slots.acquire(blocking=False):
        raise ApiError(429, "RequestThrottled", "Too many requests are waiting on this server: retry, or poll "
                                                "with a shorter WaitTimeSeconds.")
    try:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(LONG_POLL_INTERVAL, left))
            received = queue.receive(count, timeout)
            if received:
                return received
        return []
    finally:
        slots.release()


def api_message(message, names):
    """A received message as SQS's ReceiveMessage gives it, with the message attributes `names` asks for."""
    shaped = {"MessageId": str(message.pk), "ReceiptHandle": message.receipt_handle,
              "MD5OfBody": message.md5_of_body, "Body": message.body, "Attributes": message.system_attributes()}
    wanted = attributes.chosen(attributes.from_sqs_shape(message.message_attributes), names)
    if wanted:  # as SQS: the digest covers the attributes given, so a client can check what it got
        shaped["MessageAttributes"] = attributes.api_shape(wanted)
        shaped["MD5OfMessageAttributes"] = attributes.md5_of_attributes(wanted)
    return shaped


@api_view
def api_delete_message(request, name):
    """POST: SQS's DeleteMessage, {"ReceiptHandle"} → {}."""
    queue = _get_api_queue(request, name, "delete a message")
    handle = read_handle(read_json(request))
    with receipt_errors():
        queue.delete_message(handle)
    return JsonResponse({})


@api_view
def api_change_visibility(request, name):
    """POST: SQS's ChangeMessageVisibility, {"ReceiptHandle", "VisibilityTimeout"} → {}."""
    queue = _get_api_queue(request, name, "change a message's visibility")
    data = read_json(request)
    timeout = data.get("VisibilityTimeout")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 <= timeout <= VISIBILITY_TIMEOUT_MAX:
        raise ApiError(400, "InvalidParameterValue",
                       f"VisibilityTimeout must be a whole number of seconds, 0–{VISIBILITY_TIMEOUT_MAX}.")
    with receipt_errors():
        queue.change_visibility(read_handle(data), timeout)
    return JsonResponse({})


def read_handle(data):
    handle = data.get("ReceiptHandle")
    if not isinstance(handle, str) or not handle:
        raise ApiError(400, "MissingParameter", "ReceiptHandle is required, as a string.")
    return handle


@contextmanager
def receipt_errors():
    """Answer a refused receipt handle with SQS's error for it."""
    try:
        yield
    except ReceiptHandleIsInvalid as e:
        raise ApiError(400, "ReceiptHandleIsInvalid", str(e)) from None
    except ReceiptHandleExpired as e:
        # SQS's answer to an earlier handle: "Value … for parameter ReceiptHandle is invalid. Reason: …".
        raise ApiError(400, "InvalidParameterValue", f"ReceiptHandle is invalid. Reason: {e}") from None
    except MessageNotInflight as e:
        raise ApiError(400, "MessageNotInflight", str(e)) from None
