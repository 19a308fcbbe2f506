"""Deliver table streams to functions, as Lambda's event source mapping for DynamoDB Streams does.

Each table stream trigger has a cursor (models.StreamCursor). `poll` (called about every second by
`manage.py run_event_sources`) sends each trigger with nothing in flight the next batch of up to
`batch_size` records after its cursor, as one synchronous invocation with DynamoDB Streams' event. The
invocation's outcome settles the batch (`finished`, in the transaction that records the outcome): success
moves the cursor past it; a failure sends the same batch again after a back-off, until the trigger's
maximum retry attempts are spent, and then the batch goes to the function's dead-letter inbox and the
cursor moves on. A batching window holds a batch short of `batch_size` back until its oldest record is that
old (`gathering`); with partial batch responses on, a success that names failed records checkpoints before
the lowest of them and retries the batch from there (`first_failure`). With bisect on function error on, a
batch the function fails on is split in two and the halves are sent one after the other, first half first,
recursively (`bisect`), so that a bad record ends up alone and only it spends the retries. One batch at a time
per trigger, so records arrive in order (per table, hence per key), at least once.

Several runners may poll at once: a batch belongs to the one whose conditional UPDATE finds the cursor as it
read it, in the transaction that records the invocation, so no two runners send the same batch.
"""

import json
import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.db.models import F, Q
from django.shortcuts import redirect
from django.utils import timezone

from functions.models import MAX_SYNC_PAYLOAD_BYTES, Alias, Version
from invocations.invoke import invoke
from invocations.metrics.rollups import record_dead_letters
from invocations.models import DeadLetter, Invocation
from invocations.tables.models import SEQUENCE_BASE, StreamCursor, StreamRecord

log = logging.getLogger(__name__)

SOURCE = "table"
# DynamoDB Streams keeps records 24 hours; so does a table here.
RETENTION = timedelta(hours=24)
TRIM_EVERY_SECONDS = 60
# A failed batch is sent again after 1, 2, 4 … seconds, at most a minute apart.
BACKOFF_MAX_SECONDS = 60
# An in-flight batch older than this is checked on each poll (recover): its invocation may have ended without
# settling it.
CHECK_IN_FLIGHT_AFTER_SECONDS = 5
# Names the event ids, derived from (stream, sequence number) so that a retried record keeps its id.
EVENT_ID_NAMESPACE = uuid.UUID("1c5b7bb4-5f0e-4c61-a0b4-6a3c3a2f9d41")


def poll(now):
    """Send each ready trigger its next batch; return the invocations made."""
    _trim(now)
    for cursor in StreamCursor.objects.filter(
            invocation__isnull=False, taken_at__lt=now - timedelta(seconds=CHECK_IN_FLIGHT_AFTER_SECONDS)):
        try:
            recover(cursor)
        except Exception:
            log.exception("table stream trigger %s: could not check its batch in flight", cursor.trigger_id)
    sent = []
    ready = (StreamCursor.objects
             .filter(trigger__enabled=True, invocation__isnull=True, table__last_sequence_number__gt=F("position"))
             .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
             .select_related("trigger__function__owner", "table__owner"))
    for cursor in ready:
        if gathering(cursor, now):
            continue
        try:
            invocation = send_batch(cursor, now)
        except (Version.DoesNotExist, Alias.DoesNotExist):
            # What it invokes is gone: wait as after a failure rather than trying every second.
            log.warning("table stream trigger %s: %s no longer exists", cursor.trigger_id, cursor.trigger.target)
            StreamCursor.objects.filter(pk=cursor.pk, invocation__isnull=True).update(
                retry_at=now + timedelta(seconds=BACKOFF_MAX_SECONDS))
            continue
        except Exception:
            # One trigger's trouble must not starve the others: the next pass tries it again.
            log.exception("table stream trigger %s: batch not sent", cursor.trigger_id)
            continue
        if invocation is not None:
            sent.append(invocation)
    return sent


def gathering(cursor, now):
    """Whether the trigger's batching window still holds its next batch back, as Lambda's
    MaximumBatchingWindowInSeconds does: fewer records than a batch wait, and the oldest of them has waited
    less than the window. A retry is sent as soon as its back-off allows: its records are fixed."""
    window = cursor.trigger.config.get("maximum_batching_window", 0)
    if not window or cursor.batch_last is not None:
        return False
    waiting = StreamRecord.objects.filter(table_id=cursor.table_id, sequence_number__gt=cursor.position)
    oldest = waiting.order_by("sequence_number").values_list("created_at", flat=True).first()
    if oldest is None or oldest <= now - timedelta(seconds=window):
        return False
    batch_size = cursor.trigger.config["batch_size"]
    return waiting.order_by("sequence_number")[:batch_size].count() < batch_size


def send_batch(cursor, now):
    """Take the cursor's next batch and invoke its function with it; return the invocation, or None if
    another runner took the batch first (or its records have expired)."""
    with transaction.atomic():
        # Only if nobody took or settled a batch since `cursor` was read: every take sets `invocation`, and
        # every settling moves `position` on or counts one more failure.
        taken = StreamCursor.objects.filter(
            pk=cursor.pk, invocation__isnull=True, position=cursor.position, failures=cursor.failures,
        ).update(taken_at=now)
        if not taken:
            return None
        records, last = batch(cursor)
        if not records:
            # Expired from the stream before they were delivered (RETENTION), as in DynamoDB: past the batch
            # being retried, or past every record there was when the cursor was read.
            gone = cursor.batch_last if cursor.batch_last is not None else cursor.table.last_sequence_number
            StreamCursor.objects.filter(pk=cursor.pk).update(**_moved_to(gone, cursor.halves))
            return None
        trigger = cursor.trigger
        invocation = invoke(trigger.function, json.dumps({"Records": records}), kind=Invocation.Kind.SYNC,
                            source=SOURCE, qualifier=trigger.qualifier or None, trigger=trigger)
        StreamCursor.objects.filter(pk=cursor.pk).update(invocation=invocation, batch_last=last)
        cursor.invocation, cursor.batch_last, cursor.taken_at = invocation, last, now
        if invocation.is_finished:
            # Refused at once (reserved concurrency 0): its outcome hook ran before the cursor named it.
            settle(cursor, invocation)
    return invocation


def batch(cursor):
    """The records the cursor sends next, as event records, and the last one's sequence number: a retry
    sends the batch it sent before; a new batch holds up to `batch_size` records, within Lambda's 6 MB."""
    records = StreamRecord.objects.filter(table_id=cursor.table_id, sequence_number__gt=cursor.position)
    if cursor.batch_last is not None:
        records = records.filter(sequence_number__lte=cursor.batch_last)
    events, last = [], None
    size = len(json.dumps({"Records": []}))
    for record in records.order_by("sequence_number")[:cursor.trigger.config["batch_size"]].iterator():
        event = record_event(record, cursor.table)
        added = len(json.dumps(event)) + (2 if events else 0)  # ", " between records
        if events and size + added > MAX_SYNC_PAYLOAD_BYTES:
            break
        events.append(event)
        size += added
        last = record.sequence_number
    return events, last


def record_event(record, table):
    """A stream record as DynamoDB Streams gives it to Lambda."""
    dynamodb = {
        "ApproximateCreationDateTime": float(int(record.created_at.timestamp())),
        "Keys": record.keys,
    }
    if record.new_image is not None:
        dynamodb["NewImage"] = record.new_image
    if record.old_image is not None:
        dynamodb["OldImage"] = record.old_image
    dynamodb.update(SequenceNumber=record.sequence_text, SizeBytes=record.size_bytes,
                    StreamViewType=table.stream_view_type)
    return {
        "eventID": uuid.uuid5(EVENT_ID_NAMESPACE, f"{table.stream_arn}:{record.sequence_number}").hex,
        "eventName": record.event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": settings.LAMBDA_REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": table.stream_arn,
    }


def finished(invocation):
    """The outcome hook (invocations.sources.finished["table"]): settle the batch the invocation carried."""
    cursor = StreamCursor.objects.select_related("trigger").filter(invocation_id=invocation.pk).first()
    if cursor is not None:
        settle(cursor, invocation)


def settle(cursor, invocation):
    """Move the cursor on after its batch's invocation ended. Call inside the transaction that recorded the
    outcome; acts only while the cursor still waits for that invocation."""
    waiting = StreamCursor.objects.filter(pk=cursor.pk, invocation_id=invocation.pk)
    position = cursor.position
    if invocation.status == Invocation.Status.SUCCEEDED:
        retry_from = None
        if cursor.trigger.config.get("report_batch_item_failures"):
            result, event = Invocation.objects.filter(pk=invocation.pk).values_list("result", "event").get()
            retry_from = first_failure(result, event)
        if retry_from is None:
            waiting.update(**_moved_to(cursor.batch_last, cursor.halves))
            return
        # A partial batch response checkpoints: the records before the lowest one it names are done, the
        # rest of the batch is retried as a failed batch (a response that fails it all names the first).
        position, counted = retry_from - 1, True
    else:
        # Lambda's retry attempts count the function's own errors, not throttles nor the platform's failures
        # (a worker that died under it, a lost job), which are retried until the records expire. Only a run
        # that ended records a duration: a platform failure (Invocation.fail) has none, whatever the function
        # may name its own errors.
        counted = (invocation.status in (Invocation.Status.FAILED, Invocation.Status.TIMED_OUT)
                   and invocation.duration_ms is not None)
        if counted and cursor.trigger.config.get("bisect_batch_on_function_error") and bisect(cursor, invocation):
            return
    attempts = cursor.attempts + counted
    maximum = cursor.trigger.config.get("maximum_retry_attempts", -1)
    if counted and 0 <= maximum < attempts:
        if waiting.update(**_moved_to(cursor.batch_last, cursor.halves)):
            to_inbox(invocation, after=position if position != cursor.position else None)
        return
    failures = cursor.failures + 1
    delay = timedelta(seconds=min(BACKOFF_MAX_SECONDS, 2 ** (failures - 1)))
    waiting.update(position=position, invocation=None, taken_at=None, attempts=attempts, failures=failures,
                   retry_at=timezone.now() + delay)


def bisect(cursor, invocation):
    """Split the failed batch the invocation carried in two, as Lambda's BisectBatchOnFunctionError does: the
    first half is sent next (after the back-off), the second waits in `halves` until the first is done
    (succeeded, or in the inbox). Return False for a batch of one record, which cannot be split: its
    failures count toward the retry attempts.

    Splitting does not count as a retry attempt ("Retrying with smaller batches isolates bad records"): each
    half starts with none spent."""
    event = Invocation.objects.filter(pk=invocation.pk).values_list("event", flat=True).get()
    sequences = [int(r["dynamodb"]["SequenceNumber"]) - SEQUENCE_BASE for r in json.loads(event)["Records"]]
    if len(sequences) < 2:
        return False
    failures = cursor.failures + 1
    StreamCursor.objects.filter(pk=cursor.pk, invocation_id=invocation.pk).update(
        batch_last=sequences[len(sequences) // 2 - 1], halves=[*cursor.halves, cursor.batch_last],
        invocation=None, taken_at=None, attempts=0, failures=failures,
        retry_at=timezone.now() + timedelta(seconds=min(BACKOFF_MAX_SECONDS, 2 ** (failures - 1))))
    return True


def first_failure(result, event):
    """The sequence number that a partial batch response, {"batchItemFailures": [{"itemIdentifier":
    "<SequenceNumber>"}]}, retries the batch from; None if the batch succeeded.

    Lambda's rules: no response, an empty one or an empty or null batchItemFailures list is a complete
    success; several failures checkpoint at the lowest sequence number; an invalid response, or an
    itemIdentifier that is empty, null, misspelt or not in the batch, is a complete failure (the batch's
    first record).
    """
    sequences = {r["dynamodb"]["SequenceNumber"]: int(r["dynamodb"]["SequenceNumber"]) - SEQUENCE_BASE
                 for r in json.loads(event)["Records"]}
    whole = min(sequences.values())
    try:
        response = json.loads(result) if result else None
    except json.JSONDecodeError:
        return whole
    if response is None or response == {}:
        return None
    if not isinstance(response, dict):
        return whole
    items = response.get("batchItemFailures")
    if items is None:
        return None
    if not isinstance(items, list):
        return whole
    failed = []
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in sequences:
            return whole
        failed.append(sequences[identifier])
    return min(failed, default=None)


def _moved_to(position, halves=()):
    """The cursor done through `position`: next, the last half still waiting of a bisected batch, if any,
    else a new batch."""
    halves = list(halves)
    return dict(position=position, batch_last=halves.pop() if halves else None, halves=halves, attempts=0,
                failures=0, invocation=None, taken_at=None, retry_at=None)


def to_inbox(invocation, after=None):
    """Keep a batch whose retries are spent in the function's dead-letter inbox, its payload the batch's
    event (redriving it invokes the function with those records again); only its records past `after`
    when a partial batch response checkpointed the rest. Lambda would send the batch's description to an
    SQS queue or SNS topic."""
    payload = Invocation.objects.filter(pk=invocation.pk).values_list("event", flat=True).get()
    if after is not None:
        records = [r for r in json.loads(payload)["Records"]
                   if int(r["dynamodb"]["SequenceNumber"]) - SEQUENCE_BASE > after]
        payload = json.dumps({"Records": records})
    DeadLetter.objects.create(function_id=invocation.function_id, invocation_id=invocation.pk,
                              condition=DeadLetter.Condition.RETRIES_EXHAUSTED, payload=payload)
    record_dead_letters(invocation.function_id)
    Invocation.objects.filter(pk=invocation.pk).update(destination="dead-letter inbox")


def recover(cursor):
    """Settle a batch in flight whose invocation has ended without settling it: failed where no hook ran
    (e.g. its job could not be queued). The workers settle the rest through our hook: they fail an
    invocation whose worker died or that outlived every limit (invocations.worker), or whose job was lost
    (invocations.lost)."""
    invocation = Invocation.objects.only("id", "status", "error_type", "function_id").filter(
        pk=cursor.invocation_id).first()
    if invocation is not None and invocation.is_finished:
        with transaction.atomic():
            settle(StreamCursor.objects.select_related("trigger").get(pk=cursor.pk), invocation)


_last_trim = [0.0]


def _trim(now):
    """Drop the records older than RETENTION, at most once a minute per process."""
    if time.monotonic() - _last_trim[0] < TRIM_EVERY_SECONDS:
        return
    _last_trim[0] = time.monotonic()
    StreamRecord.objects.filter(created_at__lt=now - RETENTION).delete()


def fire(request, trigger):
    """"Fire now": invoke the trigger's function with the table's latest stream record (or a sample INSERT of
    its keys when the stream is empty), through the path batches take, without moving the cursor."""
    cursor = StreamCursor.objects.select_related("table__owner").get(trigger=trigger)
    table = cursor.table
    record = table.stream_records.order_by("-sequence_number").first() or _sample_record(table)
    try:
        invocation = invoke(trigger.function, json.dumps({"Records": [record_event(record, table)]}),
                            kind=Invocation.Kind.SYNC, source=SOURCE, qualifier=trigger.qualifier or None,
                            trigger=trigger)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        messages.error(request, f"The trigger was not fired: {trigger.target} no longer exists.")
        return redirect(f"{trigger.function.get_absolute_url()}#triggers")
    what = "a sample INSERT" if record.pk is None else f"record {record.sequence_text} ({record.event_name})"
    messages.success(request, f"Sent {what} of table {table.name}: its invocation is queued.")
    return redirect(invocation)


def _sample_record(table):
    samples = {"S": {"S": "sample"}, "N": {"N": "1"}, "B": {"B": "c2FtcGxl"}}
    keys = {name: samples[kind] for _, name, kind, _ in table.key_schema()}
    return table.stream_record(StreamRecord.EventName.INSERT, keys, new=keys, old=None)
