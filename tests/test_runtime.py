"""Invocations through real RQ workers into sandboxed runtime processes: Lambda's contract end to end."""

import json
import os
import time
from urllib.parse import urlsplit

from django.conf import settings

from invocations.models import Invocation
from invocations.runtime.sandbox import layers
from tests.base import WorkerTestCase, handler_zip, make_zip


class RuntimeTests(WorkerTestCase):
    def test_it_runs_the_handler_and_records_the_result(self):
        fn = self.create_function(handler_zip("""
            import logging, sys
            logger = logging.getLogger()
            logger.setLevel(logging.INFO)
            def handler(event, context):
                print("got", event["n"])
                print("to stderr", file=sys.stderr)
                logger.info("logged %s", event["n"])
                return {"doubled": event["n"] * 2}
        """))
        invocation = self.invoke(fn, '{"n": 21}')
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(json.loads(invocation.result), {"doubled": 42})
        self.assertIn("got 21\nto stderr\n", invocation.log)
        # Lambda's format for the logging module: [LEVEL]\ttimestamp\trequest id\tmessage
        self.assertRegex(invocation.log, rf"\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{invocation.id}\tlogged 21\n")
        self.assertTrue(invocation.log.startswith("INIT_START Runtime Version: python:3."))
        self.assertIn(f"START RequestId: {invocation.id} Version: $LATEST\n", invocation.log)
        self.assertIn(f"END RequestId: {invocation.id}\n", invocation.log)
        self.assertRegex(
            invocation.log,
            rf"REPORT RequestId: {invocation.id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
            rf"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t\n$",
        )
        self.assertTrue(invocation.cold_start)
        self.assertGreater(invocation.max_memory_used_mb, 0)
        self.assertGreater(invocation.cost, settings.PRICE_PER_REQUEST)

    def test_it_gives_the_handler_lambdas_context_object(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                return {
                    "aws_request_id": context.aws_request_id,
                    "function_name": context.function_name,
                    "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "log_group_name": context.log_group_name,
                    "log_stream_name": context.log_stream_name,
                    "remaining": context.get_remaining_time_in_millis(),
                    "identity": context.identity.cognito_identity_id,
                    "client_context": context.client_context,
                }
        """), name="ctx", memory_size=256, timeout=5)
        invocation = self.invoke(fn)
        ctx = json.loads(invocation.result)
        self.assertEqual(ctx["aws_request_id"], str(invocation.id))
        self.assertEqual(ctx["function_name"], "ctx")
        self.assertEqual(ctx["function_version"], "$LATEST")
        self.assertEqual(ctx["invoked_function_arn"], f"arn:aws:lambda:us-east-1:{self.alice.pk:012d}:function:ctx")
        self.assertEqual(ctx["memory_limit_in_mb"], "256")
        self.assertEqual(ctx["log_group_name"], "/aws/lambda/ctx")
        self.assertRegex(ctx["log_stream_name"], r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$")
        self.assertTrue(4000 < ctx["remaining"] <= 5000, ctx["remaining"])
        self.assertIsNone(ctx["identity"])
        self.assertIsNone(ctx["client_context"])

    def test_it_reports_a_handler_error_in_lambdas_shape(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                return 1 / 0
        """))
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "ZeroDivisionError")
        error = json.loads(invocation.result)
        self.assertEqual(error["errorType"], "ZeroDivisionError")
        self.assertEqual(error["errorMessage"], "division by zero")
        self.assertEqual(error["requestId"], str(invocation.id))
        self.assertEqual(len(error["stackTrace"]), 1)
        self.assertIn('File "/var/task/lambda_function.py", line 3, in handler', error["stackTrace"][0])
        self.assertIn("[ERROR] ZeroDivisionError: division by zero\nTraceback (most recent call last):\n", invocation.log)
        self.assertIsNotNone(invocation.cost)

    def test_it_reports_a_missing_module_as_an_init_error(self):
        fn = self.create_function(handler_zip("import not_installed_anywhere\ndef handler(e, c):\n    return 1\n"))
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "Runtime.ImportModuleError")
        error = json.loads(invocation.result)
        self.assertEqual(
            error["errorMessage"], "Unable to import module 'lambda_function': No module named 'not_installed_anywhere'"
        )
        self.assertEqual(error["requestId"], str(invocation.id))
        self.assertIn("Status: error\tError Type: Runtime.ImportModuleError", invocation.log)

    def test_it_refuses_a_result_that_is_not_json(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                return {1, 2}
        """))
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "Runtime.MarshalError")
        self.assertEqual(
            json.loads(invocation.result)["errorMessage"],
            "Unable to marshal response: Object of type set is not JSON serializable",
        )

    def test_a_sync_caller_waits_for_a_run_longer_than_redis_clients_default_timeout(self):
        # redis-py drops a reply it has waited 5 s for; the caller's wait must outlast that.
        fn = self.create_function(handler_zip("""
            import time
            def handler(event, context):
                time.sleep(6)
                return "slept"
        """), timeout=10)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(json.loads(invocation.result), "slept")

    def test_it_times_out_a_sleeping_handler_on_time(self):
        fn = self.create_function(handler_zip("""
            import time
            def handler(event, context):
                time.sleep(60)
        """), timeout=1)
        started = time.monotonic()
        invocation = self.invoke(fn)
        elapsed = time.monotonic() - started
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertEqual(invocation.error_type, "Sandbox.Timedout")
        error = json.loads(invocation.result)
        self.assertEqual(error["errorMessage"], f"RequestId: {invocation.id} Error: Task timed out after 1.00 seconds")
        self.assertRegex(invocation.log, rf"Z {invocation.id} Task timed out after 1\.00 seconds\n")
        self.assertIn("Status: timeout", invocation.log)
        self.assertGreaterEqual(float(invocation.duration_ms), 1000)
        # Cold start, the timeout and a worker round trip; never the 60 s the handler asked for.
        self.assertLess(elapsed, 10)

    def test_it_times_out_a_busy_loop_that_ignores_signals(self):
        fn = self.create_function(handler_zip("""
            import signal
            def handler(event, context):
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_IGN)
                while True:
                    try:
                        pass
                    except BaseException:
                        pass
        """), timeout=2)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertLess(float(invocation.duration_ms), 2000 + 1500)
        # The environment was discarded: the next invocation starts cold.
        again = self.invoke(fn)
        self.assertTrue(again.cold_start)

    def test_it_kills_a_memory_hog_at_the_functions_memory_size(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                hog = []
                while True:
                    hog.append(bytearray(16 * 1024 * 1024))
        """), timeout=20)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        # A cgroup kills the environment at its limit; without one, RLIMIT_AS makes allocation fail.
        expected = "Runtime.OutOfMemory" if layers()["memory cgroup"][0] else "MemoryError"
        self.assertEqual(invocation.error_type, expected)
        self.assertLessEqual(invocation.max_memory_used_mb, 128 + 16)
        # The worker survived and serves the next invocation.
        fine = self.create_function(handler_zip("def handler(e, c):\n    return 'fine'\n"), name="fine")
        self.assertEqual(self.invoke(fine).result, '"fine"')

    def test_it_caps_a_flood_of_output_with_a_marker(self):
        fn = self.create_function(handler_zip("""
            import sys
            def handler(event, context):
                line = "x" * 1023 + "\\n"
                for _ in range(4096):
                    sys.stdout.write(line)
                return "done"
        """), timeout=30)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED)
        self.assertIn("[log truncated: ", invocation.log)
        self.assertIn(f"END RequestId: {invocation.id}", invocation.log)
        self.assertLess(len(invocation.log.encode()), settings.LOG_MAX_BYTES + 2048)

    def test_it_hides_the_workers_secrets_from_the_handler(self):
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                found = []
                needles = [b"SECRET_KEY", b"REDIS_URL", b"DATABASE_URL", b"DJANGO_SETTINGS_MODULE"]
                for name in os.environ:
                    if name.encode() in needles:
                        found.append("os.environ:" + name)
                for pid in os.listdir("/proc"):
                    if not pid.isdigit():
                        continue
                    try:
                        data = open(f"/proc/{pid}/environ", "rb").read()
                    except OSError:
                        continue
                    found += [f"/proc/{pid}/environ:{n.decode()}" for n in needles if n in data]
                for path in ("/proc/1/environ", f"/proc/{os.getppid()}/environ"):
                    try:
                        data = open(path, "rb").read()
                        found += [f"{path}:{n.decode()}" for n in needles if n in data]
                    except OSError:
                        pass
                return {"found": found, "uid": os.getuid()}
        """))
        invocation = self.invoke(fn)
        answer = json.loads(invocation.result)
        self.assertEqual(answer["found"], [])
        self.assertNotEqual(answer["uid"], 0)

    def test_it_keeps_the_code_read_only_and_the_network_closed(self):
        redis_port = urlsplit(settings.REDIS_URL).port or 6379
        fn = self.create_function(handler_zip(f"""
            import socket
            def handler(event, context):
                out = {{}}
                try:
                    open("/var/task/lambda_function.py", "a").write("#")
                    out["write"] = "allowed"
                except OSError as e:
                    out["write"] = e.__class__.__name__
                try:
                    socket.create_connection(("127.0.0.1", {redis_port}), timeout=1).close()
                    out["redis"] = "reached"
                except OSError as e:
                    out["redis"] = e.__class__.__name__
                return out
        """))
        answer = json.loads(self.invoke(fn).result)
        self.assertNotEqual(answer["write"], "allowed")
        self.assertNotEqual(answer["redis"], "reached")

    def test_it_leaves_no_process_behind_when_it_kills_an_environment(self):
        marker = f"daemon-marker-{self.id().rsplit('.', 1)[-1]}-{time.time_ns()}"
        fn = self.create_function(handler_zip(f"""
            import os, time
            def handler(event, context):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.execv("/usr/bin/python3", ["python3", "-c", "import time; time.sleep(1000)", "{marker}"])
                    os._exit(0)
                time.sleep(60)
        """), timeout=1)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        deadline = time.monotonic() + 5
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(_processes_with(marker), [])


def _processes_with(marker):
    """Return the live host pids whose command line mentions `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if marker.encode() not in open(f"/proc/{pid}/cmdline", "rb").read():
                continue
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(pid))
    return found


class RuntimeRobustnessTests(WorkerTestCase):
    """Hostile or odd handlers: the worker stays in charge and Lambda's shapes hold."""

    def test_a_forged_answer_frame_fails_the_invocation_and_discards_the_environment(self):
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                if event.get("forge"):
                    for fd in range(3, 32):
                        try:
                            os.write(fd, b'{"type": "result", "ok": true, "length": -100}\\n')
                        except OSError:
                            pass
                return "honest"
        """))
        forged = self.invoke(fn, '{"forge": true}')
        self.assertEqual(forged.status, Invocation.Status.FAILED)
        self.assertEqual(forged.error_type, "Runtime.ExitError")
        self.assertNotIn("honest", forged.result)
        after = self.invoke(fn, "{}")
        self.assertEqual(after.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(after.result, '"honest"')

    def test_a_result_that_cannot_be_encoded_is_a_marshal_error(self):
        fn = self.create_function(handler_zip("""
            from decimal import Decimal
            def handler(event, context):
                return {"value": Decimal("Infinity")}
        """))
        invocation = self.invoke(fn)
        self.assertEqual(invocation.error_type, "Runtime.MarshalError")
        self.assertTrue(json.loads(invocation.result)["errorMessage"].startswith("Unable to marshal response: "))

    def test_a_zip_shipping_standard_module_names_still_reports_errors(self):
        fn = self.create_function(make_zip({
            "lambda_function.py": "import json\ndef handler(event, context):\n    raise ValueError(json.dumps(event))\n",
            "ast.py": "raise ImportError('the shipped ast.py was imported')\n",
            "json.py": "raise ImportError('the shipped json.py was imported')\n",
            "typing.py": "raise ImportError('the shipped typing.py was imported')\n",
        }))
        invocation = self.invoke(fn, '{"a": 1}')
        self.assertEqual(invocation.error_type, "ValueError")
        self.assertEqual(json.loads(invocation.result)["errorMessage"], '{"a": 1}')

    def test_the_timeout_line_survives_a_flood_of_output(self):
        fn = self.create_function(handler_zip("""
            import sys, time
            def handler(event, context):
                sys.stdout.write("y" * 600_000 + "\\n")
                time.sleep(60)
        """), timeout=1)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertIn("[log truncated: ", invocation.log)
        self.assertIn(f"{invocation.id} Task timed out after 1.00 seconds\n", invocation.log)
        self.assertIn("Status: timeout", invocation.log)
