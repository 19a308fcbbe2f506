"""Launch one execution environment as an isolated process, with what this host offers.

Layers, strongest first; each is detected, and a missing one is reported on /status/ (never silent):
  * bubblewrap: new user, pid, mount, ipc, uts, cgroup and network namespaces (the network one is
    shared with the host only for functions whose "outbound network" is on); only /usr, the code
    (read-only at /var/task) and the runtime bound; a private /tmp; all capabilities dropped; the whole
    tree dies with the worker.
  * a disk of its own for /tmp (a sparse ext4 image, loop-mounted, of the function's ephemeral storage
    size) when the worker runs as root; otherwise a tmpfs of that size, which counts against memory.
  * a uid of its own per environment (when the worker runs as root): no signals, ptrace or files
    shared with the worker or with other environments; RLIMIT_NPROC counts per environment.
  * a memory cgroup (v1 memory.limit_in_bytes or v2 memory.max) sized to the function's memory:
    the kernel kills the environment at its limit, and the peak is Max Memory Used. Without one,
    RLIMIT_AS (memory + headroom) bounds it instead.
  * rlimits set by the bootstrap before user code runs: 1024 files and processes (Lambda's quotas).
  * freezing between invocations: the worker stops every process of the environment (SIGSTOP) once
    the handler has answered, and continues them for the next invocation.
The pitfalls behind these choices are in ../shared/reference/security-and-reliability.md §1.3.
"""

import errno
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from invocations.runtime import egress

RUNTIME_DIR = "/var/runtime"
TASK_ROOT = "/var/task"
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
MB = 1024 * 1024
# Without a cgroup, RLIMIT_AS is virtual memory: threads and mmaps inflate it well past RSS.
ADDRESS_SPACE_HEADROOM = 256 * 1024 * 1024


@functools.cache
def layers():
    """Return {layer: (active, explanation)} for this host, for /status/ and for the launcher."""
    found = {}
    bwrap = shutil.which("bwrap")
    found["bubblewrap"] = (
        bool(bwrap) and _bwrap_works(bwrap),
        f"{bwrap}: namespaces, read-only code, private /tmp, no network unless a function's outbound network is on" if bwrap
        else "bwrap not installed (apt-get install bubblewrap): user code runs without namespaces",
    )
    is_root = os.geteuid() == 0
    found["uid per environment"] = (
        is_root,
        f"uids {settings.SANDBOX_UID_MIN}–{settings.SANDBOX_UID_MAX}" if is_root
        else "the worker is not root: every environment runs as the worker's own uid",
    )
    cg = MemoryCgroup.parent()
    found["memory cgroup"] = (
        cg is not None,
        f"{cg[0]} at {cg[1]}" if cg else "no writable memory cgroup: memory is bounded by RLIMIT_AS instead",
    )
    found["disk-backed /tmp"] = (
        ScratchDisk.available(),
        "a loop-mounted ext4 image per environment, of the function's ephemeral storage size"
        if ScratchDisk.available()
        else "needs root, loop devices and mkfs.ext4: /tmp is a tmpfs, so what a function writes there "
             "counts against its memory",
    )
    found["freezing"] = (
        cg is not None or is_root,
        "every process of an idle environment is stopped (SIGSTOP) until its next invocation"
        if cg is not None or is_root
        else "needs a memory cgroup or a uid per environment to find the processes: idle environments keep running",
    )
    found["egress filter"] = egress.status()
    found["seccomp"] = (
        shared_network_filter() is not None,
        "with outbound network on, socket(AF_UNIX), netlink and io_uring are refused: they would reach the "
        "host's abstract Unix sockets and network state, which no egress filter sees"
        if shared_network_filter() is not None
        else "pyseccomp or libseccomp is missing: a function with outbound network on can reach the host's "
             "abstract Unix sockets",
    )
    found["rlimits"] = (True, "RLIMIT_NOFILE 1024, RLIMIT_NPROC 1024, RLIMIT_FSIZE the ephemeral storage, RLIMIT_CORE 0")
    return found


def _bwrap_works(bwrap):
    try:
        run = subprocess.run(
            [bwrap, "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
             "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "/usr/bin/true"],
            capture_output=True, timeout=20, **_drop_privileges(_probe_uid()),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


def _probe_uid():
    return settings.SANDBOX_UID_MAX if os.geteuid() == 0 else None


def _drop_privileges(uid):
    if uid is None:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


class UidSlot:
    """An exclusive claim on one sandbox uid, held by an open, locked file for as long as it lives.

    The lock dies with the process that holds it, so a crashed worker never strands a uid.
    """

    def __init__(self, uid, fd):
        self.uid = uid
        self._fd = fd

    @classmethod
    def acquire(cls):
        if os.geteuid() != 0:
            return cls(None, None)
        # One directory for the whole host: every console and test run on it hands out the same uids.
        lock_dir = Path(settings.SANDBOX_UID_LOCK_DIR)
        lock_dir.mkdir(parents=True, exist_ok=True)
        for uid in range(settings.SANDBOX_UID_MIN, settings.SANDBOX_UID_MAX):
            fd = os.open(lock_dir / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue
                raise
            return cls(uid, fd)
        raise RuntimeError("every sandbox uid is in use: raise SANDBOX_UID_MAX or lower ENVIRONMENT_MEMORY_BUDGET_MB")

    def release(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MemoryCgroup:
    """A memory cgroup for one environment, made under the worker's own cgroup."""

    def __init__(self, path, version):
        self.path = path
        self.version = version

    @staticmethod
    @functools.cache
    def parent():
        """Return (version, directory) where environment cgroups can be made, or None."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                if (candidate / "memory.limit_in_bytes").exists() and os.access(candidate, os.W_OK):
                    return ("v1", candidate)
        for line in lines:
            if line.startswith("0::"):
                candidate = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                controllers = candidate / "cgroup.subtree_control"
                if controllers.exists() and "memory" in controllers.read_text().split() and os.access(candidate, os.W_OK):
                    return ("v2", candidate)
        return None

    @classmethod
    def create(cls, name, limit_bytes):
        found = cls.parent()
        if found is None:
            return None
        version, parent = found
        path = parent / name
        path.mkdir()
        cg = cls(path, version)
        if version == "v1":
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            # No swap: a function over its memory is killed, as in Lambda.
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(limit_bytes))
        else:
            (path / "memory.max").write_text(str(limit_bytes))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
        return cg

    def add(self, pid):
        """Move a process into this cgroup (the worker does it: only it may, on v1 and v2 alike)."""
        Path(self.procs_file).write_text(str(pid))

    @classmethod
    def remove_stale(cls):
        """Remove the cgroups of environments whose worker died without cleaning up."""
        found = cls.parent()
        if found is None:
            return
        version, parent = found
        for path in parent.glob("env-*"):
            if owner_is_dead(path.name):
                stale = cls(path, version)
                stale.kill_all()
                stale.remove()

    def pids(self):
        try:
            return [int(p) for p in Path(self.procs_file).read_text().split()]
        except (OSError, ValueError):
            return []

    @property
    def procs_file(self):
        return str(self.path / "cgroup.procs")

    def peak_bytes(self):
        name = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self):
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self):
        signal_all(self.pids(), signal.SIGKILL)

    def remove(self):
        # Killed processes leave the cgroup a moment after they are reaped; rmdir fails (EBUSY) until then.
        for _ in range(40):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.025)
        # Still busy: remove_stale() takes it when the next worker starts.


def environment_name(key):
    """Return a unique name for an environment's cgroup and scratch disk; it starts with the worker's pid."""
    return f"env-{os.getpid()}-{key[:12]}-{os.urandom(3).hex()}"


def owner_is_dead(name):
    """Return whether the worker named in `name` (env-<pid>-…) has died, leaving that resource behind."""
    try:
        os.kill(int(name.split("-")[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError):
        pass
    return False


def signal_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def scratch_disks():
    """Whether environments get a disk of their own for /tmp (else a tmpfs inside bubblewrap)."""
    return layers()["bubblewrap"][0] and ScratchDisk.available()


def uid_pids(uid):
    """Return the pids of the live processes running as `uid` (a sandbox uid belongs to one environment).

    Zombies are left out: they have exited, and only their parent (or init) can make them go.
    """
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return found


class ScratchDisk:
    """A /tmp of its own for one environment: a sparse ext4 image of the ephemeral storage size, loop-mounted.

    A tmpfs would be simpler, but its pages are charged to the environment's memory cgroup: a 128 MB
    function could never fill the 512 MB of /tmp Lambda gives it. The image is sparse, so it takes disk
    only for what the function writes, and it is deleted with the environment.
    """

    def __init__(self, image, mountpoint):
        self.image = image
        self.mountpoint = mountpoint

    @staticmethod
    @functools.cache
    def available():
        if os.geteuid() != 0 or not Path("/dev/loop-control").exists() or not shutil.which("mkfs.ext4"):
            return False
        try:
            probe = ScratchDisk.create(f"env-{os.getpid()}-probe-{os.urandom(3).hex()}", 16)
        except (OSError, subprocess.SubprocessError):
            return False
        probe.remove()
        return True

    @classmethod
    def create(cls, name, size_mb):
        root = Path(settings.SCRATCH_DIR)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o711)  # bwrap, running as the sandbox uid, must reach the mount point
        disk = cls(root / f"{name}.img", root / name)
        try:
            # Only root may read the image; its root directory goes to the environment's uid (give_to).
            with open(os.open(disk.image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.truncate(size_mb * MB)
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                 "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(disk.image)],
                check=True, capture_output=True, timeout=60,
            )
            disk.mountpoint.mkdir()
            subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(disk.image), str(disk.mountpoint)],
                           check=True, capture_output=True, timeout=60)
            (disk.mountpoint / "lost+found").rmdir()  # Lambda's /tmp starts empty
        except BaseException:
            disk.remove()
            raise
        return disk

    @property
    def size_mb(self):
        return self.image.stat().st_size // MB

    def give_to(self, uid):
        """Make the disk's root, the environment's /tmp, belong to the environment's uid."""
        os.chown(self.mountpoint, uid, uid)
        os.chmod(self.mountpoint, 0o700)  # the mount point's path is no secret (/proc/self/mountinfo)

    def remove(self):
        if self.mountpoint.is_mount():
            # Lazy: a process of the environment may still hold a file open while it dies.
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=60)
        try:
            self.mountpoint.rmdir()
        except OSError:
            pass
        self.image.unlink(missing_ok=True)

    @classmethod
    def remove_stale(cls):
        root = Path(settings.SCRATCH_DIR)
        if not root.is_dir():
            return
        for image in root.glob("env-*.img"):
            name = image.name[:-len(".img")]
            if owner_is_dead(name):
                cls(image, root / name).remove()


@functools.cache
def shared_network_filter():
    """Return the seccomp program (BPF bytes) for sandboxes that share the host's network, or None.

    Such a sandbox has the host's network namespace, and with it the host's abstract Unix sockets
    (container runtimes, D-Bus, X11 listen there) and netlink's view of the host: refuse creating Unix
    and netlink sockets (socketpair() still works) and io_uring, which could create sockets unseen.
    """
    try:
        import pyseccomp
    except (ImportError, OSError):  # OSError: no libseccomp.so.2
        return None
    rules = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for family in (socket.AF_UNIX, socket.AF_NETLINK):
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    rules.add_rule(pyseccomp.ERRNO(errno.EPERM), "io_uring_setup")
    with tempfile.TemporaryFile() as f:
        rules.export_bpf(f)
        f.seek(0)
        return f.read()


def _memfd(data):
    """Return a file descriptor reading `data` from its start (bwrap reads its --seccomp program from one)."""
    fd = os.memfd_create("seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass
class Launch:
    argv: list
    popen_kwargs: dict
    task_root: str  # where the code appears to the runtime
    runtime_dir: str
    # The launcher's own environment: bwrap and sh run on the host, so nothing of the function's goes here.
    env: dict = field(default_factory=lambda: {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    # Set when the launcher waits for one line on stdin before it execs: the worker moves it into its
    # cgroup first, so everything it starts is counted and limited from the first byte.
    waits_for_cgroup: bool = False
    # File descriptors handed to the launcher, for the caller to close once it has started.
    fds: list = field(default_factory=list)
    # Where the layers appear to the runtime.
    opt_root: str = "/opt"


def build_launch(snapshot, code_dir, runtime_dir, slot, cgroup, scratch, opt_dir=None):
    """Return the command line and Popen options for one execution environment."""
    memory_bytes = snapshot["memory_size"] * MB
    tmp_bytes = snapshot["ephemeral_storage"] * MB
    limits = {"RLIMIT_NOFILE": 1024, "RLIMIT_NPROC": 1024, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": tmp_bytes}
    runtime_env = {"PATH": "/usr/bin:/bin"}
    if cgroup is None:
        limits["RLIMIT_AS"] = memory_bytes + ADDRESS_SPACE_HEADROOM
        # glibc gives each thread an arena of address space; fewer arenas keep RLIMIT_AS nearer to RSS.
        runtime_env["MALLOC_ARENA_MAX"] = "2"
    python = settings.SANDBOX_PYTHON
    inner = [python, "-I", "-B", f"{RUNTIME_DIR}/bootstrap.py", json.dumps(limits)]
    if layers()["bubblewrap"][0]:
        tmp = ["--bind", str(scratch.mountpoint), "/tmp"] if scratch else ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
        # With a network, name resolution and TLS need these; without one they are harmless.
        etc = [arg for name in NETWORK_FILES for arg in ("--ro-bind-try", name, name)]
        network = []
        fds = []
        if snapshot["outbound_network"]:
            network = ["--share-net"]
            if shared_network_filter() is not None:
                fds.append(_memfd(shared_network_filter()))
                network += ["--seccomp", str(fds[0])]
        argv = [
            shutil.which("bwrap"),
            "--unshare-all", *network,
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev",
            *tmp, *etc,
            "--ro-bind", str(code_dir), TASK_ROOT,
            *(["--ro-bind", str(opt_dir), "/opt"] if opt_dir else []),
            *bucket_mounts(snapshot.get("mounts", [])),
            "--ro-bind", str(runtime_dir), RUNTIME_DIR,
            "--hostname", "localhost",
            "--clearenv", *[arg for name, value in runtime_env.items() for arg in ("--setenv", name, value)],
            "--chdir", TASK_ROOT,
            *inner,
        ]
        launch = Launch(argv, {**_drop_privileges(slot.uid), "pass_fds": fds}, TASK_ROOT, RUNTIME_DIR, fds=fds,
                        opt_root="/opt")
    else:
        # Degraded: no namespaces. The code is read in place, and /var/task is only a name.
        argv = [python, "-I", "-B", str(Path(runtime_dir) / "bootstrap.py"), json.dumps(limits)]
        launch = Launch(argv, _drop_privileges(slot.uid), str(code_dir), str(runtime_dir),
                        opt_root=str(opt_dir) if opt_dir else "/opt")
        launch.env.update(runtime_env)
    if cgroup is not None:
        # sh is the cheapest process that can wait for the worker to move it into the cgroup.
        launch.argv = ["/bin/sh", "-c", 'read -r _ && exec "$@"', "sh", *launch.argv]
        launch.waits_for_cgroup = True
    return launch


def bucket_mounts(mounts):
    """Return bwrap's arguments binding each bucket's directory read-only at /mnt/<bucket name>.

    `--ro-bind-try`: a bucket deleted since the invocation was queued is simply absent. Entries come from
    the database (Function.mounts), checked again here because they become paths.
    """
    args = []
    for mount in mounts:
        name, directory = mount["bucket"], mount["directory"]
        if not BUCKET_NAME.fullmatch(name) or "/" in directory or directory.startswith("."):
            raise ValueError(f"not a bucket mount: {mount!r}")
        args += ["--ro-bind-try", str(Path(settings.BUCKETS_DIR) / directory), f"/mnt/{name}"]
    return args


BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


# Host files a function with outbound network needs (DNS and CA certificates), bound read-only.
NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates")


def install_runtime(cache_dir):
    """Copy the bootstrap where sandbox uids can read it; return that directory."""
    runtime_dir = Path(cache_dir) / "runtime"
    runtime_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(runtime_dir, 0o755)
    target = runtime_dir / "bootstrap.py"
    data = BOOTSTRAP.read_bytes()
    if not target.exists() or target.read_bytes() != data:
        tmp = runtime_dir / f".bootstrap.{os.getpid()}"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return runtime_dir


def check_reachable(path):
    """Raise if an unprivileged uid cannot reach `path` (every parent must be world-searchable)."""
    if os.geteuid() != 0:
        return
    p = Path(path).resolve()
    for parent in [p, *p.parents]:
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not searchable by other users, so sandbox uids cannot read {path}; "
                "set CODE_CACHE_DIR to a directory under a world-searchable path (e.g. /var/cache/lambda)."
            )
