"""Topics, like SNS standard topics: publishing a message invokes every subscribed function asynchronously
and puts it on every subscribed queue, all in one transaction."""

import json
import logging
import re
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from functions.models import Alias, Trigger, Version, account_id
from invocations.invoke import invoke
from invocations.models import Invocation
from invocations.queues import attributes
from invocations.queues.attributes import InvalidMessage, MessageTooLarge
from invocations.queues.models import Queue
from invocations.topics import filters, notifications

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,256}$"
# SNS's limits: a message of 256 KB with its attributes; a subject of printable ASCII under 100 characters.
MAX_MESSAGE_BYTES = 256 * 1024
SUBJECT_MAX = 99
SUBJECT_PATTERN = re.compile(r"^[\x20-\x7e]*$")

SOURCE = "topic"


class Topic(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="topics")
    name = models.CharField(max_length=256, validators=[RegexValidator(
        NAME_PATTERN, "1–256 of A-Z a-z 0-9 - _ (as SNS allows).")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="topic_name_per_owner")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("topics:detail", args=[self.name])

    @property
    def arn(self):
        return f"arn:aws:sns:{settings.LAMBDA_REGION}:{account_id(self.owner)}:{self.name}"

    def function_subscriptions(self):
        return Trigger.objects.filter(kind=Trigger.Kind.TOPIC, function__owner=self.owner, config__topic_id=self.pk)

    def publish(self, message, subject="", message_attributes=None, destination_depth=0):
        """Publish a message (SNS's Publish); return its MessageId.

        Every enabled function subscription is invoked asynchronously with Lambda's SNS event, and every
        queue subscription gets the message (SNS's JSON envelope, or the message itself with raw delivery),
        each only if its filter policy matches (invocations.topics.filters), in one transaction: all of them
        or, if anything fails, none. `message_attributes` as SNS's API takes them ({"name": {"DataType",
        "StringValue"|"BinaryValue"}}). Raise MessageTooLarge over 256 KB (message and attributes),
        InvalidMessage for anything else SNS refuses. `destination_depth` counts the destinations that led
        here (invocations.asynchronous), so a loop through a topic ends too.
        """
        subject = subject or ""
        parsed = check_publish(message, subject, message_attributes)
        notification = {
            "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": self.arn, "Subject": subject,
            "Message": message, "Timestamp": notifications.timestamp(timezone.now()),
            "MessageAttributes": attributes.sns_shape(parsed),
        }
        with transaction.atomic():
            for trigger in self.function_subscriptions().filter(enabled=True).select_related("function__owner"):
                if not filters.accepts(trigger.config.get("filter_policy"), trigger.config.get(
                        "filter_policy_scope", filters.ATTRIBUTES), message, parsed):
                    continue  # as SNS: a subscription whose filter policy does not match gets nothing
                arn = subscription_arn(self, trigger.config["subscription_id"])
                try:
                    invoke(trigger.function, json.dumps(notifications.lambda_event(notification, arn)),
                           kind=Invocation.Kind.ASYNC, source=SOURCE, qualifier=trigger.qualifier or None,
                           trigger=trigger, destination_depth=destination_depth)
                except (Version.DoesNotExist, Alias.DoesNotExist):
                    # As SNS with a deleted endpoint: that delivery fails, the others go on.
                    log.warning("topic %s: subscriber %s no longer exists; not delivered", self.pk, trigger.target)
            for subscription in self.queue_subscriptions.select_related("queue__owner"):
                if not filters.accepts(subscription.filter_policy, subscription.filter_policy_scope, message, parsed):
                    continue
                if subscription.raw_message_delivery:
                    subscription.queue.put(message, parsed, sender_id=account_id(self.owner))
                else:
                    subscription.queue.put(notifications.envelope(notification, subscription.arn),
                                           sender_id=account_id(self.owner))
        return notification["MessageId"]

    def delete_with_triggers(self):
        """Delete the topic, its queue subscriptions and the function subscriptions, in one transaction."""
        with transaction.atomic():
            self.function_subscriptions().delete()
            self.delete()


def subscription_arn(topic, subscription_id):
    return f"{topic.arn}:{subscription_id}"


def check_publish(message, subject, message_attributes):
    """Check a message, subject and attributes as SNS does; return the parsed attributes."""
    check_message(message)
    check_subject(subject)
    parsed = attributes.parse(message_attributes, types=attributes.SNS_TYPES)
    check_size(message, parsed)
    return parsed


def check_message(message):
    attributes.check_text(message, "The message")
    if message == "":
        raise InvalidMessage("The message must not be empty.")


def check_subject(subject):
    if len(subject) > SUBJECT_MAX or not SUBJECT_PATTERN.match(subject) or subject[:1].isspace():
        raise InvalidMessage("The subject must be printable ASCII on one line, under 100 characters, not starting "
                             "with a space.")


def check_size(message, parsed_attributes):
    size = attributes.size(message, parsed_attributes)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"The message is {size:,} bytes with its attributes; a topic takes at most "
                              f"{MAX_MESSAGE_BYTES:,} bytes (256 KB).")


class QueueSubscription(models.Model):
    """A queue of the topic's owner that receives what the topic publishes (function subscriptions are
    triggers of kind topic)."""

    # The subscription id in its ARN.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="queue_subscriptions")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="topic_subscriptions")
    raw_message_delivery = models.BooleanField(
        default=False, help_text="The message itself (its attributes as the queue message's), not SNS's JSON "
                                 "envelope.")
    filter_policy = models.TextField(
        blank=True, help_text="SNS's FilterPolicy (JSON): only matching messages are delivered; empty for all.")
    filter_policy_scope = models.CharField(
        max_length=20, default=filters.ATTRIBUTES, choices=[(s, s) for s in filters.SCOPES],
        help_text="SNS's FilterPolicyScope: match the message attributes or the message body (JSON).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["topic", "queue"], name="one_subscription_per_queue")]

    def __str__(self):
        return self.arn

    @property
    def arn(self):
        return subscription_arn(self.topic, self.id)
