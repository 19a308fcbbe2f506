"""The warm environments of one worker process, and the local cache of unpacked code they run."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from functions.codezip import extract_zip
from functions.models import EPHEMERAL_MIN, CodeArtifact
from invocations.runtime import sandbox
from invocations.runtime.environment import Environment

log = logging.getLogger(__name__)


def environment_key(snapshot):
    """Return the key under which environments for this configuration may be reused.

    Not the ARN: a version invoked by number or through an alias shares its environments, as in Lambda;
    the ARN the caller used goes with each request. Nor an asynchronous event's retry settings.
    """
    same = {k: v for k, v in snapshot.items() if k not in ("arn", "async")}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:32]


def ensure_code(sha256):
    """Return the directory holding the artifact's files, unpacking it first if this host lacks it."""
    cache = Path(settings.CODE_CACHE_DIR)
    dest = cache / sha256
    if dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=cache, prefix=".download-") as tmp:
        with default_storage.open(CodeArtifact.storage_name_for(sha256)) as src:
            for chunk in src.chunks():
                digest.update(chunk)
                tmp.write(chunk)
        tmp.flush()
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"code artifact {sha256} is damaged in storage (its SHA-256 does not match)")
        extract_zip(tmp.name, str(dest))
    return dest


# What snapshots taken before a setting existed lack (invocations queued across an upgrade).
SNAPSHOT_DEFAULTS = {"ephemeral_storage": EPHEMERAL_MIN, "outbound_network": False, "environment_token": "",
                     "layers": [], "mounts": []}


def ensure_layers(layers):
    """Return a directory holding the layers merged in order (what /opt shows), or None without layers.

    Merged once per host for each list of layer versions, into a content-addressed directory of the code
    cache; a later layer's file wins over an earlier one's, as in Lambda.
    """
    if not layers:
        return None
    shas = [layer["code_sha256"] for layer in layers]
    dest = Path(settings.CODE_CACHE_DIR) / f"layers-{hashlib.sha256(' '.join(shas).encode()).hexdigest()[:32]}"
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=settings.CODE_CACHE_DIR, prefix=".layers-"))
    try:
        for sha in shas:
            _merge_into(ensure_code(sha), tmp)
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise  # else another worker merged the same layers first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _merge_into(src, dest):
    """Lay the tree `src` over `dest`: where both have a path, src's wins, even a file over a directory.

    Files are hard links to the unpacked layer (same file system, read-only and root-owned): a merge costs
    no copy of the data.
    """
    for dirpath, _, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dest if rel == "." else dest / rel
        if target_dir.exists() and not target_dir.is_dir():
            target_dir.unlink()  # an earlier layer's file where this one has a directory
        target_dir.mkdir(mode=0o755, exist_ok=True)
        for name in filenames:
            target = target_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.link(os.path.join(dirpath, name), target)


class Pool:
    """Idle environments by configuration key, least recently used first.

    Their configured memory sizes add up to at most the memory budget (but the most recently used one
    always stays), and none stays idle longer than the idle timeout (checked after each invocation and
    at each of the worker's maintenance passes).
    """

    def __init__(self, memory_budget_mb=None, idle_seconds=None):
        self.memory_budget_mb = memory_budget_mb or settings.ENVIRONMENT_MEMORY_BUDGET_MB
        self.idle_seconds = idle_seconds or settings.ENVIRONMENT_IDLE_SECONDS
        self.idle = OrderedDict()
        self._runtime_dir = None
        # A /tmp disk of the default size made ahead, off the cold-start path: making one takes ~14 ms.
        self.spare_disk = None

    @property
    def runtime_dir(self):
        if self._runtime_dir is None:
            remove_stale()
            sandbox.layers()  # detects the host's layers once, and loads the egress filter
            sandbox.check_reachable(settings.CODE_CACHE_DIR)
            Path(settings.SCRATCH_DIR).mkdir(parents=True, exist_ok=True)
            sandbox.check_reachable(settings.SCRATCH_DIR)
            self._runtime_dir = sandbox.install_runtime(settings.CODE_CACHE_DIR)
        return self._runtime_dir

    def run(self, snapshot, request_id, event, client_context=None):
        """Run one invocation in a warm environment for `snapshot`, or a new one; return its Outcome."""
        snapshot = {**SNAPSHOT_DEFAULTS, **snapshot}
        key = environment_key(snapshot)
        env = self.idle.pop(key, None)
        if env is not None and (env.process.poll() is not None or self._expired(env)):
            env.kill()
            env = None
        try:
            if env is not None:
                outcome = env.invoke(request_id, event, cold_start=False, client_context=client_context,
                                     invoked_arn=snapshot["arn"])
            else:
                env = Environment(key, snapshot, ensure_code(snapshot["code_sha256"]), self.runtime_dir,
                                  opt_dir=ensure_layers(snapshot["layers"]))
                ok, init_ms, payload, error_type, timed_out = env.start(scratch=self._take_spare(snapshot))
                if not ok:
                    return env.init_failure(request_id, init_ms, payload, error_type, timed_out)
                outcome = env.invoke(request_id, event, cold_start=True, init_ms=init_ms, invoked_arn=snapshot["arn"],
                                     client_context=client_context)
        except BaseException:
            # Whatever went wrong (a platform bug, RQ's job timeout, a shutdown), never strand a sandbox.
            if env is not None:
                env.kill()
            raise
        if env.alive:
            self.idle[key] = env
        return outcome

    def evict(self):
        """Stop idle environments past their idle timeout, then the least recently used ones over the budget.

        Call it once the caller has its answer: stopping an environment takes milliseconds.
        """
        for key, env in list(self.idle.items()):
            if self._expired(env):
                del self.idle[key]
                env.kill()
        # The most recently used one stays even alone over the budget: else a function larger than the
        # budget would never be warm.
        while (len(self.idle) > 1
               and sum(env.snapshot["memory_size"] for env in self.idle.values()) > self.memory_budget_mb):
            _, env = self.idle.popitem(last=False)
            env.kill()
        if self.spare_disk is None and self._runtime_dir is not None and sandbox.scratch_disks():
            try:
                self.spare_disk = sandbox.ScratchDisk.create(sandbox.environment_name("spare"), EPHEMERAL_MIN)
            except (OSError, subprocess.SubprocessError):
                log.exception("could not make a spare /tmp disk; the next cold start makes its own")

    def _take_spare(self, snapshot):
        if self.spare_disk is None or snapshot["ephemeral_storage"] != self.spare_disk.size_mb:
            return None
        disk, self.spare_disk = self.spare_disk, None
        return disk

    def _expired(self, env):
        return time.monotonic() - env.last_used > self.idle_seconds

    def forget(self):
        """In a child forked from the worker: close what it inherited of the environments, touch nothing."""
        for env in self.idle.values():
            env.forget()
        self.idle = OrderedDict()
        self.spare_disk = None

    def close(self):
        envs = list(self.idle.values())
        self.idle.clear()
        # All at once first: each cleanup then finds its processes gone instead of waiting for them.
        for env in envs:
            env.signal_kill()
        for env in envs:
            env.kill()
        if self.spare_disk is not None:
            self.spare_disk.remove()
            self.spare_disk = None


def remove_stale():
    """Remove what environments of workers that died on this host left behind."""
    sandbox.MemoryCgroup.remove_stale()
    sandbox.ScratchDisk.remove_stale()


# One pool per worker process: the worker runs jobs in-process (SimpleWorker), so it lives as long as it.
pool = Pool()
