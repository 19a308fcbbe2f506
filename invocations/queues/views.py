"""Queue pages (list and create, a queue's messages and settings, send, purge, delete) and the JSON API."""

import json

from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.models import Trigger, account_id
from invocations.queues.forms import QueueForm, SendMessageForm
from invocations.queues.models import Queue
from invocations.sources.api import ApiError, api_view, read_json
from invocations.sources.pages import create_from_form

# Messages a queue page shows, oldest first; the rest are counted.
BROWSE_LIMIT = 100
# The API's names for SendMessageForm's fields, in its error messages.
API_NAMES = {"body": "MessageBody", "message_attributes": "MessageAttributes", "delay_seconds": "DelaySeconds",
             "__all__": "Message"}


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


@api_view
def api_messages(request, name):
    """POST: SQS's SendMessage, {"MessageBody", "MessageAttributes", "DelaySeconds"} → {"MessageId",
    "MD5OfMessageBody"(, "MD5OfMessageAttributes")}."""
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", "POST a message to send it.")
    queue = Queue.objects.filter(owner=request.user, name=name).select_related("owner").first()
    if queue is None:
        raise ApiError(404, "QueueDoesNotExist", f"You have no queue named {name!r}.")
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
