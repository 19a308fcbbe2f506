"""Asynchronous invocation as Lambda's: retries with back-off, maximum event age, destinations, the
dead-letter inbox and redrive, payload limits, and no event lost to a dead worker or a lost job.
Real workers (one of the class's own, with short retry delays), real sandboxes."""

import json
import os
import signal
import socket
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.test import TransactionTestCase, override_settings
from django.urls import reverse
from django.utils import timezone

from functions.models import EventInvokeConfig, Trigger
from invocations.asynchronous import redrive
from invocations.invoke import RequestTooLarge, invoke, invoke_and_wait
from invocations.models import DeadLetter, Invocation
from tests.base import BaseTestCase, World, handler_zip
from tests.processes import start_worker, stop, use_queue, wait_for

# Fails when the event says so; otherwise echoes it.
FLAKY = """
    import time
    def handler(event, context):
        if event.get("slow_until", 0) > time.time():
            time.sleep(60)
        if event.get("fail"):
            raise ValueError("asked to fail")
        return {"echo": event}
"""

UNREACHABLE_REDIS = {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60}


@pytest.mark.usefixtures("solo_worker")
class AsyncTests(World, TransactionTestCase):
    # Retries after 1 s and then 2 s (Lambda: ~1 and ~2 minutes); lost jobs are looked for every second.
    worker_env = {"ASYNC_RETRY_DELAYS": "1,2", "WORKER_MAINTENANCE_INTERVAL": "1", "LOST_JOB_AFTER": "1"}

    def setUp(self):
        self.make_world()
        self.enterContext(use_queue(self.queue))
        self.fn = self.create_function(handler_zip(FLAKY), name="flaky", timeout=90)

    def invoke_async(self, event, function=None, **kwargs):
        return invoke(function or self.fn, json.dumps(event), kind=Invocation.Kind.ASYNC, **kwargs)

    def wait_finished(self, invocation, timeout=30):
        # An outcome and its destination are written in one transaction: both show, or neither.
        finished = wait_for(
            lambda: Invocation.objects.filter(pk=invocation.pk, status__in=Invocation.FINISHED).first(), timeout)
        self.assertIsNotNone(finished, f"invocation {invocation.pk} did not finish: "
                                       f"{Invocation.objects.get(pk=invocation.pk).status}")
        return finished

    def test_an_event_is_answered_at_once_and_runs_later(self):
        invocation = self.invoke_async({"n": 1})
        self.assertEqual(invocation.status, Invocation.Status.QUEUED)
        done = self.wait_finished(invocation)
        self.assertEqual(done.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(done.attempts, 1)
        self.assertEqual(json.loads(done.result), {"echo": {"n": 1}})
        self.assertEqual(done.destination, "")  # no success destination: nothing sent
        self.assertFalse(DeadLetter.objects.exists())

    def test_sync_and_async_invocations_share_warm_environments(self):
        first = invoke_and_wait(self.fn, "{}")
        then = self.wait_finished(self.invoke_async({}))
        self.assertEqual((first.cold_start, then.cold_start), (True, False))

    def test_a_failing_event_is_tried_three_times_with_back_off_then_lands_in_the_inbox(self):
        started = time.monotonic()
        invocation = self.invoke_async({"fail": True})
        done = self.wait_finished(invocation)
        elapsed = time.monotonic() - started
        self.assertEqual(done.status, Invocation.Status.FAILED)
        self.assertEqual(done.attempts, 3)
        self.assertEqual(done.error_type, "ValueError")
        # Every attempt's log and bill stay on the row.
        self.assertEqual(done.log.count(f"START RequestId: {done.pk}"), 3)
        self.assertEqual(done.log.count("REPORT RequestId"), 3)
        self.assertGreaterEqual(done.billed_duration_ms, 3)
        # The back-off (1 s, then 2 s) was waited out between the attempts.
        self.assertGreaterEqual(elapsed, 3)
        letter = DeadLetter.objects.get()
        self.assertEqual((letter.invocation_id, letter.condition, letter.payload),
                         (done.pk, "RetriesExhausted", json.dumps({"fail": True})))
        self.assertEqual(done.destination, "dead-letter inbox")

    def test_retry_attempts_zero_means_one_attempt(self):
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=0)
        done = self.wait_finished(self.invoke_async({"fail": True}))
        self.assertEqual((done.status, done.attempts), (Invocation.Status.FAILED, 1))
        self.assertEqual(DeadLetter.objects.get().condition, "RetriesExhausted")

    def test_the_settings_of_the_qualifier_invoked_apply(self):
        version, _ = self.fn.publish()
        self.fn.aliases.create(name="live", version=version)
        EventInvokeConfig.objects.create(function=self.fn, qualifier="live", maximum_retry_attempts=1)
        done = self.wait_finished(self.invoke_async({"fail": True}, qualifier="live"))
        self.assertEqual(done.attempts, 2)
        self.assertEqual(done.version, "1")

    def test_an_event_older_than_its_maximum_age_is_not_run_and_is_recorded(self):
        EventInvokeConfig.objects.create(function=self.fn, maximum_event_age_seconds=60)
        with transaction.atomic():  # the job is queued when this block commits
            invocation = self.invoke_async({"n": 1})
            Invocation.objects.filter(pk=invocation.pk).update(created_at=timezone.now() - timedelta(seconds=61))
        done = self.wait_finished(invocation)
        self.assertEqual((done.status, done.attempts, done.error_type), ("EXPIRED", 0, "EventAgeExceeded"))
        self.assertEqual(done.log, "")
        self.assertEqual(DeadLetter.objects.get().condition, "EventAgeExceeded")

    def test_no_retry_is_made_past_the_maximum_age(self):
        EventInvokeConfig.objects.create(function=self.fn, maximum_event_age_seconds=60)
        with transaction.atomic():
            invocation = self.invoke_async({"fail": True})
            # Young enough to run once; too old by the time the first retry (1 s later) would come.
            Invocation.objects.filter(pk=invocation.pk).update(created_at=timezone.now() - timedelta(seconds=59.5))
        done = self.wait_finished(invocation)
        self.assertEqual((done.status, done.attempts), (Invocation.Status.FAILED, 1))
        self.assertEqual(DeadLetter.objects.get().condition, "EventAgeExceeded")

    def test_destinations_receive_lambdas_invocation_record(self):
        sink = self.create_function(handler_zip("def handler(event, context):\n    return event\n"), name="sink")
        EventInvokeConfig.objects.create(function=self.fn, on_success=sink.arn, on_failure=f"{sink.arn}:$LATEST")
        ok = self.wait_finished(self.invoke_async({"n": 7}))
        self.assertEqual(ok.destination, f"{sink.arn} (invocation {sink.invocations.get().pk})")
        EventInvokeConfig.objects.filter(function=self.fn).update(maximum_retry_attempts=0)
        failed = self.wait_finished(self.invoke_async({"fail": True}))
        self.assertFalse(DeadLetter.objects.exists())  # the failure destination took it

        records = {}
        for delivered in sink.invocations.all():
            self.wait_finished(delivered)
            record = json.loads(delivered.event)
            records[record["requestContext"]["condition"]] = record
            self.assertEqual(delivered.kind, "Event")
            self.assertEqual(delivered.source, "destination")
        success, failure = records["Success"], records["RetriesExhausted"]
        # The shape of Lambda's documented record (lambda/latest/dg/invocation-async-retain-records.html).
        self.assertEqual(set(success), {"version", "timestamp", "requestContext", "requestPayload",
                                        "responseContext", "responsePayload"})
        self.assertEqual(success["version"], "1.0")
        self.assertRegex(success["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(success["requestContext"], {
            "requestId": str(ok.pk), "functionArn": f"{self.fn.arn}:$LATEST", "condition": "Success",
            "approximateInvokeCount": 1,
        })
        self.assertEqual(success["requestPayload"], {"n": 7})
        self.assertEqual(success["responseContext"], {"statusCode": 200, "executedVersion": "$LATEST"})
        self.assertEqual(success["responsePayload"], {"echo": {"n": 7}})
        self.assertEqual(failure["requestContext"]["approximateInvokeCount"], 1)
        self.assertEqual(failure["requestContext"]["requestId"], str(failed.pk))
        self.assertEqual(failure["responseContext"],
                         {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        self.assertEqual(failure["responsePayload"]["errorType"], "ValueError")
        self.assertEqual(failure["responsePayload"]["errorMessage"], "asked to fail")

    def test_a_loop_of_destinations_stops_after_16_invocations(self):
        other = self.create_function(handler_zip("def handler(e, c):\n    return 1\n"), name="ping")
        EventInvokeConfig.objects.create(function=self.fn, on_success=other.arn)
        EventInvokeConfig.objects.create(function=other, on_success=self.fn.arn)
        self.invoke_async({"n": 0})
        last = wait_for(lambda: Invocation.objects.filter(destination__contains="recursive loop").first(), 60)
        self.assertIsNotNone(last, f"{Invocation.objects.count()} invocations, none stopped the loop")
        self.assertEqual(last.config["async"]["depth"], 16)
        self.assertEqual(Invocation.objects.count(), 17)  # the first, then 16 destinations
        self.assertFalse(DeadLetter.objects.exists())  # a success that went nowhere is not a failure

    def test_queue_and_topic_destinations_receive_the_record(self):
        from invocations.queues.models import Queue
        from invocations.topics.models import QueueSubscription, Topic

        failures = Queue.objects.create(owner=self.alice, name="failures")
        successes = Topic.objects.create(owner=self.alice, name="successes")
        fanned = Queue.objects.create(owner=self.alice, name="fanned")
        QueueSubscription.objects.create(topic=successes, queue=fanned, raw_message_delivery=True)
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=0,
                                         on_failure=failures.arn, on_success=successes.arn)
        failed = self.wait_finished(self.invoke_async({"fail": True}))
        ok = self.wait_finished(self.invoke_async({"n": 1}))
        record = json.loads(failures.messages.get().body)
        self.assertEqual((record["requestContext"]["requestId"], record["requestContext"]["condition"]),
                         (str(failed.pk), "RetriesExhausted"))
        self.assertIn(f"{failures.arn} (message ", failed.destination)
        self.assertFalse(DeadLetter.objects.exists())  # the queue took it
        record = json.loads(fanned.messages.get().body)  # raw delivery: the record itself
        self.assertEqual((record["requestContext"]["requestId"], record["requestContext"]["condition"]),
                         (str(ok.pk), "Success"))
        self.assertEqual(record["responsePayload"], {"echo": {"n": 1}})

    def test_a_gone_failure_destination_falls_back_to_the_inbox(self):
        sink = self.create_function(handler_zip("def handler(e, c):\n    return e\n"), name="gone-sink")
        EventInvokeConfig.objects.create(function=self.fn, on_failure=sink.arn, maximum_retry_attempts=0)
        sink.delete()
        done = self.wait_finished(self.invoke_async({"fail": True}))
        self.assertEqual(DeadLetter.objects.get().invocation_id, done.pk)
        self.assertIn("not delivered", done.destination)

    def test_a_redriven_event_runs_again_with_its_edited_payload_once(self):
        EventInvokeConfig.objects.create(function=self.fn, maximum_retry_attempts=0)
        self.wait_finished(self.invoke_async({"fail": True}))
        letter = DeadLetter.objects.get()
        letter.payload = json.dumps({"fixed": True})
        letter.save()
        again = redrive(letter)
        self.assertIsNone(redrive(letter))  # a second click finds it redriven
        done = self.wait_finished(again)
        self.assertEqual((done.status, done.source, done.kind), ("SUCCEEDED", "redrive", "Event"))
        self.assertEqual(json.loads(done.result), {"echo": {"fixed": True}})
        letter.refresh_from_db()
        self.assertEqual(letter.redrive_id, again.pk)
        self.assertIsNotNone(letter.redriven_at)
        self.assertEqual(Invocation.objects.filter(source="redrive").count(), 1)

    def test_an_event_whose_job_redis_lost_is_queued_again(self):
        with override_settings(RQ_QUEUES={self.queue: UNREACHABLE_REDIS}):
            invocation = self.invoke_async({"n": 2})  # queueing fails: the row stays QUEUED
        self.assertEqual(Invocation.objects.get(pk=invocation.pk).status, Invocation.Status.QUEUED)
        done = self.wait_finished(invocation)  # the worker's sweep finds it within a few passes
        self.assertEqual((done.status, done.attempts), (Invocation.Status.SUCCEEDED, 1))
        self.assertIn("-requeued-", done.job_id)


@pytest.mark.usefixtures("solo_worker")
class KilledWorkerTests(World, TransactionTestCase):
    """A worker SIGKILLed mid-attempt: the attempt counts as failed and the event is retried."""

    worker_env = {"ASYNC_RETRY_DELAYS": "3", "WORKER_MAINTENANCE_INTERVAL": "1"}

    def setUp(self):
        self.make_world()
        self.enterContext(use_queue(self.queue))

    def test_a_worker_killed_mid_attempt_means_a_retry_not_a_lost_event(self):
        fn = self.create_function(handler_zip(FLAKY), name="killed-async", timeout=90)
        # Slow (for a minute) only if started within 2 s: the retry, 3 s after the kill, is quick.
        invocation = invoke(fn, json.dumps({"slow_until": time.time() + 2}), kind=Invocation.Kind.ASYNC)
        running = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status="RUNNING").exists(), 20)
        self.assertTrue(running)
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        # A new worker sweeps the orphan at start, and makes the retry.
        type(self).worker = start_worker(self.queue, f"{__name__}-{type(self).__name__}-2", **self.worker_env)
        done = wait_for(lambda: Invocation.objects.filter(pk=invocation.pk, status="SUCCEEDED").first(), 30)
        self.assertIsNotNone(done, Invocation.objects.get(pk=invocation.pk).status)
        self.assertEqual(done.attempts, 2)
        self.assertFalse(DeadLetter.objects.exists())


class PayloadLimitTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip("def handler(e, c):\n    return e\n"))

    def test_events_over_lambdas_limits_are_refused_with_its_error_and_nothing_is_written(self):
        big_async = json.dumps({"x": "a" * (1024 * 1024)})
        with self.assertRaisesMessage(RequestTooLarge, "too large for the Event invocation type (limit 1048576 bytes)"):
            invoke(self.fn, big_async, kind=Invocation.Kind.ASYNC)
        invoke(self.fn, big_async)  # fine synchronously
        with self.assertRaisesMessage(RequestTooLarge, "Request must be smaller than 6291456 bytes"):
            invoke(self.fn, json.dumps({"x": "a" * (6 * 1024 * 1024)}))
        self.assertEqual(Invocation.objects.count(), 1)

    def test_the_console_invokes_asynchronously_with_202_and_checks_the_async_limit(self):
        self.client.force_login(self.alice)
        url = reverse("functions:invoke", args=[self.fn.name])
        response = self.client.post(url, {"event": json.dumps({"x": "a" * (1024 * 1024)}), "invocation_type": "Event"})
        self.assertContains(response, "RequestTooLargeException", status_code=400)
        self.assertFalse(Invocation.objects.exists())
        with self.captureOnCommitCallbacks(execute=False):
            response = self.client.post(url, {"event": '{"a": 1}', "invocation_type": "Event"})
        invocation = Invocation.objects.get()
        self.assertContains(response, str(invocation.pk), status_code=202)
        self.assertEqual((invocation.kind, invocation.status), ("Event", "QUEUED"))


# Lambda's documented invocation record for an event that failed three attempts
# (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html, "Example invocation record").
AWS_FAILURE_RECORD = {
    "version": "1.0",
    "timestamp": "2019-11-14T18:16:05.568Z",
    "requestContext": {
        "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": {"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f", "637de236-e7b2-464e-xmpl-baf57f86bb53",
                                     "a81ddca6-2c35-45c7-xmpl-c3a03a31ed15"]},
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "responsePayload": {
        "errorMessage": "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request",
    },
}


def shape(value):
    """The keys and value types of a JSON document, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class DestinationRecordTests(BaseTestCase):
    def test_a_failure_record_has_the_shape_of_lambdas_documented_example(self):
        from invocations.asynchronous import destination_record

        fn = self.create_function(handler_zip("def handler(e, c):\n    return e\n"), name="my-function")
        error = {"errorMessage": "RequestId: x Process exited before completing request"}
        invocation = Invocation.objects.create(
            function=fn, kind="Event", status="FAILED", attempts=3, memory_size_mb=128,
            config={**fn.config_snapshot(), "async": EventInvokeConfig().snapshot()},
            event=json.dumps(AWS_FAILURE_RECORD["requestPayload"]), result=json.dumps(error),
        )
        record = destination_record(invocation, "RetriesExhausted")
        self.assertEqual(shape(record), shape(AWS_FAILURE_RECORD))
        self.assertEqual(record["requestContext"]["functionArn"], f"{fn.arn}:$LATEST")
        self.assertEqual(record["requestPayload"], AWS_FAILURE_RECORD["requestPayload"])
        self.assertEqual(record["responseContext"], AWS_FAILURE_RECORD["responseContext"])
        self.assertEqual(record["responsePayload"], error)
        self.assertEqual(record["requestContext"]["approximateInvokeCount"], 3)


class SweepTests(World, TransactionTestCase):
    """The claim and the sweeps, called in this process on committed rows: the races no worker can be asked
    to lose on cue."""

    def setUp(self):
        self.make_world()
        self.fn = self.create_function(handler_zip(FLAKY), name="swept")

    def queued_event(self, **fields):
        with override_settings(RQ_QUEUES={settings.INVOCATION_QUEUE: UNREACHABLE_REDIS}):
            invocation = invoke(self.fn, '{"n": 1}', kind=Invocation.Kind.ASYNC)  # no job is queued
        Invocation.objects.filter(pk=invocation.pk).update(**fields)
        invocation.refresh_from_db()
        return invocation

    def test_only_the_job_queued_for_the_next_attempt_may_claim_it(self):
        invocation = self.queued_event(job_id="the-job")
        self.assertIsNone(Invocation.claim(invocation.pk, "host:1", job_id="a-stale-job"))
        claimed = Invocation.claim(invocation.pk, "host:1", job_id="the-job")
        self.assertEqual((claimed.status, claimed.attempts), ("RUNNING", 1))

    def test_an_event_whose_job_failed_before_claiming_it_is_queued_again_once(self):
        from rq.job import Job, JobStatus

        from invocations import queue
        from invocations.lost import requeue_events

        invocation = self.queued_event(retry_at=timezone.now() - timedelta(minutes=5))
        # E.g. the database was down when a worker took the job.
        job = Job.create("invocations.jobs.run_invocation", args=(str(invocation.pk),), id=invocation.job_id,
                         connection=queue.connection())
        job.set_status(JobStatus.FAILED, pipeline=None)
        job.save()
        self.addCleanup(job.delete)
        requeued = requeue_events()
        self.assertEqual([i.pk for i in requeued], [invocation.pk])
        self.assertEqual(requeue_events(), [])  # its new job is queued: not lost again
        invocation.refresh_from_db()
        self.assertEqual(invocation.job_id, requeued[0].job_id)
        self.assertEqual(Job.fetch(invocation.job_id, connection=queue.connection()).get_status(), JobStatus.QUEUED)
        queue.queue().remove(invocation.job_id)

    def test_a_synchronous_invocation_whose_job_was_lost_is_failed(self):
        from invocations.lost import fail_sync

        # As invoke() writes it, but its job never reached Redis (or Redis lost it).
        lost_one = Invocation.objects.create(function=self.fn, config=self.fn.config_snapshot(), event="{}",
                                             memory_size_mb=128, job_id="a-job-redis-lost")
        self.assertEqual(fail_sync(), [])  # not yet LOST_JOB_AFTER old: it may still be on its way
        Invocation.objects.filter(pk=lost_one.pk).update(created_at=timezone.now() - timedelta(minutes=5))
        self.assertEqual([i.pk for i in fail_sync()], [lost_one.pk])
        self.assertEqual(fail_sync(), [])
        lost_one.refresh_from_db()
        self.assertEqual((lost_one.status, lost_one.error_type), ("FAILED", "ServiceException"))
        self.assertIn("job was lost", lost_one.result)

    def test_the_loop_count_goes_through_topics(self):
        from invocations.asynchronous import MAX_DESTINATION_DEPTH, Undeliverable, send_to_destination
        from invocations.topics.models import Topic

        topic = Topic.objects.create(owner=self.alice, name="echoes")
        # The function is subscribed to the topic its successes are published to: a loop.
        Trigger.objects.create(function=self.fn, kind=Trigger.Kind.TOPIC,
                               config={"topic_id": topic.pk, "subscription_id": "s1", "summary": "echoes"})
        event = self.queued_event()
        Invocation.objects.filter(pk=event.pk).update(config={**event.config, "async": {**event.config["async"],
                                                                                        "depth": 3}})
        event.refresh_from_db()
        send_to_destination(event, topic.arn, {"n": 1})
        delivered = Invocation.objects.get(source="topic")
        self.assertEqual(delivered.config["async"]["depth"], 4)
        delivered.config["async"]["depth"] = MAX_DESTINATION_DEPTH
        with self.assertRaisesMessage(Undeliverable, "recursive loop"):
            send_to_destination(delivered, topic.arn, {"n": 2})
        self.assertEqual(Invocation.objects.filter(source="topic").count(), 1)

    def test_a_stream_batch_in_the_inbox_is_redriven_as_it_was_sent_synchronously_up_to_6_mb(self):
        batch = json.dumps({"Records": [{"eventID": "1", "pad": "x" * (2 * 1024 * 1024)}]})  # over async's 1 MB
        sent = Invocation.objects.create(function=self.fn, config=self.fn.config_snapshot(), event=batch,
                                         memory_size_mb=128, kind=Invocation.Kind.SYNC, source="table",
                                         status=Invocation.Status.FAILED)
        letter = DeadLetter.objects.create(function=self.fn, invocation=sent, condition="RetriesExhausted",
                                           payload=batch)
        again = redrive(letter)
        self.assertEqual((again.kind, again.source, again.event), (Invocation.Kind.SYNC, "redrive", batch))

    def orphan(self, **fields):
        invocation = self.queued_event()
        Invocation.objects.filter(pk=invocation.pk).update(
            status="RUNNING", attempts=3, started_at=timezone.now(), **fields)
        return invocation

    def test_two_sweeps_of_one_orphan_deliver_it_once(self):
        from invocations.worker import _after_failure

        invocation = self.orphan(worker=f"{socket.gethostname()}:999999999")  # no such process
        first = Invocation.fail_orphans(then=_after_failure)
        second = Invocation.fail_orphans(then=_after_failure)
        self.assertEqual(([i.pk for i in first], second), ([invocation.pk], []))
        self.assertEqual(DeadLetter.objects.get().invocation_id, invocation.pk)

    def test_an_invocation_running_past_every_limit_is_failed_though_its_worker_lives(self):
        from invocations.worker import _after_failure, stuck

        alive = self.orphan(worker=f"{socket.gethostname()}:{os.getpid()}")
        self.assertEqual(Invocation.fail_orphans(then=_after_failure, stuck=stuck), [])
        Invocation.objects.filter(pk=alive.pk).update(started_at=timezone.now() - timedelta(hours=1))
        swept = Invocation.fail_orphans(then=_after_failure, stuck=stuck)
        self.assertEqual([i.pk for i in swept], [alive.pk])
        self.assertEqual(DeadLetter.objects.get().condition, "RetriesExhausted")

    def test_an_event_queued_before_async_settings_were_recorded_gets_lambdas_defaults(self):
        from invocations.asynchronous import conclude

        invocation = self.orphan(worker="elsewhere:1")
        config = {k: v for k, v in invocation.config.items() if k != "async"}
        Invocation.objects.filter(pk=invocation.pk).update(status="FAILED", attempts=1, config=config)
        invocation.refresh_from_db()
        with transaction.atomic():
            conclude(invocation)  # 1 attempt of Lambda's default 3: a retry
        invocation.refresh_from_db()
        self.assertEqual(invocation.status, "QUEUED")
        self.assertIn("-attempt-2", invocation.job_id)
