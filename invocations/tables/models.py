"""Tables with change streams, DynamoDB-like and kept small: items keyed by a partition key (and an optional
sort key) in DynamoDB's typed JSON; every change writes a stream record in the same transaction; a stream
trigger's cursor says how far its function has read."""

from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from functions.models import account_id
from invocations.tables.attributes import (
    MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, InvalidItem, item_size, key_hash, key_text, value_size,
)

# DynamoDB's rule for table names.
NAME_PATTERN = r"^[A-Za-z0-9_.-]{3,255}$"
# Sequence numbers are shown as DynamoDB shows them: a decimal string of 21 digits or more.
SEQUENCE_BASE = 10 ** 20


class Table(models.Model):
    class KeyType(models.TextChoices):
        S = "S", "String (S)"
        N = "N", "Number (N)"
        B = "B", "Binary (B)"

    class ViewType(models.TextChoices):
        NEW_IMAGE = "NEW_IMAGE", "New image: the item after the change"
        OLD_IMAGE = "OLD_IMAGE", "Old image: the item before the change"
        NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES", "New and old images"
        KEYS_ONLY = "KEYS_ONLY", "Keys only"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tables")
    name = models.CharField(max_length=255)
    partition_key_name = models.CharField(max_length=255)
    partition_key_type = models.CharField(max_length=1, choices=KeyType.choices, default=KeyType.S)
    sort_key_name = models.CharField(max_length=255, blank=True)
    sort_key_type = models.CharField(max_length=1, choices=KeyType.choices, blank=True)
    # What each stream record carries besides the keys; fixed for the stream's life, as in DynamoDB (a new
    # view type is a new stream).
    stream_view_type = models.CharField(max_length=20, choices=ViewType.choices, default=ViewType.NEW_AND_OLD_IMAGES)
    # The stream's label (the end of its ARN), the moment the stream began: "2015-05-11T21:21:33.291".
    stream_label = models.CharField(max_length=23)
    # The last sequence number given to a stream record; taken under the table's row lock (or SQLite's
    # write lock), so numbers never repeat or go backwards.
    last_sequence_number = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="table_name_unique_per_owner")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("tables:detail", args=[self.name])

    def save(self, *args, **kwargs):
        if not self.stream_label:
            self.stream_label = self.created_at.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
        super().save(*args, **kwargs)

    @property
    def arn(self):
        return f"arn:aws:dynamodb:{settings.LAMBDA_REGION}:{account_id(self.owner)}:table/{self.name}"

    @property
    def stream_arn(self):
        return f"{self.arn}/stream/{self.stream_label}"

    def key_schema(self):
        """[(role, attribute name, type, byte limit)]: the partition key, then the sort key if any."""
        schema = [("partition", self.partition_key_name, self.partition_key_type, MAX_PARTITION_KEY_BYTES)]
        if self.sort_key_name:
            schema.append(("sort", self.sort_key_name, self.sort_key_type, MAX_SORT_KEY_BYTES))
        return schema

    def keys_of(self, item):
        """Return the item's key attributes {name: typed value}; raise InvalidItem if one is missing, of
        another type, empty or too long."""
        keys = {}
        for role, name, kind, limit in self.key_schema():
            value = item.get(name)
            if value is None:
                raise InvalidItem(f"The item has no attribute '{name}': it is the table's {role} key (type {kind}).")
            [(given, _)] = value.items()
            if given != kind:
                raise InvalidItem(f"attribute '{name}' is the table's {role} key: its type must be {kind}, "
                                  f"not {given}.")
            size = value_size(value)
            if size == 0:
                raise InvalidItem(f"attribute '{name}' is the table's {role} key: it may not be empty.")
            if size > limit:
                raise InvalidItem(f"attribute '{name}' is the table's {role} key: {size:,} bytes, over the "
                                  f"limit of {limit:,}.")
            keys[name] = value
        return keys

    def _key_texts(self, keys):
        partition = key_text(keys[self.partition_key_name])
        sort = key_text(keys[self.sort_key_name]) if self.sort_key_name else ""
        return partition, sort

    def find(self, keys):
        """The item with these key attributes, or None."""
        return self.items.filter(key_hash=key_hash(*self._key_texts(keys))).first()

    def put_item(self, item):
        """Store a validated item (attributes.clean_item), replacing the one with the same key, and record the
        change on the stream in the same transaction. Return (the stream record or None, the old item's
        data or None). Raise InvalidItem for a bad key, with nothing changed.

        As in DynamoDB, a put that changes nothing writes no stream record.
        """
        keys = self.keys_of(item)
        partition, sort = self._key_texts(keys)
        digest = key_hash(partition, sort)
        with transaction.atomic():
            table = self._lock()
            old = table.items.filter(key_hash=digest).first()
            if old is not None and old.data == item:
                return None, old.data
            if old is None:
                Item.objects.create(table=table, partition_key=partition, sort_key=sort, key_hash=digest,
                                    data=item, size=item_size(item))
                record = table._record(StreamRecord.EventName.INSERT, keys, new=item, old=None)
                return record, None
            Item.objects.filter(pk=old.pk).update(data=item, size=item_size(item), updated_at=timezone.now())
            record = table._record(StreamRecord.EventName.MODIFY, keys, new=item, old=old.data)
            return record, old.data

    def delete_item(self, keys):
        """Delete the item with these key attributes and record its removal on the stream, in one transaction;
        return (the stream record, the deleted item's data), or (None, None) if there was no such item."""
        digest = key_hash(*self._key_texts(keys))
        with transaction.atomic():
            table = self._lock()
            item = table.items.filter(key_hash=digest).first()
            if item is None:
                return None, None
            item.delete()
            record = table._record(StreamRecord.EventName.REMOVE, self.keys_of(item.data), new=None, old=item.data)
            return record, item.data

    def _lock(self):
        """This table's row, locked until the transaction ends: writes to one table take their sequence
        numbers one after the other. (SQLite ignores the lock; its IMMEDIATE transactions already hold the
        database's write lock.)"""
        return Table.objects.select_for_update().get(pk=self.pk)

    def _record(self, event_name, keys, new, old):
        """Append a stream record of a change. Call on a locked row (_lock)."""
        self.last_sequence_number += 1
        Table.objects.filter(pk=self.pk).update(last_sequence_number=self.last_sequence_number)
        record = self.stream_record(event_name, keys, new, old)
        record.save(force_insert=True)
        return record

    def stream_record(self, event_name, keys, new, old):
        """An unsaved stream record of a change, with what the table's view type keeps of the item before
        (`old`) and after (`new`) it, numbered after the last one."""
        view = self.stream_view_type
        new_image = new if view in (self.ViewType.NEW_IMAGE, self.ViewType.NEW_AND_OLD_IMAGES) else None
        old_image = old if view in (self.ViewType.OLD_IMAGE, self.ViewType.NEW_AND_OLD_IMAGES) else None
        return StreamRecord(
            table=self, sequence_number=self.last_sequence_number, event_name=event_name, keys=keys,
            new_image=new_image, old_image=old_image,
            # DynamoDB's SizeBytes: the keys and the images the record carries.
            size_bytes=item_size(keys) + item_size(new_image or {}) + item_size(old_image or {}),
        )


class Item(models.Model):
    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="items")
    # The key values as text (attributes.key_text), for listing; key_hash makes the key unique whatever its
    # length (DynamoDB's keys may be longer than a database index entry).
    partition_key = models.TextField()
    sort_key = models.TextField(blank=True)
    key_hash = models.CharField(max_length=64)
    data = models.JSONField(help_text="the item in DynamoDB's typed JSON")
    size = models.PositiveIntegerField(help_text="bytes, as DynamoDB counts them")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["partition_key", "sort_key"]
        constraints = [models.UniqueConstraint(fields=["table", "key_hash"], name="item_key_unique_per_table")]
        # The table page's items, page by page (Table.key_hash lookups use the unique constraint's index).
        indexes = [models.Index(fields=["table", "partition_key", "sort_key"], name="item_table_keys")]

    def __str__(self):
        return f"{self.partition_key} {self.sort_key}".strip()


class StreamRecord(models.Model):
    """One change to a table's items, in the order the changes were made (sequence_number)."""

    class EventName(models.TextChoices):
        INSERT = "INSERT"
        MODIFY = "MODIFY"
        REMOVE = "REMOVE"

    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="stream_records")
    sequence_number = models.BigIntegerField()
    event_name = models.CharField(max_length=6, choices=EventName.choices)
    keys = models.JSONField()
    new_image = models.JSONField(null=True, blank=True)
    old_image = models.JSONField(null=True, blank=True)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["table", "sequence_number"]
        constraints = [
            # Also the index of a poller's "the records after the cursor, in order".
            models.UniqueConstraint(fields=["table", "sequence_number"], name="stream_record_sequence_unique"),
        ]
        # Trimming the records older than the stream's retention (streams.trim).
        indexes = [models.Index(fields=["created_at"], name="stream_record_created")]

    def __str__(self):
        return f"{self.event_name} {self.sequence_text}"

    @property
    def sequence_text(self):
        return str(SEQUENCE_BASE + self.sequence_number)


class StreamCursor(models.Model):
    """How far a table stream trigger (functions.models.Trigger, kind "table") has read its table's stream,
    and the batch it has in flight or is retrying. One batch at a time, so records reach the function in
    order."""

    trigger = models.OneToOneField("functions.Trigger", on_delete=models.CASCADE, related_name="table_cursor")
    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="cursors")
    # The last sequence number the function is done with (delivered, or given up on).
    position = models.BigIntegerField(default=0)
    # The current batch's last sequence number while it is in flight or waits for a retry; a retry sends the
    # same records again. None between batches.
    batch_last = models.BigIntegerField(null=True, blank=True)
    # The current batch's failed attempts that count toward the trigger's maximum retry attempts (function
    # errors and timeouts; not throttles or platform failures, as in Lambda), and all its failed tries in a
    # row (for the back-off).
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    # While a failed batch is being bisected (the trigger's bisect_batch_on_function_error): the last sequence
    # numbers of the halves still to send after the current batch, the next one last. Empty otherwise.
    halves = models.JSONField(default=list, blank=True)
    invocation = models.ForeignKey("invocations.Invocation", on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    taken_at = models.DateTimeField(null=True, blank=True)
    # After a failure, the batch is not sent again before this.
    retry_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"stream cursor of trigger {self.trigger_id} at {self.position}"
