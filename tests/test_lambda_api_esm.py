"""Event source mappings through the Lambda API, with the real boto3 against the real gunicorn: a mapping is
the console's queue trigger or table stream trigger, so each side shows what the other made."""

import datetime
import json
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from functions.models import Trigger
from invocations.models import Invocation
from invocations.queues import delivery
from invocations.queues.models import Queue
from invocations.tables.forms import TableForm
from invocations.tables.models import StreamCursor
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase
from tests.processes import wait_for

ECHO = "def handler(event, context):\n    return event\n"


class MappingTestCase(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip(ECHO), name="echo")
        self.queue = Queue.objects.create(owner=self.alice, name="jobs")
        self.client.force_login(self.alice)

    def make_table(self, name="orders", owner=None):
        form = TableForm({"name": name, "partition_key_name": "id", "partition_key_type": "S", "sort_key_name": "",
                          "sort_key_type": "S", "stream_view_type": "NEW_AND_OLD_IMAGES"}, owner=owner or self.alice)
        assert form.is_valid(), form.errors.as_text()
        return form.save()

    def function_page(self, function=None):
        return self.client.get((function or self.fn).get_absolute_url()).content.decode()

    def assertNotFound(self, call):
        return self.assertError(call, "ResourceNotFoundException", 404)


@pytest.mark.usefixtures("workers")
class QueueMappingTests(MappingTestCase):
    def test_a_mapping_made_through_the_api_is_the_queue_trigger_and_delivers_messages(self):
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn, BatchSize=5,
                                                    MaximumBatchingWindowInSeconds=0,
                                                    ScalingConfig={"MaximumConcurrency": 3},
                                                    FunctionResponseTypes=["ReportBatchItemFailures"])
        self.assertEqual(made["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual(str(uuid.UUID(made["UUID"])), made["UUID"])
        self.assertEqual((made["EventSourceArn"], made["FunctionArn"]), (self.queue.arn, self.fn.arn))
        self.assertEqual((made["BatchSize"], made["MaximumBatchingWindowInSeconds"], made["ScalingConfig"]),
                         (5, 0, {"MaximumConcurrency": 3}))
        self.assertEqual(made["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual((made["State"], made["StateTransitionReason"]), ("Enabled", "USER_INITIATED"))
        self.assertIsInstance(made["LastModified"], datetime.datetime)
        self.assertTrue(made["EventSourceMappingArn"].endswith(f":event-source-mapping:{made['UUID']}"))

        # The console's trigger, with the settings the API sent, on the function page.
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.QUEUE)
        self.assertEqual((trigger.config["queue_id"], trigger.config["batch_size"],
                          trigger.config["maximum_concurrency"], trigger.config["report_batch_item_failures"]),
                         (self.queue.pk, 5, 3, True))
        self.assertIn("jobs · batch 5 · window 0 s · concurrency 3 · partial batch responses", self.function_page())
        self.assertEqual(self.lam.get_event_source_mapping(UUID=made["UUID"])["BatchSize"], 5)

        # A message sent to the queue reaches the function, through the queue poller.
        self.queue.send("hello from the queue")
        [invocation] = delivery.poll(timezone.now())
        done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED).first(), 30)
        self.assertIsNotNone(done, "the batch's invocation did not finish")
        self.assertEqual((done.status, done.trigger_id), ("SUCCEEDED", trigger.pk))
        [record] = json.loads(done.result)["Records"]
        self.assertEqual((record["body"], record["eventSourceARN"]), ("hello from the queue", self.queue.arn))
        self.assertTrue(wait_for(lambda: not self.queue.messages.exists(), 10))

    def test_a_disabled_mapping_delivers_nothing_until_enabled(self):
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn,
                                                    Enabled=False)
        self.assertEqual(made["State"], "Disabled")
        self.queue.send("wait")
        self.assertEqual(delivery.poll(timezone.now()), [])
        self.assertEqual(self.lam.update_event_source_mapping(UUID=made["UUID"], Enabled=True)["State"], "Enabled")
        self.assertEqual(len(delivery.poll(timezone.now())), 1)


class ConsoleMadeTests(MappingTestCase):
    def test_a_queue_trigger_made_in_the_console_lists_and_gets_through_the_api(self):
        response = self.client.post(reverse("functions:new_trigger", args=["echo", "queue"]), {
            "qualifier": "", "queue": self.queue.pk, "batch_size": 7, "maximum_batching_window": 2,
            "maximum_concurrency": 4, "enabled": "on"})
        self.assertEqual(response.status_code, 302)
        [listed] = self.lam.list_event_source_mappings(FunctionName="echo")["EventSourceMappings"]
        self.assertEqual((listed["EventSourceArn"], listed["BatchSize"], listed["MaximumBatchingWindowInSeconds"],
                          listed["ScalingConfig"], listed["FunctionResponseTypes"], listed["State"]),
                         (self.queue.arn, 7, 2, {"MaximumConcurrency": 4}, [], "Enabled"))
        self.assertEqual(self.lam.get_event_source_mapping(UUID=listed["UUID"])["UUID"], listed["UUID"])
        # Disabled in the console: disabled through the API.
        trigger = Trigger.objects.get(function=self.fn)
        self.client.post(reverse("functions:toggle_trigger", args=["echo", trigger.pk]))
        self.assertEqual(self.lam.get_event_source_mapping(UUID=listed["UUID"])["State"], "Disabled")

    def test_a_table_stream_trigger_made_in_the_console_lists_with_its_stream_arn(self):
        table = self.make_table()
        response = self.client.post(reverse("functions:new_trigger", args=["echo", "table"]), {
            "qualifier": "", "table": "orders", "batch_size": 50, "starting_position": "TRIM_HORIZON",
            "maximum_retry_attempts": 3, "on_failure": "", "enabled": "on"})
        self.assertEqual(response.status_code, 302)
        [listed] = self.lam.list_event_source_mappings(EventSourceArn=table.stream_arn)["EventSourceMappings"]
        self.assertEqual((listed["EventSourceArn"], listed["FunctionArn"], listed["BatchSize"],
                          listed["StartingPosition"], listed["MaximumRetryAttempts"], listed["State"]),
                         (table.stream_arn, self.fn.arn, 50, "TRIM_HORIZON", 3, "Enabled"))
        self.assertEqual(self.lam.list_event_source_mappings(EventSourceArn=self.queue.arn)["EventSourceMappings"], [])


class TableMappingTests(MappingTestCase):
    def test_a_stream_mapping_made_through_the_api_is_the_table_trigger_with_its_cursor(self):
        table = self.make_table()
        table.put_item({"id": {"S": "before"}})
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=table.stream_arn,
                                                    StartingPosition="LATEST", BatchSize=20, MaximumRetryAttempts=2)
        self.assertEqual((made["StartingPosition"], made["BatchSize"], made["MaximumRetryAttempts"],
                          made["EventSourceArn"], made["State"]), ("LATEST", 20, 2, table.stream_arn, "Enabled"))
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.TABLE)
        self.assertEqual((trigger.config["table"], trigger.config["batch_size"]), ("orders", 20))
        # LATEST: the cursor starts after the record already in the stream, as the console's form makes it.
        self.assertEqual(StreamCursor.objects.get(trigger=trigger).position, 1)
        self.assertIn("table orders · batch 20 · from LATEST · retries 2", self.function_page())

    def test_a_stream_mappings_batching_window_and_partial_batch_responses_are_the_triggers(self):
        table = self.make_table()
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=table.stream_arn,
                                                    StartingPosition="LATEST", MaximumBatchingWindowInSeconds=30,
                                                    FunctionResponseTypes=["ReportBatchItemFailures"])
        self.assertEqual((made["MaximumBatchingWindowInSeconds"], made["FunctionResponseTypes"]),
                         (30, ["ReportBatchItemFailures"]))
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.TABLE)
        self.assertEqual((trigger.config["maximum_batching_window"], trigger.config["report_batch_item_failures"]),
                         (30, True))
        self.assertIn("table orders · batch 100 · window 30 s · from LATEST · partial batch responses",
                      self.function_page())
        updated = self.lam.update_event_source_mapping(UUID=made["UUID"], MaximumBatchingWindowInSeconds=0,
                                                       FunctionResponseTypes=[])
        self.assertEqual((updated["MaximumBatchingWindowInSeconds"], updated["FunctionResponseTypes"]), (0, []))
        trigger.refresh_from_db()
        self.assertEqual((trigger.config["maximum_batching_window"], trigger.config["report_batch_item_failures"]),
                         (0, False))
        update = self.unvalidated().update_event_source_mapping
        self.assertInvalid(lambda: update(UUID=made["UUID"], MaximumBatchingWindowInSeconds=301),
                           "MaximumBatchingWindowInSeconds", "less than or equal to 300")
        self.assertInvalid(lambda: update(UUID=made["UUID"], FunctionResponseTypes=["Everything"]),
                           "functionResponseTypes")
        self.assertEqual(self.lam.get_event_source_mapping(UUID=made["UUID"])["MaximumBatchingWindowInSeconds"], 0)

    def test_a_stream_mappings_bisect_on_function_error_is_the_triggers(self):
        table = self.make_table()
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=table.stream_arn,
                                                    StartingPosition="LATEST", BisectBatchOnFunctionError=True)
        self.assertIs(made["BisectBatchOnFunctionError"], True)
        trigger = Trigger.objects.get(function=self.fn, kind=Trigger.Kind.TABLE)
        self.assertIs(trigger.config["bisect_batch_on_function_error"], True)
        self.assertIn("from LATEST · split on error · retries", self.function_page())
        # An update that does not name it keeps it; one that turns it off does.
        self.assertIs(self.lam.update_event_source_mapping(UUID=made["UUID"], BatchSize=5)
                      ["BisectBatchOnFunctionError"], True)
        updated = self.lam.update_event_source_mapping(UUID=made["UUID"], BisectBatchOnFunctionError=False)
        self.assertIs(updated["BisectBatchOnFunctionError"], False)
        trigger.refresh_from_db()
        self.assertIs(trigger.config["bisect_batch_on_function_error"], False)
        self.assertIs(self.lam.get_event_source_mapping(UUID=made["UUID"])["BisectBatchOnFunctionError"], False)

    def test_stream_mappings_refuse_what_their_triggers_do_not_have(self):
        table = self.make_table()
        create = self.unvalidated().create_event_source_mapping
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=table.stream_arn),
                           "StartingPosition", "This field is required")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=table.stream_arn,
                                          StartingPosition="AT_TIMESTAMP"), "StartingPosition")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=table.stream_arn,
                                          StartingPosition="LATEST", ScalingConfig={"MaximumConcurrency": 5}),
                           "ScalingConfig is not valid for DynamoDB Streams")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=table.stream_arn,
                                          StartingPosition="LATEST", TumblingWindowInSeconds=60),
                           "TumblingWindowInSeconds")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=table.stream_arn,
                                          StartingPosition="LATEST",
                                          DestinationConfig={"OnFailure": {"Destination": self.queue.arn}}),
                           "DestinationConfig.OnFailure.Destination")
        old_stream = f"{table.arn}/stream/2001-01-01T00:00:00.000"  # the same name, another (older) stream
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=old_stream, StartingPosition="LATEST"),
                           "you have no table stream")
        self.assertFalse(Trigger.objects.exists())


class UpdateAndDeleteTests(MappingTestCase):
    def test_update_changes_only_what_is_sent_and_delete_answers_deleting(self):
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn, BatchSize=4,
                                                    ScalingConfig={"MaximumConcurrency": 6})
        updated = self.lam.update_event_source_mapping(UUID=made["UUID"], BatchSize=9, Enabled=False)
        self.assertEqual(updated["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual((updated["BatchSize"], updated["State"], updated["ScalingConfig"]),
                         (9, "Disabled", {"MaximumConcurrency": 6}))
        self.assertGreaterEqual(updated["LastModified"], made["LastModified"])
        trigger = Trigger.objects.get(function=self.fn)
        self.assertEqual((trigger.enabled, trigger.config["batch_size"]), (False, 9))
        self.assertIn("(disabled)", self.function_page())

        deleted = self.lam.delete_event_source_mapping(UUID=made["UUID"])
        self.assertEqual((deleted["ResponseMetadata"]["HTTPStatusCode"], deleted["State"], deleted["UUID"]),
                         (202, "Deleting", made["UUID"]))
        self.assertFalse(Trigger.objects.exists())
        self.assertNotFound(lambda: self.lam.get_event_source_mapping(UUID=made["UUID"]))
        self.assertNotFound(lambda: self.lam.delete_event_source_mapping(UUID=made["UUID"]))

    def test_update_may_point_the_mapping_at_another_function_or_an_alias(self):
        other = self.create_function(handler_zip(ECHO), name="other")
        self.lam.publish_version(FunctionName="other")
        self.lam.create_alias(FunctionName="other", Name="live", FunctionVersion="1")
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn)
        moved = self.lam.update_event_source_mapping(UUID=made["UUID"], FunctionName="other:live")
        self.assertEqual(moved["FunctionArn"], f"{other.arn}:live")
        trigger = Trigger.objects.get(kind=Trigger.Kind.QUEUE)
        self.assertEqual((trigger.function_id, trigger.qualifier), (other.pk, "live"))
        self.assertIn("jobs · batch 10", self.function_page(other))
        self.assertNotFound(lambda: self.lam.update_event_source_mapping(UUID=made["UUID"], FunctionName="echo:nope"))

    def test_a_table_mapping_keeps_its_starting_position_through_updates(self):
        table = self.make_table()
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=table.stream_arn,
                                                    StartingPosition="TRIM_HORIZON")
        updated = self.lam.update_event_source_mapping(UUID=made["UUID"], MaximumRetryAttempts=5, BatchSize=1)
        self.assertEqual((updated["StartingPosition"], updated["MaximumRetryAttempts"], updated["BatchSize"]),
                         ("TRIM_HORIZON", 5, 1))
        self.assertEqual(self.lam.delete_event_source_mapping(UUID=made["UUID"])["State"], "Deleting")
        self.assertFalse(StreamCursor.objects.exists())


class ErrorTests(MappingTestCase):
    def test_the_queue_forms_rules_and_lambdas_refusals(self):
        create = self.unvalidated().create_event_source_mapping
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn, BatchSize=11),
                           "BatchSize", "less than or equal to 10")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn,
                                          ScalingConfig={"MaximumConcurrency": 1}),
                           "ScalingConfig.MaximumConcurrency", "greater than or equal to 2")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn,
                                          StartingPosition="LATEST"),
                           "StartingPosition is not valid for SQS event sources")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn,
                                          FilterCriteria={"Filters": [{"Pattern": "{}"}]}), "FilterCriteria")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn,
                                          FunctionResponseTypes=["Everything"]), "functionResponseTypes")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn,
                                          SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"}),
                           "SelfManagedKafkaEventSourceConfig")
        self.assertInvalid(lambda: create(FunctionName="echo",
                                          EventSourceArn="arn:aws:kinesis:us-east-1:123456789012:stream/s"),
                           "Unrecognized event source")
        self.assertInvalid(lambda: create(FunctionName="echo", EventSourceArn=self.queue.arn + "-missing"),
                           "you have no queue")
        # Lambda's rule, the form's: the queue must hide a batch for as long as the function may run on it.
        slow = self.create_function(handler_zip(ECHO), name="slow", timeout=60)
        self.assertInvalid(lambda: create(FunctionName=slow.name, EventSourceArn=self.queue.arn),
                           "EventSourceArn", "visibility timeout")
        self.assertNotFound(lambda: create(FunctionName="nope", EventSourceArn=self.queue.arn))
        self.assertNotFound(lambda: create(FunctionName="echo:7", EventSourceArn=self.queue.arn))
        self.assertFalse(Trigger.objects.exists())

    def test_one_mapping_per_queue_and_function_is_a_conflict(self):
        self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn)
        self.assertError(lambda: self.lam.create_event_source_mapping(FunctionName=self.fn.arn,
                                                                      EventSourceArn=self.queue.arn),
                         "ResourceConflictException", 409, self.queue.arn)
        self.assertEqual(Trigger.objects.count(), 1)

    def test_unknown_and_malformed_uuids_are_not_found(self):
        self.assertNotFound(lambda: self.lam.get_event_source_mapping(UUID=str(uuid.uuid4())))
        self.assertNotFound(lambda: self.unvalidated().get_event_source_mapping(UUID="not-a-uuid"))

    def test_paging_and_filters(self):
        arns = [self.queue.arn] + [Queue.objects.create(owner=self.alice, name=f"q{i}").arn for i in range(2)]
        uuids = [self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=arn)["UUID"]
                 for arn in arns]
        first = self.lam.list_event_source_mappings(MaxItems=2)
        self.assertEqual([m["UUID"] for m in first["EventSourceMappings"]], uuids[:2])
        second = self.lam.list_event_source_mappings(MaxItems=2, Marker=first["NextMarker"])
        self.assertEqual([m["UUID"] for m in second["EventSourceMappings"]], uuids[2:])
        self.assertNotIn("NextMarker", second)
        # boto3's paginator follows NextMarker.
        pages = self.lam.get_paginator("list_event_source_mappings").paginate(PaginationConfig={"PageSize": 1})
        self.assertEqual([m["UUID"] for page in pages for m in page["EventSourceMappings"]], uuids)
        [only] = self.lam.list_event_source_mappings(EventSourceArn=arns[1])["EventSourceMappings"]
        self.assertEqual(only["UUID"], uuids[1])
        self.assertNotFound(lambda: self.lam.list_event_source_mappings(FunctionName="nope"))
        self.assertInvalid(lambda: self.lam.list_event_source_mappings(Marker="garbage!"), "Marker")


class OtherUsersTests(MappingTestCase):
    def test_bob_cannot_see_use_or_change_alices_mappings(self):
        made = self.lam.create_event_source_mapping(FunctionName="echo", EventSourceArn=self.queue.arn)
        self.assertEqual(self.bob_lam.list_event_source_mappings()["EventSourceMappings"], [])
        self.assertEqual(self.bob_lam.list_event_source_mappings(EventSourceArn=self.queue.arn)["EventSourceMappings"],
                         [])
        self.assertNotFound(lambda: self.bob_lam.get_event_source_mapping(UUID=made["UUID"]))
        self.assertNotFound(lambda: self.bob_lam.update_event_source_mapping(UUID=made["UUID"], Enabled=False))
        self.assertNotFound(lambda: self.bob_lam.delete_event_source_mapping(UUID=made["UUID"]))
        self.assertNotFound(lambda: self.bob_lam.list_event_source_mappings(FunctionName=self.fn.arn))
        # Bob's function reading alice's queue or table stream: as if there were none.
        self.create_function(handler_zip(ECHO), name="bobs", owner=self.bob)
        self.assertInvalid(lambda: self.bob_lam.create_event_source_mapping(FunctionName="bobs",
                                                                            EventSourceArn=self.queue.arn),
                           "you have no queue")
        table = self.make_table()
        self.assertInvalid(lambda: self.bob_lam.create_event_source_mapping(
            FunctionName="bobs", EventSourceArn=table.stream_arn, StartingPosition="LATEST"),
            "you have no table stream")
        # Bob's queue feeding alice's function: her function does not exist for him.
        bobs_queue = Queue.objects.create(owner=self.bob, name="bobs-jobs")
        self.assertNotFound(lambda: self.bob_lam.create_event_source_mapping(FunctionName=self.fn.arn,
                                                                             EventSourceArn=bobs_queue.arn))
        trigger = Trigger.objects.get()
        self.assertEqual((trigger.function_id, trigger.enabled), (self.fn.pk, True))
