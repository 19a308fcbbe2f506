"""Validate a code ZIP completely before anything is stored, and unpack one safely.

zipfile alone is not a validator: it silently keeps the last of two equal names, truncates names at NUL,
extracts overlapped entries more than once on 3.11.7, and leaves half-extracted trees behind on errors
(../shared/reference/security-and-reliability.md §3). So the whole central directory is checked first,
every entry is then read once to prove its CRC and size, and unpacking goes into a fresh directory that
is renamed into place only when complete.
"""

import os
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field

# Lambda's limit on the unzipped size of a function (with its layers).
MAX_UNZIPPED_BYTES = 262_144_000
# Lambda documents no entry cap; 10,000 keeps a validation pass under a second.
MAX_ENTRIES = 10_000
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 1024
READ_CHUNK = 1024 * 1024

LOCAL_HEADER = struct.Struct("<4s5H3L2H")
LOCAL_SIGNATURE = b"PK\x03\x04"
# Characters that reorder or hide text: a name must read the same in a listing as on disk.
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class ZipRejected(ValueError):
    """The archive is unsafe or unusable; the message names the problem."""


@dataclass
class ZipSummary:
    files: list = field(default_factory=list)  # [(name, size)] of regular files, in archive order
    unzipped_size: int = 0
    data_starts: dict = field(default_factory=dict, repr=False)  # {header offset: where its data begins}

    def has_module(self, module):
        """Return whether `a.b` exists as a/b.py or a/b/__init__.py (what the runtime imports)."""
        path = module.replace(".", "/")
        names = {name for name, _ in self.files}
        return f"{path}.py" in names or f"{path}/__init__.py" in names


def _check_name(info):
    raw = info.orig_filename
    shown = repr(raw)
    if "\x00" in raw:
        raise ZipRejected(f"Entry {shown} has a NUL character in its name.")
    for ch in raw:
        if ch in BIDI_CONTROLS:
            raise ZipRejected(f"Entry {shown} has a bidirectional control character (U+{ord(ch):04X}) in its name.")
        if unicodedata.category(ch) == "Cc":
            raise ZipRejected(f"Entry {shown} has a control character (U+{ord(ch):04X}) in its name.")
    if "\\" in raw:
        raise ZipRejected(f"Entry {shown} uses a backslash in its path; ZIP paths use '/'.")
    if len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha():
        raise ZipRejected(f"Entry {shown} starts with a drive letter.")
    if raw.startswith("/"):
        raise ZipRejected(f"Entry {shown} has an absolute path.")
    name = raw[:-1] if raw.endswith("/") else raw
    parts = name.split("/")
    if ".." in parts:
        raise ZipRejected(f"Entry {shown} has a '..' component: it would leave the code directory.")
    if any(p in ("", ".") for p in parts):
        raise ZipRejected(f"Entry {shown} has an empty or '.' path component.")
    if len(raw.encode()) > MAX_PATH_BYTES:
        raise ZipRejected(f"Entry {shown[:60]}… has a path longer than {MAX_PATH_BYTES} bytes.")
    if any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
        raise ZipRejected(f"Entry {shown[:60]}… has a name longer than {MAX_COMPONENT_BYTES} bytes.")
    return unicodedata.normalize("NFC", name)


def _check_type(info, shown):
    if info.flag_bits & 0x1:
        raise ZipRejected(f"Entry {shown} is encrypted; upload an unencrypted ZIP.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ZipRejected(
            f"Entry {shown} uses compression method {info.compress_type}; only stored and deflated are supported."
        )
    mode = info.external_attr >> 16
    # Many tools (zipfile.writestr among them) leave the file-type bits empty: that means a plain file.
    if info.create_system == 3 and stat.S_IFMT(mode):
        if stat.S_ISLNK(mode):
            raise ZipRejected(f"Entry {shown} is a symbolic link; links are not allowed.")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ZipRejected(f"Entry {shown} is not a regular file or directory.")


# Bytes a data descriptor may take after an entry's data (with or without its signature; ZIP64 sizes).
DESCRIPTOR_SIZES = (12, 16, 20, 24)


def _check_layout(zf, fp, infos):
    """Reject entries that share or overlap bytes, and bytes that belong to no entry; return where each
    entry's data starts ({header offset: data offset}).

    Hidden bytes do not fool zipfile, but they would make another unzip tool see a different archive.
    """
    starts = {}
    ordered = sorted(infos, key=lambda i: i.header_offset)
    if ordered and ordered[0].header_offset != 0:
        raise ZipRejected("The file has unexpected data before the first ZIP entry.")
    for info, following in zip(ordered, ordered[1:] + [None]):
        limit = following.header_offset if following else zf.start_dir
        fp.seek(info.header_offset)
        header = fp.read(LOCAL_HEADER.size)
        if len(header) != LOCAL_HEADER.size or header[:4] != LOCAL_SIGNATURE:
            raise ZipRejected(f"Entry {info.orig_filename!r} has no valid local header: the ZIP is corrupt.")
        fields = LOCAL_HEADER.unpack(header)
        name_len, extra_len = fields[-2], fields[-1]
        raw_name = fp.read(name_len)
        try:
            local_name = raw_name.decode("utf-8" if info.flag_bits & 0x800 else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != info.orig_filename:
            raise ZipRejected(f"Entry {info.orig_filename!r} has another name in its local header.")
        starts[info.header_offset] = info.header_offset + LOCAL_HEADER.size + name_len + extra_len
        data_end = starts[info.header_offset] + info.compress_size
        if data_end > limit:
            raise ZipRejected(
                f"Entry {info.orig_filename!r} overlaps another entry (a known ZIP bomb technique)."
            )
        gap = limit - data_end
        if gap and not (info.flag_bits & 0x8 and gap in DESCRIPTOR_SIZES):
            raise ZipRejected(f"The ZIP has {gap} bytes of hidden data after entry {info.orig_filename!r}.")
    return starts


def _check_end_record(fp):
    """Check the entry count and the end of the file before zipfile parses the whole central directory.

    zipfile reads every central record into memory first: a 50 MB upload can declare a million entries.
    """
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    end = zipfile._EndRecData(fp)  # the stdlib's own reader of the end record (ZIP64 aware)
    if end is None:
        raise ZipRejected("The file is not a valid ZIP archive.")
    if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ENTRIES:
        raise ZipRejected(
            f"The ZIP archive has {end[zipfile._ECD_ENTRIES_TOTAL]:,} entries; the limit is {MAX_ENTRIES:,}."
        )
    if end[zipfile._ECD_LOCATION] + zipfile.sizeEndCentDir + len(end[zipfile._ECD_COMMENT]) != size:
        raise ZipRejected("The file has unexpected data after the end of the ZIP archive.")


def inspect_zip(fp):
    """Validate the archive in the open binary file `fp`; return its summary or raise ZipRejected."""
    try:
        _check_end_record(fp)
        fp.seek(0)
        zf = zipfile.ZipFile(fp)
    except ZipRejected:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, struct.error):
        raise ZipRejected("The file is not a valid ZIP archive.") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise ZipRejected("The ZIP archive is empty.")
        if len(infos) > MAX_ENTRIES:
            raise ZipRejected(f"The ZIP archive has {len(infos):,} entries; the limit is {MAX_ENTRIES:,}.")

        summary = ZipSummary()
        seen, folded, dirs = set(), {}, set()
        for info in infos:
            name = _check_name(info)
            _check_type(info, repr(info.orig_filename))
            if name in seen:
                raise ZipRejected(f"Entry {name!r} appears more than once.")
            other = folded.get(name.casefold())
            if other is not None:
                raise ZipRejected(f"Entries {other!r} and {name!r} differ only in letter case.")
            seen.add(name)
            folded[name.casefold()] = name
            parts = name.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if info.is_dir():
                dirs.add(name)
            else:
                summary.files.append((name, info.file_size))
                summary.unzipped_size += info.file_size

        clashes = dirs & {name for name, _ in summary.files}
        if clashes:
            raise ZipRejected(f"{sorted(clashes)[0]!r} is both a file and a directory.")
        if summary.unzipped_size > MAX_UNZIPPED_BYTES:
            raise ZipRejected(
                f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes "
                f"(this archive declares {summary.unzipped_size})."
            )
        summary.data_starts = _check_layout(zf, fp, infos)
        # Read every entry once, proving its size and CRC.
        for info in infos:
            if not info.is_dir():
                read_entry(fp, info, summary.data_starts[info.header_offset], sink=None)
    return summary


def read_entry(fp, info, data_start, sink):
    """Decompress one entry from `fp` into `sink` (or nowhere), checking it ends exactly where declared.

    zipfile stops reading at the declared size, so a stream that inflates to more than that (with a CRC
    of the declared part) would pass it silently; here the compressed data must end at the declared size.
    """
    fp.seek(data_start)
    remaining = info.compress_size
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    written, crc = 0, 0
    try:
        while remaining:
            raw = fp.read(min(READ_CHUNK, remaining))
            if not raw:
                raise ZipRejected(f"Entry {info.filename!r} is truncated.")
            remaining -= len(raw)
            # Never inflate more than one byte past the declared size, whatever the stream holds.
            chunk = inflater.decompress(raw, info.file_size - written + 1) if inflater else raw
            while True:
                written += len(chunk)
                if written > info.file_size:
                    raise ZipRejected(f"Entry {info.filename!r} is larger than its declared size.")
                crc = zlib.crc32(chunk, crc)
                if sink is not None:
                    sink.write(chunk)
                if not inflater or not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, info.file_size - written + 1)
        if inflater and (not inflater.eof or inflater.unused_data):
            raise ZipRejected(f"Entry {info.filename!r} does not end where its compressed size says.")
    except zlib.error as e:
        raise ZipRejected(f"Entry {info.filename!r} is corrupt ({e}).") from None
    if written != info.file_size:
        raise ZipRejected(f"Entry {info.filename!r} is shorter than its declared size.")
    if crc != info.CRC:
        raise ZipRejected(f"Entry {info.filename!r} is corrupt (Bad CRC-32).")


def extract_zip(path, dest):
    """Validate the ZIP at `path` and unpack it to the new directory `dest` (0644 files, 0755 dirs).

    Unpack into a temporary sibling and rename it into place, so `dest` either holds the whole archive
    or does not exist. Return False if another process got there first.
    """
    parent = os.path.dirname(dest)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        os.chmod(tmp, 0o755)
        with open(path, "rb") as fp:
            starts = inspect_zip(fp).data_starts
            with zipfile.ZipFile(fp) as zf:
                for info in zf.infolist():
                    target = os.path.join(tmp, unicodedata.normalize("NFC", info.filename.rstrip("/")))
                    if info.is_dir():
                        os.makedirs(target, mode=0o755, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                    with os.fdopen(fd, "wb") as out:
                        read_entry(fp, info, starts[info.header_offset], sink=out)
        # Explicit modes whatever the umask: the sandbox's uid reads the tree, nobody writes it.
        for root, dirnames, filenames in os.walk(tmp):
            for d in dirnames:
                os.chmod(os.path.join(root, d), 0o755)
            for f in filenames:
                os.chmod(os.path.join(root, f), 0o644)
        try:
            os.rename(tmp, dest)
        except OSError:
            if os.path.isdir(dest):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            raise
        return True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
