"""SNS subscription filter policies (invocations.topics.filters): every operator against the examples in SNS's
documentation (https://docs.aws.amazon.com/sns/latest/dg/ — "Attribute string value matching", "Numeric value
matching", "Key matching", "AND/OR logic", "Filter policy constraints"), SNS's limits and invalid policies, a
publish that reaches only the matching function and queue subscriptions, and forms that refuse bad policies."""

import json

from django.test import SimpleTestCase
from django.urls import reverse

from functions.models import Trigger
from invocations.models import Invocation
from invocations.queues import attributes
from invocations.queues.models import Queue
from invocations.topics import filters
from invocations.topics.forms import QueueSubscriptionForm, TopicTriggerForm
from invocations.topics.models import QueueSubscription, Topic
from tests.base import BaseTestCase, handler_zip

ECHO = "def handler(event, context):\n    return event\n"


def on_attributes(policy, attrs, message="hello"):
    """Whether an attribute-scoped policy (a dict) accepts a message with these attributes in SNS's
    {"name": {"Type", "Value"}} shape, as the documentation writes them."""
    raw = {name: {"DataType": a["Type"], "StringValue": a["Value"] if isinstance(a["Value"], str)
                  else json.dumps(a["Value"])} for name, a in attrs.items()}
    return filters.accepts(json.dumps(policy), filters.ATTRIBUTES, message,
                           attributes.parse(raw, types=attributes.SNS_TYPES))


def on_body(policy, body):
    text = body if isinstance(body, str) else json.dumps(body)
    return filters.accepts(json.dumps(policy), filters.BODY, text, [])


def s(value):
    return {"Type": "String", "Value": value}


def n(value):
    return {"Type": "Number", "Value": str(value)}


def array(values):
    return {"Type": "String.Array", "Value": json.dumps(values)}


class StringMatchingTests(SimpleTestCase):
    def test_exact_match_is_an_or_over_the_listed_values_and_case_sensitive(self):
        policy = {"customer_interests": ["rugby", "tennis"]}
        self.assertTrue(on_attributes(policy, {"customer_interests": s("rugby")}))
        self.assertTrue(on_attributes(policy, {"customer_interests": s("tennis")}))
        self.assertFalse(on_attributes(policy, {"customer_interests": s("baseball")}))
        self.assertFalse(on_attributes(policy, {"customer_interests": s("Rugby")}))

    def test_prefix_and_suffix(self):
        prefix = {"customer_interests": [{"prefix": "bas"}]}
        self.assertTrue(on_attributes(prefix, {"customer_interests": s("baseball")}))
        self.assertTrue(on_attributes(prefix, {"customer_interests": s("basketball")}))
        self.assertFalse(on_attributes(prefix, {"customer_interests": s("rugby")}))
        suffix = {"customer_interests": [{"suffix": "ball"}]}
        self.assertTrue(on_attributes(suffix, {"customer_interests": s("baseball")}))
        self.assertFalse(on_attributes(suffix, {"customer_interests": s("rugby")}))

    def test_equals_ignore_case(self):
        policy = {"customer_interests": [{"equals-ignore-case": "tennis"}]}
        self.assertTrue(on_attributes(policy, {"customer_interests": s("TENNIS")}))
        self.assertTrue(on_attributes(policy, {"customer_interests": s("Tennis")}))
        self.assertFalse(on_attributes(policy, {"customer_interests": s("baseball")}))

    def test_anything_but_values_and_an_array_with_one_other_value(self):
        policy = {"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}
        self.assertTrue(on_attributes(policy, {"customer_interests": s("baseball")}))
        self.assertTrue(on_attributes(policy, {"customer_interests": s("football")}))
        # "because it contains a value that isn't rugby or tennis"
        self.assertTrue(on_attributes(policy, {"customer_interests": array(["rugby", "baseball"])}))
        self.assertFalse(on_attributes(policy, {"customer_interests": s("rugby")}))
        single = {"customer_interests": [{"anything-but": "rugby"}]}
        self.assertFalse(on_attributes(single, {"customer_interests": s("rugby")}))
        self.assertTrue(on_attributes(single, {"customer_interests": s("golf")}))

    def test_anything_but_a_prefix(self):
        policy = {"event": [{"anything-but": {"prefix": "order-"}}]}
        self.assertTrue(on_attributes(policy, {"event": s("data-entry")}))
        self.assertTrue(on_attributes(policy, {"event": s("order_number")}))
        self.assertFalse(on_attributes(policy, {"event": s("order-cancelled")}))

    def test_anything_but_needs_the_key_to_be_there(self):
        self.assertFalse(on_attributes({"event": [{"anything-but": "x"}]}, {"other": s("y")}))

    def test_a_string_array_matches_if_any_element_matches(self):
        policy = {"customer_interests": ["rugby"]}
        self.assertTrue(on_attributes(policy, {"customer_interests": array(["baseball", "rugby"])}))
        self.assertFalse(on_attributes(policy, {"customer_interests": array(["baseball", "basketball"])}))


class NumericMatchingTests(SimpleTestCase):
    def test_equal_compares_numbers_not_text(self):
        policy = {"price_usd": [{"numeric": ["=", 301.5]}]}
        self.assertTrue(on_attributes(policy, {"price_usd": n("301.5")}))
        self.assertTrue(on_attributes(policy, {"price_usd": n("3.015e2")}))
        self.assertFalse(on_attributes(policy, {"price_usd": n("301.6")}))
        self.assertTrue(on_body(policy, '{"price_usd": 301.5}'))
        self.assertTrue(on_body(policy, '{"price_usd": 3.015e2}'))
        # A String attribute holding digits is not a number to SNS.
        self.assertFalse(on_attributes(policy, {"price_usd": s("301.5")}))

    def test_anything_but_numbers(self):
        policy = {"price": [{"anything-but": [100, 500]}]}
        self.assertTrue(on_attributes(policy, {"price": n(101)}))
        self.assertTrue(on_attributes(policy, {"price": n(100.1)}))
        self.assertTrue(on_body(policy, {"price": 101}))
        self.assertTrue(on_body(policy, {"price": [100, 50]}))
        self.assertFalse(on_attributes(policy, {"price": n(100)}))
        self.assertFalse(on_body(policy, {"price": 100}))

    def test_ranges(self):
        negative = {"price_usd": [{"numeric": ["<", 0]}]}
        self.assertTrue(on_attributes(negative, {"price_usd": n(-1)}))
        self.assertFalse(on_attributes(negative, {"price_usd": n(0)}))
        up_to_150 = {"price_usd": [{"numeric": [">", 0, "<=", 150]}]}
        for value, expected in ((0, False), (0.5, True), (150, True), (150.00001, False), (151, False)):
            with self.subTest(value=value):
                self.assertEqual(on_attributes(up_to_150, {"price_usd": n(value)}), expected)
        at_least = {"price_usd": [{"numeric": [">=", 10]}]}
        self.assertTrue(on_body(at_least, {"price_usd": 10}))
        self.assertFalse(on_body(at_least, {"price_usd": 9.99999}))

    def test_numbers_are_compared_to_five_decimal_places(self):
        policy = {"x": [{"numeric": ["=", 1.00001]}]}
        self.assertTrue(on_attributes(policy, {"x": n("1.000010001")}))
        self.assertFalse(on_attributes(policy, {"x": n("1.00002")}))


class KeyMatchingTests(SimpleTestCase):
    def test_exists_true_and_false(self):
        present = {"store": s("fans"), "customer_interests": array(["baseball", "basketball"])}
        absent = {"customer_interests": array(["baseball", "basketball"])}
        self.assertTrue(on_attributes({"store": [{"exists": True}]}, present))
        self.assertFalse(on_attributes({"store": [{"exists": True}]}, absent))
        self.assertFalse(on_attributes({"store": [{"exists": False}]}, present))
        self.assertTrue(on_attributes({"store": [{"exists": False}]}, absent))
        self.assertTrue(on_body({"store": [{"exists": True}]}, {"store": "fans", "customer_interests": ["baseball"]}))
        self.assertTrue(on_body({"store": [{"exists": False}]}, {"customer_interests": ["baseball"]}))

    def test_binary_attributes_are_ignored(self):
        raw = attributes.parse({"blob": {"DataType": "Binary", "BinaryValue": "aGk="}}, types=attributes.SNS_TYPES)
        self.assertFalse(filters.accepts('{"blob": [{"exists": true}]}', filters.ATTRIBUTES, "m", raw))
        self.assertTrue(filters.accepts('{"blob": [{"exists": false}]}', filters.ATTRIBUTES, "m", raw))


class LogicTests(SimpleTestCase):
    def test_keys_are_anded(self):
        policy = {"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}
        self.assertTrue(on_attributes(policy, {"customer_interests": s("rugby"), "price_usd": n(101)}))
        self.assertFalse(on_attributes(policy, {"customer_interests": s("rugby"), "price_usd": n(100)}))
        self.assertFalse(on_attributes(policy, {"price_usd": n(101)}))

    def test_or_across_keys(self):
        policy = {"source": ["aws.cloudwatch"],
                  "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}]}
        self.assertTrue(on_attributes(policy, {"source": s("aws.cloudwatch"), "metricName": s("ReadLatency")}))
        self.assertTrue(on_attributes(policy, {"source": s("aws.cloudwatch"), "namespace": s("AWS/ES")}))
        self.assertFalse(on_attributes(policy, {"source": s("aws.cloudwatch"), "namespace": s("AWS/S3")}))
        self.assertFalse(on_attributes(policy, {"source": s("other"), "namespace": s("AWS/ES")}))

    def test_an_or_with_one_branch_is_an_ordinary_key(self):
        # SNS treats "$or" as an operator only with an array of two or more objects.
        with self.assertRaisesMessage(ValueError, "a match expression has exactly one operator"):
            filters.parse('{"$or": [{"a": ["x"], "b": ["y"]}]}')


class BodyScopeTests(SimpleTestCase):
    def test_nested_keys_reach_into_objects_and_arrays(self):
        policy = {"store": {"city": ["Paris"]}, "items": {"price": [{"numeric": [">", 10]}]}}
        self.assertTrue(on_body(policy, {"store": {"city": "Paris"}, "items": [{"price": 5}, {"price": 12}]}))
        self.assertFalse(on_body(policy, {"store": {"city": "Lyon"}, "items": [{"price": 12}]}))
        self.assertFalse(on_body(policy, {"store": {"city": "Paris"}, "items": [{"price": 5}]}))

    def test_a_message_that_is_not_a_json_object_never_matches(self):
        self.assertFalse(on_body({"a": [{"exists": False}]}, "not json"))
        self.assertFalse(on_body({"a": [{"exists": False}]}, "[1, 2]"))
        self.assertTrue(on_body({"a": [{"exists": False}]}, "{}"))

    def test_true_false_and_null_match_themselves(self):
        self.assertTrue(on_body({"paid": [True]}, {"paid": True}))
        self.assertFalse(on_body({"paid": [True]}, {"paid": 1}))
        self.assertTrue(on_body({"note": [None]}, {"note": None}))


class PolicyCheckTests(SimpleTestCase):
    def refused(self, policy, reason, scope=filters.ATTRIBUTES):
        text = policy if isinstance(policy, str) else json.dumps(policy)
        with self.assertRaisesMessage(ValueError, reason):
            filters.parse(text, scope)

    def test_no_policy_accepts_everything(self):
        self.assertIsNone(filters.parse(""))
        self.assertIsNone(filters.parse("{}"))
        self.assertTrue(filters.accepts("", filters.BODY, "not json", []))

    def test_at_most_five_keys(self):
        five = {f"k{i}": ["v"] for i in range(5)}
        self.assertIsNotNone(filters.parse(json.dumps(five)))
        self.refused({**five, "k5": ["v"]}, "at most 5 keys; this one has 6")

    def test_at_most_150_combinations(self):
        # The documentation's example: 3 x 1 x 2 = 6 is fine; 5 x 5 x 7 = 175 is too many.
        filters.parse(json.dumps({"key_a": ["value_one", "value_two", "value_three"], "key_b": ["value_one"],
                                  "key_c": ["value_one", "value_two"]}))
        values = [f"v{i}" for i in range(7)]
        self.refused({"a": values[:5], "b": values[:5], "c": values}, "175 combinations")
        filters.parse(json.dumps({"a": values[:5], "b": values[:5], "c": values[:6]}))  # 150 exactly
        # Nested keys count their depth (the documentation's 3 x 4 x 2 x 3 = 72).
        self.assertIsNotNone(filters.parse(json.dumps({
            "key_a": {"key_b": {"key_c": ["value_one", "value_two", "value_three", "value_four"]}},
            "key_d": {"key_e": ["value_one", "value_two", "value_three"]}}), filters.BODY))
        self.refused({"a": {"b": {"c": values}}, "d": {"e": values}}, "294 combinations", filters.BODY)

    def test_invalid_policies_are_refused_naming_the_problem(self):
        cases = {
            "not json": ('{"a": ["x"', "not valid JSON"),
            "not an object": ('["a"]', "A filter policy is a JSON object"),
            "unknown operator": ({"a": [{"contains": "x"}]}, "unknown operator 'contains'"),
            "two operators": ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one operator"),
            "empty array": ({"a": []}, "empty array"),
            "bare value": ({"a": "x"}, "must hold an array"),
            "nested with attributes": ({"a": {"b": ["x"]}}, "nested keys need FilterPolicyScope MessageBody"),
            "prefix not a string": ({"a": [{"prefix": 1}]}, "prefix takes a string"),
            "exists not a bool": ({"a": [{"exists": "yes"}]}, "exists takes true or false"),
            "array as value": ({"a": [["x"]]}, "must be a string, a number, true, false or null"),
            "numeric operator": ({"a": [{"numeric": ["!=", 1]}]}, "'!=' is not a numeric operator"),
            "numeric value": ({"a": [{"numeric": [">", "1"]}]}, "must be a number"),
            "numeric shape": ({"a": [{"numeric": [">", 1, "<"]}]}, "numeric takes"),
            "range order": ({"a": [{"numeric": [">", 10, "<", 5]}]}, "lower bound must be below"),
            "range operators": ({"a": [{"numeric": ["<", 1, ">", 5]}]}, "a numeric range is a lower bound"),
            "too large": ({"a": [{"numeric": [">", 1e10]}]}, "between -1,000,000,000 and 1,000,000,000"),
            "anything-but suffix": ({"a": [{"anything-but": {"suffix": "x"}}]}, "anything-but takes"),
            "anything-but empty": ({"a": [{"anything-but": []}]}, "at least one value"),
        }
        for label, (policy, reason) in cases.items():
            with self.subTest(label):
                self.refused(policy, reason)
        with self.assertRaisesMessage(ValueError, "FilterPolicyScope must be"):
            filters.parse('{"a": ["x"]}', "Body")
        self.refused(json.dumps({"a": ["x" * (filters.MAX_POLICY_BYTES)]}), "at most 262,144 bytes")


class PublishTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.topic = Topic.objects.create(owner=self.alice, name="orders")
        self.big = self.subscribe(self.create_function(handler_zip(ECHO), name="big"),
                                  '{"amount": [{"numeric": [">=", 100]}]}')
        self.retail = self.subscribe(self.create_function(handler_zip(ECHO), name="retail"),
                                     '{"kind": {"channel": ["retail"]}}', filters.BODY)
        self.everything = self.subscribe(self.create_function(handler_zip(ECHO), name="everything"), "")
        self.small_queue = Queue.objects.create(owner=self.alice, name="small")
        self.web_queue = Queue.objects.create(owner=self.alice, name="web")
        self.all_queue = Queue.objects.create(owner=self.alice, name="all")
        for queue, policy, scope in ((self.small_queue, '{"amount": [{"numeric": ["<", 100]}]}', filters.ATTRIBUTES),
                                     (self.web_queue, '{"kind": {"channel": [{"prefix": "we"}]}}', filters.BODY),
                                     (self.all_queue, "", filters.ATTRIBUTES)):
            form = QueueSubscriptionForm({"queue": queue.pk, "filter_policy": policy, "filter_policy_scope": scope},
                                         topic=self.topic)
            self.assertTrue(form.is_valid(), form.errors)
            form.save()

    def subscribe(self, function, policy, scope=filters.ATTRIBUTES):
        form = TopicTriggerForm({"qualifier": "", "topic": self.topic.pk, "enabled": True, "filter_policy": policy,
                                 "filter_policy_scope": scope}, function=function)
        self.assertTrue(form.is_valid(), form.errors)
        return form.save()

    def delivered(self):
        functions = set(Invocation.objects.values_list("trigger__function__name", flat=True))
        queues = {q.name for q in Queue.objects.filter(owner=self.alice) if q.messages.exists()}
        Invocation.objects.all().delete()
        for q in Queue.objects.filter(owner=self.alice):
            q.messages.all().delete()
        return functions, queues

    def test_a_publish_reaches_only_the_subscriptions_whose_policy_matches(self):
        self.topic.publish('{"kind": {"channel": "retail"}}', message_attributes={"amount": 250})
        self.assertEqual(self.delivered(), ({"big", "retail", "everything"}, {"all"}))
        self.topic.publish('{"kind": {"channel": "web"}}', message_attributes={"amount": 20})
        self.assertEqual(self.delivered(), ({"everything"}, {"small", "web", "all"}))
        # Not JSON: no body-scoped policy matches; without the attribute, no attribute-scoped one either.
        self.topic.publish("plain text")
        self.assertEqual(self.delivered(), ({"everything"}, {"all"}))

    def test_the_topic_page_shows_each_subscriptions_policy(self):
        self.client.force_login(self.alice)
        page = self.client.get(self.topic.get_absolute_url())
        self.assertContains(page, "{&quot;amount&quot;: [{&quot;numeric&quot;: [&quot;&gt;=&quot;, 100]}]}")
        self.assertContains(page, "MessageBody")
        self.assertContains(page, "none: every message", count=2)

    def test_the_forms_refuse_a_bad_policy_with_the_reason_and_change_nothing(self):
        self.client.force_login(self.alice)
        other = Queue.objects.create(owner=self.alice, name="other")
        response = self.client.post(reverse("topics:subscribe", args=[self.topic.name]), {
            "queue": other.pk, "filter_policy": '{"a": [{"contains": "x"}]}', "filter_policy_scope": filters.BODY})
        self.assertEqual(response.status_code, 400)
        errors = response.context["subscribe_form"].errors["filter_policy"]
        self.assertIn("unknown operator 'contains'", " ".join(errors))
        self.assertFalse(QueueSubscription.objects.filter(queue=other).exists())

        url = reverse("functions:trigger", args=["big", self.big.pk])
        response = self.client.post(url, {"qualifier": "", "topic": self.topic.pk, "enabled": "on",
                                          "filter_policy": '{"a": {"b": ["x"]}}',
                                          "filter_policy_scope": filters.ATTRIBUTES})
        self.assertContains(response, "nested keys need FilterPolicyScope MessageBody", status_code=400)
        self.assertEqual(Trigger.objects.get(pk=self.big.pk).config["filter_policy"],
                         '{"amount": [{"numeric": [">=", 100]}]}')
        response = self.client.post(url, {"qualifier": "", "topic": self.topic.pk, "enabled": "on",
                                          "filter_policy": "not json"})
        self.assertContains(response, "not valid JSON", status_code=400)

    def test_a_subscription_edited_to_another_policy_filters_by_it(self):
        form = TopicTriggerForm({"qualifier": "", "topic": self.topic.pk, "enabled": True,
                                 "filter_policy": '{"amount": [{"numeric": ["<", 10]}]}'},
                                function=self.big.function, trigger=self.big)
        self.assertTrue(form.is_valid(), form.errors)
        form.save()
        self.assertEqual(Trigger.objects.get(pk=self.big.pk).config["filter_policy_scope"], filters.ATTRIBUTES)
        self.topic.publish("x", message_attributes={"amount": 5})
        self.assertEqual(self.delivered(), ({"big", "everything"}, {"small", "all"}))
