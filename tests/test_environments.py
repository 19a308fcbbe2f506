"""Execution environments as Lambda's: warm reuse, discarding, idle expiry, the memory budget, freezing,
ephemeral storage and the outbound network switch. Real workers, real sandboxes."""

import errno
import json
import socket
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.test import TransactionTestCase

from invocations.models import Invocation
from invocations.runtime.sandbox import ScratchDisk, layers, uid_pids
from tests.base import World, WorkerTestCase, handler_zip
from tests.processes import use_queue, wait_for

COUNTER = """
    import os
    count = 0
    def handler(event, context):
        global count
        count += 1
        if event.get("sleep"):
            import time
            time.sleep(event["sleep"])
        return {"count": count, "uid": os.getuid()}
"""


def process_states(uid):
    """Return {pid: state letter} of the live host processes running as `uid` (zombies have exited)."""
    states = {}
    for pid in uid_pids(uid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            states[pid] = state
    return states


@pytest.mark.usefixtures("solo_worker")
class OneWorkerTests(World, TransactionTestCase):
    """With one worker, consecutive invocations of a function meet the same environment (if it is kept)."""

    worker_env = {"ENVIRONMENT_IDLE_SECONDS": "3", "WORKER_MAINTENANCE_INTERVAL": "1",
                  "ENVIRONMENT_MEMORY_BUDGET_MB": "256"}

    def setUp(self):
        self.make_world()
        self.enterContext(use_queue(self.queue))

    def invoke(self, function, event=None):
        from invocations.invoke import invoke_and_wait

        invocation = invoke_and_wait(function, json.dumps(event or {}))
        self.assertTrue(invocation.is_finished, f"invocation still {invocation.status}")
        return invocation

    def test_warm_invocations_reuse_module_globals_and_tmp(self):
        fn = self.create_function(handler_zip("""
            import os
            count = 0
            def handler(event, context):
                global count
                count += 1
                found = open("/tmp/note").read() if os.path.exists("/tmp/note") else None
                open("/tmp/note", "w").write(f"left by invocation {count}")
                return {"count": count, "found": found}
        """))
        runs = [self.invoke(fn) for _ in range(3)]
        self.assertEqual([json.loads(r.result)["count"] for r in runs], [1, 2, 3])
        self.assertEqual([r.cold_start for r in runs], [True, False, False])
        self.assertEqual(json.loads(runs[2].result)["found"], "left by invocation 2")
        self.assertIsNotNone(runs[0].init_duration_ms)
        for warm in runs[1:]:
            self.assertIsNone(warm.init_duration_ms)
            self.assertNotIn("Init Duration", warm.log)

    def test_a_timeout_discards_the_environment_so_the_next_invocation_is_cold(self):
        fn = self.create_function(handler_zip(COUNTER), timeout=1)
        uid = json.loads(self.invoke(fn).result)["uid"]
        timed_out = self.invoke(fn, {"sleep": 5})
        self.assertEqual(timed_out.status, Invocation.Status.TIMED_OUT)
        self.assertFalse(timed_out.cold_start)
        self.assertEqual(process_states(uid), {}, "the timed-out environment left processes behind")
        after = self.invoke(fn)
        self.assertTrue(after.cold_start)
        self.assertEqual(json.loads(after.result)["count"], 1)

    def test_an_idle_environment_is_stopped_after_the_idle_timeout(self):
        fn = self.create_function(handler_zip(COUNTER))
        uid = json.loads(self.invoke(fn).result)["uid"]
        self.assertTrue(process_states(uid), "the warm environment has no processes")
        # ENVIRONMENT_IDLE_SECONDS=3, and the idle worker wakes every second to look.
        self.assertTrue(wait_for(lambda: not process_states(uid), 10), "the idle environment was not stopped")
        self.assertTrue(self.invoke(fn).cold_start)

    def test_an_idle_environment_is_frozen_between_invocations(self):
        fn = self.create_function(handler_zip("""
            import threading, time
            ticks = 0
            def tick():
                global ticks
                while True:
                    ticks += 1
                    time.sleep(0.005)
            def handler(event, context):
                if event.get("start"):
                    threading.Thread(target=tick, daemon=True).start()
                    time.sleep(0.1)
                import os
                return {"ticks": ticks, "uid": os.getuid()}
        """))
        first = json.loads(self.invoke(fn, {"start": True}).result)
        self.assertGreater(first["ticks"], 5, "the background thread did not run during the invocation")
        states = process_states(first["uid"])
        self.assertTrue(states)
        self.assertEqual(set(states.values()), {"T"}, f"not every process is stopped: {states}")
        time.sleep(0.5)
        second = json.loads(self.invoke(fn).result)
        # Running, the thread would have ticked about 100 times in those 0.5 s.
        self.assertLess(second["ticks"] - first["ticks"], 20)

    def test_each_cold_start_gets_an_empty_tmp_of_its_own(self):
        # After a cold start the worker makes a spare /tmp disk for the next one: both must look the same.
        code = handler_zip("""
            import os
            def handler(event, context):
                found = sorted(os.listdir("/tmp"))
                open("/tmp/mine", "w").write("x")
                st = os.statvfs("/tmp")
                return {"found": found, "owner_is_me": os.stat("/tmp").st_uid == os.getuid(),
                        "size_mb": st.f_blocks * st.f_frsize // 2**20}
        """)
        for name in ("first", "second", "third"):
            answer = json.loads(self.invoke(self.create_function(code, name=name)).result)
            self.assertEqual(answer["found"], [], name)
            self.assertTrue(answer["owner_is_me"], name)
            self.assertTrue(450 <= answer["size_mb"] <= 512, answer)

    def test_the_memory_budget_stops_the_least_recently_used_environment(self):
        # ENVIRONMENT_MEMORY_BUDGET_MB=256: two idle 128 MB environments fit, a third pushes out the oldest.
        a, b, c = (self.create_function(handler_zip(COUNTER), name=n) for n in ("a", "b", "c"))
        for fn in (a, b, c):
            self.assertTrue(self.invoke(fn).cold_start)
        self.assertFalse(self.invoke(c).cold_start)
        self.assertFalse(self.invoke(b).cold_start)
        self.assertTrue(self.invoke(a).cold_start)


class EphemeralStorageTests(WorkerTestCase):
    def setUp(self):
        super().setUp()
        if not ScratchDisk.available():
            pytest.skip("this host cannot mount a disk per environment (needs root, loop devices, mkfs.ext4)")

    def test_tmp_is_a_disk_of_the_configured_size_apart_from_memory(self):
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                if event.get("mb"):
                    chunk = b"x" * (1024 * 1024)
                    with open("/tmp/big", "wb") as f:
                        for _ in range(event["mb"]):
                            f.write(chunk)
                st = os.statvfs("/tmp")
                return {"size_mb": st.f_blocks * st.f_frsize // 2**20, "files": os.listdir("/tmp")}
        """), timeout=30)
        fn.ephemeral_storage = 1024
        fn.save()
        size = json.loads(self.invoke(fn).result)["size_mb"]
        self.assertTrue(900 <= size <= 1024, size)

        # More than its 128 MB of memory fits in /tmp: it is a disk, not memory.
        wrote = self.invoke(fn, json.dumps({"mb": 300}))
        self.assertEqual(wrote.status, Invocation.Status.SUCCEEDED, wrote.result)
        self.assertLessEqual(wrote.max_memory_used_mb, 128)

        # More than the ephemeral storage does not.
        too_much = self.invoke(fn, json.dumps({"mb": 1100}))
        self.assertEqual(too_much.status, Invocation.Status.FAILED)
        self.assertRegex(json.loads(too_much.result)["errorMessage"], "No space left on device|File too large")
        # A function error like any other: the environment stays, and the next invocation works.
        after = self.invoke(fn, json.dumps({"mb": 1}))
        self.assertEqual(after.status, Invocation.Status.SUCCEEDED, after.result)

        other = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                return os.listdir("/tmp")
        """), name="other")
        self.assertEqual(json.loads(self.invoke(other).result), [])


class NetworkTests(WorkerTestCase):
    def test_outbound_network_gives_the_hosts_network_but_never_the_host_itself(self):
        listener = socket.socket()
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted = []
        threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
        host_addresses = sorted({a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
                                | {"127.0.0.1"})
        fn = self.create_function(handler_zip("""
            import socket
            def handler(event, context):
                reached = {}
                for address in event["addresses"]:
                    try:
                        socket.create_connection((address, event["port"]), timeout=1).close()
                        reached[address] = "connected"
                    except OSError as e:
                        reached[address] = f"{type(e).__name__}: {e}"
                # /proc/net/dev lists the namespace's interfaces (if_nameindex() needs netlink, refused with a
                # shared network); name lookups still work without netlink.
                interfaces = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:])
                resolved = socket.getaddrinfo("localhost", 80, flags=socket.AI_ADDRCONFIG)[0][4][0]
                return {"interfaces": interfaces, "reached": reached, "localhost": resolved}
        """), timeout=30)
        event = json.dumps({"addresses": host_addresses, "port": port})
        try:
            off = json.loads(self.invoke(fn, event).result)
            self.assertEqual(off["interfaces"], ["lo"])

            fn.outbound_network = True
            fn.save()
            on = json.loads(self.invoke(fn, event).result)
            # The host's own interfaces: the function shares its network namespace...
            self.assertEqual(on["interfaces"], sorted(name for _, name in socket.if_nameindex()))
            self.assertIn(on["localhost"], ("127.0.0.1", "::1"))
            if not layers()["egress filter"][0]:
                self.skipTest(f"no egress filter on this host: {layers()['egress filter'][1]}")
            # ...but the egress filter keeps it off every address of the host itself.
            for reached in (off["reached"], on["reached"]):
                self.assertNotIn("connected", reached.values(), reached)
            self.assertEqual(accepted, [])
        finally:
            listener.close()

    def test_outbound_network_does_not_reach_the_hosts_abstract_unix_sockets(self):
        # Abstract Unix sockets belong to the network namespace, which outbound network shares with the host.
        name = f"\0lambda-test-{uuid.uuid4().hex}"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(name)
        listener.listen()
        self.addCleanup(listener.close)
        fn = self.create_function(handler_zip("""
            import socket
            def handler(event, context):
                a, b = socket.socketpair()  # Unix sockets among the function's own threads still work
                a.sendall(b"ok")
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(event["name"])
                    return {"pair": b.recv(2).decode(), "host": "connected"}
                except OSError as e:
                    return {"pair": b.recv(2).decode(), "host": e.errno}
        """))
        fn.outbound_network = True
        fn.save()
        if not layers()["seccomp"][0]:
            self.skipTest(f"no seccomp on this host: {layers()['seccomp'][1]}")
        answer = json.loads(self.invoke(fn, json.dumps({"name": name})).result)
        self.assertEqual(answer, {"pair": "ok", "host": errno.EPERM})
