"""Topic pages (list and create, a topic's subscriptions, publish, delete), the JSON API, and "fire now" for a
function's topic subscription."""

import json
import uuid

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.models import Alias, Version
from invocations.invoke import invoke
from invocations.models import Invocation
from invocations.sources.api import ApiError, api_view, read_json
from invocations.sources.pages import create_from_form
from invocations.topics import notifications
from invocations.topics.forms import PublishForm, QueueSubscriptionForm, TopicForm
from invocations.topics.models import SOURCE, Topic, subscription_arn

# The API's names for PublishForm's fields, in its error messages.
API_NAMES = {"message": "Message", "subject": "Subject", "message_attributes": "MessageAttributes",
             "__all__": "Message"}


def _get_topic_for_user(request, name):
    return get_object_or_404(Topic.objects.select_related("owner"), owner=request.user, name=name)


def topic_list(request):
    if request.method == "POST":
        form = TopicForm(request.POST, owner=request.user)
        if form.is_valid():
            taken = f"You already have a topic named {form.cleaned_data['name']!r}."
            created = create_from_form(request, form, "topic", taken)
            if created is not None:
                return created
    else:
        form = TopicForm(owner=request.user)
    topics = Topic.objects.filter(owner=request.user).select_related("owner")
    return render(request, "topics/list.html", {"topics": topics, "form": form}, status=400 if form.errors else 200)


def topic_detail(request, name, publish_form=None, subscribe_form=None):
    topic = _get_topic_for_user(request, name)
    return render(request, "topics/detail.html", {
        "topic": topic,
        "function_subscriptions": topic.function_subscriptions().select_related("function"),
        "queue_subscriptions": topic.queue_subscriptions.select_related("queue"),
        "publish_form": publish_form or PublishForm(topic=topic),
        "subscribe_form": subscribe_form or QueueSubscriptionForm(topic=topic),
    }, status=400 if publish_form is not None or subscribe_form is not None else 200)


@require_POST
def topic_publish(request, name):
    topic = _get_topic_for_user(request, name)
    form = PublishForm(request.POST, topic=topic)
    if not form.is_valid():
        return topic_detail(request, name, publish_form=form)
    message_id = form.save()
    messages.success(request, f"Published message {message_id}.")
    return redirect(topic)


@require_POST
def topic_subscribe(request, name):
    topic = _get_topic_for_user(request, name)
    form = QueueSubscriptionForm(request.POST, topic=topic)
    if not form.is_valid():
        return topic_detail(request, name, subscribe_form=form)
    try:
        with transaction.atomic():
            subscription = form.save()
    except IntegrityError:  # the same queue, subscribed by another request meanwhile
        form.add_error("queue", "That queue is already subscribed.")
        return topic_detail(request, name, subscribe_form=form)
    messages.success(request, f"Subscribed queue {subscription.queue.name}.")
    return redirect(topic)


@require_POST
def topic_unsubscribe(request, name, pk):
    topic = _get_topic_for_user(request, name)
    subscription = get_object_or_404(topic.queue_subscriptions.select_related("queue"), pk=pk)
    subscription.delete()
    messages.success(request, f"Unsubscribed queue {subscription.queue.name}.")
    return redirect(topic)


@require_POST
def topic_delete(request, name):
    topic = _get_topic_for_user(request, name)
    topic.delete_with_triggers()
    messages.success(request, f"Deleted topic {topic.name} and its subscriptions.")
    return redirect("topics:list")


@api_view
def api_publish(request, name):
    """POST: SNS's Publish, {"Message", "Subject", "MessageAttributes"} → {"MessageId"}."""
    if request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", "POST a message to publish it.")
    topic = Topic.objects.filter(owner=request.user, name=name).select_related("owner").first()
    if topic is None:
        raise ApiError(404, "NotFound", f"You have no topic named {name!r}.")
    data = read_json(request)
    if not isinstance(data.get("Message"), str):
        raise ApiError(400, "InvalidParameter", "Message is required, as a string.")
    if not isinstance(data.get("Subject") or "", str):
        raise ApiError(400, "InvalidParameter", "Subject must be a string.")
    form = PublishForm({"message": data["Message"], "subject": data.get("Subject") or "",
                        "message_attributes": json.dumps(data.get("MessageAttributes") or {})}, topic=topic)
    if not form.is_valid():
        text = " ".join(f"{API_NAMES[field]}: {' '.join(errors)}" for field, errors in form.errors.items())
        raise ApiError(400, "InvalidParameter", text)
    return JsonResponse({"MessageId": form.save()})


def fire(request, trigger):
    """Fire now: invoke this subscription's function as a publish would, with a sample notification.

    Not a real publish, which would reach every subscriber of the topic: the sample goes only to this
    trigger's function, asynchronously and with source "topic", as a published message does.
    """
    back = redirect(f"{trigger.function.get_absolute_url()}#triggers")
    topic = Topic.objects.filter(pk=trigger.config["topic_id"], owner=trigger.function.owner).first()
    if topic is None:
        messages.error(request, "The subscription was not fired: its topic no longer exists.")
        return back
    notification = {
        "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic.arn, "Subject": "Fire now",
        "Message": "Hello from the λ console (a sample notification: fire now)",
        "Timestamp": notifications.timestamp(timezone.now()), "MessageAttributes": {},
    }
    event = notifications.lambda_event(notification, subscription_arn(topic, trigger.config["subscription_id"]))
    try:
        invocation = invoke(trigger.function, json.dumps(event), kind=Invocation.Kind.ASYNC, source=SOURCE,
                            qualifier=trigger.qualifier or None, trigger=trigger)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        messages.error(request, f"The subscription was not fired: {trigger.target} no longer exists.")
        return back
    messages.success(request, f"Invoked {trigger.target} with a sample notification from {topic.name}: queued.")
    return redirect(invocation)
