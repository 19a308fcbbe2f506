"""Topics (invocations.topics): SNS's event shape against AWS's example, fan-out to functions and queues (raw
and in SNS's JSON envelope, and on through a queue trigger), a publish that commits all its deliveries or
none, the console pages and the JSON API, and bad input."""

import base64
import json
import re
from unittest import mock

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from functions.models import Trigger, account_id
from invocations.models import Invocation
from invocations.queues import delivery
from invocations.queues.models import Message, Queue
from invocations.topics.forms import TopicTriggerForm
from invocations.topics.models import MAX_MESSAGE_BYTES, InvalidMessage, MessageTooLarge, QueueSubscription, Topic
from tests.base import BaseTestCase, WorkerTestCase, handler_zip
from tests.processes import wait_for
from tests.test_queues import DOC_SQS_EVENT, basic, shape

ECHO = "def handler(event, context):\n    return event\n"

# Lambda's example SNS event, as AWS publishes it: "Example Amazon SNS Message Event" in
# https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html (awsdocs/aws-lambda-developer-guide,
# doc_source/with-sns.md).
DOC_SNS_EVENT = {
    "Records": [
        {
            "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-2:123456789012:sns-lambda:21be56ed-a058-49f5-8c98-aedd2564c486",
            "EventSource": "aws:sns",
            "Sns": {
                "SignatureVersion": "1",
                "Timestamp": "2019-01-02T12:45:07.000Z",
                "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
                "SigningCertUrl": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-ac565b8b1a6c5d002d285f9598aa1d9b.pem",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "Message": "Hello from SNS!",
                "MessageAttributes": {
                    "Test": {
                        "Type": "String",
                        "Value": "TestString"
                    },
                    "TestBinary": {
                        "Type": "Binary",
                        "Value": "TestBinary"
                    }
                },
                "Type": "Notification",
                "UnsubscribeUrl": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe&amp;SubscriptionArn=arn:aws:sns:us-east-2:123456789012:test-lambda:21be56ed-a058-49f5-8c98-aedd2564c486",
                "TopicArn": "arn:aws:sns:us-east-2:123456789012:sns-lambda",
                "Subject": "TestInvoke"
            }
        }
    ]
}

# SNS's JSON notification, as an HTTP endpoint (and, without raw delivery, an SQS queue) receives it: the
# example in https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html ("HTTP/HTTPS notification
# JSON format"), whose field list also says Subject is left out when none was given.
DOC_SNS_ENVELOPE = {
    "Type": "Notification",
    "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
    "Subject": "My First Message",
    "Message": "Hello world!",
    "Timestamp": "2012-05-02T00:54:06.655Z",
    "SignatureVersion": "1",
    "Signature": "EXAMPLEw6JRN...",
    "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0-26c4-47ec-8998-413945fb5a96"
}

TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class TopicWorld:
    def make_topic(self, name="sns-lambda", owner=None):
        return Topic.objects.create(owner=owner or self.alice, name=name)

    def subscribe(self, function, topic, qualifier="", enabled=True):
        """Subscribe a function through the form the console uses."""
        form = TopicTriggerForm({"qualifier": qualifier, "topic": topic.pk, "enabled": enabled}, function=function)
        assert form.is_valid(), form.errors.as_text()
        return form.save()

    def finished(self, invocation, timeout=30):
        done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED).first(),
                        timeout)
        assert done is not None, f"invocation {invocation.pk} is still {Invocation.objects.get(pk=invocation.pk).status}"
        return done


class EventShapeTests(TopicWorld, WorkerTestCase):
    def test_a_subscribed_function_gets_the_shape_of_awss_example_field_by_field(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        topic = self.make_topic()
        trigger = self.subscribe(fn, topic)
        binary = base64.b64encode(b"TestBinary").decode()
        message_id = topic.publish("Hello from SNS!", "TestInvoke", {
            "Test": {"DataType": "String", "StringValue": "TestString"},
            "TestBinary": {"DataType": "Binary", "BinaryValue": binary},
        })
        invocation = Invocation.objects.get(trigger=trigger)
        self.assertEqual((invocation.kind, invocation.source), ("Event", "topic"))
        done = self.finished(invocation)
        self.assertEqual(done.status, "SUCCEEDED", done.result)
        event = json.loads(done.result)
        self.assertEqual(shape(event), shape(DOC_SNS_EVENT))
        [record], [doc] = event["Records"], DOC_SNS_EVENT["Records"]
        self.assertEqual(set(record), set(doc))
        self.assertEqual(set(record["Sns"]), set(doc["Sns"]))
        self.assertEqual((record["EventVersion"], record["EventSource"]), ("1.0", "aws:sns"))
        self.assertRegex(record["EventSubscriptionArn"], rf"^{re.escape(topic.arn)}:{UUID}$")
        self.assertEqual(record["EventSubscriptionArn"], f"{topic.arn}:{trigger.config['subscription_id']}")
        sns = record["Sns"]
        self.assertEqual(sns["Type"], "Notification")
        self.assertEqual(sns["MessageId"], message_id)
        self.assertEqual(sns["TopicArn"], f"arn:aws:sns:{settings.LAMBDA_REGION}:{account_id(self.alice)}:sns-lambda")
        self.assertEqual((sns["Subject"], sns["Message"]), ("TestInvoke", "Hello from SNS!"))
        self.assertRegex(sns["Timestamp"], TIMESTAMP)
        self.assertEqual(sns["SignatureVersion"], "1")
        self.assertTrue(base64.b64decode(sns["Signature"], validate=True))
        self.assertRegex(sns["SigningCertUrl"], rf"^https://sns\.{settings.LAMBDA_REGION}\.amazonaws\.com/.+\.pem$")
        self.assertEqual(sns["UnsubscribeUrl"],
                         f"https://sns.{settings.LAMBDA_REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
                         f"{record['EventSubscriptionArn']}")
        # As SNS shows attributes: {Type, Value}, a binary one in base64.
        self.assertEqual(sns["MessageAttributes"], {"Test": {"Type": "String", "Value": "TestString"},
                                                    "TestBinary": {"Type": "Binary", "Value": binary}})

    def test_without_a_subject_the_events_subject_is_null(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        topic = self.make_topic()
        self.subscribe(fn, topic)
        topic.publish("no subject")
        sns = json.loads(Invocation.objects.get().event)["Records"][0]["Sns"]
        self.assertIsNone(sns["Subject"])
        self.assertEqual(sns["MessageAttributes"], {})
        self.finished(Invocation.objects.get())


class FanOutTests(TopicWorld, WorkerTestCase):
    def test_one_publish_reaches_two_functions_and_two_queues_and_on_through_a_queue_trigger(self):
        first = self.create_function(handler_zip(ECHO), name="first")
        second = self.create_function(handler_zip(ECHO), name="second")
        reader = self.create_function(handler_zip(ECHO), name="reader")
        topic = self.make_topic("orders")
        envelope_queue = Queue.objects.create(owner=self.alice, name="envelopes")
        raw_queue = Queue.objects.create(owner=self.alice, name="raw")
        triggers = [self.subscribe(first, topic), self.subscribe(second, topic)]
        envelope_sub = QueueSubscription.objects.create(topic=topic, queue=envelope_queue)
        QueueSubscription.objects.create(topic=topic, queue=raw_queue, raw_message_delivery=True)
        disabled = self.subscribe(self.create_function(handler_zip(ECHO), name="off"), topic, enabled=False)

        message_id = topic.publish('{"order": 17}', "New order", {"kind": "retail", "amount": 12.5})

        # Each subscribed function, once, with its own subscription ARN; a disabled one not at all.
        invocations = {i.trigger_id: i for i in Invocation.objects.filter(source="topic")}
        self.assertEqual(set(invocations), {t.pk for t in triggers})
        self.assertNotIn(disabled.pk, invocations)
        arns = set()
        for trigger in triggers:
            done = self.finished(invocations[trigger.pk])
            self.assertEqual(done.status, "SUCCEEDED", done.result)
            [record] = json.loads(done.result)["Records"]
            self.assertEqual((record["Sns"]["MessageId"], record["Sns"]["Message"]), (message_id, '{"order": 17}'))
            arns.add(record["EventSubscriptionArn"])
        self.assertEqual(len(arns), 2)

        # The raw queue gets the message itself, with the attributes as its own.
        raw = raw_queue.messages.get()
        self.assertEqual(raw.body, '{"order": 17}')
        self.assertEqual(raw.message_attributes["kind"]["stringValue"], "retail")
        self.assertEqual((raw.message_attributes["amount"]["dataType"], raw.message_attributes["amount"]["stringValue"]),
                         ("Number", "12.5"))

        # The other gets SNS's JSON envelope, field for field as AWS documents it.
        wrapped = envelope_queue.messages.get()
        self.assertEqual(wrapped.message_attributes, {})
        envelope = json.loads(wrapped.body)
        self.assertEqual(list(envelope)[:len(DOC_SNS_ENVELOPE)], list(DOC_SNS_ENVELOPE))
        self.assertEqual(set(envelope) - set(DOC_SNS_ENVELOPE), {"MessageAttributes"})
        self.assertEqual((envelope["Type"], envelope["MessageId"], envelope["TopicArn"], envelope["Subject"],
                          envelope["Message"]), ("Notification", message_id, topic.arn, "New order", '{"order": 17}'))
        self.assertRegex(envelope["Timestamp"], TIMESTAMP)
        self.assertEqual(envelope["SignatureVersion"], "1")
        self.assertTrue(envelope["SigningCertURL"].startswith("https://"))
        self.assertTrue(envelope["UnsubscribeURL"].endswith(f"SubscriptionArn={envelope_sub.arn}"))
        self.assertEqual(envelope["MessageAttributes"], {"kind": {"Type": "String", "Value": "retail"},
                                                          "amount": {"Type": "Number", "Value": "12.5"}})

        # A queue trigger on the envelope queue delivers it on, as SQS's event.
        from invocations.queues.forms import QueueTriggerForm
        form = QueueTriggerForm({"qualifier": "", "queue": envelope_queue.pk, "batch_size": 10,
                                 "maximum_batching_window": 0, "maximum_concurrency": 2, "enabled": True},
                                function=reader)
        self.assertTrue(form.is_valid(), form.errors)
        form.save()
        [batch] = delivery.poll(timezone.now())
        [record] = json.loads(self.finished(batch).result)["Records"]
        self.assertEqual(shape(record), shape(DOC_SQS_EVENT["Records"][0]))
        self.assertEqual(json.loads(record["body"]), envelope)
        self.assertEqual(record["eventSourceARN"], envelope_queue.arn)
        self.assertTrue(wait_for(lambda: not envelope_queue.messages.exists(), 10))

    def test_a_publish_delivers_everything_or_nothing(self):
        fn = self.create_function(handler_zip(ECHO), name="subscriber")
        topic = self.make_topic()
        self.subscribe(fn, topic)
        queues = [Queue.objects.create(owner=self.alice, name=f"q{i}") for i in range(2)]
        for queue in queues:
            QueueSubscription.objects.create(topic=topic, queue=queue)
        real_put = Queue.put
        calls = []

        def put_then_fail(queue, *args, **kwargs):
            calls.append(queue.name)
            if len(calls) == 2:
                raise RuntimeError("the database went away")  # the second queue's delivery fails
            return real_put(queue, *args, **kwargs)

        with mock.patch.object(Queue, "put", put_then_fail), self.assertRaisesMessage(RuntimeError, "went away"):
            topic.publish("all or nothing")
        self.assertEqual(calls, ["q0", "q1"])
        self.assertFalse(Message.objects.exists())  # not even the first queue's
        self.assertFalse(Invocation.objects.exists())  # nor the function's
        # Nothing was queued for a worker either: the job goes to Redis only after the commit.
        topic.publish("now it works")
        self.assertEqual(Message.objects.count(), 2)
        self.assertEqual(self.finished(Invocation.objects.get()).status, "SUCCEEDED")


class PublishTests(TopicWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)
        self.topic = self.make_topic()
        self.fn = self.create_function(handler_zip(ECHO))
        self.subscribe(self.fn, self.topic)
        self.queue = Queue.objects.create(owner=self.alice, name="inbox")
        QueueSubscription.objects.create(topic=self.topic, queue=self.queue, raw_message_delivery=True)

    def test_alice_publishes_from_the_topic_page(self):
        response = self.client.post(reverse("topics:send", args=[self.topic.name]), {
            "message": "hi", "subject": "Greeting", "message_attributes": '{"lang": "en"}'})
        self.assertRedirects(response, self.topic.get_absolute_url())
        sns = json.loads(Invocation.objects.get().event)["Records"][0]["Sns"]
        self.assertEqual((sns["Message"], sns["Subject"], sns["MessageAttributes"]),
                         ("hi", "Greeting", {"lang": {"Type": "String", "Value": "en"}}))
        self.assertEqual(self.queue.messages.get().body, "hi")
        page = self.client.get(self.topic.get_absolute_url())
        self.assertContains(page, self.topic.arn)
        self.assertContains(page, "raw message")

    def test_oversized_and_invalid_messages_are_refused_and_nothing_is_delivered(self):
        url = reverse("topics:send", args=[self.topic.name])
        cases = {
            "too large": ({"message": "x" * (MAX_MESSAGE_BYTES + 1)}, "message", "a topic takes at most 262,144 bytes"),
            "attributes count": ({"message": "x" * MAX_MESSAGE_BYTES, "message_attributes": '{"a": "b"}'},
                                 "message", "262,152 bytes with its attributes"),
            "subject": ({"message": "x", "subject": "two\nlines"}, "subject", "printable ASCII on one line"),
            "attribute type": ({"message": "x", "message_attributes": '{"a": {"DataType": "Number.kg", '
                                                                      '"StringValue": "1"}}'},
                               "message_attributes", "not one of String, String.Array, Number, Binary"),
            "string array": ({"message": "x", "message_attributes": '{"a": {"DataType": "String.Array", '
                                                                    '"StringValue": "not an array"}}'},
                             "message_attributes", "needs a JSON array"),
        }
        for label, (data, field, message) in cases.items():
            with self.subTest(label):
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 400)
                self.assertIn(message, " ".join(response.context["publish_form"].errors[field]))
        with self.assertRaisesMessage(MessageTooLarge, "262,145 bytes"):
            self.topic.publish("y" * (MAX_MESSAGE_BYTES + 1))
        with self.assertRaisesMessage(InvalidMessage, "must not be empty"):
            self.topic.publish("")
        self.assertFalse(Invocation.objects.exists())
        self.assertFalse(Message.objects.exists())

    def test_the_api_publishes_with_basic_auth(self):
        url = reverse("topics:publish", args=[self.topic.name])
        response = self.client.post(url, json.dumps({"Message": "from a program", "Subject": "API",
                                                     "MessageAttributes": {"n": {"DataType": "Number",
                                                                                 "StringValue": "3"}}}),
                                    content_type="application/json",
                                    headers={"Authorization": basic("alice", "alice-password-1")})
        self.assertEqual(response.status_code, 200)
        sns = json.loads(Invocation.objects.get().event)["Records"][0]["Sns"]
        self.assertEqual(response.json(), {"MessageId": sns["MessageId"]})
        self.assertEqual(sns["MessageAttributes"], {"n": {"Type": "Number", "Value": "3"}})
        response = self.client.post(url, json.dumps({"Message": "x"}), content_type="application/json",
                                    headers={"Authorization": basic("alice", "nope")})
        self.assertEqual(response.status_code, 401)
        response = self.client.post(url, json.dumps({"Message": "x" * (MAX_MESSAGE_BYTES + 1)}),
                                    content_type="application/json",
                                    headers={"Authorization": basic("alice", "alice-password-1")})
        self.assertEqual((response.status_code, response.json()["__type"]), (400, "InvalidParameter"))
        self.assertIn("Message: The message is 262,145 bytes", response.json()["message"])
        self.assertEqual(Invocation.objects.count(), 1)

    def test_fire_now_invokes_only_that_subscription_with_a_sample(self):
        other = self.create_function(handler_zip(ECHO), name="other")
        self.subscribe(other, self.topic)
        trigger = Trigger.objects.get(function=self.fn)
        response = self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]))
        invocation = Invocation.objects.get()
        self.assertRedirects(response, invocation.get_absolute_url(), fetch_redirect_response=False)
        self.assertEqual((invocation.kind, invocation.source, invocation.trigger), ("Event", "topic", trigger))
        [record] = json.loads(invocation.event)["Records"]
        [doc] = DOC_SNS_EVENT["Records"]
        self.assertEqual((set(record), set(record["Sns"])), (set(doc), set(doc["Sns"])))
        self.assertEqual(record["EventSubscriptionArn"], f"{self.topic.arn}:{trigger.config['subscription_id']}")
        self.assertFalse(Message.objects.exists())  # the topic's queues got nothing

    def test_deleting_a_topic_deletes_its_subscriptions_not_its_queues(self):
        response = self.client.post(reverse("topics:delete", args=[self.topic.name]))
        self.assertRedirects(response, reverse("topics:list"))
        self.assertFalse(Topic.objects.exists())
        self.assertFalse(Trigger.objects.exists())
        self.assertFalse(QueueSubscription.objects.exists())
        self.assertTrue(Queue.objects.filter(pk=self.queue.pk).exists())

    def test_a_queue_is_subscribed_and_unsubscribed_on_the_topic_page(self):
        other = Queue.objects.create(owner=self.alice, name="other")
        url = reverse("topics:subscribe", args=[self.topic.name])
        self.assertRedirects(self.client.post(url, {"queue": other.pk}), self.topic.get_absolute_url())
        subscription = QueueSubscription.objects.get(queue=other)
        self.assertFalse(subscription.raw_message_delivery)
        self.assertContains(self.client.post(url, {"queue": other.pk}), "already subscribed", status_code=400)
        response = self.client.post(reverse("topics:unsubscribe", args=[self.topic.name, subscription.pk]))
        self.assertRedirects(response, self.topic.get_absolute_url())
        self.assertFalse(QueueSubscription.objects.filter(queue=other).exists())

    def test_invalid_topic_names_are_form_errors(self):
        for name, message in {"a b": "1–256 of A-Z a-z 0-9 - _", "t" * 257: "at most 256 characters",
                              "sns-lambda": "You already have a topic named"}.items():
            response = self.client.post(reverse("topics:list"), {"name": name})
            self.assertEqual(response.status_code, 400)
            self.assertIn(message, " ".join(response.context["form"].errors["name"]))
        self.assertEqual(Topic.objects.count(), 1)


class OwnershipTests(TopicWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.topic = self.make_topic("alices-topic")

    def test_bob_cannot_see_publish_to_or_subscribe_to_alices_topic(self):
        self.client.force_login(self.bob)
        name = self.topic.name
        self.assertEqual(self.client.get(reverse("topics:detail", args=[name])).status_code, 404)
        bobs_queue = Queue.objects.create(owner=self.bob, name="bobs")
        for action, data in (("send", {"message": "x"}), ("subscribe", {"queue": bobs_queue.pk}), ("delete", {})):
            self.assertEqual(self.client.post(reverse(f"topics:{action}", args=[name]), data).status_code, 404)
        response = self.client.post(reverse("topics:publish", args=[name]), json.dumps({"Message": "x"}),
                                    content_type="application/json",
                                    headers={"Authorization": basic("bob", "bob-password-1")})
        self.assertEqual(response.status_code, 404)
        bobs = self.create_function(handler_zip(ECHO), name="bobs", owner=self.bob)
        response = self.client.post(reverse("functions:new_trigger", args=[bobs.name, "topic"]),
                                    {"qualifier": "", "topic": self.topic.pk, "enabled": "on"})
        self.assertContains(response, "That is not one of your topics", status_code=400)
        self.assertFalse(Trigger.objects.exists())
        self.assertFalse(QueueSubscription.objects.exists())
        self.assertTrue(Topic.objects.filter(pk=self.topic.pk).exists())

    def test_alice_cannot_subscribe_bobs_queue(self):
        bobs_queue = Queue.objects.create(owner=self.bob, name="bobs")
        self.client.force_login(self.alice)
        response = self.client.post(reverse("topics:subscribe", args=[self.topic.name]), {"queue": bobs_queue.pk})
        self.assertContains(response, "That is not one of your queues", status_code=400)
        self.assertFalse(QueueSubscription.objects.exists())
