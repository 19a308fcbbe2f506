"""Bucket objects on disk: `<BUCKETS_DIR>/<id>-<bucket name>/<key>`, one file per key.

Sandboxes of functions with a notification from a bucket see its directory read-only at /mnt/<bucket name>
(they run as other uids): directories are 0755 and files 0644, writable only by the console's user.
Uploads stream into `<BUCKETS_DIR>/.uploads` (same file system, not visible in any bucket) and are renamed
into place; replaced and deleted files wait in `<BUCKETS_DIR>/.trash` until the transaction commits, so
that a rollback can put them back (`changes()`).
"""

import contextlib
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

CHUNK_BYTES = 256 * 1024


class IncompleteBody(Exception):
    """The client sent fewer bytes than it declared."""


def _private_dir(name):
    root = Path(settings.BUCKETS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # sandbox uids must reach the bucket directories, but not list them
    path = root / name
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass
class Spooled:
    path: Path
    size: int
    md5: str

    def discard(self):
        self.path.unlink(missing_ok=True)


def spool(stream, length):
    """Copy exactly `length` bytes of `stream` to a new file, chunk by chunk; return it with its MD5.

    Raise IncompleteBody (and keep nothing) if the stream ends early.
    """
    path = _private_dir(".uploads") / secrets.token_hex(16)
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            while size < length:
                chunk = stream.read(min(CHUNK_BYTES, length - size))
                if not chunk:
                    raise IncompleteBody(f"The body ended after {size} of the {length} bytes declared.")
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, digest.hexdigest())


def folder_conflict(directory, key):
    """Return "is_folder" if `key` is a folder of existing objects, the existing object that would be a
    folder of `key`, or None. Exact (case-sensitive) because the disk holds one file per object."""
    if (directory / key).is_dir():
        return "is_folder"
    parts = key.split("/")
    for n in range(1, len(parts)):
        prefix = "/".join(parts[:n])
        path = directory / prefix
        if not path.exists():
            return None
        if not path.is_dir():
            return prefix
    return None


def make_directory(directory):
    """Make a new bucket's empty directory."""
    _private_dir(".trash")  # makes BUCKETS_DIR with its mode
    if directory.exists():
        # Left by a creation that was rolled back: no bucket has this id.
        shutil.rmtree(directory)
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)


class Changes:
    """File system changes that belong to one database transaction: their undo runs if it rolls back, and
    what they set aside is removed once it commits."""

    def __init__(self):
        self.undo = []

    def place(self, source, directory, key):
        """Move the file `source` to `key` in the bucket, replacing the object there."""
        target = directory / key
        self._make_parents(directory, target)
        if target.exists():
            backup = _aside()
            os.link(target, backup)
            os.replace(source, target)
            self.undo.append(lambda: os.replace(backup, target))
            transaction.on_commit(lambda: backup.unlink(missing_ok=True))
        else:
            self.undo.append(lambda: (target.unlink(missing_ok=True), _prune(directory, target.parent)))
            os.replace(source, target)
        _fsync_dir(target.parent)

    def remove(self, directory, key):
        """Remove the file of `key`, and the folders it leaves empty."""
        target = directory / key
        if not target.is_file():
            return
        aside = _aside()

        def undo():
            self._make_parents(directory, target)
            os.replace(aside, target)

        os.replace(target, aside)
        self.undo.append(undo)
        transaction.on_commit(lambda: aside.unlink(missing_ok=True))
        _prune(directory, target.parent)

    def remove_directory(self, directory):
        """Remove a bucket's directory and everything in it."""
        if not directory.exists():
            return
        aside = _aside()
        os.replace(directory, aside)
        self.undo.append(lambda: os.replace(aside, directory))
        transaction.on_commit(lambda: shutil.rmtree(aside, ignore_errors=True))

    @staticmethod
    def _make_parents(directory, target):
        # Not os.makedirs(mode=…): the umask would narrow it, and sandboxes must be able to list folders.
        missing = []
        parent = target.parent
        while parent != directory and not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            os.chmod(folder, 0o755)


@contextlib.contextmanager
def changes():
    """A durable transaction whose file system changes (a `Changes`) are undone if it does not commit.

    Durable: an outer transaction could roll back after the files had moved for good.
    """
    made = Changes()
    try:
        with transaction.atomic(durable=True):
            yield made
    except BaseException:
        for undo in reversed(made.undo):
            undo()
        raise


def _aside():
    return _private_dir(".trash") / secrets.token_hex(16)


def _prune(directory, folder):
    """Remove `folder` and its parents up to the bucket's directory while they are empty."""
    while folder != directory:
        try:
            folder.rmdir()
        except OSError:  # not empty
            return
        folder = folder.parent


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
