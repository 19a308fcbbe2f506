"""What a hostile handler can see and do inside its execution environment (§6 items 22–25, 27–32).

Everything runs for real: the session's RQ workers, bubblewrap sandboxes, sandbox uids and the memory
cgroup. test_runtime.py holds the first checks of each layer; these go further: the whole environment
and every /proc/*/environ, the process list, more network targets, another function's code by host
path, mounts, forks, signals, daemons, memory across processes and output and responses at their caps.
"""

import errno
import json
import os
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from functions.models import CodeArtifact
from invocations.invoke import invoke
from invocations.models import Invocation
from invocations.runtime.sandbox import layers
from tests.base import WorkerTestCase, handler_zip
from tests.processes import host_pids, host_stat, marked_processes, wait_for

# Put a marker into the environment the session's workers are started with (conftest copies os.environ
# when the `workers` fixture starts, which is after every test module has been imported): if any of the
# worker's environment reached a sandbox, this would show it.
CANARY_NAME = "LAMBDA_ISOLATION_CANARY"
CANARY_VALUE = os.environ.setdefault(CANARY_NAME, f"canary-{uuid.uuid4().hex}")

# Lambda's defined runtime variables (reserved and unreserved), from its developer guide. A sandbox may
# show these and its function's own variables, and nothing else.
LAMBDA_VARIABLES = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR", "AWS_XRAY_CONTEXT_MISSING", "AWS_XRAY_DAEMON_ADDRESS",
    "LANG", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "TZ",
}
# The unprivileged launcher (sh, bwrap) runs with a minimal environment of its own.
LAUNCHER_VARIABLES = {"PATH", "LANG", "PWD", "SHLVL", "_"}


# Host-side views of processes


def _alive(pid):
    stat = host_stat(pid)
    return stat is not None and stat[0] != "Z"


def _pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _uid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _with_marker(marker):
    return sorted(pid for pid, _ in marked_processes(marker))


def _in_namespace(ns):
    return [pid for pid in host_pids() if _pid_ns(pid) == ns and _alive(pid)]


def _wait_finished(invocation, timeout):
    def finished():
        invocation.refresh_from_db()
        return invocation.is_finished
    assert wait_for(finished, timeout), f"invocation still {invocation.status} after {timeout} s"
    return invocation


def _peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def _errname(code):
    """Name an errno from a handler's answer ("done" when the call succeeded)."""
    return errno.errorcode.get(code, str(code)) if isinstance(code, int) else code


class IsolationTests(WorkerTestCase):
    @pytest.fixture(autouse=True)
    def _worker_processes(self, workers):
        self.worker_processes = workers

    def invoke_on(self, worker, function, event="{}"):
        """Invoke until an invocation runs on `worker`; return that one. Idle workers usually take turns, but
        one still busy after its last job (making its spare /tmp disk on a loaded machine) misses turns."""
        for _ in range(30):
            invocation = self.invoke(function, event)
            if invocation.worker == worker:
                return invocation
        self.fail(f"no invocation ran on {worker}")

    def assert_workers_alive(self):
        for p in self.worker_processes:
            self.assertIsNone(p.poll(), f"worker {p.pid} died")

    # 22. Environment variables

    def test_the_handler_sees_only_lambdas_variables_in_every_environ(self):
        # The canary really is in the workers' environment, so its absence below means something.
        worker_environ = open(f"/proc/{self.worker_processes[0].pid}/environ", "rb").read()
        self.assertIn(f"{CANARY_NAME}={CANARY_VALUE}".encode(), worker_environ)

        fn = self.create_function(handler_zip("""
            import os
            def raw(path):
                try:
                    with open(path, "rb") as f:
                        return f.read().decode("latin-1")
                except OSError as e:
                    return {"errno": e.errno}
            def handler(event, context):
                files = {p: raw(p) for p in ("/proc/self/environ", "/proc/1/environ",
                                             f"/proc/{os.getppid()}/environ", "/proc/thread-self/environ")}
                for pid in os.listdir("/proc"):
                    if pid.isdigit():
                        files[f"/proc/{pid}/environ"] = raw(f"/proc/{pid}/environ")
                cmdlines = {pid: raw(f"/proc/{pid}/cmdline") for pid in os.listdir("/proc") if pid.isdigit()}
                return {"environ": dict(os.environ), "files": files, "cmdlines": cmdlines}
        """), name="environ-probe")
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        answer = json.loads(invocation.result)

        environ = answer["environ"]
        self.assertEqual(environ["AWS_LAMBDA_FUNCTION_NAME"], "environ-probe")
        self.assertEqual(environ["_HANDLER"], "lambda_function.handler")
        self.assertEqual(sorted(set(environ) - LAMBDA_VARIABLES), [], "variables Lambda does not define")

        secrets = {
            "SECRET_KEY": settings.SECRET_KEY,
            "REDIS_URL": settings.REDIS_URL,
            "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
            CANARY_NAME: CANARY_VALUE,
        }
        if urlsplit(settings.REDIS_URL).password:
            secrets["the Redis password"] = urlsplit(settings.REDIS_URL).password
        self.assertGreater(len(settings.SECRET_KEY), 20)
        everything = "\n".join([*environ.values(), *(c for c in answer["files"].values() if isinstance(c, str)),
                                *answer["cmdlines"].values()])
        for name, value in secrets.items():
            self.assertNotIn(value, everything, f"the value of {name} reached the sandbox")
        for path, content in answer["files"].items():
            if isinstance(content, dict):
                continue  # unreadable: fine
            names = {entry.split("=", 1)[0] for entry in content.split("\0") if entry}
            allowed = LAMBDA_VARIABLES | LAUNCHER_VARIABLES
            self.assertEqual(sorted(names - allowed), [], f"{path} shows variables of the host")
            for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LAMBDA_DATA_DIR",
                         CANARY_NAME, "HOME", "PYENV_ROOT"):
                self.assertNotIn(name, names, path)
        # The environment the runtime itself was started with is readable, and clean.
        self.assertIsInstance(answer["files"]["/proc/self/environ"], str)

    # 28 (part) and process visibility

    def test_proc_shows_only_the_sandboxs_own_processes(self):
        fn = self.create_function(handler_zip("""
            import os, subprocess
            def handler(event, context):
                import time
                child = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(30)", "visible-child"])
                # Until the child has exec'd, its command line is its parent's, or empty.
                deadline = time.monotonic() + 5
                while b"visible-child" not in open(f"/proc/{child.pid}/cmdline", "rb").read():
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                procs = {}
                for pid in os.listdir("/proc"):
                    if pid.isdigit():
                        try:
                            procs[pid] = open(f"/proc/{pid}/cmdline", "rb").read().decode("latin-1")
                        except OSError as e:
                            procs[pid] = f"errno {e.errno}"
                child.kill()
                child.wait()
                return {"procs": procs, "self": os.getpid(), "child": child.pid}
        """), name="proc-probe")
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        answer = json.loads(invocation.result)
        procs = answer["procs"]
        self.assertIn(str(answer["self"]), procs)
        self.assertIn(str(answer["child"]), procs)
        self.assertIn("visible-child", procs[str(answer["child"])])
        # The runtime, its child and at most bubblewrap's pid-1 reaper: nothing of the host.
        self.assertLessEqual(len(procs), 3, procs)
        for pid, cmdline in procs.items():
            self.assertTrue(
                "bootstrap.py" in cmdline or "visible-child" in cmdline or "bwrap" in cmdline,
                f"pid {pid} in the sandbox runs {cmdline!r}",
            )
            for host_thing in ("rqworker", "manage.py", "pytest", "redis-server", "gunicorn"):
                self.assertNotIn(host_thing, cmdline)

    # 23. Network

    def test_the_handler_cannot_reach_redis_the_database_the_console_or_the_metadata_service(self):
        redis = urlsplit(settings.REDIS_URL)
        redis_target = [redis.hostname or "127.0.0.1", redis.port or 6379]
        # The Redis really answers from the host, so the sandbox's failure below is its isolation.
        socket.create_connection(tuple(redis_target), timeout=2).close()
        targets = [redis_target, ["127.0.0.1", 6379], ["127.0.0.1", 5432], ["127.0.0.1", 8000],
                   ["169.254.169.254", 80], ["10.0.0.1", 80], ["::1", redis_target[1]]]
        fn = self.create_function(handler_zip("""
            import json, socket
            def handler(event, context):
                out = {}
                for host, port in event["targets"]:
                    try:
                        socket.create_connection((host, port), timeout=1).close()
                        out[f"{host}:{port}"] = "connected"
                    except OSError as e:
                        out[f"{host}:{port}"] = f"{type(e).__name__} {e.errno}"
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.sendto(b"x", ("169.254.169.254", 53))
                    out["udp"] = "sent"
                except OSError as e:
                    out["udp"] = f"{type(e).__name__} {e.errno}"
                try:
                    socket.getaddrinfo("example.com", 80)
                    out["dns"] = "resolved"
                except OSError as e:
                    out["dns"] = type(e).__name__
                out["interfaces"] = [name for _, name in socket.if_nameindex()]
                return out
        """), name="net-probe", timeout=10)
        invocation = self.invoke(fn, json.dumps({"targets": targets}))
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        answer = json.loads(invocation.result)
        for host, port in targets:
            self.assertNotEqual(answer[f"{host}:{port}"], "connected", f"the sandbox reached {host}:{port}")
        self.assertNotEqual(answer["udp"], "sent")
        self.assertNotEqual(answer["dns"], "resolved")
        self.assertEqual(sorted(set(answer["interfaces"]) - {"lo"}), [], "the sandbox has a network interface")

    # With "outbound network" on, a function may reach the internet, but never the platform's own services
    # or the cloud's: Redis carries pickled RQ jobs that the (root) workers run, so commanding it is running
    # code as root on the host; the metadata service hands out the host's credentials
    # (security-and-reliability.md §1.3 #7, §1.4 "Network", §6 #23).

    def probe_with_outbound_network(self, event):
        fn = self.create_function(handler_zip("""
            import socket
            def handler(event, context):
                out = {}
                for host, port in event.get("ping", []):
                    try:
                        with socket.create_connection((host, port), timeout=1) as s:
                            s.settimeout(1)
                            s.sendall(b"PING\\r\\n")
                            out[f"{host}:{port}"] = "answered " + s.recv(64).decode("latin-1")
                    except OSError as e:
                        out[f"{host}:{port}"] = f"{type(e).__name__} {e.errno}"
                for host, port in event.get("connect", []):
                    try:
                        socket.create_connection((host, port), timeout=1).close()
                        out[f"{host}:{port}"] = "connected"
                    except OSError as e:
                        out[f"{host}:{port}"] = f"{type(e).__name__} {e.errno}"
                return out
        """), name="net-on-probe", timeout=10)
        fn.outbound_network = True
        fn.save()
        invocation = self.invoke(fn, json.dumps(event))
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        return json.loads(invocation.result)

    def test_a_function_with_outbound_network_cannot_command_the_platforms_redis(self):
        redis = urlsplit(settings.REDIS_URL)
        target = f"{redis.hostname or '127.0.0.1'}:{redis.port or 6379}"
        answer = self.probe_with_outbound_network({"ping": [[redis.hostname or "127.0.0.1", redis.port or 6379]]})
        # Reaching it may be allowed; being obeyed is not (with requirepass the answer is "-NOAUTH …").
        self.assertNotIn("+PONG", answer[target], "a function with outbound network can command the platform's Redis")

    def test_a_function_with_outbound_network_cannot_reach_the_metadata_service(self):
        answer = self.probe_with_outbound_network({"connect": [["169.254.169.254", 80]]})
        self.assertNotEqual(answer["169.254.169.254:80"], "connected",
                            "a function with outbound network reaches the metadata service at 169.254.169.254:80")

    # 24. Other functions' code and the host's files

    def test_the_handler_cannot_read_another_functions_code_or_the_hosts_files(self):
        secret = f"other-functions-secret-{uuid.uuid4().hex}"
        other = self.create_function(handler_zip(f"""
            SECRET = "{secret}"
            def handler(event, context):
                return "other"
        """), name="other-owner", owner=self.bob)
        # Run it once so this host has its code unpacked in the code cache.
        self.assertEqual(self.invoke(other).result, '"other"')
        cache = settings.CODE_CACHE_DIR
        code_file = cache / other.code_id / "lambda_function.py"
        self.assertIn(secret, code_file.read_text())
        artifact = default_storage.path(CodeArtifact.storage_name_for(other.code_id))
        paths = [
            str(code_file), str(cache / other.code_id), str(cache), artifact, str(settings.DATA_DIR),
            str(settings.DATA_DIR / "secret_key"), settings.DATABASES["default"]["NAME"],
            str(settings.BASE_DIR / "console" / "settings.py"), "/etc/shadow", "/etc/passwd",
            "/root", "/proc/1/root/etc/shadow", f"/var/task/../../{code_file}",
        ]
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                out = {}
                for path in event["paths"]:
                    try:
                        if os.path.isdir(path):
                            out[path] = "listed " + ",".join(os.listdir(path))
                        else:
                            with open(path, "rb") as f:
                                out[path] = "read " + f.read().decode("latin-1")
                    except OSError as e:
                        out[path] = f"errno {e.errno}"
                # Every regular file the sandbox can see, but /usr (the host's, read-only) and the
                # kernel's pseudo-filesystems.
                found = []
                for top in os.listdir("/"):
                    if top in ("proc", "sys", "dev", "usr") or os.path.islink("/" + top):
                        continue
                    for dirpath, _, files in os.walk("/" + top):
                        for name in files:
                            path = os.path.join(dirpath, name)
                            try:
                                if os.path.isfile(path) and not os.path.islink(path):
                                    with open(path, "rb") as f:
                                        if event["secret"].encode() in f.read(1 << 20):
                                            found.append(path)
                            except OSError:
                                pass
                return {"paths": out, "found": found, "task": sorted(os.listdir("/var/task"))}
        """), name="snoop")
        invocation = self.invoke(fn, json.dumps({"paths": paths, "secret": secret}))
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        answer = json.loads(invocation.result)
        self.assertNotIn(secret, invocation.result)
        self.assertEqual(answer["found"], [])
        self.assertEqual(answer["task"], ["lambda_function.py"])
        for path in paths:
            outcome = answer["paths"][path]
            self.assertTrue(outcome.startswith("errno "), f"{path}: {outcome[:200]}")
            self.assertIn(int(outcome.split()[1]), (errno.ENOENT, errno.EACCES), f"{path}: {outcome}")

    # 25. Read-only code, no mounts

    def test_the_code_is_read_only_and_mounts_are_refused(self):
        fn = self.create_function(handler_zip("""
            import ctypes, json, os
            libc = ctypes.CDLL(None, use_errno=True)
            MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
            CLONE_NEWNS, CLONE_NEWUSER = 0x20000, 0x10000000

            def attempt(action):
                try:
                    action()
                    return "done"
                except OSError as e:
                    return e.errno

            def check(result):
                if result != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, os.strerror(e))

            def mount(source, target, fstype, flags):
                check(libc.mount(source, target, fstype, flags, None))

            def writes():
                return {
                    "create": attempt(lambda: open("/var/task/new.py", "w").close()),
                    "mkdir": attempt(lambda: os.mkdir("/var/task/pkg")),
                    "rename": attempt(lambda: os.rename("/var/task/lambda_function.py", "/var/task/x.py")),
                    "unlink": attempt(lambda: os.unlink("/var/task/lambda_function.py")),
                    "chmod": attempt(lambda: os.chmod("/var/task/lambda_function.py", 0o777)),
                    "append": attempt(lambda: open("/var/task/lambda_function.py", "a").close()),
                    "runtime": attempt(lambda: open("/var/runtime/bootstrap.py", "a").close()),
                    "usr": attempt(lambda: open("/usr/lib/planted", "w").close()),
                }

            def mounts():
                return {
                    "remount_rw": attempt(lambda: mount(None, b"/var/task", None, MS_REMOUNT | MS_BIND)),
                    "remount_root": attempt(lambda: mount(None, b"/", None, MS_REMOUNT)),
                    "tmpfs": attempt(lambda: mount(b"none", b"/var/task", b"tmpfs", 0)),
                    "bind": attempt(lambda: mount(b"/tmp", b"/var/task", None, MS_BIND)),
                    "umount": attempt(lambda: check(libc.umount2(b"/var/task", 0))),
                }

            def nested():
                # A user namespace of its own gives back every capability, there: still no way to make
                # the inherited read-only mounts writable.
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    try:
                        out = {"unshare": attempt(lambda: check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)))}
                        if out["unshare"] == "done":
                            out["remount_rw"] = attempt(lambda: mount(None, b"/var/task", None, MS_REMOUNT | MS_BIND))
                            out["remount_usr"] = attempt(lambda: mount(None, b"/usr", None, MS_REMOUNT | MS_BIND))
                            out["writes"] = writes()
                        os.write(w, json.dumps(out).encode())
                    finally:
                        os._exit(0)
                os.close(w)
                data = b""
                while chunk := os.read(r, 65536):
                    data += chunk
                os.waitpid(pid, 0)
                return json.loads(data)

            def handler(event, context):
                return {"writes": writes(), "mounts": mounts(), "nested": nested(), "uid": os.getuid()}
        """), name="mounts")
        code_file = settings.CODE_CACHE_DIR / fn.code_id / "lambda_function.py"
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        answer = json.loads(invocation.result)
        writes = answer["writes"]
        for name in ("create", "mkdir", "rename", "unlink", "chmod"):
            self.assertEqual(writes[name], errno.EROFS, f"{name}: {_errname(writes[name])}")
        # Opening an existing file for writing is refused by its permissions (root's 0644) or the mount.
        for name in ("append", "runtime", "usr"):
            self.assertIn(writes[name], (errno.EROFS, errno.EACCES), name)
        for name, result in answer["mounts"].items():
            self.assertEqual(result, errno.EPERM, f"{name}: {result}")
        nested = answer["nested"]
        if nested["unshare"] == "done":
            self.assertEqual(nested["remount_rw"], errno.EPERM)
            self.assertEqual(nested["remount_usr"], errno.EPERM)
            for name in ("create", "mkdir", "rename", "unlink"):
                self.assertEqual(nested["writes"][name], errno.EROFS, f"nested {name}")
        else:
            self.assertEqual(nested["unshare"], errno.EPERM)
        if os.geteuid() == 0:
            self.assertTrue(settings.SANDBOX_UID_MIN <= answer["uid"] <= settings.SANDBOX_UID_MAX, answer["uid"])
        # The host's copy is untouched.
        self.assertEqual(code_file.read_bytes().count(b"def handler"), 1)
        self.assertEqual(sorted(os.listdir(code_file.parent)), ["lambda_function.py"])

    # 27. Memory

    def test_twice_the_memory_in_one_allocation_is_an_out_of_memory_error_and_a_fresh_environment(self):
        fn = self.create_function(handler_zip("""
            import os
            def handler(event, context):
                if event.get("hog"):
                    block = bytes(range(256)) * (1024 * 1024)  # 256 MB, every page written
                    return len(block)
                return os.getpid()
        """), name="hog", timeout=5)
        # Warm environments of the function on both workers first, so "cold" below means "replaced".
        for _ in range(2):
            self.assertEqual(self.invoke(fn, '{"hog": false}').status, Invocation.Status.SUCCEEDED)
        hog = self.invoke(fn, '{"hog": true}')
        self.assertEqual(hog.status, Invocation.Status.FAILED)
        expected = "Runtime.OutOfMemory" if layers()["memory cgroup"][0] else "MemoryError"
        self.assertEqual(hog.error_type, expected)
        error = json.loads(hog.result)
        self.assertEqual(error["errorType"], expected)
        self.assertEqual(error["requestId"], str(hog.id))
        self.assertLessEqual(hog.max_memory_used_mb, 128 + 16)
        if expected == "Runtime.OutOfMemory":
            self.assertIn("Runtime exited with error: signal: killed", error["errorMessage"])
            self.assertIn("Status: error\tError Type: Runtime.OutOfMemory", hog.log)
            # The killed environment is gone: the next invocation of the function on that worker starts cold.
            after = self.invoke_on(hog.worker, fn, '{"hog": false}')
            self.assertEqual(after.status, Invocation.Status.SUCCEEDED)
            self.assertTrue(after.cold_start)
        self.assert_workers_alive()

    def test_the_memory_limit_covers_the_handlers_child_processes(self):
        if not layers()["memory cgroup"][0]:
            self.skipTest("without a memory cgroup, RLIMIT_AS bounds each process on its own")
        fn = self.create_function(handler_zip("""
            import subprocess, time
            HOG = "import time; b = bytes(range(256)) * (400 * 1024); time.sleep(2)"  # 100 MB
            def handler(event, context):
                children = [subprocess.Popen(["/usr/bin/python3", "-c", HOG]) for _ in range(3)]
                return [c.wait() for c in children]
        """), name="hog-children", timeout=8)
        invocation = self.invoke(fn)
        # Three children of 100 MB each in a 128 MB function: the kernel kills some of them (and maybe the
        # runtime, which then fails the invocation as out of memory). Never do all three get their memory.
        if invocation.status == Invocation.Status.SUCCEEDED:
            codes = json.loads(invocation.result)
            self.assertIn(-9, codes, codes)
        else:
            self.assertEqual(invocation.error_type, "Runtime.OutOfMemory", invocation.result)
        self.assertLessEqual(invocation.max_memory_used_mb, 128 + 16)
        self.assert_workers_alive()

    # 28. Fork bomb

    def test_a_fork_bomb_is_bounded_and_other_functions_keep_running(self):
        marker = f"bomb-marker-{uuid.uuid4().hex}"
        # 1024 MB, so that RLIMIT_NPROC (1024 per sandbox uid) is what stops it, not the memory cgroup.
        bomb = self.create_function(handler_zip("""
            import os, subprocess, time
            def handler(event, context):
                subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(1000)", event["marker"]])
                time.sleep(0.3)
                said = False
                while True:
                    try:
                        os.fork()
                    except OSError as e:
                        if not said:
                            said = True
                            try:  # the first process refused says so, once
                                os.close(os.open("/tmp/refused", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                                print(f"fork refused: errno {e.errno}", flush=True)
                            except OSError:
                                pass
                        # Refused, it retries each second: the bomb stays at the limit without taking every
                        # core of the host (this platform has no CPU limit, and other test runs may share it).
                        time.sleep(1)
        """), name="bomb", memory_size=1024, timeout=3)
        fine = self.create_function(handler_zip("def handler(e, c):\n    return 'fine'\n"), name="fine")
        invocation = invoke(bomb, json.dumps({"marker": marker}))
        started = time.monotonic()
        ns = wait_for(lambda: next(filter(None, map(_pid_ns, _with_marker(marker))), None), 15)
        self.assertIsNotNone(ns, "the bomb's marker process never appeared")
        self.assertNotEqual(ns, _pid_ns(os.getpid()))
        time.sleep(0.5)
        # Meanwhile another function runs on the other worker, as another uid, in a normal time.
        other_started = time.monotonic()
        other = self.invoke(fine)
        other_elapsed = time.monotonic() - other_started
        self.assertEqual(other.status, Invocation.Status.SUCCEEDED)
        self.assertEqual(other.result, '"fine"')
        self.assertLess(other_elapsed, 5)
        peak = 0
        while not invocation.is_finished and time.monotonic() - started < 20:
            peak = max(peak, len(_in_namespace(ns)))
            invocation.refresh_from_db()
        _wait_finished(invocation, 20)
        elapsed = time.monotonic() - started
        # RLIMIT_NPROC stopped it (the runtime saw EAGAIN), then the timeout took the whole environment.
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT, invocation.result)
        self.assertIn(f"fork refused: errno {errno.EAGAIN}\n", invocation.log)
        self.assertLessEqual(peak, 1024)
        self.assertLess(float(invocation.duration_ms), 3000 + 500)
        self.assertLess(elapsed, 3 + 5)
        gone = wait_for(lambda: not _in_namespace(ns), 5)
        self.assertTrue(gone, f"{len(_in_namespace(ns))} processes of the bomb's environment are still alive")
        self.assertEqual(_with_marker(marker), [])
        # Both workers are still there and serve the next invocations.
        self.assert_workers_alive()
        for _ in range(2):
            self.assertEqual(self.invoke(fine).status, Invocation.Status.SUCCEEDED)

    # 29, 30. Timeouts

    def test_a_handler_that_blocks_signals_and_swallows_every_exception_is_killed_on_time(self):
        fn = self.create_function(handler_zip("""
            import signal, sys, time
            def handler(event, context):
                def refuse(signum, frame):
                    raise KeyboardInterrupt("refused")
                for s in signal.valid_signals():
                    try:
                        signal.signal(s, refuse)
                    except (OSError, ValueError, RuntimeError):
                        pass
                signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                sys.exit = lambda *a: None
                while True:
                    try:
                        try:
                            time.sleep(0.05)
                        except BaseException:
                            pass
                    except BaseException:
                        pass
        """), name="stubborn", timeout=2)
        started = time.monotonic()
        invocation = self.invoke(fn)
        elapsed = time.monotonic() - started
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertEqual(invocation.error_type, "Sandbox.Timedout")
        self.assertGreaterEqual(float(invocation.duration_ms), 2000)
        self.assertLess(float(invocation.duration_ms), 2000 + 500)
        # Init, the timeout and the kill: nowhere near what the handler would like.
        init_s = float(invocation.init_duration_ms or 0) / 1000
        self.assertLess(elapsed - init_s, 2 + 2)

    def test_a_handler_that_would_answer_just_after_its_timeout_times_out(self):
        fn = self.create_function(handler_zip("""
            import time
            def handler(event, context):
                time.sleep(1.4)
                return "too late"
        """), name="late", timeout=1)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)
        self.assertNotIn("too late", invocation.result)
        self.assertLess(float(invocation.duration_ms), 1000 + 300)
        self.assertEqual(
            json.loads(invocation.result)["errorMessage"],
            f"RequestId: {invocation.id} Error: Task timed out after 1.00 seconds",
        )

    # 31. Daemons

    def test_a_setsid_daemon_that_ignores_signals_dies_with_its_environment(self):
        marker = f"daemon-marker-{uuid.uuid4().hex}"
        fn = self.create_function(handler_zip("""
            import os, time
            DAEMON = '''
            import os, signal, time
            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
                signal.signal(s, signal.SIG_IGN)
            while True:
                try:
                    time.sleep(1)
                except BaseException:
                    pass
            '''
            def handler(event, context):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.chdir("/")
                        os.execv("/usr/bin/python3", ["python3", "-c", DAEMON, event["marker"]])
                    os._exit(0)
                os.wait()
                time.sleep(60)
        """), name="daemon", timeout=2)
        invocation = invoke(fn, json.dumps({"marker": marker}))

        def identify():
            for pid in _with_marker(marker):
                ns, uid = _pid_ns(pid), _uid(pid)
                if ns and uid is not None:
                    return ns, uid
        found = wait_for(identify, 15)
        self.assertTrue(found, "the daemon never started")
        ns, uid = found
        if os.geteuid() == 0:
            self.assertTrue(settings.SANDBOX_UID_MIN <= uid <= settings.SANDBOX_UID_MAX, uid)
        # The daemon shares the environment's pid namespace with the runtime (and bubblewrap's reaper);
        # the launcher on the host side names this run's copy of the code on its command line.
        self.assertGreaterEqual(len(_in_namespace(ns)), 2)
        launcher = str(settings.CODE_CACHE_DIR / fn.code_id)
        self.assertTrue(_with_marker(launcher))
        _wait_finished(invocation, 15)
        self.assertEqual(invocation.status, Invocation.Status.TIMED_OUT)

        def environment():
            return _in_namespace(ns) + _with_marker(marker) + _with_marker(launcher)
        self.assertTrue(wait_for(lambda: not environment(), 5), f"still running: {environment()}")

    # 32. Output and response caps

    def test_fifty_megabytes_of_output_are_cut_at_the_log_cap_without_growing_the_worker(self):
        fn = self.create_function(handler_zip("""
            import os, subprocess, sys
            def handler(event, context):
                chunk = ("z" * 1023 + "\\n") * 1024
                for _ in range(25):
                    sys.stdout.write(chunk)
                sys.stdout.flush()
                raw = ("e" * (1 << 20)).encode()
                for _ in range(15):
                    os.write(2, raw)
                subprocess.run(["/bin/sh", "-c", "yes child-output | head -c 10485760"], check=True)
                print("last-line-of-output")
                return "done"
        """), name="loud", timeout=20)
        before = {p.pid: _peak_rss_kb(p.pid) for p in self.worker_processes}
        started = time.monotonic()
        invocation = self.invoke(fn)
        elapsed = time.monotonic() - started
        self.assertEqual(invocation.status, Invocation.Status.SUCCEEDED, invocation.result)
        self.assertEqual(invocation.result, '"done"')
        log = invocation.log
        self.assertLess(len(log.encode()), settings.LOG_MAX_BYTES + 2048)
        limit = settings.LOG_MAX_BYTES
        self.assertRegex(log, rf"\[log truncated: \d+ more bytes were dropped \(limit {limit} bytes\)\]\n")
        dropped = int(log.split("[log truncated: ", 1)[1].split()[0])
        self.assertGreaterEqual(dropped, 50 * (1 << 20) - settings.LOG_MAX_BYTES)
        self.assertNotIn("last-line-of-output", log)
        self.assertIn(f"END RequestId: {invocation.id}\n", log)
        self.assertIn(f"REPORT RequestId: {invocation.id}", log)
        # The worker kept only the cap: its peak memory did not grow by the output's size.
        worker_pid = int(invocation.worker.rsplit(":", 1)[1])
        self.assertIn(worker_pid, before)
        self.assertLess(_peak_rss_kb(worker_pid) - before[worker_pid], 20 * 1024)
        self.assertLess(elapsed, 15)

    def test_a_response_over_six_megabytes_is_a_lambda_error_and_six_megabytes_pass(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                return "x" * (event["size"] - 2)  # the JSON string adds two quotes
        """), name="big-response", memory_size=512, timeout=10)
        limit = 6 * 1024 * 1024
        exact = self.invoke(fn, json.dumps({"size": limit}))
        self.assertEqual(exact.status, Invocation.Status.SUCCEEDED, exact.result[:500])
        self.assertEqual(len(exact.result), limit)
        over = self.invoke(fn, json.dumps({"size": limit + 1}))
        self.assertEqual(over.status, Invocation.Status.FAILED)
        self.assertEqual(over.error_type, "Function.ResponseSizeTooLarge")
        error = json.loads(over.result)
        self.assertEqual(set(error), {"errorMessage", "errorType", "requestId", "stackTrace"})
        self.assertEqual(error["errorType"], "Function.ResponseSizeTooLarge")
        self.assertEqual(error["requestId"], str(over.id))
        self.assertEqual(
            error["errorMessage"],
            f"Response payload size ({limit + 1} bytes) exceeded maximum allowed payload size ({limit} bytes).",
        )
        self.assertIn("[ERROR] Function.ResponseSizeTooLarge: Response payload size", over.log)
        self.assertLess(len(over.result), 4096)
        # The environment survives a refused response, as in Lambda.
        small = self.invoke_on(over.worker, fn, json.dumps({"size": 10}))
        self.assertEqual(small.status, Invocation.Status.SUCCEEDED)
        self.assertFalse(small.cold_start)

    def test_an_error_with_a_huge_message_is_cut_to_a_bounded_error_object(self):
        fn = self.create_function(handler_zip("""
            def handler(event, context):
                raise ValueError("m" * 20_000_000)
        """), name="huge-error", memory_size=512, timeout=10)
        invocation = self.invoke(fn)
        self.assertEqual(invocation.status, Invocation.Status.FAILED)
        self.assertEqual(invocation.error_type, "ValueError")
        error = json.loads(invocation.result)
        self.assertEqual(error["errorType"], "ValueError")
        self.assertEqual(error["requestId"], str(invocation.id))
        self.assertTrue(error["errorMessage"].endswith(" [truncated]"))
        self.assertLess(len(invocation.result), 256 * 1024)
        self.assertLess(len(invocation.log.encode()), settings.LOG_MAX_BYTES + 2048)
