"""Storage buckets, S3-like: a bucket of one owner, and its objects (bytes on disk, one file per key)."""

import ipaddress
import re
import unicodedata
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from functions.codezip import BIDI_CONTROLS
from functions.models import Function, Trigger
from invocations.buckets import notifications, storage

# S3's bucket naming rules (general purpose buckets).
BUCKET_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")
# S3's limit on a key, in UTF-8 bytes; and the file system's on one path segment (NAME_MAX).
KEY_MAX_BYTES = 1024
SEGMENT_MAX_BYTES = 255


def validate_bucket_name(name):
    if not 3 <= len(name) <= 63:
        raise ValidationError("A bucket name has 3 to 63 characters.", code="length")
    if not BUCKET_NAME_PATTERN.fullmatch(name):
        raise ValidationError("A bucket name has only lower-case letters, digits, dots (.) and hyphens (-), and "
                              "starts and ends with a letter or digit.", code="characters")
    if ".." in name:
        raise ValidationError("A bucket name has no two adjacent dots.", code="dots")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise ValidationError("A bucket name is not an IP address.", code="ip_address")
    if name.startswith(RESERVED_PREFIXES) or name.endswith(RESERVED_SUFFIXES):
        raise ValidationError("A bucket name does not start with xn--, sthree- or amzn-s3-demo-, nor end with "
                              "-s3alias, --ol-s3, .mrap or --x-s3 (S3 reserves them).", code="reserved")


def validate_key(key):
    """Refuse a key that cannot be a path under the bucket's directory, with a message naming the problem.

    S3 allows nearly any key; here a key is also where the object's file lives (the bucket is mounted
    into sandboxes with keys as paths), so what a path cannot safely be is refused.
    """
    if not key:
        raise ValidationError("The key is empty.", code="empty")
    if len(key.encode("utf-8", "surrogatepass")) > KEY_MAX_BYTES:
        raise ValidationError(f"The key is longer than {KEY_MAX_BYTES} bytes (UTF-8).", code="too_long")
    bad = next((c for c in key if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValidationError(f"The key contains the control character U+{ord(bad):04X}.", code="control")
    # As in code ZIPs: a name that displays differently from what it is ("invoice\u202egpj.exe").
    bad = next((c for c in key if c in BIDI_CONTROLS), None)
    if bad is not None:
        raise ValidationError(f"The key contains the bidirectional control character U+{ord(bad):04X}.",
                              code="bidi")
    if "\\" in key:
        raise ValidationError("The key contains a backslash (\\): use / between folders.", code="backslash")
    if key.startswith("/"):
        raise ValidationError("The key starts with /: keys are relative to the bucket.", code="absolute")
    for segment in key.split("/"):
        if segment == "":
            raise ValidationError("The key has an empty folder name (// or a trailing /).", code="empty_segment")
        if segment in (".", ".."):
            raise ValidationError(f"The key has a “{segment}” folder name.", code="dot_segment")
        if len(segment.encode()) > SEGMENT_MAX_BYTES:
            raise ValidationError(f"A folder or file name in the key is longer than {SEGMENT_MAX_BYTES} bytes.",
                                  code="segment_too_long")


class KeyConflict(ValidationError):
    pass


class Bucket(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="buckets")
    # Globally unique, as in S3: a bucket's name is its address.
    name = models.CharField(max_length=63, unique=True, validators=[validate_bucket_name])
    # The last sequencer given to one of its events; they increase, so a consumer can order them.
    sequence = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("buckets:detail", args=[self.name])

    @property
    def arn(self):
        return f"arn:aws:s3:::{self.name}"

    @property
    def directory_name(self):
        # With the id: a name freed by a deletion can be taken by another owner, while invocations queued
        # before it (async retries wait up to 6 hours) still carry the mount of the old bucket.
        return f"{self.pk}-{self.name}"

    @property
    def directory(self):
        return Path(settings.BUCKETS_DIR) / self.directory_name

    @property
    def mount(self):
        """This bucket as Function.mounts lists it."""
        return {"bucket": self.name, "directory": self.directory_name}

    @classmethod
    def create(cls, owner, name):
        """Create the bucket and its empty directory."""
        with transaction.atomic():
            bucket = cls.objects.create(owner=owner, name=name)
            storage.make_directory(bucket.directory)
        return bucket

    def delete_with_objects(self):
        """Delete the bucket, its objects and the notifications from it, in one transaction.

        Without ObjectRemoved events: the notifications go in the same transaction (S3 deletes only an
        empty bucket; emptying it first would send them).
        """
        with storage.changes() as files:
            locked = Bucket.objects.select_for_update().get(pk=self.pk)
            for trigger in notifications.triggers_of(locked):
                trigger.delete()  # each: Function.mounts follows (apps.py)
            locked.delete()
            files.remove_directory(self.directory)

    def next_sequencer(self):
        """Take the next sequencer (call with the bucket locked, in the transaction that uses it)."""
        self.sequence += 1
        Bucket.objects.filter(pk=self.pk).update(sequence=self.sequence)
        return f"{self.sequence:018X}"

    def check_key_is_free(self, key):
        """Raise KeyConflict if `key` would be both an object and a folder of objects."""
        conflict = storage.folder_conflict(self.directory, key)
        if conflict == "is_folder":
            raise KeyConflict(f"“{key}” is a folder of other objects (“{key}/…”): a key cannot be both an object "
                              "and a folder.", code="is_folder")
        if conflict:
            raise KeyConflict(f"“{conflict}” is an object, so it cannot also be a folder of “{key}”.",
                              code="under_object")

    def put_object(self, key, stream, length, content_type, requester):
        """Store `length` bytes read from `stream` under `key`; return the Object.

        The bytes are streamed to a temporary file first (never held in memory), then, in one transaction
        with the bucket locked, the row is written, the notifications are queued and the file takes its
        place: the object and its events are committed together or not at all.
        """
        validate_key(key)
        self.check_key_is_free(key)  # before reading what may be gigabytes
        spooled = storage.spool(stream, length)
        try:
            with storage.changes() as files:
                bucket = Bucket.objects.select_for_update().get(pk=self.pk)
                bucket.check_key_is_free(key)
                obj, _ = Object.objects.update_or_create(bucket=bucket, key=key, defaults={
                    "size": spooled.size, "etag": f'"{spooled.md5}"', "content_type": content_type,
                    "last_modified": timezone.now(), "sequencer": bucket.next_sequencer(),
                })
                notifications.notify(bucket, obj, "ObjectCreated:Put", requester)
                files.place(spooled.path, bucket.directory, key)
        finally:
            spooled.discard()  # gone already once placed
        return obj

    def delete_object(self, key, requester):
        """Delete the object under `key`; return whether there was one (S3 answers alike either way)."""
        with storage.changes() as files:
            bucket = Bucket.objects.select_for_update().get(pk=self.pk)
            obj = bucket.contents.filter(key=key).first()
            if obj is None:
                return False
            obj.delete()
            obj.sequencer = bucket.next_sequencer()
            notifications.notify(bucket, obj, "ObjectRemoved:Delete", requester)
            files.remove(bucket.directory, key)
        return True


class Object(models.Model):
    bucket = models.ForeignKey(Bucket, on_delete=models.CASCADE, related_name="contents")
    key = models.CharField(max_length=1024)
    size = models.PositiveBigIntegerField()
    # The MD5 of the bytes in hex, in double quotes, as S3's ETag header shows it.
    etag = models.CharField(max_length=34)
    content_type = models.CharField(max_length=255)
    last_modified = models.DateTimeField()
    # The sequencer of the event that wrote it.
    sequencer = models.CharField(max_length=32)

    class Meta:
        ordering = ["key"]
        constraints = [
            # Its index also serves the bucket page's listing by key prefix.
            models.UniqueConstraint(fields=["bucket", "key"], name="object_key_unique_per_bucket"),
        ]

    def __str__(self):
        return f"{self.bucket.name}/{self.key}"

    def get_absolute_url(self):
        return reverse("buckets:object", args=[self.bucket.name, self.key])

    @property
    def path(self):
        return self.bucket.directory / self.key

    @property
    def name(self):
        """The last segment of the key: its file name."""
        return self.key.rsplit("/", 1)[-1]


def refresh_mounts(function_id):
    """Set Function.mounts from the function's enabled bucket notifications (their buckets, by name)."""
    ids = [t.config.get("bucket") for t in
           Trigger.objects.filter(function_id=function_id, kind=Trigger.Kind.BUCKET, enabled=True)]
    buckets = Bucket.objects.filter(pk__in=ids, owner__functions=function_id).order_by("name")
    Function.objects.filter(pk=function_id).update(mounts=[b.mount for b in buckets])
