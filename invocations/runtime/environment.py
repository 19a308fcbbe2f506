"""One execution environment: a long-lived sandboxed runtime process serving one invocation at a time.

The worker talks to it over three pipes (requests, answers, log; see bootstrap.py for the protocol) and
never blocks on any of them without a deadline: every wait goes through one select loop that also
drains the log pipe, so a handler printing without end can neither stall the worker nor fill its memory.
"""

import json
import math
import os
import selectors
import signal
import subprocess
import time
from datetime import datetime, timezone

from django.conf import settings

from functions import envvars
from invocations.runtime import sandbox
from invocations.runtime.outcome import Outcome, error_payload

# Lambda gives init 10 s on its own; past that it retries init within the invocation's timeout.
INIT_MIN_SECONDS = 10
MAX_HEADER_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 6 * 1024 * 1024 + 256 * 1024
READ_SIZE = 64 * 1024


class RuntimeExited(Exception):
    pass


class ProtocolError(Exception):
    pass


class LogBuffer:
    """Keep the first LOG_MAX_BYTES of an invocation's output and count the rest.

    The platform's own lines (START, "Task timed out", a runtime exit) are never dropped: they go after
    the truncation marker when the function's output has filled the buffer.
    """

    def __init__(self, limit):
        self.limit = limit
        self.chunks = []
        self.tail = []
        self.size = 0
        self.dropped = 0

    def feed(self, data):
        room = self.limit - self.size
        if room > 0:
            self.chunks.append(data[:room])
            self.size += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def platform(self, line):
        (self.tail if self.dropped else self.chunks).append(line.encode())

    def take(self):
        """Return the text so far, with a marker where it was cut, and start afresh."""
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.dropped:
            if text and not text.endswith("\n"):
                text += "\n"
            text += f"[log truncated: {self.dropped} more bytes were dropped (limit {self.limit} bytes)]\n"
        text += b"".join(self.tail).decode("utf-8", errors="replace")
        self.chunks, self.tail, self.size, self.dropped = [], [], 0, 0
        return text


def _timestamp():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Environment:
    def __init__(self, key, snapshot, code_dir, runtime_dir, opt_dir=None):
        self.key = key
        self.snapshot = snapshot
        self.code_dir = code_dir
        self.runtime_dir = runtime_dir
        self.opt_dir = opt_dir  # the function's layers, merged; shown at /opt
        self.process = None
        self.slot = None
        self.cgroup = None
        self.scratch = None
        self.alive = False
        self.frozen = False
        self.last_used = time.monotonic()
        self._selector = None
        self._answers = b""
        self._log = LogBuffer(settings.LOG_MAX_BYTES)
        self._last_peak_mb = None
        self._log_open = False

    def __repr__(self):
        return f"<Environment {self.snapshot['function_name']} {self.key[:8]} pid={getattr(self.process, 'pid', None)}>"

    # Lifecycle

    def environ(self, launch, variables):
        """Return the only variables the function sees: Lambda's defaults, its own `variables`, and
        Lambda's reserved ones."""
        s = self.snapshot
        stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[{s['version']}]{os.urandom(16).hex()}"
        reserved = {
            "_HANDLER": s["handler"],
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{s['runtime']}",
            "AWS_LAMBDA_FUNCTION_NAME": s["function_name"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(s["memory_size"]),
            "AWS_LAMBDA_FUNCTION_VERSION": s["version"],
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": s["log_group_name"],
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_REGION": settings.LAMBDA_REGION,
            "AWS_DEFAULT_REGION": settings.LAMBDA_REGION,
            "LAMBDA_TASK_ROOT": launch.task_root,
            "LAMBDA_RUNTIME_DIR": launch.runtime_dir,
        }
        # A function may set these; the reserved ones it cannot (the forms refuse them; they win anyway).
        defaults = {
            "LANG": "en_US.UTF-8", "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin", "TZ": ":UTC",
            # Lambda's, so that native libraries a layer ships in lib/ load.
            "LD_LIBRARY_PATH": "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
        }
        return {**defaults, **variables, **reserved}

    def start(self, scratch=None):
        """Launch the runtime and run init; return (ok, init_ms, error_payload, error_type, timed_out).

        `scratch` is a ready /tmp disk of the function's ephemeral storage size (the pool keeps a spare);
        without one, one is made here. Either way the environment owns it from now on.
        """
        self.scratch = scratch
        try:
            # Decrypted only here, just before they go to the runtime, and never kept.
            variables = envvars.decrypt(self.snapshot["environment_token"])
        except envvars.InvalidToken:
            if scratch is not None:
                scratch.remove()
            message = ("Lambda was unable to decrypt the environment variables: none of the keys in "
                       "ENVIRONMENT_KEYS opens them.")
            return False, 0.0, error_payload("KMSAccessDeniedException", message, ""), "KMSAccessDeniedException", False
        try:
            self.slot = sandbox.UidSlot.acquire()
            name = sandbox.environment_name(self.key)
            try:
                self.cgroup = sandbox.MemoryCgroup.create(name, self.snapshot["memory_size"] * sandbox.MB)
            except OSError:
                self.cgroup = None
            if self.scratch is None and sandbox.scratch_disks():
                self.scratch = sandbox.ScratchDisk.create(name, self.snapshot["ephemeral_storage"])
            if self.scratch is not None and self.slot.uid is not None:
                self.scratch.give_to(self.slot.uid)
            launch = sandbox.build_launch(
                self.snapshot, self.code_dir, self.runtime_dir, self.slot, self.cgroup, self.scratch, self.opt_dir
            )
        except BaseException:
            self.kill()
            raise
        self._log.platform(f"INIT_START Runtime Version: {self.snapshot['runtime'].replace('python', 'python:')}\n")
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                launch.argv, env=launch.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                close_fds=True, **launch.popen_kwargs,
            )
            if launch.waits_for_cgroup:
                self.cgroup.add(self.process.pid)
                self.process.stdin.write(b"\n")
                self.process.stdin.flush()
        except OSError:
            self.kill()  # give back the uid and the cgroup
            raise
        finally:
            for fd in launch.fds:
                os.close(fd)
        self.alive = True
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            os.set_blocking(pipe.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._selector.register(self.process.stderr, selectors.EVENT_READ)
        self._log_open = True

        init_seconds = max(INIT_MIN_SECONDS, self.snapshot["timeout"])
        configure = ({"type": "configure", "opt_root": launch.opt_root},
                     json.dumps(self.environ(launch, variables)).encode())
        try:
            header, body = self._exchange(configure, time.monotonic() + init_seconds)
        except TimeoutError:
            self.kill()
            return False, _ms(started), None, "Sandbox.Timedout", True
        except (RuntimeExited, ProtocolError):
            self.kill()
            return False, _ms(started), None, "Runtime.ExitError", False
        init_ms = _ms(started)
        if header.get("type") != "init" or not header.get("ok"):
            self.kill()
            return False, init_ms, body.decode("utf-8", "replace"), header.get("error_type", "Runtime.Unknown"), False
        return True, init_ms, None, "", False

    def signal_kill(self):
        """Send SIGKILL to every process of the environment (it ends stopped processes too); free nothing yet."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            if self.cgroup is not None:
                self.cgroup.kill_all()

    def kill(self):
        """Kill the whole sandbox and free what it held."""
        self.frozen = False
        killed_by_cgroup = self.cgroup is not None
        self.signal_kill()
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self.cgroup is not None:
            self._last_peak_mb = self.peak_memory_mb()
            self.cgroup.remove()
            self.cgroup = None
        if self.scratch is not None:
            self.scratch.remove()
            self.scratch = None
        if self.slot is not None:
            if not killed_by_cgroup and self.slot.uid is not None and self.process is not None:
                # No cgroup to kill by: whatever still runs as this uid is this environment's (a child
                # that left the launcher's tree). It must be gone before the uid goes to another one.
                for _ in range(100):
                    pids = sandbox.uid_pids(self.slot.uid)
                    if not pids:
                        break
                    sandbox.signal_all(pids, signal.SIGKILL)
                    time.sleep(0.01)
            self.slot.release()
        self.alive = False

    def forget(self):
        """In a child forked from the worker (RQ's scheduler): close what it inherited of this environment.

        An inherited uid lock would stay held as long as that child lives, and inherited pipes would keep
        the runtime from ever seeing the worker go away.
        """
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
        if self.slot is not None:
            self.slot.release()

    def _pids(self):
        """Return the pids of every process of this environment, the launcher included."""
        if self.cgroup is not None:
            return self.cgroup.pids()
        if self.slot is not None and self.slot.uid is not None:
            return sandbox.uid_pids(self.slot.uid)
        return []

    def freeze(self):
        """Stop everything the environment runs until its next invocation, as Lambda freezes it.

        A stopped process cannot fork, so a few passes catch any child started during the previous one.
        An environment still growing after those passes (a fork bomb, say) is killed instead: the next
        invocation starts cold.
        """
        stopped = set()
        for _ in range(10):
            new = [pid for pid in self._pids() if pid not in stopped]
            if not new:
                self.frozen = True
                return
            sandbox.signal_all(new, signal.SIGSTOP)
            stopped.update(new)
        self.kill()

    def thaw(self):
        if self.frozen:
            sandbox.signal_all(self._pids(), signal.SIGCONT)
            self.frozen = False

    # Invocation

    def invoke(self, request_id, event, cold_start, init_ms=None, client_context=None, invoked_arn=None):
        """Run one invocation; return its Outcome. The environment is killed if it cannot be reused."""
        self.thaw()
        s = self.snapshot
        timeout = s["timeout"]
        self._log.platform(f"START RequestId: {request_id} Version: {s['version']}\n")
        request = {
            "type": "invoke",
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000) + timeout * 1000,
            "invoked_function_arn": invoked_arn or s["arn"],
            "client_context": client_context,
        }
        started = time.monotonic()
        outcome = Outcome(status="FAILED", payload="", cold_start=cold_start, init_duration_ms=init_ms)
        oom_before = self.cgroup.oom_kills() if self.cgroup else 0
        try:
            header, body = self._exchange((request, event.encode()), started + timeout)
        except TimeoutError:
            outcome.duration_ms = _ms(started)
            self.kill()
            message = f"Task timed out after {timeout:.2f} seconds"
            self._log.platform(f"{_timestamp()} {request_id} {message}\n")
            outcome.status, outcome.error_type, outcome.report_status = "TIMED_OUT", "Sandbox.Timedout", "timeout"
            outcome.payload = error_payload("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}", request_id)
        except (RuntimeExited, ProtocolError) as e:
            outcome.duration_ms = _ms(started)
            oom = self.cgroup is not None and self.cgroup.oom_kills() > oom_before
            reason = self._exit_reason() if isinstance(e, RuntimeExited) else str(e)
            self.kill()
            outcome.error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
            outcome.report_status = "error"
            outcome.payload = error_payload(
                outcome.error_type, f"RequestId: {request_id} Error: Runtime exited with error: {reason}", request_id
            )
            self._log.platform(f"{outcome.payload}\n")
        else:
            outcome.duration_ms = _ms(started)
            outcome.payload = body.decode("utf-8", "replace")
            if header.get("ok"):
                outcome.status = "SUCCEEDED"
            else:
                outcome.error_type = header.get("error_type") or "Unhandled"
            try:
                outcome.max_memory_used_mb = math.ceil(int(header.get("max_rss_kb", 0)) / 1024)
            except (TypeError, ValueError, OverflowError):
                pass
        if self.alive:
            self.freeze()
            self.last_used = time.monotonic()
        outcome.max_memory_used_mb = self.peak_memory_mb() or outcome.max_memory_used_mb
        outcome.log = self._log.take()
        return outcome

    def init_failure(self, request_id, init_ms, payload, error_type, timed_out):
        """Return the Outcome of an invocation whose environment failed to initialise."""
        if timed_out:
            message = f"Task timed out after {max(INIT_MIN_SECONDS, self.snapshot['timeout']):.2f} seconds"
            self._log.platform(f"{_timestamp()} {request_id} {message}\n")
            payload = error_payload(error_type, f"RequestId: {request_id} Error: {message}", request_id)
        elif payload is None:
            payload = error_payload(
                error_type, f"RequestId: {request_id} Error: Runtime exited with error: {self._exit_reason()}",
                request_id,
            )
        else:
            # The bootstrap had no request id during init; the invocation it failed has one.
            try:
                error = json.loads(payload)
                error["requestId"] = request_id
                payload = json.dumps(error)
            except (ValueError, TypeError):
                payload = error_payload("Runtime.InvalidResponse", "The runtime sent a malformed init error.",
                                        request_id)
        self._log.platform(f"START RequestId: {request_id} Version: {self.snapshot['version']}\n")
        max_mb = self.peak_memory_mb()
        return Outcome(
            status="TIMED_OUT" if timed_out else "FAILED", payload=payload, error_type=error_type,
            log=self._log.take(), cold_start=True, init_duration_ms=init_ms, duration_ms=0.0,
            max_memory_used_mb=max_mb, report_status="timeout" if timed_out else "error",
        )

    def peak_memory_mb(self):
        """Return the environment's memory high-water mark from its cgroup (kept after it is gone)."""
        if self.cgroup is None:
            return self._last_peak_mb
        peak = self.cgroup.peak_bytes()
        return math.ceil(peak / (1024 * 1024)) if peak else None

    def _exit_reason(self):
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "runtime stopped answering"
        if code < 0:
            return "signal: killed" if code == -9 else f"signal: {-code}"
        # bwrap and sh report a child killed by a signal as 128 + the signal.
        if code > 128:
            return "signal: killed" if code == 137 else f"signal: {code - 128}"
        return f"exit status {code}"

    # The select loop

    def _exchange(self, request, deadline):
        """Send `request` (header, body) if given, then return the next answer frame (header, body)."""
        if self._answers:
            # Bytes nobody asked for: the function wrote to the answer pipe itself.
            raise ProtocolError("the runtime sent data it was not asked for")
        out = b""
        if request is not None:
            header, body = request
            header["length"] = len(body)
            out = json.dumps(header).encode() + b"\n" + body
            self._selector.register(self.process.stdin, selectors.EVENT_WRITE)
        try:
            while True:
                frame = self._parse_answer()
                if frame is not None:
                    self._drain_log()
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                for key, _ in self._selector.select(remaining):
                    if key.fileobj is self.process.stdin:
                        try:
                            sent = os.write(key.fd, out[:READ_SIZE])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            raise RuntimeExited from None
                        out = out[sent:]
                        if not out:
                            self._selector.unregister(self.process.stdin)
                    elif key.fileobj is self.process.stdout:
                        data = os.read(key.fd, READ_SIZE)
                        if not data:
                            self._drain_log()
                            raise RuntimeExited
                        self._answers += data
                        if len(self._answers) > MAX_HEADER_BYTES + MAX_ANSWER_BYTES:
                            raise ProtocolError("the runtime sent an answer larger than the payload limit")
                    else:
                        self._read_log(key.fd)
        finally:
            if out:
                try:
                    self._selector.unregister(self.process.stdin)
                except (KeyError, ValueError):
                    pass

    def _parse_answer(self):
        newline = self._answers.find(b"\n")
        if newline < 0:
            if len(self._answers) > MAX_HEADER_BYTES:
                raise ProtocolError("the runtime sent an oversized frame header")
            return None
        try:
            header = json.loads(self._answers[:newline])
            length = header.get("length", 0)
        except (ValueError, AttributeError):
            raise ProtocolError("the runtime sent a malformed frame") from None
        if type(length) is not int or not 0 <= length <= MAX_ANSWER_BYTES:
            raise ProtocolError("the runtime sent a frame with an invalid length")
        end = newline + 1 + length
        if len(self._answers) < end:
            return None
        body = self._answers[newline + 1:end]
        self._answers = self._answers[end:]
        return header, body

    def _read_log(self, fd):
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        if not data:
            self._selector.unregister(self.process.stderr)
            self._log_open = False
            return False
        self._log.feed(data)
        return True

    def _drain_log(self):
        """Read what the runtime wrote before its answer; it is all in the pipe already."""
        while self._log_open and self._read_log(self.process.stderr.fileno()):
            pass


def _ms(started):
    return round((time.monotonic() - started) * 1000, 2)
