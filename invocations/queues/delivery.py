"""Queue triggers, like Lambda's SQS event source mappings: take batches of visible messages, invoke the
function synchronously with SQS's event, and settle the batch by how the invocation ended.

Delivery is at least once. Taking a batch hides its messages for the queue's visibility timeout, in the
transaction that records the invocation, so the database always knows who holds them. Success deletes
them (with partial batch responses, all but the failures it names); anything else — an error, a timeout,
a throttle, a worker killed mid-batch — leaves them hidden until the timeout runs out, and then they are
delivered again. A message received max_receive_count times moves to the queue's dead-letter queue
instead of being delivered once more.

Any number of `run_event_sources` may poll at once, and programs may receive from the same queue through
the JSON API: a message is taken by a conditional UPDATE on the visibility and receive count it was read
with (Queue.take), so only one receiver gets it.
"""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.db.models import F
from django.shortcuts import redirect
from django.utils import timezone

from functions.models import Alias, Trigger, Version, account_id
from invocations.invoke import RequestTooLarge, invoke
from invocations.models import Invocation
from invocations.queues.attributes import md5_of_body
from invocations.queues.models import Message, Queue, epoch_ms, receipt_handle

log = logging.getLogger(__name__)

SOURCE = "queue"


def poll(now):
    """Deliver what every enabled queue trigger may take now; return the invocations made."""
    Message.objects.filter(expires_at__lte=now).delete()  # past their retention period
    made = []
    triggers = Trigger.objects.filter(kind=Trigger.Kind.QUEUE, enabled=True).select_related("function__owner")
    for trigger in triggers:
        try:
            made += poll_trigger(trigger, now)
        except (Version.DoesNotExist, Alias.DoesNotExist):
            log.warning("queue trigger %s: %s no longer exists; nothing delivered", trigger.pk, trigger.target)
        except Exception:
            # One trigger's trouble must not starve the others: the next pass tries it again.
            log.exception("queue trigger %s: delivery failed", trigger.pk)
    return made


def poll_trigger(trigger, now):
    """Invoke the trigger's function with batches while it has fewer than its maximum concurrency in flight."""
    queue = Queue.objects.filter(pk=trigger.config["queue_id"], owner=trigger.function.owner).first()
    if queue is None:
        return []
    made = []
    in_flight = Invocation.objects.filter(
        trigger=trigger, status__in=[Invocation.Status.QUEUED, Invocation.Status.RUNNING]).count()
    while in_flight < trigger.config["maximum_concurrency"]:
        invocation = deliver_batch(trigger, queue, now)
        if invocation is None:
            break
        made.append(invocation)
        in_flight += 1
    return made


def deliver_batch(trigger, queue, now):
    """Take one batch and invoke with it; return the invocation, or None if no batch is due."""
    batch_size = trigger.config["batch_size"]
    visible = queue.visible_messages(now, batch_size)
    if not visible:
        return None
    window = timedelta(seconds=trigger.config["maximum_batching_window"])
    if len(visible) < batch_size and visible[0][1] > now - window:
        return None  # a fuller batch may yet come within the batching window
    while True:
        try:
            with transaction.atomic():
                return _take_and_invoke(trigger, queue, visible, now)
        except RequestTooLarge:
            # Over Lambda's 6 MB with escaping: try half the batch (one message always fits).
            visible = visible[:len(visible) // 2]


def _take_and_invoke(trigger, queue, visible, now):
    """In the caller's transaction: move messages received too often to the dead-letter queue, hide the rest
    for the visibility timeout, and invoke with them. Raises (and so rolls back) if invoke() refuses."""
    taken = queue.take(visible, now, queue.visibility_timeout)
    if not taken:
        return None
    batch = list(Message.objects.filter(pk__in=taken).order_by("sent_at"))
    event = {"Records": [record(message, queue) for message in batch]}
    invocation = invoke(trigger.function, json.dumps(event), kind=Invocation.Kind.SYNC, source=SOURCE,
                        qualifier=trigger.qualifier or None, trigger=trigger)
    # Unless invoke() throttled it at once (reserved concurrency 0), its outcome hook has yet to run: until then
    # the invocation holds the batch. A throttled batch waits out its visibility timeout, held by nothing.
    if not invocation.is_finished:
        Message.objects.filter(pk__in=taken).update(invocation=invocation)
    return invocation


def record(message, queue):
    """One message as a record of Lambda's SQS event."""
    shaped = {
        "messageId": str(message.id),
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": message.system_attributes(),
        "messageAttributes": message.message_attributes,
        "md5OfBody": message.md5_of_body,
    }
    if message.md5_of_message_attributes:  # SQS names it only for a message with attributes
        shaped["md5OfMessageAttributes"] = message.md5_of_message_attributes
    shaped.update(eventSource="aws:sqs", eventSourceARN=queue.arn, awsRegion=settings.LAMBDA_REGION)
    return shaped


def settle(invocation):
    """The outcome hook (invocations.sources.finished["queue"]): delete what the batch processed; what it
    did not stays hidden until its visibility timeout and is then delivered again."""
    held = Message.objects.filter(invocation=invocation.pk)
    if invocation.started_at is None:
        # Never ran (its job was lost, or could not be queued): not a receive. The batch is visible again.
        held.update(invocation=None, visible_at=timezone.now(), receive_count=F("receive_count") - 1)
        return
    # Not invocation.trigger: a worker's row holds only what running it takes.
    config = Invocation.objects.filter(pk=invocation.pk).values_list("trigger__config", flat=True).first() or {}
    failed = None  # every message
    if invocation.status == Invocation.Status.SUCCEEDED:
        ids = {str(pk) for pk in held.values_list("pk", flat=True)}
        failed = batch_item_failures(invocation.result, ids) if config.get("report_batch_item_failures") else set()
    if failed is not None:
        held.exclude(pk__in=failed).delete()
        held = held.filter(pk__in=failed)
    held.update(invocation=None)


def batch_item_failures(result, ids):
    """The message ids a partial batch response names as failed, or None if it fails the whole batch.

    Lambda's rules: no response, an empty one or an empty or null batchItemFailures list is a complete
    success; an invalid response, or an itemIdentifier that is empty, null, misspelt or not in the
    batch, is a complete failure.
    """
    try:
        response = json.loads(result) if result else None
    except json.JSONDecodeError:
        return None
    if response is None or response == {}:
        return set()
    if not isinstance(response, dict):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    failed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            return None
        failed.add(identifier)
    return failed


def fire(request, trigger):
    """Fire now: invoke the function through the trigger's path with a made-up message.

    Not a real message on the queue: another function's trigger on the same queue could take that one,
    and only at the next poll. The sample goes straight to this trigger's function, synchronously and
    with source "queue" as a batch does, and touches no message of the queue.
    """
    queue = Queue.objects.filter(pk=trigger.config["queue_id"], owner=trigger.function.owner).first()
    back = redirect(f"{trigger.function.get_absolute_url()}#triggers")
    if queue is None:
        messages.error(request, "The trigger was not fired: its queue no longer exists.")
        return back
    now = timezone.now()
    body = "Hello from the λ console (a sample message: fire now)"
    sample = Message(queue=queue, body=body, md5_of_body=md5_of_body(body), sent_at=now, visible_at=now,
                     attributes={"SenderId": account_id(queue.owner), "SentTimestamp": epoch_ms(now)},
                     receive_count=1, first_received_at=now)
    sample.receipt_handle = receipt_handle(sample.id)
    try:
        invocation = invoke(trigger.function, json.dumps({"Records": [record(sample, queue)]}),
                            kind=Invocation.Kind.SYNC, source=SOURCE, qualifier=trigger.qualifier or None,
                            trigger=trigger)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        messages.error(request, f"The trigger was not fired: {trigger.target} no longer exists.")
        return back
    messages.success(request, f"Invoked {trigger.target} with a sample message from {queue.name}.")
    return redirect(invocation)

