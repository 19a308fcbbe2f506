"""Hosts with fewer isolation layers: the fallbacks still bound memory and still run Lambda's contract.

This host has bubblewrap and a memory cgroup; these tests hide one at a time from the launcher (the
detection functions are the only thing replaced) and run real environments in this process's own pool.
"""

import json
import uuid
from unittest import mock

from invocations.runtime import sandbox
from invocations.runtime.pool import Pool
from tests.base import BaseTestCase, handler_zip

HOG = """
    import os
    def handler(event, context):
        if event.get("mb"):
            try:
                block = bytearray(event["mb"] * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])
            except MemoryError:
                return "MemoryError"
        # What the runtime process started with (glibc reads MALLOC_ARENA_MAX then), and what the handler sees.
        started_with = [v.split(b"=")[0].decode() for v in open("/proc/self/environ", "rb").read().split(b"\\0") if v]
        return {"env": sorted(os.environ), "started_with": started_with, "uid": os.getuid(),
                "task_root": os.environ["LAMBDA_TASK_ROOT"]}
"""


def without(layer):
    """Patch the launcher's view of this host so that `layer` looks missing."""
    found = dict(sandbox.layers())
    found[layer] = (False, "hidden by the test")
    return mock.patch.object(sandbox, "layers", return_value=found)


class DegradedHostTests(BaseTestCase):
    def run_in_pool(self, function, event):
        pool = Pool()
        self.addCleanup(pool.close)
        return pool.run(function.config_snapshot(), str(uuid.uuid4()), json.dumps(event))

    def test_without_a_memory_cgroup_rlimit_as_bounds_memory(self):
        fn = self.create_function(handler_zip(HOG), memory_size=128)
        with mock.patch.object(sandbox.MemoryCgroup, "parent", return_value=None):
            fine = self.run_in_pool(fn, {})
            hog = self.run_in_pool(fn, {"mb": 512})
        self.assertEqual(fine.status, "SUCCEEDED", fine.payload)
        self.assertIn("MALLOC_ARENA_MAX", json.loads(fine.payload)["started_with"])
        # 512 MB is past 128 MB plus the address-space headroom: the allocation fails inside the handler.
        self.assertEqual(json.loads(hog.payload), "MemoryError")

    def test_without_bubblewrap_the_runtime_still_runs_as_a_sandbox_uid_with_its_own_environment(self):
        fn = self.create_function(handler_zip(HOG))
        with without("bubblewrap"):
            outcome = self.run_in_pool(fn, {})
        self.assertEqual(outcome.status, "SUCCEEDED", outcome.payload)
        answer = json.loads(outcome.payload)
        self.assertTrue(sandbox.layers()["uid per environment"][0])
        self.assertGreaterEqual(answer["uid"], 61000)
        self.assertNotIn("SECRET_KEY", answer["env"])
        self.assertNotIn("DJANGO_SETTINGS_MODULE", answer["env"])
        # No mount namespace: the code is read where the worker unpacked it.
        self.assertNotEqual(answer["task_root"], "/var/task")

    def test_without_cgroup_or_namespaces_a_killed_environment_leaves_no_process_of_its_uid(self):
        # Nothing to kill by but the uid: a daemon that left the launcher's tree must still go before the
        # uid is handed to another environment.
        fn = self.create_function(handler_zip("""
            import os, time
            def handler(event, context):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        time.sleep(1000)
                    os._exit(0)
                time.sleep(0.2)
                return os.getuid()
        """))
        pool = Pool()
        # Without bubblewrap too: no pid namespace whose end would take the daemon along.
        with mock.patch.object(sandbox.MemoryCgroup, "parent", return_value=None), without("bubblewrap"):
            outcome = pool.run(fn.config_snapshot(), str(uuid.uuid4()), "{}")
            uid = json.loads(outcome.payload)
            self.assertTrue(sandbox.uid_pids(uid), "the daemon is not running")
            pool.close()
        self.assertEqual(sandbox.uid_pids(uid), [])
