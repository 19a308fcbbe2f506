"""The queues' JSON API for programs that read a queue themselves: ReceiveMessage (with long polling),
DeleteMessage and ChangeMessageVisibility, beside the queue triggers that read the same queues."""

import json
import threading
from datetime import timedelta

from django.db import connection
from django.test import TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from invocations.models import Invocation
from invocations.queues import delivery
from invocations.queues.models import Message
from tests.base import BaseTestCase, World, handler_zip
from tests.test_queues import ECHO, QueueWorld, basic

ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-1")


class ReceiveApi(QueueWorld):
    def call(self, action, data, queue="my-queue", auth=ALICE):
        return self.client.post(reverse(f"queues:api_{action}", args=[queue]), json.dumps(data),
                                content_type="application/json", headers={"Authorization": basic(*auth)})

    def receive(self, queue="my-queue", auth=ALICE, **data):
        response = self.call("receive", data, queue=queue, auth=auth)
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["Messages"]

    def refused(self, response, status, error_type):
        self.assertEqual((response.status_code, response.json()["__type"]), (status, error_type), response.content)
        return response.json()["message"]


class ReceiveDeleteTests(ReceiveApi, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.queue = self.make_queue(visibility_timeout=45)

    def test_a_program_receives_a_message_and_deletes_it(self):
        sent = self.queue.send("hello", {"SellerName": {"DataType": "String", "StringValue": "Example Store"}})
        [message] = self.receive(MessageAttributeNames=["All"])
        stored = Message.objects.get()
        self.assertEqual(message, {
            "MessageId": str(sent.pk), "ReceiptHandle": stored.receipt_handle, "MD5OfBody": sent.md5_of_body,
            "Body": "hello",
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent.attributes["SentTimestamp"],
                           "SenderId": sent.attributes["SenderId"],
                           "ApproximateFirstReceiveTimestamp": str(int(stored.first_received_at.timestamp() * 1000))},
            "MessageAttributes": {"SellerName": {"DataType": "String", "StringValue": "Example Store"}},
            "MD5OfMessageAttributes": "cd28f3b68aeee4b2eac9c66f2f694b58",
        })
        # Hidden for the queue's visibility timeout, counted as received, held by no invocation.
        self.assertEqual(stored.visible_at - stored.first_received_at, timedelta(seconds=45))
        self.assertEqual((stored.receive_count, stored.invocation_id), (1, None))
        response = self.call("delete_message", {"ReceiptHandle": message["ReceiptHandle"]})
        self.assertEqual((response.status_code, response.json()), (200, {}))
        self.assertFalse(Message.objects.exists())
        # Deleting it again is no error, as SQS's DeleteMessage.
        self.assertEqual(self.call("delete_message", {"ReceiptHandle": message["ReceiptHandle"]}).status_code, 200)

    def test_it_receives_up_to_max_number_of_messages_oldest_first(self):
        for i in range(12):
            self.queue.send(f"m{i}")
        self.assertEqual([m["Body"] for m in self.receive()], ["m0"])
        self.assertEqual([m["Body"] for m in self.receive(MaxNumberOfMessages=10)], [f"m{i}" for i in range(1, 11)])
        self.assertEqual([m["Body"] for m in self.receive(MaxNumberOfMessages=10)], ["m11"])
        self.assertEqual(self.receive(MaxNumberOfMessages=10), [])

    def test_message_attribute_names_choose_the_attributes_and_their_digest(self):
        self.queue.send("x", {"color": "red", "bar.size": 3,
                              "bar.blob": {"DataType": "Binary", "BinaryValue": "AAEC"}})
        [plain] = self.receive(VisibilityTimeout=0)
        self.assertNotIn("MessageAttributes", plain)
        self.assertNotIn("MD5OfMessageAttributes", plain)
        [some] = self.receive(VisibilityTimeout=0, MessageAttributeNames=["bar.*"])
        self.assertEqual(some["MessageAttributes"], {"bar.size": {"DataType": "Number", "StringValue": "3"},
                                                     "bar.blob": {"DataType": "Binary", "BinaryValue": "AAEC"}})
        [every] = self.receive(VisibilityTimeout=0, MessageAttributeNames=[".*"])
        self.assertEqual(set(every["MessageAttributes"]), {"color", "bar.size", "bar.blob"})
        # With every attribute, the digest is the one SendMessage answered; with some, theirs.
        self.assertEqual(every["MD5OfMessageAttributes"], Message.objects.get().md5_of_message_attributes)
        self.assertNotEqual(some["MD5OfMessageAttributes"], every["MD5OfMessageAttributes"])

    def test_a_received_message_stays_hidden_until_its_visibility_is_changed_to_zero(self):
        sent = self.queue.send("once")
        [first] = self.receive(VisibilityTimeout=600)
        self.assertEqual(self.receive(MaxNumberOfMessages=10), [])
        response = self.call("change_visibility", {"ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 0})
        self.assertEqual((response.status_code, response.json()), (200, {}))
        [second] = self.receive()
        self.assertEqual((second["MessageId"], second["Attributes"]["ApproximateReceiveCount"]), (str(sent.pk), "2"))
        self.assertNotEqual(second["ReceiptHandle"], first["ReceiptHandle"])
        self.assertEqual(second["Attributes"]["ApproximateFirstReceiveTimestamp"],
                         first["Attributes"]["ApproximateFirstReceiveTimestamp"])

    def test_change_visibility_hides_a_message_longer(self):
        self.queue.send("slow work")
        [message] = self.receive(VisibilityTimeout=10)
        before = timezone.now()
        response = self.call("change_visibility", {"ReceiptHandle": message["ReceiptHandle"],
                                                   "VisibilityTimeout": 3600})
        self.assertEqual(response.status_code, 200)
        # Counted from the call, as SQS does.
        self.assertGreaterEqual(Message.objects.get().visible_at, before + timedelta(seconds=3600))

    def test_a_stale_receipt_handle_is_refused_and_the_message_stays(self):
        self.queue.send("twice")
        [first] = self.receive(VisibilityTimeout=0)
        [second] = self.receive(VisibilityTimeout=600)
        for action, data in [("delete_message", {}), ("change_visibility", {"VisibilityTimeout": 0})]:
            with self.subTest(action):
                response = self.call(action, {"ReceiptHandle": first["ReceiptHandle"], **data})
                self.assertIn("The receipt handle has expired", self.refused(response, 400, "InvalidParameterValue"))
        self.assertEqual(Message.objects.get().receipt_handle, second["ReceiptHandle"])
        self.assertEqual(self.receive(), [])  # still hidden: the stale handle changed nothing
        self.assertEqual(self.call("delete_message", {"ReceiptHandle": second["ReceiptHandle"]}).status_code, 200)
        self.assertFalse(Message.objects.exists())

    def test_a_message_whose_visibility_ran_out_is_not_in_flight_but_may_still_be_deleted(self):
        self.queue.send("late")
        [message] = self.receive(VisibilityTimeout=0)
        response = self.call("change_visibility", {"ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 30})
        self.refused(response, 400, "MessageNotInflight")
        # Its latest handle still deletes it, as in SQS, until someone receives it again.
        self.assertEqual(self.call("delete_message", {"ReceiptHandle": message["ReceiptHandle"]}).status_code, 200)
        self.assertFalse(Message.objects.exists())
        response = self.call("change_visibility", {"ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0})
        self.refused(response, 400, "ReceiptHandleIsInvalid")

    def test_receives_count_toward_max_receive_count_and_then_the_message_moves_to_the_dead_letter_queue(self):
        dlq = self.make_queue("my-dlq")
        self.queue.dead_letter_queue, self.queue.max_receive_count = dlq, 2
        self.queue.save()
        sent = self.queue.send("poison pill")
        counts = [self.receive(VisibilityTimeout=0)[0]["Attributes"]["ApproximateReceiveCount"] for _ in range(2)]
        self.assertEqual(counts, ["1", "2"])
        self.assertEqual(self.receive(), [])  # the third receive moves it instead
        moved = Message.objects.get(pk=sent.pk)
        self.assertEqual((moved.queue_id, moved.receive_count, moved.receipt_handle), (dlq.pk, 0, ""))
        [dead] = self.receive(queue="my-dlq")
        self.assertEqual(dead["MessageId"], str(sent.pk))
        self.assertEqual(dead["Attributes"]["DeadLetterQueueSourceArn"], self.queue.arn)
        self.assertEqual(dead["Attributes"]["ApproximateReceiveCount"], "1")

    def test_bad_parameters_are_a_clear_400_and_take_nothing(self):
        self.queue.send("x")
        cases = [
            ({"MaxNumberOfMessages": 11}, "MaxNumberOfMessages"),
            ({"MaxNumberOfMessages": 0}, "MaxNumberOfMessages"),
            ({"VisibilityTimeout": 43201}, "VisibilityTimeout"),
            ({"WaitTimeSeconds": 21}, "WaitTimeSeconds"),
            ({"WaitTimeSeconds": True}, "WaitTimeSeconds"),
            ({"MessageAttributeNames": "All"}, "MessageAttributeNames"),
        ]
        for data, name in cases:
            with self.subTest(data):
                self.assertIn(name, self.refused(self.call("receive", data), 400, "InvalidParameterValue"))
        self.assertEqual(Message.objects.get().receive_count, 0)
        self.refused(self.call("delete_message", {}), 400, "MissingParameter")
        self.refused(self.call("delete_message", {"ReceiptHandle": "made-up"}), 400, "ReceiptHandleIsInvalid")
        self.refused(self.call("change_visibility", {"ReceiptHandle": "a.b"}), 400, "InvalidParameterValue")
        self.refused(self.call("change_visibility", {"ReceiptHandle": "a.b", "VisibilityTimeout": 0}), 400,
                     "ReceiptHandleIsInvalid")
        self.refused(self.call("receive", {}, queue="no-such-queue"), 404, "QueueDoesNotExist")

    def test_bob_can_neither_receive_nor_delete_alices_messages(self):
        self.queue.send("alice's")
        for action in ("receive", "delete_message", "change_visibility"):
            with self.subTest(action):
                response = self.call(action, {}, auth=BOB)
                self.refused(response, 404, "QueueDoesNotExist")
        self.assertEqual(Message.objects.get().receive_count, 0)
        # Not even with a handle of alice's, sent to a queue of his own of the same name.
        [message] = self.receive()
        self.make_queue(owner=self.bob)
        self.call("delete_message", {"ReceiptHandle": message["ReceiptHandle"]}, auth=BOB)
        self.assertTrue(Message.objects.filter(pk=message["MessageId"]).exists())
        self.assertEqual(self.call("receive", {}, auth=("bob", "wrong")).status_code, 401)

    def test_long_polling_is_refused_with_429_when_every_waiting_slot_is_taken(self):
        with override_settings(ENDPOINT_MAX_WAITING=0):  # every slot taken
            self.refused(self.call("receive", {"WaitTimeSeconds": 1}), 429, "RequestThrottled")
            # A short poll waits for nothing, and so needs no slot.
            self.assertEqual(self.receive(), [])
            self.queue.send("here")
            # Nor does a long poll that finds a message at once.
            self.assertEqual(len(self.receive(WaitTimeSeconds=20)), 1)


class LongPollTests(ReceiveApi, World, TransactionTestCase):
    """The wait runs on a committed database: a message another thread sends arrives during it."""

    def setUp(self):
        self.make_world()
        self.queue = self.make_queue()

    def test_a_long_poll_returns_the_message_sent_while_it_waits(self):
        asked = timezone.now()

        def send_later():
            try:
                threading.Event().wait(1)  # while the receive below waits
                self.queue.send("worth the wait")
            finally:
                connection.close()

        sender = threading.Thread(target=send_later)
        sender.start()
        [message] = self.receive(WaitTimeSeconds=20)
        sender.join()
        self.assertEqual(message["Body"], "worth the wait")
        # Sent after the receive began, and still in its answer: it waited, and returned with it.
        self.assertGreater(Message.objects.get().sent_at, asked)

    def test_a_long_poll_on_an_empty_queue_returns_no_messages_after_the_wait(self):
        self.assertEqual(self.receive(WaitTimeSeconds=1), [])

    def test_a_long_poll_returns_a_message_whose_visibility_timeout_runs_out(self):
        sent = self.queue.send("again")
        self.receive(VisibilityTimeout=1)
        [again] = self.receive(WaitTimeSeconds=10)
        self.assertEqual((again["MessageId"], again["Attributes"]["ApproximateReceiveCount"]), (str(sent.pk), "2"))


class TriggerAndApiTests(ReceiveApi, BaseTestCase):
    """A queue read both by a queue trigger and by a program: each receive takes a message from the other's
    reach until its visibility timeout (the invocations stay queued: nothing runs them here)."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="reader")
        self.queue = self.make_queue(visibility_timeout=600)
        self.trigger = self.make_trigger(self.fn, self.queue, batch_size=2, maximum_concurrency=5)

    def test_the_poller_and_the_api_never_take_the_same_message(self):
        sent = {str(self.queue.send(f"m{i}").pk) for i in range(7)}
        by_api = {m["MessageId"] for m in self.receive(MaxNumberOfMessages=3)}
        by_trigger = {r["messageId"] for i in self.poll() for r in json.loads(i.event)["Records"]}
        self.assertEqual(self.receive(MaxNumberOfMessages=10), [])
        self.assertEqual(self.poll(), [])
        self.assertEqual((len(by_api), len(by_trigger)), (3, 4))
        self.assertEqual(by_api | by_trigger, sent)
        self.assertEqual(set(Message.objects.values_list("receive_count", flat=True)), {1})

    def test_a_stale_read_takes_nothing_the_other_took(self):
        self.queue.send("one")
        now = timezone.now()
        read_by_api = self.queue.visible_messages(now, 10)
        [invocation] = delivery.poll(now)  # the trigger takes it first
        self.assertEqual(self.queue.take(read_by_api, now, 30), [])
        message = Message.objects.get()
        self.assertEqual((message.receive_count, message.invocation_id), (1, invocation.pk))

        self.queue.send("two")
        later = timezone.now()
        read_by_poller = self.queue.visible_messages(later, 10)
        [taken] = self.receive()  # the API takes it first
        self.assertIsNone(delivery._take_and_invoke(self.trigger, self.queue, read_by_poller, later))
        self.assertEqual(Message.objects.get(pk=taken["MessageId"]).receive_count, 1)
        self.assertEqual(Invocation.objects.count(), 1)

    def test_receives_by_the_api_and_by_the_trigger_add_up_toward_the_dead_letter_queue(self):
        dlq = self.make_queue("my-dlq")
        self.queue.dead_letter_queue, self.queue.max_receive_count = dlq, 2
        self.queue.save()
        sent = self.queue.send("poison pill")
        [received] = self.receive(VisibilityTimeout=0)
        [batch] = self.poll(after_seconds=1)  # the second receive
        self.assertEqual(json.loads(batch.event)["Records"][0]["attributes"]["ApproximateReceiveCount"], "2")
        # The trigger's receipt handle is now the latest: the program's earlier one is refused.
        response = self.call("delete_message", {"ReceiptHandle": received["ReceiptHandle"]})
        self.refused(response, 400, "InvalidParameterValue")
        # The function gives it back at once, with its record's handle, as a Lambda function may.
        handle = json.loads(batch.event)["Records"][0]["receiptHandle"]
        response = self.call("change_visibility", {"ReceiptHandle": handle, "VisibilityTimeout": 0})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.receive(), [])  # a third receive moves it
        self.assertEqual(Message.objects.get(pk=sent.pk).queue_id, dlq.pk)
