"""Queues (invocations.queues): SQS's event shape against AWS's example, delivery with SQS semantics
(visibility timeout and redelivery, redrive to the dead-letter queue, partial batch responses, a worker killed
holding a batch, two pollers), the console pages and the JSON API, and bad input.

A poller runs in the test by calling it (`delivery.poll(now)`), with a `now` in the future where a visibility
timeout must run out; the real workers run the invocations. One test runs two real `run_event_sources`."""

import base64
import hashlib
import json
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.test import TransactionTestCase
from django.urls import reverse
from django.utils import timezone

from functions.models import Trigger, account_id
from invocations.models import Invocation
from invocations.queues import attributes, delivery
from invocations.queues.forms import QueueTriggerForm
from invocations.queues.models import MAX_MESSAGE_BYTES, InvalidMessage, Message, MessageTooLarge, Queue
from invocations.sources import invocation_finished
from tests.base import BaseTestCase, World, WorkerTestCase, handler_zip
from tests.processes import ROOT, child_env, log_dir, start_worker, stop, use_queue, wait_for

ECHO = "def handler(event, context):\n    return event\n"

# Fails a message's first delivery, succeeds on the next: it answers with the receive counts it saw.
FAILS_FIRST = """
    def handler(event, context):
        counts = [r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]]
        if "1" in counts:
            raise RuntimeError("first delivery fails")
        return counts
"""

ALWAYS_FAILS = "def handler(event, context):\n    raise RuntimeError('poison')\n"

# Reports the messages whose body starts with "fail" as failed (Lambda's partial batch response).
PARTIAL = """
    def handler(event, context):
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                                      if r["body"].startswith("fail")]}
"""

# Slow (for a minute) on a message's first delivery only: its worker is killed meanwhile.
SLOW_FIRST = """
    import time

    def handler(event, context):
        if event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1":
            time.sleep(60)
        return "done"
"""

# Lambda's example SQS event, as AWS publishes it: "Example Amazon SQS Message Event" in
# https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html (awsdocs/aws-lambda-developer-guide,
# doc_source/with-sqs.md).
DOC_SQS_EVENT = {
    "Records": [
        {
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
            "body": "test",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": {},
            "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2"
        },
        {
            "messageId": "2e1424d4-f796-459a-8184-9c92662be6da",
            "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...",
            "body": "test",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082650636",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082650649"
            },
            "messageAttributes": {},
            "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2"
        }
    ]
}

# A record with message attributes, from AWS's Lambda event library (aws/aws-lambda-rust-runtime,
# lambda-events/src/fixtures/example-sqs-event.json;
# https://docs.rs/crate/aws_lambda_events/latest/source/src/fixtures/example-sqs-event.json): string and
# binary attributes with their (unused) list values, and md5OfMessageAttributes.
DOC_ATTRIBUTES_RECORD = {
    "messageId": "MessageID_1",
    "receiptHandle": "MessageReceiptHandle",
    "body": "Message Body",
    "md5OfBody": "fce0ea8dd236ccb3ed9b37dae260836f",
    "md5OfMessageAttributes": "582c92c5c5b6ac403040a4f3ab3115c9",
    "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:SQSQueue",
    "eventSource": "aws:sqs",
    "awsRegion": "us-west-2",
    "attributes": {
        "ApproximateReceiveCount": "2",
        "SentTimestamp": "1520621625029",
        "SenderId": "AROAIWPX5BD2BHG722MW4:sender",
        "ApproximateFirstReceiveTimestamp": "1520621634884"
    },
    "messageAttributes": {
        "Attribute3": {
            "binaryValue": "MTEwMA==",
            "stringListValues": ["abc", "123"],
            "binaryListValues": ["MA==", "MQ==", "MA=="],
            "dataType": "Binary"
        },
        "Attribute2": {
            "stringValue": "123",
            "stringListValues": [],
            "binaryListValues": ["MQ==", "MA=="],
            "dataType": "Number"
        },
        "Attribute1": {
            "stringValue": "AttributeValue1",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String"
        }
    }
}


def shape(value):
    """The keys and value types of a JSON document, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class QueueWorld:
    def make_queue(self, name="my-queue", owner=None, **fields):
        return Queue.objects.create(owner=owner or self.alice, name=name, **fields)

    def make_trigger(self, function, queue, **fields):
        """Add a queue trigger through the form the console uses."""
        data = {"qualifier": "", "queue": queue.pk, "batch_size": 10, "maximum_batching_window": 0,
                "maximum_concurrency": 2, "enabled": True, **fields}
        form = QueueTriggerForm(data, function=function)
        assert form.is_valid(), form.errors.as_text()
        return form.save()

    def poll(self, after_seconds=0):
        return delivery.poll(timezone.now() + timedelta(seconds=after_seconds))

    def finished(self, invocation, timeout=30):
        done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED).first(),
                        timeout)
        assert done is not None, f"invocation {invocation.pk} is still {Invocation.objects.get(pk=invocation.pk).status}"
        return done

    def settled(self, invocation, timeout=10):
        """Wait until the batch's outcome hook has let go of its messages."""
        assert wait_for(lambda: not Message.objects.filter(invocation=invocation.pk).exists(), timeout)


class EventShapeTests(QueueWorld, WorkerTestCase):
    def test_a_batch_has_the_shape_of_awss_example_field_by_field(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        queue = self.make_queue()
        sent = [queue.send("test"), queue.send("test")]
        self.make_trigger(fn, queue)
        before_poll = timezone.now()
        [invocation] = self.poll()
        done = self.finished(invocation)
        self.assertEqual((done.status, done.kind, done.source), ("SUCCEEDED", "RequestResponse", "queue"))
        records = json.loads(done.result)["Records"]
        self.assertEqual(len(records), 2)
        for record, message, doc in zip(records, sent, DOC_SQS_EVENT["Records"]):
            # Same fields, in the same order, with the same types.
            self.assertEqual(list(record), list(doc))
            self.assertEqual(shape(record), shape(doc))
            self.assertEqual(record["messageId"], str(message.pk))
            self.assertTrue(record["receiptHandle"])
            self.assertEqual(record["body"], "test")
            self.assertEqual(record["md5OfBody"], doc["md5OfBody"])  # MD5 of "test", as in AWS's example
            self.assertEqual(record["messageAttributes"], {})
            self.assertEqual(record["eventSource"], "aws:sqs")
            self.assertEqual(record["eventSourceARN"],
                             f"arn:aws:sqs:{settings.LAMBDA_REGION}:{account_id(self.alice)}:my-queue")
            self.assertEqual(record["awsRegion"], settings.LAMBDA_REGION)
            attrs = record["attributes"]
            self.assertEqual(list(attrs), list(doc["attributes"]))
            self.assertEqual(attrs["ApproximateReceiveCount"], "1")
            self.assertEqual(attrs["SentTimestamp"], str(int(message.sent_at.timestamp() * 1000)))
            self.assertEqual(attrs["SenderId"], account_id(self.alice))
            first_receive = int(attrs["ApproximateFirstReceiveTimestamp"])
            self.assertGreaterEqual(first_receive, int(before_poll.timestamp() * 1000))
            self.assertGreaterEqual(first_receive, int(attrs["SentTimestamp"]))
        self.assertNotEqual(records[0]["receiptHandle"], records[1]["receiptHandle"])
        # Success deletes the batch.
        self.assertTrue(wait_for(lambda: not queue.messages.exists(), 10))

    def test_message_attributes_have_the_shape_of_awss_example(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        queue = self.make_queue()
        message = queue.send("Message Body", {
            "Attribute1": {"DataType": "String", "StringValue": "AttributeValue1"},
            "Attribute2": {"DataType": "Number", "StringValue": "123"},
            "Attribute3": {"DataType": "Binary", "BinaryValue": "MTEwMA=="},
        })
        self.make_trigger(fn, queue)
        [invocation] = self.poll()
        [record] = json.loads(self.finished(invocation).result)["Records"]
        self.assertEqual(set(record), set(DOC_ATTRIBUTES_RECORD))
        # (The fixture's digests are placeholders, not the MD5 of its body: compare with our own.)
        self.assertEqual(record["md5OfBody"], hashlib.md5(b"Message Body").hexdigest())
        for name, doc in DOC_ATTRIBUTES_RECORD["messageAttributes"].items():
            got = record["messageAttributes"][name]
            self.assertEqual(set(got), set(doc), name)
            self.assertEqual(got["dataType"], doc["dataType"])
            self.assertEqual(got.get("stringValue"), doc.get("stringValue"))
            self.assertEqual(got.get("binaryValue"), doc.get("binaryValue"))
            # SQS has never implemented list values: they are always empty.
            self.assertEqual((got["stringListValues"], got["binaryListValues"]), ([], []))
        # SQS's digest of the attributes (checked against published vectors in AttributeTests).
        self.assertEqual(record["md5OfMessageAttributes"], message.md5_of_message_attributes)
        self.assertRegex(record["md5OfMessageAttributes"], r"^[0-9a-f]{32}$")


class AttributeTests(BaseTestCase):
    def test_the_attribute_digest_matches_published_vectors(self):
        # MD5OfMessageAttributes as SQS computes it: vectors from AWS's SQS documentation example
        # ("SellerName": "Example Store") and from wcharczuk/sqslite's md5_test.go.
        self.assertEqual(attributes.md5_of_attributes(attributes.parse(
            {"SellerName": {"DataType": "String", "StringValue": "Example Store"}})),
            "cd28f3b68aeee4b2eac9c66f2f694b58")
        self.assertEqual(attributes.md5_of_attributes(attributes.parse({
            "ordinal": {"DataType": "Number", "StringValue": "1"},
            "category": {"DataType": "String", "StringValue": "test"},
        })), "d21ae90c49061e927f57df5f5d72be1f")

    def test_invalid_attributes_are_refused_with_the_reason(self):
        cases = {
            "reserved": ({"AWS.trace": "x"}, "reserved"),
            "bad name": ({"no spaces": "x"}, "not valid"),
            "type": ({"a": {"DataType": "Date", "StringValue": "x"}}, "not one of String, Number, Binary"),
            "number": ({"a": {"DataType": "Number", "StringValue": "twelve"}}, "not a number"),
            "binary": ({"a": {"DataType": "Binary", "BinaryValue": "%%%"}}, "base64"),
            "empty": ({"a": {"DataType": "String", "StringValue": ""}}, "non-empty StringValue"),
            "eleven": ({f"a{i}": "x" for i in range(11)}, "at most 10"),
        }
        for label, (raw, message) in cases.items():
            with self.subTest(label), self.assertRaisesMessage(InvalidMessage, message):
                attributes.parse(raw)
        parsed = attributes.parse({"colour": "red", "size": 3, "weight": {"DataType": "Number.kg", "StringValue": "2.5"}})
        self.assertEqual([(a.name, a.data_type, a.string_value) for a in parsed],
                         [("colour", "String", "red"), ("size", "Number", "3"), ("weight", "Number.kg", "2.5")])


class BatchResponseTests(BaseTestCase):
    def test_partial_batch_responses_follow_lambdas_rules(self):
        ids = {"a", "b", "c"}
        rules = {
            # Complete success.
            "": set(), "null": set(), "{}": set(), '{"batchItemFailures": []}': set(),
            '{"batchItemFailures": null}': set(),
            # The items named.
            '{"batchItemFailures": [{"itemIdentifier": "b"}]}': {"b"},
            # Complete failure: not a response, or an identifier that is empty, null, misspelt or unknown.
            "not json": None, '"ok"': None, '[{"itemIdentifier": "b"}]': None,
            '{"batchItemFailures": [{"itemIdentifier": ""}]}': None,
            '{"batchItemFailures": [{"itemIdentifier": null}]}': None,
            '{"batchItemFailures": [{"itemId": "b"}]}': None,
            '{"batchItemFailures": [{"itemIdentifier": "z"}]}': None,
        }
        for response, expected in rules.items():
            with self.subTest(response):
                self.assertEqual(delivery.batch_item_failures(response, ids), expected)


class DeliveryTests(QueueWorld, WorkerTestCase):
    def test_a_failed_batch_comes_back_after_the_visibility_timeout_with_receive_count_2(self):
        fn = self.create_function(handler_zip(FAILS_FIRST), name="second-time-lucky")
        queue = self.make_queue(visibility_timeout=60)
        message = queue.send("hello")
        self.make_trigger(fn, queue)
        [first] = self.poll()
        self.assertEqual(self.finished(first).status, "FAILED")
        self.settled(first)
        message.refresh_from_db()
        self.assertEqual(message.receive_count, 1)
        first_handle = message.receipt_handle
        # Hidden until the visibility timeout runs out: nothing to deliver before.
        self.assertEqual(self.poll(after_seconds=30), [])
        [second] = self.poll(after_seconds=61)
        done = self.finished(second)
        self.assertEqual(done.status, "SUCCEEDED", done.result)
        self.assertEqual(json.loads(done.result), ["2"])
        [record] = json.loads(done.event)["Records"]
        self.assertEqual(record["messageId"], str(message.pk))
        self.assertNotEqual(record["receiptHandle"], first_handle)
        self.assertEqual(record["attributes"]["ApproximateFirstReceiveTimestamp"],
                         json.loads(first.event)["Records"][0]["attributes"]["ApproximateFirstReceiveTimestamp"])
        self.assertTrue(wait_for(lambda: not Message.objects.filter(pk=message.pk).exists(), 10))

    def test_a_message_received_max_receive_count_times_moves_to_the_dead_letter_queue(self):
        fn = self.create_function(handler_zip(ALWAYS_FAILS), name="poisoned")
        echo = self.create_function(handler_zip(ECHO), name="dead-letters")
        dlq = self.make_queue("my-dlq")
        queue = self.make_queue(visibility_timeout=10, dead_letter_queue=dlq, max_receive_count=2)
        message = queue.send("poison pill")
        self.make_trigger(fn, queue)
        for n in (1, 2):
            [invocation] = self.poll(after_seconds=11 * (n - 1))
            self.assertEqual(self.finished(invocation).status, "FAILED")
            self.settled(invocation)
        # The third receive moves it instead of delivering it.
        self.assertEqual(self.poll(after_seconds=22), [])
        moved = Message.objects.get(pk=message.pk)
        self.assertEqual((moved.queue_id, moved.receive_count, moved.body), (dlq.pk, 0, "poison pill"))
        self.assertEqual(Invocation.objects.filter(function=fn).count(), 2)
        # A trigger on the dead-letter queue gets it, saying where it came from.
        self.make_trigger(echo, dlq)
        [invocation] = self.poll(after_seconds=22)
        [record] = json.loads(self.finished(invocation).result)["Records"]
        self.assertEqual(record["messageId"], str(message.pk))
        self.assertEqual(record["attributes"]["DeadLetterQueueSourceArn"], queue.arn)
        self.assertEqual(record["attributes"]["ApproximateReceiveCount"], "1")
        self.assertEqual(record["eventSourceARN"], dlq.arn)

    def test_partial_batch_failures_delete_only_the_successes(self):
        fn = self.create_function(handler_zip(PARTIAL), name="partial")
        queue = self.make_queue()
        sent = {body: queue.send(body) for body in ("ok-1", "fail-2", "ok-3", "fail-4")}
        self.make_trigger(fn, queue, report_batch_item_failures=True)
        [invocation] = self.poll()
        self.assertEqual(self.finished(invocation).status, "SUCCEEDED")
        self.settled(invocation)
        left = queue.messages.all()
        self.assertEqual(sorted(m.body for m in left), ["fail-2", "fail-4"])
        self.assertTrue(all(m.receive_count == 1 and m.visible_at > timezone.now() for m in left))
        # They come back after the visibility timeout, alone.
        [again] = self.poll(after_seconds=31)
        records = json.loads(again.event)["Records"]
        self.assertEqual(sorted(r["messageId"] for r in records),
                         sorted(str(sent[b].pk) for b in ("fail-2", "fail-4")))
        self.finished(again)

    def test_without_report_batch_item_failures_a_successful_batch_is_deleted_whole(self):
        fn = self.create_function(handler_zip(PARTIAL), name="partial-ignored")
        queue = self.make_queue()
        for body in ("ok-1", "fail-2"):
            queue.send(body)
        self.make_trigger(fn, queue)  # the response is not read
        [invocation] = self.poll()
        self.finished(invocation)
        self.assertTrue(wait_for(lambda: not queue.messages.exists(), 10))


@pytest.mark.usefixtures("solo_worker")
class KilledWorkerTests(QueueWorld, World, TransactionTestCase):
    """A worker SIGKILLed while it holds a batch: the batch comes back after the visibility timeout."""

    worker_env = {"WORKER_MAINTENANCE_INTERVAL": "1"}

    def setUp(self):
        self.make_world()
        self.enterContext(use_queue(self.queue))

    def test_a_batch_held_by_a_killed_worker_comes_back_after_the_visibility_timeout(self):
        # Killed well within its timeout; the visibility timeout is at least that, as Lambda requires.
        fn = self.create_function(handler_zip(SLOW_FIRST), name="killed-batch", timeout=6)
        queue = self.make_queue(visibility_timeout=6)
        message = queue.send("important")
        self.make_trigger(fn, queue)
        taken_at = timezone.now()
        [first] = self.poll()
        self.assertTrue(wait_for(lambda: Invocation.objects.filter(pk=first.pk, status="RUNNING").exists(), 20))
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        # A new worker fails the orphan at start; its batch is let go, still hidden.
        type(self).worker = start_worker(self.queue, f"{__name__}-{type(self).__name__}-2", **self.worker_env)
        self.assertEqual(self.finished(first).status, "FAILED")
        self.settled(first)
        message.refresh_from_db()
        self.assertEqual(message.receive_count, 1)
        # Delivered again once the visibility timeout has run out, not before.
        second = wait_for(lambda: self.poll(), 20, interval=0.2)
        self.assertTrue(second, "the batch did not come back")
        self.assertGreaterEqual(timezone.now(), taken_at + timedelta(seconds=6))
        done = self.finished(second[0])
        self.assertEqual(done.status, "SUCCEEDED", done.result)
        [record] = json.loads(done.event)["Records"]
        self.assertEqual((record["messageId"], record["attributes"]["ApproximateReceiveCount"]),
                         (str(message.pk), "2"))
        self.assertTrue(wait_for(lambda: not Message.objects.filter(pk=message.pk).exists(), 10))


class PollerTests(QueueWorld, BaseTestCase):
    """What the poller takes and when (the invocations stay queued: nothing runs them here)."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="reader")
        self.queue = self.make_queue()

    def test_a_batch_holds_at_most_batch_size_messages_oldest_first(self):
        sent = [self.queue.send(f"m{i}") for i in range(5)]
        self.make_trigger(self.fn, self.queue, batch_size=3, maximum_concurrency=5)
        first, second = self.poll()
        self.assertEqual([r["body"] for r in json.loads(first.event)["Records"]], ["m0", "m1", "m2"])
        self.assertEqual([r["body"] for r in json.loads(second.event)["Records"]], ["m3", "m4"])
        self.assertEqual(set(Message.objects.filter(invocation=first).values_list("pk", flat=True)),
                         {m.pk for m in sent[:3]})

    def test_maximum_concurrency_caps_the_batches_in_flight(self):
        for i in range(6):
            self.queue.send(f"m{i}")
        trigger = self.make_trigger(self.fn, self.queue, batch_size=1, maximum_concurrency=2)
        self.assertEqual(len(self.poll()), 2)
        self.assertEqual(self.poll(), [])  # both still queued
        Invocation.objects.filter(trigger=trigger).update(status="SUCCEEDED")
        self.assertEqual(len(self.poll()), 2)

    def test_the_batching_window_waits_for_a_full_batch(self):
        self.make_trigger(self.fn, self.queue, batch_size=3, maximum_batching_window=20)
        self.queue.send("early")
        self.assertEqual(self.poll(), [])
        self.assertEqual(self.poll(after_seconds=19), [])
        [late] = self.poll(after_seconds=21)
        self.assertEqual(len(json.loads(late.event)["Records"]), 1)
        for i in range(3):
            self.queue.send(f"m{i}")
        [full] = self.poll()  # a full batch goes at once
        self.assertEqual(len(json.loads(full.event)["Records"]), 3)

    def test_a_poller_with_a_stale_read_takes_nothing_another_took(self):
        message = self.queue.send("once")
        trigger = self.make_trigger(self.fn, self.queue)
        now = timezone.now()
        stale = list(self.queue.messages.values_list("pk", "visible_at", "receive_count"))
        [invocation] = delivery.poll(now)  # another poller takes it first
        self.assertIsNone(delivery._take_and_invoke(trigger, self.queue, stale, now))
        message.refresh_from_db()
        self.assertEqual((message.receive_count, message.invocation_id), (1, invocation.pk))
        self.assertEqual(Invocation.objects.count(), 1)

    def test_a_batch_over_lambdas_6_mb_is_split(self):
        # 65,000 emoji are 260,000 bytes, under the 256 KB limit, but 780,000 once escaped in the event's JSON:
        # ten of them are over Lambda's 6 MB for a synchronous event, five are not.
        for _ in range(10):
            self.queue.send("\U0001F600" * 65000)
        self.make_trigger(self.fn, self.queue, maximum_concurrency=3)
        batches = self.poll()
        self.assertEqual([len(json.loads(b.event)["Records"]) for b in batches], [5, 5])
        self.assertFalse(self.queue.messages.filter(invocation=None).exists())

    def test_the_queue_page_shows_what_is_in_flight_and_where(self):
        self.queue.send("taken")
        self.queue.send("waiting", delay_seconds=60)
        self.make_trigger(self.fn, self.queue)
        [invocation] = self.poll()
        self.client.force_login(self.alice)
        page = self.client.get(self.queue.get_absolute_url())
        self.assertContains(page, "0 visible, 2 hidden or in flight")
        rows = {m.body: re.search(rf'<tr class="message (\w+)" id="message-{m.pk}"', page.content.decode()).group(1)
                for m in self.queue.messages.all()}
        self.assertEqual(rows, {"taken": "inflight", "waiting": "hidden"})
        self.assertContains(page, reverse("invocations:detail", args=[invocation.pk]))

    def test_disabled_triggers_and_delayed_messages_wait(self):
        trigger = self.make_trigger(self.fn, self.queue, enabled=False)
        self.queue.send("later", delay_seconds=60)
        self.queue.send("now")
        self.assertEqual(self.poll(), [])
        Trigger.objects.filter(pk=trigger.pk).update(enabled=True)
        [invocation] = self.poll()
        self.assertEqual([r["body"] for r in json.loads(invocation.event)["Records"]], ["now"])

    def test_messages_past_their_retention_are_deleted(self):
        self.queue.message_retention = 60
        self.queue.save()
        self.queue.send("old")
        self.assertEqual(self.queue.messages.count(), 1)
        delivery.poll(timezone.now() + timedelta(seconds=61))
        self.assertFalse(self.queue.messages.exists())

    def test_a_shorter_retention_applies_to_messages_already_sent(self):
        self.queue.send("old")
        self.client.force_login(self.alice)
        response = self.client.post(reverse("queues:settings", args=[self.queue.name]), {
            "visibility_timeout": 30, "message_retention": 60, "max_receive_count": 10})
        self.assertEqual(response.status_code, 302)
        delivery.poll(timezone.now() + timedelta(seconds=61))
        self.assertFalse(self.queue.messages.exists())


class LostBatchTests(QueueWorld, BaseTestCase):
    def test_a_batch_whose_invocation_never_ran_is_visible_again_and_not_counted_as_received(self):
        fn = self.create_function(handler_zip(ECHO), name="never-ran")
        queue = self.make_queue()
        message = queue.send("kept")
        self.make_trigger(fn, queue)
        [batch] = self.poll()  # queued: nothing runs it in this test, as if its job were lost
        message.refresh_from_db()
        self.assertEqual((message.receive_count, message.invocation_id), (1, batch.pk))
        with transaction.atomic():  # what lost.fail_sync does with it
            self.assertTrue(batch.fail("ServiceException", "lost", queued_for=batch.job_id))
            invocation_finished(batch)
        message.refresh_from_db()
        self.assertEqual((message.receive_count, message.invocation_id), (0, None))
        self.assertLessEqual(message.visible_at, timezone.now())

    def test_a_visibility_timeout_of_zero_delivers_a_message_once_per_pass(self):
        fn = self.create_function(handler_zip(ECHO), name="zero", timeout=1)
        queue = self.make_queue(visibility_timeout=0)
        queue.send("once")
        Trigger.objects.create(function=fn, kind=Trigger.Kind.QUEUE, config={  # as a form of before the rule made it
            "queue_id": queue.pk, "batch_size": 10, "maximum_batching_window": 0, "maximum_concurrency": 50,
            "report_batch_item_failures": False, "summary": "zero"})
        self.assertEqual(len(self.poll(after_seconds=1)), 1)


class TwoPollersTests(QueueWorld, WorkerTestCase):
    """Two real `manage.py run_event_sources` processes draining one queue: each message is delivered once."""

    def start_runner(self, name):
        log = open(log_dir() / f"{name}.log", "w")
        self.addCleanup(log.close)
        process = subprocess.Popen([sys.executable, "manage.py", "run_event_sources"], cwd=ROOT,
                                   env=child_env(PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop, [process])
        started = wait_for(lambda: process.poll() is not None or "polling event sources" in Path(log.name).read_text(),
                           30)
        self.assertTrue(started and process.poll() is None, f"run_event_sources did not start; see {log.name}")
        return process, log.name

    def test_two_pollers_never_take_the_same_message(self):
        fn = self.create_function(handler_zip(ECHO), name="drain")
        queue = self.make_queue(visibility_timeout=600)  # no redelivery within the test
        sent = {str(queue.send(f"m{i}").pk) for i in range(40)}
        runners = [self.start_runner(f"queue-runner-{i}") for i in range(2)]
        trigger = self.make_trigger(fn, queue, batch_size=1, maximum_concurrency=8)
        self.assertTrue(wait_for(lambda: not queue.messages.exists(), 60), f"{queue.messages.count()} left")
        invocations = list(Invocation.objects.filter(trigger=trigger))
        delivered = [json.loads(i.event)["Records"][0]["messageId"] for i in invocations]
        self.assertEqual(sorted(delivered), sorted(sent))  # every message, each once
        for process, log_name in runners:
            process.terminate()
            self.assertEqual(process.wait(timeout=10), 0, f"see {log_name}")
        fired = [line for _, log_name in runners for line in Path(log_name).read_text().splitlines()
                 if line.startswith(f"fired {trigger.pk}: invocation ")]
        self.assertEqual(len(fired), 40)
        for invocation in invocations:
            self.assertEqual(self.finished(invocation).status, "SUCCEEDED")


class QueuePageTests(QueueWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_alice_creates_a_queue_with_a_dead_letter_queue(self):
        dlq = self.make_queue("my-dlq")
        response = self.client.post(reverse("queues:list"), {
            "name": "orders", "visibility_timeout": 60, "message_retention": 3600, "dead_letter_queue": dlq.pk,
            "max_receive_count": 3})
        queue = Queue.objects.get(name="orders")
        self.assertRedirects(response, queue.get_absolute_url())
        self.assertEqual((queue.owner, queue.visibility_timeout, queue.message_retention, queue.dead_letter_queue,
                          queue.max_receive_count), (self.alice, 60, 3600, dlq, 3))
        page = self.client.get(reverse("queues:list"))
        self.assertContains(page, queue.arn)

    def test_invalid_names_and_settings_are_form_errors_and_change_nothing(self):
        self.make_queue("taken")
        cases = {
            "has space": ("name", "1–80 of A-Z a-z 0-9 - _"),
            "q" * 81: ("name", "at most 80 characters"),
            "taken": ("name", "You already have a queue named 'taken'."),
        }
        for name, (field, message) in cases.items():
            response = self.client.post(reverse("queues:list"), {
                "name": name, "visibility_timeout": 30, "message_retention": 345600, "max_receive_count": 10})
            self.assertEqual(response.status_code, 400)
            self.assertIn(message, " ".join(response.context["form"].errors[field]))
        response = self.client.post(reverse("queues:list"), {
            "name": "ok", "visibility_timeout": 43201, "message_retention": 59, "max_receive_count": 1001})
        self.assertEqual(set(response.context["form"].errors), {"visibility_timeout", "message_retention",
                                                                "max_receive_count"})
        self.assertEqual(list(Queue.objects.values_list("name", flat=True)), ["taken"])

    def test_alice_sends_browses_and_purges(self):
        queue = self.make_queue()
        response = self.client.post(reverse("queues:send", args=[queue.name]), {
            "body": "hello", "message_attributes": '{"colour": "red"}', "delay_seconds": 0})
        self.assertRedirects(response, queue.get_absolute_url())
        message = queue.messages.get()
        self.assertEqual(message.md5_of_body, hashlib.md5(b"hello").hexdigest())
        self.assertEqual(message.message_attributes["colour"]["stringValue"], "red")
        self.assertEqual(message.attributes["SenderId"], account_id(self.alice))
        page = self.client.get(queue.get_absolute_url())
        self.assertContains(page, "hello")
        self.assertContains(page, "1 visible, 0 hidden or in flight")
        response = self.client.post(reverse("queues:purge", args=[queue.name]))
        self.assertRedirects(response, queue.get_absolute_url())
        self.assertFalse(queue.messages.exists())

    def test_oversized_and_invalid_messages_are_refused_and_nothing_is_sent(self):
        queue = self.make_queue()
        url = reverse("queues:send", args=[queue.name])
        cases = {
            "too large": ({"body": "x" * (MAX_MESSAGE_BYTES + 1)}, "body", "a queue takes at most 262,144 bytes"),
            # 2 + 6 ("String") + 1 bytes of attribute over a body 5 bytes under the limit.
            "attributes count": ({"body": "x" * (MAX_MESSAGE_BYTES - 5), "message_attributes": '{"ab": "c"}'},
                                 "body", "262,148 bytes with its attributes"),
            "control character": ({"body": "ring\x07"}, "body", "U+0007"),
            "not json": ({"body": "x", "message_attributes": "{colour: red}"}, "message_attributes", "Not valid JSON"),
            "reserved name": ({"body": "x", "message_attributes": '{"Amazon.x": "y"}'}, "message_attributes",
                              "reserved"),
            "delay": ({"body": "x", "delay_seconds": 901}, "delay_seconds", "900"),
        }
        for label, (data, field, message) in cases.items():
            with self.subTest(label):
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 400)
                self.assertIn(message, " ".join(response.context["send_form"].errors[field]))
        self.assertFalse(Message.objects.exists())
        # Exactly 256 KB fits.
        self.assertEqual(self.client.post(url, {"body": "x" * MAX_MESSAGE_BYTES}).status_code, 302)
        with self.assertRaisesMessage(MessageTooLarge, "262,145 bytes"):
            queue.send("y" * (MAX_MESSAGE_BYTES + 1))

    def test_deleting_a_queue_deletes_its_messages_and_triggers_and_keeps_others(self):
        fn = self.create_function(handler_zip(ECHO))
        queue, other = self.make_queue(), self.make_queue("other")
        queue.send("gone")
        self.make_trigger(fn, queue)
        kept = self.make_trigger(fn, other)
        response = self.client.post(reverse("queues:delete", args=[queue.name]))
        self.assertRedirects(response, reverse("queues:list"))
        self.assertFalse(Queue.objects.filter(pk=queue.pk).exists())
        self.assertFalse(Message.objects.exists())
        self.assertEqual(list(Trigger.objects.all()), [kept])

    def test_a_queue_trigger_is_added_on_the_function_page_and_fired_with_a_sample(self):
        fn = self.create_function(handler_zip(ECHO))
        queue = self.make_queue()
        queue.send("real message")
        url = reverse("functions:new_trigger", args=[fn.name, "queue"])
        self.assertContains(self.client.get(url), "Batching window")
        response = self.client.post(url, {"qualifier": "", "queue": queue.pk, "batch_size": 5,
                                          "maximum_batching_window": 2, "maximum_concurrency": 3,
                                          "report_batch_item_failures": "on", "enabled": "on"})
        self.assertRedirects(response, f"{fn.get_absolute_url()}#triggers")
        trigger = Trigger.objects.get(kind="queue")
        self.assertEqual(trigger.config["summary"],
                         "my-queue · batch 5 · window 2 s · concurrency 3 · partial batch responses")
        self.assertContains(self.client.get(fn.get_absolute_url()), trigger.config["summary"])
        # The same queue twice for the same function is refused, as Lambda refuses a second mapping.
        again = self.client.post(url, {"qualifier": "", "queue": queue.pk, "batch_size": 5,
                                       "maximum_batching_window": 0, "maximum_concurrency": 2, "enabled": "on"})
        self.assertContains(again, "already has a trigger on my-queue", status_code=400)

        # Its settings page edits it.
        edit = reverse("functions:trigger", args=[fn.name, trigger.pk])
        self.assertContains(self.client.get(edit), 'value="5"')
        response = self.client.post(edit, {"qualifier": "", "queue": queue.pk, "batch_size": 1,
                                           "maximum_batching_window": 0, "maximum_concurrency": 2, "enabled": "on"})
        self.assertRedirects(response, f"{fn.get_absolute_url()}#triggers")
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["batch_size"], trigger.config["report_batch_item_failures"]), (1, False))

        response = self.client.post(reverse("functions:fire_trigger", args=[fn.name, trigger.pk]))
        invocation = Invocation.objects.get()
        self.assertRedirects(response, invocation.get_absolute_url(), fetch_redirect_response=False)
        self.assertEqual((invocation.kind, invocation.source, invocation.trigger), ("RequestResponse", "queue", trigger))
        [record] = json.loads(invocation.event)["Records"]
        self.assertEqual(shape(record), shape(DOC_SQS_EVENT["Records"][0]))
        self.assertEqual(record["eventSourceARN"], queue.arn)
        # The queue's own message is untouched.
        message = queue.messages.get()
        self.assertEqual((message.body, message.receive_count, message.invocation_id), ("real message", 0, None))


class OwnershipTests(QueueWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.queue = self.make_queue("alices-queue")
        self.queue.send("secret")

    def test_bob_cannot_see_or_touch_alices_queue(self):
        self.client.force_login(self.bob)
        name = self.queue.name
        self.assertEqual(self.client.get(reverse("queues:detail", args=[name])).status_code, 404)
        for action in ("send", "purge", "delete", "settings"):
            response = self.client.post(reverse(f"queues:{action}", args=[name]),
                                        {"body": "x", "visibility_timeout": 0, "message_retention": 60,
                                         "max_receive_count": 1})
            self.assertEqual(response.status_code, 404, action)
        self.assertNotContains(self.client.get(reverse("queues:list")), name)
        self.assertEqual(list(self.queue.messages.values_list("body", flat=True)), ["secret"])
        self.assertTrue(Queue.objects.filter(pk=self.queue.pk, visibility_timeout=30).exists())

    def test_bob_cannot_point_a_trigger_or_a_dead_letter_queue_at_alices_queue(self):
        bobs = self.create_function(handler_zip(ECHO), name="bobs", owner=self.bob)
        self.client.force_login(self.bob)
        url = reverse("functions:new_trigger", args=[bobs.name, "queue"])
        self.assertNotIn(str(self.queue.pk), re_options(self.client.get(url), "queue"))
        response = self.client.post(url, {"qualifier": "", "queue": self.queue.pk, "batch_size": 1,
                                          "maximum_batching_window": 0, "maximum_concurrency": 2, "enabled": "on"})
        self.assertContains(response, "That is not one of your queues", status_code=400)
        response = self.client.post(reverse("queues:list"), {
            "name": "bobs-queue", "visibility_timeout": 30, "message_retention": 345600,
            "dead_letter_queue": self.queue.pk, "max_receive_count": 3})
        self.assertContains(response, "Choose one of your other queues", status_code=400)
        self.assertFalse(Trigger.objects.exists())
        self.assertFalse(Queue.objects.filter(owner=self.bob).exists())


def re_options(response, name):
    content = response.content.decode()
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', content, re.DOTALL)
    assert select, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


class ApiTests(QueueWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.queue = self.make_queue()
        self.url = reverse("queues:api_messages", args=[self.queue.name])

    def post(self, data, auth=("alice", "alice-password-1"), raw=None):
        return self.client.post(self.url, raw if raw is not None else json.dumps(data),
                                content_type="application/json", headers={"Authorization": basic(*auth)})

    def test_a_program_sends_a_message_with_basic_auth(self):
        response = self.post({"MessageBody": "from a program", "MessageAttributes": {
            "SellerName": {"DataType": "String", "StringValue": "Example Store"}}})
        self.assertEqual(response.status_code, 200)
        answer = response.json()
        message = self.queue.messages.get()
        self.assertEqual(answer, {"MessageId": str(message.pk),
                                  "MD5OfMessageBody": hashlib.md5(b"from a program").hexdigest(),
                                  "MD5OfMessageAttributes": "cd28f3b68aeee4b2eac9c66f2f694b58"})
        self.assertEqual(message.attributes["SenderId"], account_id(self.alice))

    def test_a_wrong_password_or_none_is_401_and_nothing_is_sent(self):
        response = self.post({"MessageBody": "x"}, auth=("alice", "wrong"))
        self.assertEqual((response.status_code, response.json()["__type"]), (401, "UnrecognizedClientException"))
        response = self.client.post(self.url, json.dumps({"MessageBody": "x"}), content_type="application/json")
        self.assertEqual(response.status_code, 401)
        self.assertFalse(Message.objects.exists())
        # No challenge: a browser must never prompt for, cache and later replay Basic credentials.
        self.assertNotIn("WWW-Authenticate", response)

    def test_a_post_that_is_not_json_is_refused_as_a_cross_site_form_would_send_it(self):
        response = self.client.post(self.url, json.dumps({"MessageBody": "x"}), content_type="text/plain",
                                    headers={"Authorization": basic("alice", "alice-password-1")})
        self.assertEqual((response.status_code, response.json()["__type"]), (415, "UnsupportedMediaTypeException"))
        self.assertFalse(Message.objects.exists())

    def test_another_owners_queue_is_a_json_404(self):
        response = self.post({"MessageBody": "x"}, auth=("bob", "bob-password-1"))
        self.assertEqual(response.status_code, 404)
        self.assertIn("__type", response.json())

    def test_bad_input_is_a_clear_400_and_another_users_queue_is_404(self):
        cases = [
            ({"MessageBody": "x" * (MAX_MESSAGE_BYTES + 1)}, "MessageTooLong", "at most 262,144 bytes"),
            ({}, "MissingParameter", "MessageBody is required"),
            ({"MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Number", "StringValue": "NaN?"}}},
             "InvalidParameterValue", "MessageAttributes: Attribute 'a' of type Number"),
            ({"MessageBody": "x", "DelaySeconds": 1000}, "InvalidParameterValue", "DelaySeconds"),
        ]
        for data, error_type, message in cases:
            with self.subTest(error_type):
                response = self.post(data)
                self.assertEqual((response.status_code, response.json()["__type"]), (400, error_type))
                self.assertIn(message, response.json()["message"])
        response = self.post(None, raw="{not json")
        self.assertEqual((response.status_code, response.json()["__type"]), (400, "SerializationException"))
        response = self.post({"MessageBody": "x"}, auth=("bob", "bob-password-1"))
        self.assertEqual((response.status_code, response.json()["__type"]), (404, "QueueDoesNotExist"))
        self.assertFalse(Message.objects.exists())


class TriggerRuleTests(QueueWorld, BaseTestCase):
    def test_a_queue_whose_visibility_timeout_is_below_the_functions_timeout_is_refused(self):
        fn = self.create_function(handler_zip(ECHO), name="slowish", timeout=10)
        queue = self.make_queue(visibility_timeout=9)
        form = QueueTriggerForm({"qualifier": "", "queue": queue.pk, "batch_size": 10, "maximum_batching_window": 0,
                                 "maximum_concurrency": 2, "enabled": "on"}, function=fn)
        self.assertFalse(form.is_valid())
        self.assertEqual(form.errors["queue"], ["my-queue's visibility timeout (9 s) is less than the function's "
                                                "timeout (10 s): raise it first."])
        self.assertFalse(Trigger.objects.exists())
