"""Queues, like SQS standard queues: the database holds every message, so a worker dying or Redis restarting
loses none. How messages reach functions is in `delivery.py`."""

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from functions.models import Trigger, account_id
from invocations.models import Invocation
from invocations.queues import attributes
from invocations.queues.attributes import InvalidMessage, MessageTooLarge  # noqa: F401 (callers import them here)

# SQS's bounds (CreateQueue in the SQS API reference).
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,80}$"
VISIBILITY_TIMEOUT_MAX = 43200
RETENTION_MIN, RETENTION_MAX = 60, 1209600
MAX_RECEIVE_COUNT_MAX = 1000
DELAY_MAX = 900
WAIT_TIME_MAX = 20  # ReceiveMessage's long polling
# The largest message, its attributes included (SQS's limit before 2025, when it grew to 1 MiB).
MAX_MESSAGE_BYTES = 256 * 1024


def epoch_ms(moment):
    return str(int(moment.timestamp() * 1000))


class Queue(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=80, validators=[RegexValidator(
        NAME_PATTERN, "1–80 of A-Z a-z 0-9 - _ (as SQS allows).")])
    visibility_timeout = models.PositiveIntegerField(
        default=30, validators=[MaxValueValidator(VISIBILITY_TIMEOUT_MAX)],
        help_text="Seconds a received message stays hidden before it is delivered again (0–43200).")
    message_retention = models.PositiveIntegerField(
        default=345600, validators=[MinValueValidator(RETENTION_MIN), MaxValueValidator(RETENTION_MAX)],
        help_text="Seconds a message is kept (60 s – 14 days; 4 days by default).")
    dead_letter_queue = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                          related_name="source_queues",
                                          help_text="Where a message goes once it was received too often.")
    max_receive_count = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(MAX_RECEIVE_COUNT_MAX)],
        help_text="Receives before a message moves to the dead-letter queue (1–1000).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="queue_name_per_owner")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("queues:detail", args=[self.name])

    @property
    def arn(self):
        return f"arn:aws:sqs:{settings.LAMBDA_REGION}:{account_id(self.owner)}:{self.name}"

    def send(self, body, message_attributes=None, sender_id="", delay_seconds=0):
        """Put a message on the queue (SQS's SendMessage); return it.

        `message_attributes` as SQS's API takes them ({"name": {"DataType", "StringValue"|"BinaryValue"}}).
        Raise MessageTooLarge over 256 KB (body and attributes), InvalidMessage for anything else SQS refuses.
        """
        parsed = check_message(body, message_attributes)
        if not 0 <= delay_seconds <= DELAY_MAX:
            raise InvalidMessage(f"The delay must be 0–{DELAY_MAX} seconds.")
        return self.put(body, parsed, sender_id=sender_id, delay_seconds=delay_seconds)

    def put(self, body, parsed_attributes=(), sender_id="", delay_seconds=0, dead_letter_source=""):
        """Store a message already checked (send() checks; a topic's JSON envelope may pass 256 KB, as SNS's
        does on its way to SQS)."""
        now = timezone.now()
        return Message.objects.create(
            queue=self, body=body, message_attributes=attributes.sqs_shape(parsed_attributes),
            attributes={"SenderId": sender_id or account_id(self.owner), "SentTimestamp": epoch_ms(now)},
            md5_of_body=attributes.md5_of_body(body),
            md5_of_message_attributes=attributes.md5_of_attributes(parsed_attributes),
            size=attributes.size(body, parsed_attributes), sent_at=now,
            visible_at=now + timedelta(seconds=delay_seconds),
            expires_at=now + timedelta(seconds=self.message_retention),
        )

    def visible_messages(self, now, limit):
        """The (pk, visible_at, receive_count) of up to `limit` messages visible at `now`, longest visible
        first: what take() needs to take them."""
        # Strictly before now: a message hidden in this pass with a timeout of 0 is not visible again in it.
        return list(self.messages.filter(visible_at__lt=now).order_by("visible_at", "pk")
                    .values_list("pk", "visible_at", "receive_count")[:limit])

    def take(self, visible, now, visibility_timeout):
        """Receive messages read by visible_messages(): move those received max_receive_count times to the
        dead-letter queue, hide the rest for `visibility_timeout` seconds with a new receipt handle; return
        the pks taken. Queue triggers and ReceiveMessage both receive through here."""
        hidden_until = now + timedelta(seconds=visibility_timeout)
        taken = []
        for pk, visible_at, receive_count in visible:
            # Only if no other receiver took it since it was read: its visibility and receive count are unchanged.
            unchanged = Message.objects.filter(pk=pk, queue=self, visible_at=visible_at, receive_count=receive_count)
            if self.dead_letter_queue_id is not None and receive_count >= self.max_receive_count:
                unchanged.update(queue_id=self.dead_letter_queue_id, visible_at=now, receive_count=0,
                                 first_received_at=None, receipt_handle="", invocation=None,
                                 dead_letter_source=self.arn)
                continue
            if unchanged.update(visible_at=hidden_until, receive_count=F("receive_count") + 1,
                                receipt_handle=receipt_handle(pk), invocation=None,
                                first_received_at=Coalesce(F("first_received_at"), Value(now, DateTimeField()))):
                taken.append(pk)
        return taken

    def receive(self, max_messages=1, visibility_timeout=None, now=None):
        """SQS's ReceiveMessage without waiting: take up to `max_messages` visible messages; return them."""
        now = now or timezone.now()
        visible = self.visible_messages(now, max_messages)
        if not visible:
            return []
        if visibility_timeout is None:
            visibility_timeout = self.visibility_timeout
        with transaction.atomic():
            taken = self.take(visible, now, visibility_timeout)
        return list(Message.objects.filter(pk__in=taken).order_by("sent_at"))

    def delete_message(self, handle):
        """SQS's DeleteMessage: delete the message if `handle` is its latest receipt handle.

        A message already deleted is no error (SQS's DeleteMessage is idempotent); an earlier handle of a
        message received again since raises ReceiptHandleExpired, as SQS refuses it.
        """
        pk = message_id_of(handle)
        deleted, _ = self.messages.filter(pk=pk, receipt_handle=handle).delete()
        if not deleted and Message.objects.filter(pk=pk, queue__owner=self.owner).exists():
            raise ReceiptHandleExpired("The receipt handle has expired: the message was received again since.")

    def change_visibility(self, handle, visibility_timeout, now=None):
        """SQS's ChangeMessageVisibility: hide the message `visibility_timeout` seconds from now (0: visible
        at once), if `handle` is its latest receipt handle and it is still in flight."""
        pk = message_id_of(handle)
        now = now or timezone.now()
        if self.messages.filter(pk=pk, receipt_handle=handle, visible_at__gt=now).update(
                visible_at=now + timedelta(seconds=visibility_timeout)):
            return
        found = Message.objects.filter(pk=pk, queue__owner=self.owner).values("queue_id", "receipt_handle").first()
        if found is None:
            raise ReceiptHandleIsInvalid("No message has this receipt handle: it was deleted.")
        if found["queue_id"] != self.pk or found["receipt_handle"] != handle:
            raise ReceiptHandleExpired("The receipt handle has expired: the message was received again since.")
        raise MessageNotInflight("The message is not in flight: its visibility timeout ran out.")

    def purge(self):
        """Delete every message (SQS's PurgeQueue); return how many."""
        deleted, _ = self.messages.all().delete()
        return deleted

    def retention_changed(self):
        """Apply a new retention period to the messages already here, as SQS does."""
        self.messages.update(expires_at=F("sent_at") + timedelta(seconds=self.message_retention))

    def delete_with_triggers(self):
        """Delete the queue, its messages and the queue triggers that read it, in one transaction."""
        with transaction.atomic():
            Trigger.objects.filter(kind=Trigger.Kind.QUEUE, function__owner=self.owner,
                                   config__queue_id=self.pk).delete()
            self.delete()


def check_message(body, message_attributes):
    """Check a body and its attributes as SQS does; return the parsed attributes."""
    check_body(body)
    parsed = attributes.parse(message_attributes)
    check_size(body, parsed)
    return parsed


def check_body(body):
    attributes.check_text(body, "The message body")
    if body == "":
        raise InvalidMessage("The message body must not be empty.")


def check_size(body, parsed_attributes):
    size = attributes.size(body, parsed_attributes)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"The message is {size:,} bytes with its attributes; a queue takes at most "
                              f"{MAX_MESSAGE_BYTES:,} bytes (256 KB).")


class ReceiptHandleIsInvalid(ValueError):
    """A receipt handle that no receive ever gave (SQS's ReceiptHandleIsInvalid)."""


class ReceiptHandleExpired(ValueError):
    """A receipt handle of an earlier receive: the message was received again (or moved) since."""


class MessageNotInflight(ValueError):
    """The handle is the latest, but the message's visibility timeout already ran out."""


def receipt_handle(message_id):
    # A new one at each receive, as SQS's: only the latest receive may delete the message. It names the
    # message, so DeleteMessage finds it by primary key; the random part makes it unguessable.
    return f"{message_id.hex}.{secrets.token_urlsafe(32)}"


def message_id_of(handle):
    """The message id a receipt handle names; raise ReceiptHandleIsInvalid if it names none."""
    if not isinstance(handle, str) or handle.count(".") != 1:
        raise ReceiptHandleIsInvalid("The receipt handle is not one a receive gave.")
    try:
        return uuid.UUID(hex=handle.partition(".")[0])
    except ValueError:
        raise ReceiptHandleIsInvalid("The receipt handle is not one a receive gave.") from None


class Message(models.Model):
    # The id is SQS's MessageId.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    # SQS's system attributes as sent: SenderId, SentTimestamp (the receive ones come from the fields below).
    attributes = models.JSONField(default=dict)
    # As Lambda's SQS event shows them: {name: {stringValue|binaryValue, stringListValues, binaryListValues,
    # dataType}}.
    message_attributes = models.JSONField(default=dict, blank=True)
    md5_of_body = models.CharField(max_length=32)
    md5_of_message_attributes = models.CharField(max_length=32, blank=True)
    size = models.PositiveIntegerField(help_text="bytes of the body and attributes")
    sent_at = models.DateTimeField()
    # When it may be received: at send (after a delay), and a visibility timeout after each receive.
    visible_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    receive_count = models.PositiveIntegerField(default=0)
    first_received_at = models.DateTimeField(null=True, blank=True)
    receipt_handle = models.CharField(max_length=80, blank=True)
    # The batch invocation that holds it in flight; its outcome deletes the message or lets it come back.
    invocation = models.ForeignKey(Invocation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The queue it came from, when it was moved here as a dead letter (SQS's DeadLetterQueueSourceArn).
    dead_letter_source = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["sent_at"]
        indexes = [
            # The poller: a queue's visible messages, longest visible first.
            models.Index(fields=["queue", "visible_at"], name="message_queue_visible"),
            # The poller's sweep of messages past their retention.
            models.Index(fields=["expires_at"], name="message_expires"),
        ]

    def __str__(self):
        return str(self.id)

    def system_attributes(self):
        """SQS's system attributes of a received message, as ReceiveMessage and Lambda's event give them."""
        shown = {
            "ApproximateReceiveCount": str(self.receive_count),
            "SentTimestamp": self.attributes["SentTimestamp"],
            "SenderId": self.attributes["SenderId"],
            "ApproximateFirstReceiveTimestamp": epoch_ms(self.first_received_at),
        }
        if self.dead_letter_source:
            shown["DeadLetterQueueSourceArn"] = self.dead_letter_source
        return shown

    def in_flight(self, now=None):
        return self.visible_at > (now or timezone.now()) and self.receive_count > 0
