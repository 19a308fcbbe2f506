"""Reserved concurrency across the real workers: sync callers over the limit are throttled (429), async
events wait and retry, and a lease a dead worker cannot return runs out by itself."""

import json
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.test import TransactionTestCase, override_settings
from django.utils import timezone
from redis.exceptions import RedisError

from invocations import concurrency
from invocations.invoke import invoke, invoke_and_wait
from invocations.jobs import run_invocation
from invocations.models import Invocation
from tests.base import BaseTestCase, WorkerTestCase, World, handler_zip

SLEEPER = """
    import time
    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        return "slept"
"""


class ReservedConcurrencyTests(WorkerTestCase):
    def start_in_background(self, function, event):
        """Invoke synchronously in a thread; return (thread, holder of the finished invocation)."""
        done = {}

        def run():
            done["invocation"] = invoke_and_wait(function, event)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 15
        # Claimed (RUNNING) and, with a reservation, holding its lease: only then is the slot surely taken.
        while not (Invocation.objects.filter(function=function, status=Invocation.Status.RUNNING).exists()
                   and (function.reserved_concurrency is None or concurrency.in_use(function.pk) == 1)):
            self.assertLess(time.monotonic(), deadline, "the first invocation never started")
            time.sleep(0.02)
        return thread, done

    def test_a_sync_invocation_over_the_reserved_concurrency_is_throttled(self):
        fn = self.create_function(handler_zip(SLEEPER), timeout=10)
        fn.reserved_concurrency = 1
        fn.save()
        thread, first = self.start_in_background(fn, '{"sleep": 3}')
        throttled = invoke_and_wait(fn, "{}")
        thread.join()
        self.assertEqual(first["invocation"].status, Invocation.Status.SUCCEEDED)
        self.assertEqual(throttled.status, Invocation.Status.THROTTLED)
        self.assertEqual(throttled.error_type, "TooManyRequestsException")
        self.assertEqual(json.loads(throttled.result)["Reason"], "ReservedFunctionConcurrentInvocationLimitExceeded")
        self.assertIsNone(throttled.cost)
        self.assertEqual(concurrency.in_use(fn.pk), 0, "a lease outlived its invocation")
        # With the slot free again, the next one runs.
        self.assertEqual(invoke_and_wait(fn, "{}").status, Invocation.Status.SUCCEEDED)

    def test_without_a_reservation_two_invocations_run_at_once(self):
        fn = self.create_function(handler_zip(SLEEPER), timeout=10)
        thread, first = self.start_in_background(fn, '{"sleep": 1}')
        second = invoke_and_wait(fn, "{}")
        thread.join()
        self.assertEqual(second.status, Invocation.Status.SUCCEEDED)
        self.assertLess(second.finished_at, first["invocation"].finished_at)

    def test_an_async_invocation_over_the_reserved_concurrency_waits_and_retries(self):
        fn = self.create_function(handler_zip(SLEEPER), timeout=10)
        fn.reserved_concurrency = 1
        fn.save()
        thread, first = self.start_in_background(fn, '{"sleep": 3}')
        event = invoke(fn, "{}", kind=Invocation.Kind.ASYNC)
        thread.join()
        deadline = time.monotonic() + 20
        while not event.is_finished:
            self.assertLess(time.monotonic(), deadline, f"the throttled event is still {event.status}")
            time.sleep(0.1)
            event.refresh_from_db()
        self.assertEqual(event.status, Invocation.Status.SUCCEEDED)
        self.assertGreaterEqual(event.started_at, first["invocation"].finished_at)


class LeaseTests(BaseTestCase):
    def test_a_lease_runs_out_by_itself(self):
        function_id = f"test-{uuid.uuid4()}"
        self.assertTrue(concurrency.acquire(function_id, "a", limit=1, seconds=1))
        self.assertFalse(concurrency.acquire(function_id, "b", limit=1, seconds=60))
        self.assertEqual(concurrency.in_use(function_id), 1)
        time.sleep(1.2)  # a worker holding "a" died: nobody releases it
        self.assertTrue(concurrency.acquire(function_id, "b", limit=1, seconds=60))
        concurrency.release(function_id, "b")
        self.assertEqual(concurrency.in_use(function_id), 0)

    def test_a_limit_of_zero_never_leases(self):
        self.assertFalse(concurrency.acquire(f"test-{uuid.uuid4()}", "a", limit=0, seconds=60))


class ThrottleEdgeTests(World, TransactionTestCase):
    """run_invocation in this process (committed rows: the job closes stale connections as a worker's
    does): the paths where no worker can be asked to misbehave on cue."""

    def setUp(self):
        self.make_world()

    def test_an_async_event_throttled_past_the_maximum_event_age_ends_throttled(self):
        fn = self.create_function(handler_zip(SLEEPER))
        fn.reserved_concurrency = 0
        fn.save()
        event = invoke(fn, "{}", kind=Invocation.Kind.ASYNC)
        # Young enough to be tried; too old by the next try (the 10th waits 300 s).
        Invocation.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(hours=6, seconds=-100))
        self.assertEqual(run_invocation(str(event.pk), throttled=9), Invocation.Status.THROTTLED)
        event.refresh_from_db()
        self.assertEqual(event.status, Invocation.Status.THROTTLED)
        self.assertEqual(event.error_type, "TooManyRequestsException")
        self.assertEqual(event.attempts, 0)
        # Recorded, and in the inbox: never dropped silently.
        self.assertEqual(event.dead_letter.condition, "EventAgeExceeded")

    def test_a_redis_failure_while_leasing_fails_the_invocation_instead_of_leaving_it_running(self):
        fn = self.create_function(handler_zip(SLEEPER))
        fn.reserved_concurrency = 1
        fn.save()
        event = invoke(fn, "{}", kind=Invocation.Kind.SYNC)
        dead = {settings.INVOCATION_QUEUE: {"URL": "redis://127.0.0.1:1/0"}}
        with override_settings(RQ_QUEUES=dead), self.assertRaises(RedisError):
            run_invocation(str(event.pk))
        event.refresh_from_db()
        self.assertEqual(event.status, Invocation.Status.FAILED)
        self.assertEqual(event.error_type, "ServiceException")

    def test_a_redis_failure_while_leasing_makes_an_async_event_wait_for_a_retry(self):
        fn = self.create_function(handler_zip(SLEEPER))
        fn.reserved_concurrency = 1
        fn.save()
        event = invoke(fn, "{}", kind=Invocation.Kind.ASYNC)
        dead = {settings.INVOCATION_QUEUE: {"URL": "redis://127.0.0.1:1/0"}}
        with override_settings(RQ_QUEUES=dead), self.assertRaises(RedisError):
            run_invocation(str(event.pk))
        event.refresh_from_db()
        # The failed attempt is on the row, and the event waits for its retry (the workers' sweep queues
        # it if Redis lost the job).
        self.assertEqual((event.status, event.attempts, event.error_type), ("QUEUED", 1, "ServiceException"))
        self.assertGreater(event.retry_at, event.created_at)
