"""Tables with change streams (invocations.tables): DynamoDB's typed JSON and item size, writes and their
stream records, DynamoDB Streams' event against AWS's documented example, the console pages and the JSON API,
and the stream trigger: batches in order, retries of the same batch, the dead-letter inbox after the last
retry, starting positions, two runners, and a worker killed mid-batch. Real workers where something runs."""

import base64
import json
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.test import SimpleTestCase, TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from functions.models import Trigger, account_id
from invocations import lost
from invocations.models import DeadLetter, Invocation
from invocations.sources import invocation_finished
from invocations.tables import streams
from invocations.tables.attributes import MAX_ITEM_BYTES, InvalidItem, clean_item, item_size, parse_item
from invocations.tables.forms import TableForm, TableStreamForm
from invocations.tables.models import StreamCursor, StreamRecord, Table
from tests.base import BaseTestCase, World, WorkerTestCase, handler_zip
from tests.processes import ROOT, child_env, log_dir, start_worker, stop, use_queue, wait_for

ECHO = "def handler(event, context):\n    return event\n"

# Fails on a batch holding a record whose new image has a "poison" attribute; otherwise counts the records.
PICKY = """
    def handler(event, context):
        for record in event["Records"]:
            if "poison" in record["dynamodb"].get("NewImage", {}):
                raise ValueError("poison in record " + record["dynamodb"]["SequenceNumber"])
        return {"records": len(event["Records"])}
"""

# The example event of "Using AWS Lambda with Amazon DynamoDB"
# (https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html; its source, awsdocs/aws-lambda-developer-guide
# doc_source/with-ddb.md, "Example DynamoDB Streams record event"), pasted as published.
DOC_EVENT = {
  "Records": [
    {
      "eventID": "1",
      "eventVersion": "1.0",
      "dynamodb": {
        "Keys": {
          "Id": {
            "N": "101"
          }
        },
        "NewImage": {
          "Message": {
            "S": "New item!"
          },
          "Id": {
            "N": "101"
          }
        },
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "SequenceNumber": "111",
        "SizeBytes": 26
      },
      "awsRegion": "us-west-2",
      "eventName": "INSERT",
      "eventSourceARN": "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291",
      "eventSource": "aws:dynamodb"
    },
    {
      "eventID": "2",
      "eventVersion": "1.0",
      "dynamodb": {
        "OldImage": {
          "Message": {
            "S": "New item!"
          },
          "Id": {
            "N": "101"
          }
        },
        "SequenceNumber": "222",
        "Keys": {
          "Id": {
            "N": "101"
          }
        },
        "SizeBytes": 59,
        "NewImage": {
          "Message": {
            "S": "This item has changed"
          },
          "Id": {
            "N": "101"
          }
        },
        "StreamViewType": "NEW_AND_OLD_IMAGES"
      },
      "awsRegion": "us-west-2",
      "eventName": "MODIFY",
      "eventSourceARN": "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291",
      "eventSource": "aws:dynamodb"
    }
  ]}

# The REMOVE record of the same item, from the same page's "Example DynamodbTimeWindowEvent" (its
# eventSourceARN there is the placeholder "stream-ARN").
DOC_REMOVE_RECORD = {
    "eventID": "3",
    "eventName": "REMOVE",
    "eventVersion": "1.0",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "Keys": {"Id": {"N": "101"}},
        "OldImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
        "SequenceNumber": "333",
        "SizeBytes": 38,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
    "eventSourceARN": "stream-ARN",
}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def sequence_numbers(invocation):
    """The table's own sequence numbers (1, 2, …) of the records the invocation carried."""
    return [int(r["dynamodb"]["SequenceNumber"]) - 10 ** 20 for r in json.loads(invocation.event)["Records"]]


def event_ids(invocation):
    return [r["eventID"] for r in json.loads(invocation.event)["Records"]]


class TableWorld:
    def make_table(self, name="orders", owner=None, partition=("id", "S"), sort=None, view="NEW_AND_OLD_IMAGES"):
        """Create a table through the console's form; fail the test if it is rejected."""
        form = TableForm({"name": name, "partition_key_name": partition[0], "partition_key_type": partition[1],
                          "sort_key_name": sort[0] if sort else "", "sort_key_type": sort[1] if sort else "S",
                          "stream_view_type": view}, owner=owner or self.alice)
        assert form.is_valid(), form.errors.as_text()
        return form.save()

    def add_trigger(self, function, table, **options):
        """Add a table stream trigger through its form; fail the test if it is rejected."""
        data = {"qualifier": "", "table": table.name, "batch_size": 100, "starting_position": "TRIM_HORIZON",
                "maximum_retry_attempts": -1, "on_failure": "", "enabled": "on", **options}
        form = TableStreamForm(data, function=function)
        assert form.is_valid(), form.errors.as_text()
        with transaction.atomic():
            return form.save()

    def put(self, table, item):
        record, _ = Table.objects.get(pk=table.pk).put_item(clean_item(item))
        return record

    def cursor(self, trigger):
        return StreamCursor.objects.get(trigger=trigger)


class TypedJsonTests(SimpleTestCase):
    """DynamoDB's AttributeValue rules, each broken once: the message names the attribute and the rule."""

    def assertRejected(self, item, message):
        with self.assertRaises(InvalidItem) as caught:
            clean_item(item)
        self.assertIn(message, str(caught.exception))

    def test_text_that_is_not_utf8_is_rejected(self):
        self.assertRejected({"id": {"S": "\ud800"}}, "not valid UTF-8")
        self.assertRejected({"\udfff": {"S": "x"}}, "not valid UTF-8")

    def test_every_type_is_accepted_in_its_canonical_form(self):
        item = {
            "name": {"S": "x"}, "n": {"N": "001.50"}, "b": {"B": base64.b64encode(b"\x00\xff").decode()},
            "bool": {"BOOL": False}, "null": {"NULL": True}, "empty": {"S": ""},
            "m": {"M": {"inner": {"L": [{"N": "1e2"}, {"S": "y"}, {"M": {}}]}}},
            "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["10", "9", "-1.0"]}, "bs": {"BS": ["AA==", "AQ=="]},
        }
        cleaned = clean_item(item)
        self.assertEqual(cleaned["n"], {"N": "1.5"})  # leading and trailing zeros trimmed, as DynamoDB keeps it
        self.assertEqual(cleaned["m"]["M"]["inner"]["L"][0], {"N": "100"})
        self.assertEqual(cleaned["ss"], {"SS": ["a", "b"]})  # a set has no order
        self.assertEqual(cleaned["ns"], {"NS": ["-1", "9", "10"]})
        self.assertEqual(cleaned["bool"], {"BOOL": False})
        self.assertEqual(cleaned["empty"], {"S": ""})

    def test_a_number_must_be_a_number_string(self):
        self.assertRejected({"n": {"N": 1}}, "attribute 'n': N must be a number string")
        self.assertRejected({"n": {"N": "1,5"}}, "attribute 'n': N must be a number string; '1,5' is not a number")
        self.assertRejected({"n": {"N": "5\n"}}, "is not a number")
        self.assertRejected({"n": {"N": "NaN"}}, "is not a number")
        self.assertRejected({"n": {"N": "١"}}, "is not a number")  # an Arabic-Indic digit

    def test_numbers_keep_to_dynamodbs_precision_and_range(self):
        self.assertEqual(clean_item({"n": {"N": "9" * 38}})["n"]["N"], "9" * 38)
        self.assertRejected({"n": {"N": "9" * 39}}, "at most 38 significant digits")
        self.assertEqual(clean_item({"n": {"N": "-1E-130"}})["n"]["N"], "-0." + "0" * 129 + "1")
        self.assertRejected({"n": {"N": "1E-131"}}, "out of DynamoDB's number range")
        self.assertRejected({"n": {"N": "1E+126"}}, "out of DynamoDB's number range")

    def test_other_types_are_checked_strictly(self):
        self.assertRejected({"s": {"S": 5}}, "attribute 's': S must be a string")
        self.assertRejected({"b": {"B": "not base64!"}}, "attribute 'b': B must be a base64 string")
        self.assertRejected({"t": {"BOOL": "true"}}, "attribute 't': BOOL must be true or false")
        self.assertRejected({"z": {"NULL": False}}, "attribute 'z': NULL must be true")
        self.assertRejected({"m": {"M": []}}, "attribute 'm': M must be an object of attributes")
        self.assertRejected({"l": {"L": {}}}, "attribute 'l': L must be a list of values")
        self.assertRejected({"x": {"Q": "?"}}, "attribute 'x': unknown type 'Q'")
        self.assertRejected({"x": "plain"}, "attribute 'x': a value is an object with exactly one type")
        self.assertRejected({"x": {"S": "a", "N": "1"}}, "attribute 'x': a value is an object with exactly one type")
        self.assertRejected({"": {"S": "a"}}, "An attribute name may not be empty")
        self.assertRejected(["not", "an", "object"], "An item is a JSON object of attributes")

    def test_nested_attributes_are_named_by_their_path(self):
        self.assertRejected({"m": {"M": {"list": {"L": [{"S": "ok"}, {"N": "x"}]}}}},
                            "attribute 'm.list[1]': N must be a number string")
        deep = {"S": "bottom"}
        for _ in range(32):
            deep = {"L": [deep]}
        self.assertRejected({"d": deep}, "nested more than 32 levels deep")

    def test_sets_are_non_empty_and_distinct(self):
        self.assertRejected({"ss": {"SS": []}}, "attribute 'ss': an SS set may not be empty")
        self.assertRejected({"ss": {"SS": ["a", "a"]}}, "SS holds 'a' twice")
        self.assertRejected({"ns": {"NS": ["1", "1.0"]}}, "NS holds '1' twice")  # the same number
        self.assertRejected({"ns": {"NS": [1]}}, "every member of NS must be a number string")
        self.assertRejected({"bs": {"BS": ["AA==", "?"]}}, "every member of BS must be a base64 string")

    def test_json_text_that_does_not_parse_is_named_so(self):
        with self.assertRaises(InvalidItem) as caught:
            parse_item('{"id": {"S": "a"}')
        self.assertIn("The item is not valid JSON", str(caught.exception))

    def test_the_size_counts_names_and_values_in_utf8_as_dynamodb_does(self):
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
        self.assertEqual(item_size({"é": {"S": "ü€"}}), 2 + 2 + 3)
        self.assertEqual(item_size({"n": {"N": "12345"}}), 1 + 3 + 1)  # 1 byte per two significant digits, + 1
        self.assertEqual(item_size({"n": {"N": "-0.00120"}}), 1 + 1 + 1)
        self.assertEqual(item_size({"b": {"B": base64.b64encode(b"12345").decode()}}), 1 + 5)  # raw bytes
        self.assertEqual(item_size({"t": {"BOOL": True}, "z": {"NULL": True}}), 2 + 2)
        self.assertEqual(item_size({"l": {"L": [{"S": "ab"}, {"S": "c"}]}}), 1 + 3 + (2 + 1) + (1 + 1))
        self.assertEqual(item_size({"m": {"M": {"k": {"S": "v"}}}}), 1 + 3 + (1 + 1 + 1))
        self.assertEqual(item_size({"ss": {"SS": ["ab", "c"]}}), 2 + 3)

    def test_an_item_of_400_kb_is_accepted_and_one_byte_more_is_refused(self):
        name_and_key = item_size({"id": {"S": "a"}, "blob": {"S": ""}})
        fits = {"id": {"S": "a"}, "blob": {"S": "x" * (MAX_ITEM_BYTES - name_and_key)}}
        self.assertEqual(item_size(clean_item(fits)), 400 * 1024)
        over = {"id": {"S": "a"}, "blob": {"S": "x" * (MAX_ITEM_BYTES - name_and_key - 1) + "é"}}  # é: 2 bytes
        self.assertRejected(over, "Item size has exceeded the maximum allowed size: 409,601 bytes")


class ItemWriteTests(TableWorld, BaseTestCase):
    """Puts, edits and deletes, and the stream record each writes in the same transaction."""

    def setUp(self):
        super().setUp()
        self.table = self.make_table(partition=("pk", "S"), sort=("n", "N"))

    def test_a_put_inserts_then_modifies_and_a_delete_removes_with_one_record_each(self):
        first = self.put(self.table, {"pk": {"S": "a"}, "n": {"N": "1"}, "v": {"S": "one"}})
        second = self.put(self.table, {"pk": {"S": "a"}, "n": {"N": "1.0"}, "v": {"S": "two"}})  # the same key
        table = Table.objects.get(pk=self.table.pk)
        [item] = table.items.all()
        self.assertEqual(item.data["v"], {"S": "two"})
        self.assertEqual((item.partition_key, item.sort_key), ("a", "1"))
        record, old = table.delete_item({"pk": {"S": "a"}, "n": {"N": "1"}})
        self.assertEqual(old["v"], {"S": "two"})
        self.assertFalse(table.items.exists())
        self.assertEqual([(r.sequence_number, r.event_name) for r in table.stream_records.all()],
                         [(1, "INSERT"), (2, "MODIFY"), (3, "REMOVE")])
        self.assertEqual((first.sequence_number, second.sequence_number, record.sequence_number), (1, 2, 3))
        self.assertEqual(Table.objects.get(pk=self.table.pk).last_sequence_number, 3)
        self.assertEqual(second.old_image["v"], {"S": "one"})
        self.assertEqual(second.keys, {"pk": {"S": "a"}, "n": {"N": "1"}})

    def test_a_put_that_changes_nothing_writes_no_record_and_deleting_nothing_neither(self):
        item = {"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x", "y"]}}
        self.put(self.table, item)
        self.assertIsNone(self.put(self.table, {**item, "tags": {"SS": ["y", "x"]}}))  # the same set
        self.assertEqual(Table.objects.get(pk=self.table.pk).delete_item({"pk": {"S": "b"}, "n": {"N": "1"}}),
                         (None, None))
        self.assertEqual(self.table.stream_records.count(), 1)

    def test_sequence_numbers_are_per_table_and_never_repeat(self):
        other = self.make_table(name="other")
        for i in range(3):
            self.put(self.table, {"pk": {"S": "a"}, "n": {"N": str(i)}})
            self.put(other, {"id": {"S": str(i)}})
        self.assertEqual(list(self.table.stream_records.values_list("sequence_number", flat=True)), [1, 2, 3])
        self.assertEqual(list(other.stream_records.values_list("sequence_number", flat=True)), [1, 2, 3])
        record = self.table.stream_records.last()
        self.assertEqual(record.sequence_text, "100000000000000000003")  # 21 digits, as DynamoDB's

    def test_key_attributes_must_be_present_typed_and_non_empty_and_nothing_changes_otherwise(self):
        table = Table.objects.get(pk=self.table.pk)
        for item, message in [
            ({"n": {"N": "1"}}, "The item has no attribute 'pk': it is the table's partition key (type S)"),
            ({"pk": {"N": "1"}, "n": {"N": "1"}},
             "attribute 'pk' is the table's partition key: its type must be S, not N"),
            ({"pk": {"S": "a"}, "n": {"S": "1"}}, "attribute 'n' is the table's sort key: its type must be N, not S"),
            ({"pk": {"S": ""}, "n": {"N": "1"}}, "attribute 'pk' is the table's partition key: it may not be empty"),
            ({"pk": {"S": "é" * 1025}, "n": {"N": "1"}}, "2,050 bytes, over the limit of 2,048"),
        ]:
            with self.subTest(item=list(item)), self.assertRaises(InvalidItem) as caught:
                table.put_item(clean_item(item))
            self.assertIn(message, str(caught.exception))
        self.assertFalse(table.items.exists())
        self.assertFalse(table.stream_records.exists())
        self.assertEqual(Table.objects.get(pk=table.pk).last_sequence_number, 0)

    def test_each_view_type_keeps_the_images_dynamodb_keeps(self):
        expected = {  # event name: (new image?, old image?)
            "NEW_IMAGE": {"INSERT": (True, False), "MODIFY": (True, False), "REMOVE": (False, False)},
            "OLD_IMAGE": {"INSERT": (False, False), "MODIFY": (False, True), "REMOVE": (False, True)},
            "NEW_AND_OLD_IMAGES": {"INSERT": (True, False), "MODIFY": (True, True), "REMOVE": (False, True)},
            "KEYS_ONLY": {"INSERT": (False, False), "MODIFY": (False, False), "REMOVE": (False, False)},
        }
        for view, images in expected.items():
            table = self.make_table(name=f"view-{view.lower()}", partition=("id", "N"), view=view)
            self.put(table, {"id": {"N": "7"}, "v": {"S": "old"}})
            self.put(table, {"id": {"N": "7"}, "v": {"S": "new"}})
            Table.objects.get(pk=table.pk).delete_item({"id": {"N": "7"}})
            for record in table.stream_records.all():
                with self.subTest(view=view, event=record.event_name):
                    event = streams.record_event(record, table)["dynamodb"]
                    has_new, has_old = images[record.event_name]
                    self.assertEqual(event["Keys"], {"id": {"N": "7"}})
                    self.assertEqual("NewImage" in event, has_new)
                    self.assertEqual("OldImage" in event, has_old)
                    if has_new:  # after the change: "old" once inserted, "new" once modified
                        after = "new" if record.event_name == "MODIFY" else "old"
                        self.assertEqual(event["NewImage"]["v"], {"S": after})
                    if has_old:  # before the change
                        before = "new" if record.event_name == "REMOVE" else "old"
                        self.assertEqual(event["OldImage"]["v"], {"S": before})
                    self.assertEqual(event["StreamViewType"], view)
                    self.assertEqual(event["SizeBytes"], item_size(event["Keys"]) + item_size(event.get("NewImage", {}))
                                     + item_size(event.get("OldImage", {})))


@override_settings(LAMBDA_REGION="us-west-2")
class EventShapeTests(TableWorld, BaseTestCase):
    """DynamoDB Streams' event, field by field against AWS's example: the same changes to the same table."""

    def setUp(self):
        super().setUp()
        self.table = self.make_table(name="TestTable", partition=("Id", "N"), view="NEW_AND_OLD_IMAGES")
        self.put(self.table, {"Message": {"S": "New item!"}, "Id": {"N": "101"}})
        self.put(self.table, {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}})
        Table.objects.get(pk=self.table.pk).delete_item({"Id": {"N": "101"}})
        self.records = [streams.record_event(r, self.table) for r in self.table.stream_records.all()]

    def test_each_record_has_the_documented_fields_and_values(self):
        documented = DOC_EVENT["Records"] + [DOC_REMOVE_RECORD]
        stream_arn = (rf"^arn:aws:dynamodb:us-west-2:{account_id(self.alice)}:table/TestTable/stream/"
                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
        # The documented ARN has the same shape, with its own account.
        self.assertRegex(DOC_EVENT["Records"][0]["eventSourceARN"],
                         stream_arn.replace(account_id(self.alice), r"\d{12}"))
        for ours, doc in zip(self.records, documented, strict=True):
            with self.subTest(event=doc["eventName"]):
                self.assertEqual(set(ours), set(doc))
                self.assertEqual(ours["eventName"], doc["eventName"])
                self.assertEqual(ours["eventSource"], doc["eventSource"])
                # The example shows "1.0"; Lambda sends "1.1" since DynamoDB Streams' records gained fields.
                self.assertEqual(ours["eventVersion"], "1.1")
                self.assertRegex(ours["eventID"], r"^[0-9a-f]{32}$")  # a real stream's ids: 32 hex digits
                self.assertEqual(ours["awsRegion"], settings.LAMBDA_REGION)
                self.assertRegex(ours["eventSourceARN"], stream_arn)
                self.assertEqual(ours["eventSourceARN"], self.table.stream_arn)
                self.assertEqual(ours["awsRegion"], DOC_EVENT["Records"][0]["awsRegion"])
                ours_ddb, doc_ddb = ours["dynamodb"], doc["dynamodb"]
                # Real records also carry ApproximateCreationDateTime (the StreamRecord of the DynamoDB Streams
                # API: UNIX epoch seconds), which the example leaves out.
                self.assertEqual(set(ours_ddb) - {"ApproximateCreationDateTime"}, set(doc_ddb))
                self.assertIsInstance(ours_ddb["ApproximateCreationDateTime"], float)
                self.assertLess(abs(ours_ddb["ApproximateCreationDateTime"] - timezone.now().timestamp()), 60)
                for field in ("Keys", "NewImage", "OldImage", "StreamViewType", "SizeBytes"):
                    self.assertEqual(ours_ddb.get(field), doc_ddb.get(field), field)
                self.assertIsInstance(ours_ddb["SequenceNumber"], str)
                self.assertRegex(ours_ddb["SequenceNumber"], r"^\d{21,}$")
        numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in self.records]
        self.assertEqual(numbers, sorted(set(numbers)))  # increasing, as 111, 222, 333

    def test_the_event_is_plain_json_with_records_in_order(self):
        event = {"Records": self.records}
        self.assertEqual(json.loads(json.dumps(event)), event)
        self.assertEqual([r["eventName"] for r in event["Records"]], ["INSERT", "MODIFY", "REMOVE"])
        self.assertEqual(list(event), list(DOC_EVENT))

    def test_a_record_keeps_its_event_id_and_ids_differ_between_records_and_streams(self):
        first = self.table.stream_records.first()
        again = streams.record_event(StreamRecord.objects.get(pk=first.pk), Table.objects.get(pk=self.table.pk))
        self.assertEqual(again["eventID"], self.records[0]["eventID"])
        self.assertEqual(len({r["eventID"] for r in self.records}), 3)
        other = self.make_table(name="Other", partition=("Id", "N"))
        self.put(other, {"Id": {"N": "101"}})
        elsewhere = streams.record_event(other.stream_records.get(), other)
        self.assertNotEqual(elsewhere["eventID"], self.records[0]["eventID"])


class TablePagesTests(TableWorld, BaseTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)
        self.fn = self.create_function(handler_zip(ECHO), name="hello")

    def create(self, **fields):
        data = {"name": "orders", "partition_key_name": "id", "partition_key_type": "S", "sort_key_name": "",
                "sort_key_type": "S", "stream_view_type": "NEW_AND_OLD_IMAGES", **fields}
        return self.client.post(reverse("tables:list"), data)

    def test_a_table_is_created_listed_and_shown_with_its_arns(self):
        response = self.create(name="orders.v2-eu_1", sort_key_name="at", sort_key_type="N")
        table = Table.objects.get(owner=self.alice, name="orders.v2-eu_1")
        self.assertRedirects(response, table.get_absolute_url())
        self.assertEqual((table.sort_key_name, table.sort_key_type), ("at", "N"))
        self.assertRegex(table.stream_label, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
        self.assertContains(self.client.get(reverse("tables:list")), "orders.v2-eu_1")
        page = self.client.get(table.get_absolute_url())
        self.assertContains(page, table.arn)
        self.assertContains(page, f"{table.arn}/stream/{table.stream_label}")

    def test_bad_table_settings_are_refused_with_a_clear_error(self):
        self.create(name="orders")
        for fields, error in [
            ({"name": "ab"}, "A table name is 3–255 of A-Z a-z 0-9 _ - and ."),
            ({"name": "has space"}, "A table name is 3–255"),
            ({"name": "x" * 256}, "at most 255 characters"),
            ({"name": "orders"}, "You already have a table named orders."),
            ({"name": "keys", "sort_key_name": "id"}, "The sort key must be another attribute than the partition key."),
            ({"name": "keys", "partition_key_name": "é" * 128}, "A key attribute name is at most 255 bytes."),
        ]:
            with self.subTest(fields=fields):
                response = self.create(**fields)
                self.assertEqual(response.status_code, 400)
                self.assertContains(response, error, status_code=400)
        self.assertEqual(list(Table.objects.values_list("name", flat=True)), ["orders"])

    def test_items_are_put_edited_and_deleted_from_the_table_page(self):
        table = self.make_table(partition=("id", "S"))
        url = reverse("tables:put_item", args=[table.name])
        item = {"id": {"S": "a1"}, "n": {"N": "42"}}
        response = self.client.post(url, {"item": json.dumps(item)}, follow=True)
        self.assertContains(response, "Saved the item (INSERT, stream record 100000000000000000001).")
        stored = table.items.get()
        self.assertContains(response, "a1")
        edit = self.client.get(table.get_absolute_url(), {"edit": stored.pk})
        self.assertEqual(json.loads(edit.context["form"].initial["item"]), item)
        response = self.client.post(url, {"item": json.dumps({**item, "n": {"N": "43"}})}, follow=True)
        self.assertContains(response, "(MODIFY, stream record 100000000000000000002)")
        response = self.client.post(reverse("tables:delete_item", args=[table.name, stored.pk]), follow=True)
        self.assertContains(response, "Deleted the item (REMOVE, stream record 100000000000000000003).")
        self.assertFalse(table.items.exists())
        self.assertContains(response, "REMOVE")  # in the recent stream records

    def test_an_invalid_or_oversized_item_is_refused_and_nothing_changes(self):
        table = self.make_table(partition=("id", "S"))
        self.put(table, {"id": {"S": "keep"}})
        url = reverse("tables:put_item", args=[table.name])
        big = {"id": {"S": "big"}, "blob": {"S": "x" * MAX_ITEM_BYTES}}
        for text, error in [
            ('{"id": {"S": "a"}, "n": {"N": 1}}', "attribute &#x27;n&#x27;: N must be a number string"),
            ('{"n": {"N": "1"}}', "The item has no attribute &#x27;id&#x27;"),
            ('{"id": ', "The item is not valid JSON"),
            (json.dumps(big), "Item size has exceeded the maximum allowed size"),
        ]:
            with self.subTest(error=error):
                response = self.client.post(url, {"item": text})
                self.assertContains(response, error, status_code=400)
        self.assertEqual(list(table.items.values_list("partition_key", flat=True)), ["keep"])
        self.assertEqual(table.stream_records.count(), 1)
        self.assertEqual(Table.objects.get(pk=table.pk).last_sequence_number, 1)

    def test_items_are_paged(self):
        table = self.make_table(partition=("id", "S"))
        for i in range(55):
            self.put(table, {"id": {"S": f"k{i:03d}"}})
        def listed(page):
            content = self.client.get(table.get_absolute_url(), {"page": page}).content.decode()
            items = content[content.index('id="item-list"'):content.index('id="put-item"')]
            return re.findall(r'<td class="mono">(k\d+)</td>', items)

        self.assertEqual(listed(1), [f"k{i:03d}" for i in range(50)])
        self.assertEqual(listed(2), [f"k{i:03d}" for i in range(50, 55)])

    def test_another_users_tables_are_not_found(self):
        table = self.make_table(owner=self.bob, name="bobs-table")
        self.put(table, {"id": {"S": "secret"}})
        item = table.items.get()
        for response in [
            self.client.get(table.get_absolute_url()),
            self.client.post(reverse("tables:put_item", args=[table.name]), {"item": '{"id": {"S": "x"}}'}),
            self.client.post(reverse("tables:delete_item", args=[table.name, item.pk])),
            self.client.post(reverse("tables:delete", args=[table.name])),
        ]:
            self.assertEqual(response.status_code, 404)
        self.assertNotContains(self.client.get(reverse("tables:list")), "bobs-table")
        self.assertEqual(table.items.count(), 1)
        self.assertEqual(Table.objects.get(pk=table.pk).last_sequence_number, 1)

    def test_the_trigger_form_offers_only_the_owners_tables_and_refuses_another_users(self):
        self.make_table(name="mine")
        bobs = self.make_table(owner=self.bob, name="bobs-table")
        url = reverse("functions:new_trigger", args=[self.fn.name, "table"])
        form_page = self.client.get(url)
        self.assertContains(form_page, '<option value="mine"')
        self.assertNotContains(form_page, "bobs-table")
        response = self.client.post(url, {"qualifier": "", "table": bobs.name, "batch_size": 10,
                                          "starting_position": "LATEST", "maximum_retry_attempts": -1})
        self.assertContains(response, "Choose one of your own tables: you have no table named bobs-table.",
                            status_code=400)
        self.assertFalse(Trigger.objects.filter(kind=Trigger.Kind.TABLE).exists())
        self.assertFalse(StreamCursor.objects.exists())

    def test_trigger_settings_are_bounded(self):
        self.make_table(name="mine")
        url = reverse("functions:new_trigger", args=[self.fn.name, "table"])
        base = {"qualifier": "", "table": "mine", "batch_size": 100, "starting_position": "LATEST",
                "maximum_retry_attempts": -1}
        for fields, error in [({"batch_size": 0}, "greater than or equal to 1"),
                              ({"batch_size": 10001}, "less than or equal to 10000"),
                              ({"maximum_batching_window": -1}, "greater than or equal to 0"),
                              ({"maximum_batching_window": 301}, "less than or equal to 300"),
                              ({"maximum_retry_attempts": -2}, "greater than or equal to -1"),
                              ({"maximum_retry_attempts": 10001}, "less than or equal to 10000"),
                              ({"starting_position": "AT_TIMESTAMP"}, "Select a valid choice"),
                              ({"on_failure": "arn:aws:sqs:us-east-1:000000000000:q"}, "Select a valid choice")]:
            with self.subTest(fields=fields):
                self.assertContains(self.client.post(url, {**base, **fields}), error, status_code=400)
        self.assertFalse(StreamCursor.objects.exists())

    def test_a_saved_trigger_starts_at_its_position_and_shows_on_the_function_page(self):
        table = self.make_table(name="mine")
        self.put(table, {"id": {"S": "before"}})
        url = reverse("functions:new_trigger", args=[self.fn.name, "table"])
        response = self.client.post(url, {"qualifier": "", "table": "mine", "batch_size": 25,
                                          "starting_position": "LATEST", "maximum_retry_attempts": 3, "enabled": "on"})
        self.assertRedirects(response, f"{self.fn.get_absolute_url()}#triggers", fetch_redirect_response=False)
        trigger = self.fn.triggers.get(kind=Trigger.Kind.TABLE)
        self.assertEqual(trigger.config["batch_size"], 25)
        self.assertEqual(self.cursor(trigger).position, 1)  # LATEST: after the record already there
        page = self.client.get(self.fn.get_absolute_url())
        self.assertContains(page, "table mine · batch 25 · from LATEST · retries 3")
        # Editing keeps the table and starting position (Lambda cannot change them) and the cursor.
        edit = reverse("functions:trigger", args=[self.fn.name, trigger.pk])
        self.client.post(edit, {"qualifier": "", "table": "other", "batch_size": 5, "starting_position": "TRIM_HORIZON",
                                "maximum_retry_attempts": -1, "enabled": "on"})
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["table"], trigger.config["starting_position"], trigger.config["batch_size"]),
                         ("mine", "LATEST", 5))
        self.assertEqual(self.cursor(trigger).position, 1)
        self.assertContains(self.client.get(table.get_absolute_url()), f"{self.fn.name}")  # the table's Stream card

    def test_deleting_a_table_deletes_its_stream_triggers_but_not_their_invocations(self):
        table = self.make_table(name="doomed")
        trigger = self.add_trigger(self.fn, table)
        keeper = self.add_trigger(self.fn, self.make_table(name="keeper"))
        self.put(table, {"id": {"S": "a"}})
        with self.captureOnCommitCallbacks(execute=False):
            [invocation] = streams.poll(timezone.now())
        response = self.client.post(reverse("tables:delete", args=[table.name]), follow=True)
        self.assertContains(response, "Deleted table doomed and its 1 stream trigger(s).")
        self.assertFalse(Table.objects.filter(name="doomed").exists())
        self.assertFalse(Trigger.objects.filter(pk=trigger.pk).exists())
        self.assertTrue(Trigger.objects.filter(pk=keeper.pk).exists())
        self.assertTrue(Invocation.objects.filter(pk=invocation.pk, trigger__isnull=True).exists())

    def test_fire_now_sends_the_latest_record_without_moving_the_cursor(self):
        table = self.make_table(name="mine")
        trigger = self.add_trigger(self.fn, table, starting_position="LATEST")
        fired = self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]))
        invocation = Invocation.objects.get(trigger=trigger)
        self.assertRedirects(fired, invocation.get_absolute_url(), fetch_redirect_response=False)
        [sample] = json.loads(invocation.event)["Records"]
        self.assertEqual((sample["eventName"], sample["dynamodb"]["Keys"]), ("INSERT", {"id": {"S": "sample"}}))
        self.put(table, {"id": {"S": "real"}, "v": {"N": "1"}})
        self.client.post(reverse("functions:fire_trigger", args=[self.fn.name, trigger.pk]))
        latest = Invocation.objects.filter(trigger=trigger).order_by("-created_at").first()
        [record] = json.loads(latest.event)["Records"]
        self.assertEqual(record["dynamodb"]["NewImage"], {"id": {"S": "real"}, "v": {"N": "1"}})
        self.assertEqual((latest.kind, latest.source), (Invocation.Kind.SYNC, "table"))
        self.assertEqual(self.cursor(trigger).position, 0)
        self.assertIsNone(self.cursor(trigger).invocation_id)


class ApiTests(TableWorld, BaseTestCase):
    """The JSON API with HTTP Basic credentials: PutItem, GetItem, DeleteItem and DynamoDB's error names."""

    def setUp(self):
        super().setUp()
        self.table = self.make_table(name="orders", partition=("pk", "S"), sort=("at", "N"))
        self.url = reverse("tables:api_items", args=["orders"])
        self.auth = {"HTTP_AUTHORIZATION": basic("alice", "alice-password-1")}

    def put_item(self, body, **headers):
        return self.client.post(self.url, json.dumps(body), content_type="application/json", **{**self.auth, **headers})

    def test_put_get_and_delete_an_item(self):
        item = {"pk": {"S": "o-1"}, "at": {"N": "1700000000"}, "total": {"N": "9.90"}, "lines": {"L": [{"S": "x"}]}}
        response = self.put_item({"Item": item})
        self.assertEqual((response.status_code, response.json()), (200, {}))
        got = self.client.get(self.url, {"pk": "o-1", "sk": "1700000000.0"}, **self.auth)
        self.assertEqual(got.json(), {"Item": {**item, "total": {"N": "9.9"}}})
        replaced = self.put_item({"Item": {**item, "total": {"N": "10"}}, "ReturnValues": "ALL_OLD"})
        self.assertEqual(replaced.json()["Attributes"]["total"], {"N": "9.9"})
        deleted = self.client.delete(f"{self.url}?pk=o-1&sk=1700000000&ReturnValues=ALL_OLD", **self.auth)
        self.assertEqual(deleted.json()["Attributes"]["total"], {"N": "10"})
        self.assertEqual(self.client.get(self.url, {"pk": "o-1", "sk": "1700000000"}, **self.auth).json(), {})
        self.assertEqual(self.client.delete(f"{self.url}?pk=o-1&sk=1700000000", **self.auth).json(), {})
        self.assertEqual([r.event_name for r in self.table.stream_records.all()], ["INSERT", "MODIFY", "REMOVE"])

    def test_bad_requests_are_validation_exceptions_and_change_nothing(self):
        for body, message in [
            ({"Item": {"pk": {"S": "a"}, "at": {"N": "one"}}}, "attribute 'at': N must be a number string"),
            ({"Item": {"pk": {"S": "a"}}}, "The item has no attribute 'at': it is the table's sort key (type N)"),
            ({"Item": {"pk": {"S": "a"}, "at": {"N": "1"}, "big": {"S": "x" * MAX_ITEM_BYTES}}},
             "Item size has exceeded the maximum allowed size"),
            ({"item": {}}, "The request needs an Item"),
            ({"Item": {"pk": {"S": "a"}, "at": {"N": "1"}}, "ReturnValues": "ALL_NEW"},
             "ReturnValues is NONE or ALL_OLD"),
        ]:
            with self.subTest(message=message):
                response = self.put_item(body)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json()["__type"], "ValidationException")
                self.assertIn(message, response.json()["message"])
        not_json = self.client.post(self.url, "{", content_type="application/json", **self.auth)
        self.assertEqual(not_json.json()["__type"], "SerializationException")
        for query, message in [({"sk": "1"}, "The query needs pk"), ({"pk": "a"}, "The query needs sk"),
                               ({"pk": "a", "sk": "1x"}, "'1x' is not a number")]:
            with self.subTest(query=query):
                response = self.client.get(self.url, query, **self.auth)
                self.assertEqual((response.status_code, response.json()["__type"]), (400, "ValidationException"))
                self.assertIn(message, response.json()["message"])
        self.assertFalse(self.table.items.exists())
        self.assertEqual(Table.objects.get(pk=self.table.pk).last_sequence_number, 0)

    def test_credentials_are_required_and_another_users_table_does_not_exist(self):
        self.assertEqual(self.client.get(self.url, {"pk": "a", "sk": "1"}).status_code, 401)
        wrong = self.client.get(self.url, {"pk": "a", "sk": "1"}, HTTP_AUTHORIZATION=basic("alice", "nope"))
        self.assertEqual((wrong.status_code, wrong.json()["__type"]), (401, "UnrecognizedClientException"))
        bob = {"HTTP_AUTHORIZATION": basic("bob", "bob-password-1")}
        response = self.put_item({"Item": {"pk": {"S": "a"}, "at": {"N": "1"}}}, **bob)
        self.assertEqual((response.status_code, response.json()["__type"]), (400, "ResourceNotFoundException"))
        self.assertIn("Table: orders not found", response.json()["message"])
        self.assertFalse(self.table.items.exists())

    def test_the_browser_session_needs_the_csrf_token(self):
        self.client.force_login(self.alice)
        self.client.handler.enforce_csrf_checks = True
        response = self.client.post(self.url, json.dumps({"Item": {"pk": {"S": "a"}, "at": {"N": "1"}}}),
                                    content_type="application/json")
        self.assertEqual((response.status_code, response.json()["__type"]), (403, "AccessDeniedException"))
        self.assertFalse(self.table.items.exists())


class PollerTests(TableWorld, BaseTestCase):
    """The poller and the outcome hook against the database alone: nothing is queued (the test's transaction
    never commits), and outcomes are written here as a worker would write them."""

    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="reader")
        self.table = self.make_table(name="events", partition=("id", "S"))
        self.now = timezone.now()

    def poll(self, now=None):
        with self.captureOnCommitCallbacks(execute=False):
            return streams.poll(now or self.now)

    def finish(self, invocation, status, error_type="", ran=True, result=""):
        """Record an outcome as a worker does: the row, then the source's hook, in one transaction. A run
        that ended has a duration; a platform failure (`ran=False`: a dead worker, a lost job) has none."""
        Invocation.objects.filter(pk=invocation.pk).update(status=status, error_type=error_type, result=result,
                                                           started_at=timezone.now(),
                                                           duration_ms=Decimal("1.00") if ran else None)
        invocation = Invocation.objects.get(pk=invocation.pk)
        invocation_finished(invocation)
        return invocation

    def test_one_batch_at_a_time_of_at_most_batch_size_records(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=2)
        for i in range(5):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        [first] = self.poll()
        self.assertEqual(sequence_numbers(first), [1, 2])
        self.assertEqual((first.kind, first.source, first.trigger_id), (Invocation.Kind.SYNC, "table", trigger.pk))
        self.assertEqual(self.poll(), [])  # in flight: nothing more until it ends
        self.finish(first, Invocation.Status.SUCCEEDED)
        self.assertEqual(self.cursor(trigger).position, 2)
        [second] = self.poll()
        self.assertEqual(sequence_numbers(second), [3, 4])

    def test_a_runner_that_read_the_cursor_before_another_took_the_batch_sends_nothing(self):
        trigger = self.add_trigger(self.fn, self.table)
        self.put(self.table, {"id": {"S": "a"}})
        stale = StreamCursor.objects.select_related("trigger__function__owner", "table__owner").get(trigger=trigger)
        [sent] = self.poll()
        with self.captureOnCommitCallbacks(execute=False):
            self.assertIsNone(streams.send_batch(stale, self.now))
        # Nor after the batch failed and was released for its retry: the cursor has moved on from what it read.
        self.finish(sent, Invocation.Status.FAILED, "ValueError")
        with self.captureOnCommitCallbacks(execute=False):
            self.assertIsNone(streams.send_batch(stale, self.now + timedelta(hours=1)))
        self.assertEqual(Invocation.objects.filter(trigger=trigger).count(), 1)

    def test_a_failed_batch_is_retried_after_a_back_off_and_counted(self):
        trigger = self.add_trigger(self.fn, self.table, maximum_retry_attempts=5)
        self.put(self.table, {"id": {"S": "a"}})
        [first] = self.poll()
        self.finish(first, Invocation.Status.FAILED, "ValueError")
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.batch_last, cursor.attempts, cursor.failures), (0, 1, 1, 1))
        self.assertIsNone(cursor.invocation_id)
        self.assertEqual(self.poll(self.now), [])  # not before its back-off
        [second] = self.poll(cursor.retry_at)
        self.assertEqual(event_ids(second), event_ids(first))
        self.finish(second, Invocation.Status.TIMED_OUT, "Sandbox.Timedout")
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.attempts, cursor.failures), (2, 2))
        self.assertGreaterEqual(cursor.retry_at - timezone.now(), timedelta(seconds=1.5))  # 1 s, then 2 s

    def test_throttles_and_platform_failures_are_retried_without_counting(self):
        trigger = self.add_trigger(self.fn, self.table, maximum_retry_attempts=0)
        self.put(self.table, {"id": {"S": "a"}})
        self.fn.reserved_concurrency = 0  # Lambda throttles every invocation: invoke() refuses it at once
        self.fn.save()
        [throttled] = self.poll()
        self.assertEqual(throttled.status, Invocation.Status.THROTTLED)
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.attempts, cursor.failures), (0, 0, 1))
        self.fn.reserved_concurrency = None
        self.fn.save()
        [second] = self.poll(cursor.retry_at)
        self.finish(second, Invocation.Status.FAILED, "ServiceException", ran=False)  # its worker died under it
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.attempts, cursor.failures), (0, 0, 2))
        self.assertFalse(DeadLetter.objects.exists())

    def test_a_batch_whose_retries_are_spent_goes_to_the_inbox_and_the_cursor_moves_on(self):
        trigger = self.add_trigger(self.fn, self.table, maximum_retry_attempts=0, batch_size=1)
        self.put(self.table, {"id": {"S": "a"}})
        self.put(self.table, {"id": {"S": "b"}})
        [first] = self.poll()
        failed = self.finish(first, Invocation.Status.FAILED, "ValueError")
        letter = DeadLetter.objects.get()
        self.assertEqual((letter.invocation_id, letter.function_id, letter.condition),
                         (failed.pk, self.fn.pk, DeadLetter.Condition.RETRIES_EXHAUSTED))
        self.assertEqual(letter.payload, first.event)
        self.assertEqual(Invocation.objects.get(pk=first.pk).destination, "dead-letter inbox")
        self.assertEqual(self.cursor(trigger).position, 1)
        [second] = self.poll()
        self.assertEqual(sequence_numbers(second), [2])

    def test_latest_skips_the_records_already_there_and_trim_horizon_reads_them(self):
        self.put(self.table, {"id": {"S": "old"}})
        latest = self.add_trigger(self.fn, self.table, starting_position="LATEST")
        horizon = self.add_trigger(self.fn, self.table, starting_position="TRIM_HORIZON")
        self.put(self.table, {"id": {"S": "new"}})
        sent = {i.trigger_id: sequence_numbers(i) for i in self.poll()}
        self.assertEqual(sent, {latest.pk: [2], horizon.pk: [1, 2]})

    def test_a_disabled_trigger_sends_nothing_and_resumes_where_it_stopped(self):
        trigger = self.add_trigger(self.fn, self.table, enabled="")
        self.put(self.table, {"id": {"S": "a"}})
        self.assertEqual(self.poll(), [])
        Trigger.objects.filter(pk=trigger.pk).update(enabled=True)
        [sent] = self.poll()
        self.assertEqual(sequence_numbers(sent), [1])

    def test_a_batch_whose_invocation_ended_without_its_hook_is_settled_by_the_next_poll(self):
        trigger = self.add_trigger(self.fn, self.table)
        self.put(self.table, {"id": {"S": "a"}})
        [sent] = self.poll()
        # As when its job could not be queued: the row is failed, no hook runs.
        Invocation.objects.get(pk=sent.pk).fail("ServiceException", "The job queue is unavailable.")
        self.assertEqual(self.cursor(trigger).invocation_id, sent.pk)
        [again] = self.poll(self.now + timedelta(minutes=1))
        self.assertEqual(event_ids(again), event_ids(sent))

    def test_a_batch_whose_job_was_lost_is_sent_again_once_the_workers_sweep_fails_it(self):
        trigger = self.add_trigger(self.fn, self.table)
        self.put(self.table, {"id": {"S": "a"}})
        [sent] = self.poll()  # its job is never queued: the test's transaction never commits
        self.assertEqual(self.poll(self.now + timedelta(hours=1)), [])  # in flight: the poller only waits
        [failed] = lost.fail_sync(self.now + timedelta(seconds=settings.LOST_JOB_AFTER + 1))
        self.assertEqual((failed.pk, failed.error_type), (sent.pk, "ServiceException"))
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.invocation_id, cursor.attempts, cursor.failures), (None, 0, 1))  # not counted
        [again] = self.poll(cursor.retry_at)
        self.assertEqual(event_ids(again), event_ids(sent))

    def test_a_running_batch_is_left_to_the_workers_sweep(self):
        trigger = self.add_trigger(self.fn, self.table)
        self.put(self.table, {"id": {"S": "a"}})
        [sent] = self.poll()
        Invocation.objects.filter(pk=sent.pk).update(status=Invocation.Status.RUNNING, worker="elsewhere:1")
        self.assertEqual(self.poll(self.now + timedelta(days=1)), [])
        self.assertEqual(Invocation.objects.get(pk=sent.pk).status, Invocation.Status.RUNNING)
        self.assertEqual(self.cursor(trigger).invocation_id, sent.pk)

    def test_a_retried_batch_whose_records_expired_is_skipped_but_not_the_records_after_it(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=1)
        self.put(self.table, {"id": {"S": "a"}})
        self.put(self.table, {"id": {"S": "b"}})
        [first] = self.poll()
        self.finish(first, Invocation.Status.FAILED, "ValueError")
        StreamRecord.objects.filter(table=self.table, sequence_number=1).delete()  # trimmed meanwhile
        later = self.now + timedelta(minutes=1)
        self.assertEqual(self.poll(later), [])
        self.assertEqual(self.cursor(trigger).position, 1)
        [second] = self.poll(later)
        self.assertEqual(sequence_numbers(second), [2])

    def test_records_older_than_a_day_are_trimmed(self):
        self.put(self.table, {"id": {"S": "a"}})
        self.put(self.table, {"id": {"S": "b"}})
        StreamRecord.objects.filter(sequence_number=1).update(created_at=self.now - timedelta(hours=25))
        streams._last_trim[0] = 0.0
        self.poll()
        self.assertEqual(list(self.table.stream_records.values_list("sequence_number", flat=True)), [2])

    # Batching window ------------------------------------------------------------------------------------------

    def test_a_batching_window_waits_for_a_full_batch_then_sends_what_there_is(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=3, maximum_batching_window=20)
        self.put(self.table, {"id": {"S": "a"}})
        self.put(self.table, {"id": {"S": "b"}})
        oldest = self.table.stream_records.get(sequence_number=1).created_at
        self.assertEqual(self.poll(oldest + timedelta(seconds=19)), [])
        self.assertEqual(self.cursor(trigger).taken_at, None)
        [sent] = self.poll(oldest + timedelta(seconds=20))
        self.assertEqual(sequence_numbers(sent), [1, 2])

    def test_a_full_batch_is_sent_at_once_whatever_the_window(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=2, maximum_batching_window=300)
        for i in range(3):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        [first] = self.poll()
        self.assertEqual(sequence_numbers(first), [1, 2])
        self.finish(first, Invocation.Status.SUCCEEDED)
        self.assertEqual(self.poll(), [])  # the third record alone waits for its window
        self.assertEqual(self.cursor(trigger).position, 2)

    def test_a_retried_batch_does_not_wait_for_the_window(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=5, maximum_batching_window=300)
        self.put(self.table, {"id": {"S": "a"}})
        oldest = self.table.stream_records.get().created_at
        [first] = self.poll(oldest + timedelta(seconds=300))
        self.finish(first, Invocation.Status.FAILED, "ValueError")
        cursor = self.cursor(trigger)
        self.assertLess(cursor.retry_at, oldest + timedelta(seconds=300))  # within the window of its oldest record
        [again] = self.poll(cursor.retry_at)
        self.assertEqual(event_ids(again), event_ids(first))

    # Partial batch responses ----------------------------------------------------------------------------------

    def failures(self, *numbers):
        """A partial batch response naming the table's records `numbers` (1, 2, …) as failed."""
        return json.dumps({"batchItemFailures": [{"itemIdentifier": str(10 ** 20 + n)} for n in numbers]})

    def partial_trigger(self, **options):
        trigger = self.add_trigger(self.fn, self.table, batch_size=5, report_batch_item_failures="on", **options)
        for i in range(5):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        return trigger

    def test_a_partial_batch_response_checkpoints_and_retries_from_the_lowest_reported_record(self):
        trigger = self.partial_trigger(maximum_retry_attempts=3)
        [first] = self.poll()
        self.finish(first, Invocation.Status.SUCCEEDED, result=self.failures(4, 3))
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.batch_last, cursor.attempts, cursor.failures), (2, 5, 1, 1))
        self.assertEqual(self.poll(self.now), [])  # not before its back-off
        [second] = self.poll(cursor.retry_at)
        self.assertEqual(sequence_numbers(second), [3, 4, 5])
        self.finish(second, Invocation.Status.SUCCEEDED, result=json.dumps({"batchItemFailures": []}))
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.batch_last, cursor.attempts), (5, None, 0))

    def test_a_malformed_response_or_an_unknown_identifier_retries_the_whole_batch(self):
        trigger = self.partial_trigger()
        for result in ["not json", json.dumps({"batchItemFailures": "3"}), json.dumps([1]),
                       json.dumps({"batchItemFailures": [{"itemIdentifier": ""}]}),
                       json.dumps({"batchItemFailures": [{"itemidentifier": str(10 ** 20 + 3)}]}),
                       self.failures(3, 99)]:
            with self.subTest(result=result):
                [sent] = self.poll(self.now + timedelta(hours=1))
                self.assertEqual(sequence_numbers(sent), [1, 2, 3, 4, 5])
                self.finish(sent, Invocation.Status.SUCCEEDED, result=result)
                cursor = self.cursor(trigger)
                self.assertEqual((cursor.position, cursor.batch_last), (0, 5))
                self.assertIsNotNone(cursor.retry_at)
        self.assertEqual(self.cursor(trigger).attempts, 6)

    def test_responses_that_report_nothing_are_a_complete_success(self):
        trigger = self.partial_trigger()
        for result in ["", "null", "{}", json.dumps({"batchItemFailures": None}),
                       json.dumps({"batchItemFailures": []})]:
            with self.subTest(result=result):
                StreamCursor.objects.filter(trigger=trigger).update(position=0)
                [sent] = self.poll()
                self.finish(sent, Invocation.Status.SUCCEEDED, result=result)
                self.assertEqual(self.cursor(trigger).position, 5)

    def test_a_report_is_only_read_when_the_trigger_asks_for_one(self):
        trigger = self.add_trigger(self.fn, self.table)
        self.put(self.table, {"id": {"S": "a"}})
        [sent] = self.poll()
        self.finish(sent, Invocation.Status.SUCCEEDED, result=self.failures(1))
        self.assertEqual(self.cursor(trigger).position, 1)

    def test_when_retries_are_spent_only_the_records_from_the_checkpoint_go_to_the_inbox(self):
        trigger = self.partial_trigger(maximum_retry_attempts=0)
        [sent] = self.poll()
        self.finish(sent, Invocation.Status.SUCCEEDED, result=self.failures(4))
        letter = DeadLetter.objects.get()
        records = json.loads(letter.payload)["Records"]
        self.assertEqual([int(r["dynamodb"]["SequenceNumber"]) - 10 ** 20 for r in records], [4, 5])
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.batch_last), (5, None))

    def test_bisect_on_function_error_isolates_a_bad_record_in_order_and_it_alone_goes_to_the_inbox(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=4, maximum_retry_attempts=1,
                                   bisect_batch_on_function_error="on")
        for i in range(5):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        bad, sent = 2, []

        def deliver():
            """Send the next batch once its back-off allows; the function fails on any batch with the bad
            record."""
            cursor = self.cursor(trigger)
            [invocation] = self.poll(cursor.retry_at)
            sent.append(sequence_numbers(invocation))
            if bad in sent[-1]:
                self.finish(invocation, Invocation.Status.FAILED, "ValueError")
            else:
                self.finish(invocation, Invocation.Status.SUCCEEDED)
            return self.cursor(trigger)

        cursor = deliver()
        # Split in two; the second half waits for the first, the split spent no retry attempt.
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves, cursor.attempts), (0, 2, [4], 0))
        self.assertEqual(self.poll(self.now), [])  # not before its back-off
        cursor = deliver()
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves, cursor.attempts), (0, 1, [4, 2], 0))
        cursor = deliver()  # record 1 alone succeeds; record 2 alone comes next
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves, cursor.attempts), (1, 2, [4], 0))
        cursor = deliver()  # record 2 alone cannot be split: its failure counts
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves, cursor.attempts), (1, 2, [4], 1))
        self.assertFalse(DeadLetter.objects.exists())
        cursor = deliver()  # its one retry is spent: the inbox, then the second half
        letter = DeadLetter.objects.get()
        self.assertEqual([int(r["dynamodb"]["SequenceNumber"]) - 10 ** 20
                          for r in json.loads(letter.payload)["Records"]], [bad])
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves, cursor.attempts), (2, 4, [], 0))
        cursor = deliver()
        self.assertEqual((cursor.position, cursor.batch_last, cursor.halves), (4, None, []))
        deliver()  # only then the record written after the batch
        self.assertEqual(sent, [[1, 2, 3, 4], [1, 2], [1], [2], [2], [3, 4], [5]])
        self.assertEqual(self.cursor(trigger).position, 5)

    def test_bisect_leaves_throttles_and_platform_failures_to_retry_the_whole_batch(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=4, bisect_batch_on_function_error="on")
        for i in range(4):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        [first] = self.poll()
        self.finish(first, Invocation.Status.FAILED, "ServiceException", ran=False)  # its worker died under it
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.batch_last, cursor.halves, cursor.attempts), (4, [], 0))
        [second] = self.poll(cursor.retry_at)
        self.assertEqual(sequence_numbers(second), [1, 2, 3, 4])

    def test_without_bisect_a_failed_batch_is_retried_whole(self):
        trigger = self.add_trigger(self.fn, self.table, batch_size=4, maximum_retry_attempts=1)
        for i in range(4):
            self.put(self.table, {"id": {"S": f"k{i}"}})
        self.assertIs(trigger.config["bisect_batch_on_function_error"], False)
        [first] = self.poll()
        self.finish(first, Invocation.Status.FAILED, "ValueError")
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.batch_last, cursor.halves, cursor.attempts), (4, [], 1))
        [second] = self.poll(cursor.retry_at)
        self.assertEqual(sequence_numbers(second), [1, 2, 3, 4])
        self.finish(second, Invocation.Status.FAILED, "ValueError")
        self.assertEqual(len(json.loads(DeadLetter.objects.get().payload)["Records"]), 4)
        self.assertEqual(self.cursor(trigger).position, 4)


class DeliveryTests(TableWorld, WorkerTestCase):
    """Stream triggers end to end: the poller called here, the invocations run by the real workers."""

    def drain(self, trigger, now=None, timeout=90):
        """Poll until the trigger's cursor has caught up with its table and nothing is in flight."""
        def caught_up():
            streams.poll(now or timezone.now())
            cursor = self.cursor(trigger)
            return cursor.invocation_id is None and cursor.position == cursor.table.last_sequence_number

        self.assertTrue(wait_for(caught_up, timeout, interval=0.1), f"stuck at {self.cursor(trigger).__dict__}")
        return list(Invocation.objects.filter(trigger=trigger).order_by("created_at"))

    def test_the_function_receives_the_stream_event_and_the_batch_succeeds(self):
        fn = self.create_function(handler_zip(ECHO), name="echo")
        table = self.make_table(name="TestTable", partition=("Id", "N"))
        trigger = self.add_trigger(fn, table)
        self.put(table, {"Message": {"S": "New item!"}, "Id": {"N": "101"}})
        self.put(table, {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}})
        [invocation] = self.drain(trigger)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        received = json.loads(invocation.result)
        self.assertEqual(received, json.loads(invocation.event))
        self.assertEqual([r["eventName"] for r in received["Records"]], ["INSERT", "MODIFY"])
        for ours, doc in zip(received["Records"], DOC_EVENT["Records"], strict=True):
            self.assertEqual(set(ours), set(doc))
            self.assertEqual(ours["dynamodb"]["SizeBytes"], doc["dynamodb"]["SizeBytes"])
            self.assertEqual(ours["dynamodb"].get("OldImage"), doc["dynamodb"].get("OldImage"))
        self.assertEqual(self.cursor(trigger).position, 2)

    def test_many_writes_arrive_in_sequence_order_once_each_also_per_key(self):
        fn = self.create_function(handler_zip(ECHO), name="ordered")
        table = self.make_table(name="counters", partition=("key", "S"))
        trigger = self.add_trigger(fn, table, batch_size=7)
        writes = 0
        for round_ in range(12):
            for key in ("a", "b", "c", "d", "e"):
                self.put(table, {"key": {"S": key}, "round": {"N": str(round_)}})
                writes += 1
            if round_ % 4 == 3:
                Table.objects.get(pk=table.pk).delete_item({"key": {"S": "c"}})
                writes += 1
        invocations = self.drain(trigger)
        self.assertTrue(all(i.status == Invocation.Status.SUCCEEDED for i in invocations))
        self.assertTrue(all(len(sequence_numbers(i)) <= 7 for i in invocations))
        # Each batch began after the one before it ended: one at a time.
        for before, after in zip(invocations, invocations[1:]):
            self.assertLessEqual(before.finished_at, after.created_at)
        records = [r for i in invocations for r in json.loads(i.event)["Records"]]
        self.assertEqual([int(r["dynamodb"]["SequenceNumber"]) - 10 ** 20 for r in records], list(range(1, writes + 1)))
        for key in ("a", "b", "c", "d", "e"):
            rounds = [int(r["dynamodb"]["NewImage"]["round"]["N"]) for r in records
                      if r["dynamodb"]["Keys"]["key"]["S"] == key and "NewImage" in r["dynamodb"]]
            self.assertEqual(rounds, list(range(12)), key)

    def test_a_failing_batch_comes_again_with_the_same_records_then_goes_to_the_inbox(self):
        fn = self.create_function(handler_zip(PICKY), name="picky")
        table = self.make_table(name="jobs", partition=("id", "S"))
        trigger = self.add_trigger(fn, table, batch_size=3, maximum_retry_attempts=2)
        self.put(table, {"id": {"S": "1"}})
        self.put(table, {"id": {"S": "2"}, "poison": {"BOOL": True}})
        self.put(table, {"id": {"S": "3"}})
        self.put(table, {"id": {"S": "4"}})  # the next batch
        # An hour ahead, no back-off holds the retries back.
        invocations = self.drain(trigger, now=timezone.now() + timedelta(hours=1))
        failed, moved_on = invocations[:3], invocations[3:]
        self.assertEqual([i.status for i in failed], [Invocation.Status.FAILED] * 3)
        self.assertTrue(all(i.error_type == "ValueError" for i in failed))
        self.assertEqual(event_ids(failed[1]), event_ids(failed[0]))  # the same batch, the same records
        self.assertEqual(event_ids(failed[2]), event_ids(failed[0]))
        self.assertEqual(sequence_numbers(failed[0]), [1, 2, 3])
        [after] = moved_on
        self.assertEqual((after.status, sequence_numbers(after)), (Invocation.Status.SUCCEEDED, [4]))
        letter = DeadLetter.objects.get(function=fn)
        self.assertEqual((letter.invocation_id, letter.condition), (failed[2].pk, "RetriesExhausted"))
        self.assertEqual(json.loads(letter.payload), json.loads(failed[0].event))
        self.client.force_login(self.alice)
        inbox = self.client.get(reverse("functions:dead_letters", args=[fn.name]))
        self.assertContains(inbox, str(failed[2].pk))


class RunnerTests(TableWorld, WorkerTestCase):
    """Two real `manage.py run_event_sources` processes deliver one stream: each record exactly once (the
    function always succeeds), in order."""

    def start_runner(self, name):
        log = open(log_dir() / f"{name}.log", "w")
        self.addCleanup(log.close)
        process = subprocess.Popen([sys.executable, "manage.py", "run_event_sources"], cwd=ROOT,
                                   env=child_env(PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop, [process])
        started = wait_for(lambda: process.poll() is not None or "polling event sources" in Path(log.name).read_text(),
                           30)
        self.assertTrue(started and process.poll() is None, f"run_event_sources did not start; see {log.name}")

    def test_two_runners_never_send_the_same_batch(self):
        fn = self.create_function(handler_zip(ECHO), name="counted")
        table = self.make_table(name="busy", partition=("id", "N"))
        trigger = self.add_trigger(fn, table, batch_size=4)
        for i in range(2):
            self.start_runner(f"tables-runner-{i}")
        for burst in range(5):
            for i in range(8):
                self.put(table, {"id": {"N": str(i)}, "burst": {"N": str(burst)}})
            wait_for(lambda: self.cursor(trigger).position >= (burst + 1) * 4, 30, interval=0.1)

        def delivered():
            cursor = self.cursor(trigger)
            return cursor.invocation_id is None and cursor.position == 40

        self.assertTrue(wait_for(delivered, 90, interval=0.2), f"stuck at {self.cursor(trigger).__dict__}")
        invocations = list(Invocation.objects.filter(trigger=trigger).order_by("created_at"))
        self.assertTrue(all(i.status == Invocation.Status.SUCCEEDED for i in invocations))
        numbers = [n for i in invocations for n in sequence_numbers(i)]
        self.assertEqual(numbers, list(range(1, 41)))  # each once, in order


class WorkerKilledTests(TableWorld, World, TransactionTestCase):
    """A worker SIGKILLed while its function holds a batch: the workers' orphan sweep fails the invocation,
    the outcome hook releases the batch (a platform failure: not counted), and it is sent again."""

    SLEEPY = """
        import os, time
        def handler(event, context):
            time.sleep(float(os.environ.get("SLEEP", "0")))
            return {"records": len(event["Records"])}
    """

    def setUp(self):
        self.make_world()
        self.queue = f"{settings.INVOCATION_QUEUE}-tables-{uuid.uuid4().hex[:8]}"
        self.enterContext(use_queue(self.queue))

    def test_the_batch_of_a_killed_worker_comes_back(self):
        doomed = start_worker(self.queue, f"tables-doomed-{uuid.uuid4().hex[:6]}")
        self.addCleanup(stop, [doomed])
        fn = self.create_function(handler_zip(self.SLEEPY), name="sleepy", timeout=120)
        fn.set_environment({"SLEEP": "600"})
        table = self.make_table(name="held", partition=("id", "S"))
        trigger = self.add_trigger(fn, table, maximum_retry_attempts=0)
        self.put(table, {"id": {"S": "a"}})
        self.put(table, {"id": {"S": "b"}})
        [held] = streams.poll(timezone.now())
        running = wait_for(lambda: Invocation.objects.filter(pk=held.pk, status=Invocation.Status.RUNNING).exists(), 60)
        self.assertTrue(running, "the batch never started running")
        doomed.kill()
        doomed.wait()

        fn.set_environment({"SLEEP": "0"})  # the retry finishes at once
        # A worker starting on the same host sweeps the dead one's invocation at its first maintenance pass.
        heir = start_worker(self.queue, f"tables-heir-{uuid.uuid4().hex[:6]}", WORKER_MAINTENANCE_INTERVAL="1")
        self.addCleanup(stop, [heir])
        released = wait_for(lambda: self.cursor(trigger).invocation_id is None, 60)
        self.assertTrue(released, "the batch was never released")
        swept = Invocation.objects.get(pk=held.pk)
        self.assertEqual((swept.status, swept.error_type), (Invocation.Status.FAILED, "ServiceException"))
        cursor = self.cursor(trigger)
        self.assertEqual((cursor.position, cursor.attempts, cursor.failures), (0, 0, 1))

        retried = wait_for(lambda: streams.poll(timezone.now() + timedelta(minutes=1)), 30, interval=0.2)
        self.assertTrue(retried, "the batch was not sent again")
        [again] = retried
        self.assertEqual(event_ids(again), event_ids(held))
        done = wait_for(lambda: Invocation.objects.filter(pk=again.pk, status__in=Invocation.FINISHED).first(), 60)
        self.assertEqual(done.status, Invocation.Status.SUCCEEDED, done.result)
        self.assertTrue(wait_for(lambda: self.cursor(trigger).position == 2, 10))
        self.assertFalse(DeadLetter.objects.exists())
