"""Forms for tables, their items, and the stream trigger (Lambda's event source mapping for DynamoDB Streams)."""

import json

from django import forms
from django.core.validators import RegexValidator

from functions.models import Trigger
from invocations.forms import qualifier_choices
from invocations.tables.attributes import InvalidItem, parse_item
from invocations.tables.models import NAME_PATTERN, StreamCursor, Table

# DynamoDB: key attribute names are 1–255 bytes.
MAX_KEY_NAME_BYTES = 255


class TableForm(forms.Form):
    """DynamoDB's CreateTable, kept small: a partition key, an optional sort key, and the stream's view type."""

    name = forms.CharField(
        max_length=255, validators=[RegexValidator(NAME_PATTERN, "A table name is 3–255 of A-Z a-z 0-9 _ - and .")],
        help_text="3–255 of A-Z a-z 0-9 _ - and .")
    partition_key_name = forms.CharField(label="Partition key", max_length=255, initial="id")
    partition_key_type = forms.ChoiceField(label="Partition key type", choices=Table.KeyType.choices)
    sort_key_name = forms.CharField(label="Sort key", max_length=255, required=False, help_text="Optional.")
    sort_key_type = forms.ChoiceField(label="Sort key type", choices=Table.KeyType.choices)
    stream_view_type = forms.ChoiceField(label="Stream records carry", choices=Table.ViewType.choices,
                                         initial=Table.ViewType.NEW_AND_OLD_IMAGES,
                                         help_text="Besides the keys, for every change. Fixed once the table exists.")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_name(self):
        name = self.cleaned_data["name"]
        if self.owner.tables.filter(name=name).exists():
            raise forms.ValidationError(f"You already have a table named {name}.", code="duplicate")
        return name

    def _key_name(self, field):
        name = self.cleaned_data[field]
        if len(name.encode()) > MAX_KEY_NAME_BYTES:
            raise forms.ValidationError(f"A key attribute name is at most {MAX_KEY_NAME_BYTES} bytes.")
        return name

    def clean_partition_key_name(self):
        return self._key_name("partition_key_name")

    def clean_sort_key_name(self):
        return self._key_name("sort_key_name")

    def clean(self):
        data = super().clean()
        if data.get("sort_key_name") and data.get("sort_key_name") == data.get("partition_key_name"):
            self.add_error("sort_key_name", "The sort key must be another attribute than the partition key.")
        return data

    def save(self):
        data = self.cleaned_data
        return Table.objects.create(
            owner=self.owner, name=data["name"],
            partition_key_name=data["partition_key_name"], partition_key_type=data["partition_key_type"],
            sort_key_name=data["sort_key_name"], sort_key_type=data["sort_key_type"] if data["sort_key_name"] else "",
            stream_view_type=data["stream_view_type"],
        )


class ItemForm(forms.Form):
    """An item in DynamoDB's typed JSON, as PutItem takes it."""

    item = forms.CharField(
        strip=False, widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
        help_text='DynamoDB\'s typed JSON, e.g. {"id": {"S": "a1"}, "n": {"N": "42"}, "tags": {"SS": ["x"]}}. '
                  "An item with the key of an existing one replaces it.")

    def __init__(self, *args, table, **kwargs):
        super().__init__(*args, **kwargs)
        self.table = table

    def clean_item(self):
        try:
            item = parse_item(self.cleaned_data["item"])
            self.table.keys_of(item)
        except InvalidItem as e:
            raise forms.ValidationError(str(e), code="invalid_item") from None
        return item

    @staticmethod
    def text(item):
        return json.dumps(item, indent=2, ensure_ascii=False)


# Lambda's bounds for a DynamoDB Streams event source mapping (CreateEventSourceMapping).
BATCH_SIZE_MAX = 10000
RETRY_ATTEMPTS_MAX = 10000
BATCHING_WINDOW_MAX = 300


class TableStreamForm(forms.Form):
    """A table stream trigger: which table, how many records per batch and how long to wait for them, where to
    start, whether the function reports partial batch failures, whether a failing batch is split, how often it is
    retried. The
    table and starting position are fixed once it exists, as in Lambda."""

    class StartingPosition:
        TRIM_HORIZON = "TRIM_HORIZON"
        LATEST = "LATEST"
        choices = [(TRIM_HORIZON, "Trim horizon: every record still in the stream (24 hours)"),
                   (LATEST, "Latest: only changes made from now on")]

    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    table = forms.ChoiceField(choices=(), error_messages={
        "invalid_choice": "Choose one of your own tables: you have no table named %(value)s."})
    batch_size = forms.IntegerField(min_value=1, max_value=BATCH_SIZE_MAX, initial=100,
                                    help_text="Records per invocation, 1–10000 (within the 6 MB payload limit).")
    maximum_batching_window = forms.IntegerField(
        label="Batching window (seconds)", required=False, min_value=0, max_value=BATCHING_WINDOW_MAX, initial=0,
        help_text="Wait up to this long for a full batch (0–300); 0 invokes as soon as a record is written.")
    starting_position = forms.ChoiceField(choices=StartingPosition.choices, initial=StartingPosition.LATEST)
    maximum_retry_attempts = forms.IntegerField(
        label="Retry attempts", min_value=-1, max_value=RETRY_ATTEMPTS_MAX, initial=-1,
        help_text="How often a batch the function fails on is sent again: -1 until it succeeds (or its records "
                  "expire), or 0–10000. Throttles and platform failures are always retried.")
    report_batch_item_failures = forms.BooleanField(
        label="Report batch item failures", required=False,
        help_text='The function may return {"batchItemFailures": [{"itemIdentifier": "<SequenceNumber>"}]}: the '
                  "records before the lowest one named are done, and the batch is retried from that record.")
    bisect_batch_on_function_error = forms.BooleanField(
        label="Split batch on error", required=False,
        help_text="When the function fails on a batch, split it in two and retry each half, first half first, "
                  "down to the bad record; splitting does not count as a retry attempt.")
    on_failure = forms.ChoiceField(label="On failure", required=False,
                                   choices=[("", "the function's dead-letter inbox")],
                                   help_text="Where a batch goes when its retries are spent.")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            kwargs.setdefault("initial", {"qualifier": trigger.qualifier, "enabled": trigger.enabled,
                                          **trigger.config})
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        self.fields["qualifier"].choices = qualifier_choices(function)
        self.fields["table"].choices = [(t.name, t.name) for t in function.owner.tables.all()]
        if not self.fields["table"].choices:
            self.fields["table"].help_text = "You have no table yet: create one under Tables first."
        if trigger is not None:
            self.fields["table"].disabled = True
            self.fields["starting_position"].disabled = True

    def clean_table(self):
        return self.function.owner.tables.get(name=self.cleaned_data["table"])

    def clean_maximum_batching_window(self):
        window = self.cleaned_data["maximum_batching_window"]
        return 0 if window is None else window  # Lambda's default for streams

    def save(self):
        data = self.cleaned_data
        table = data["table"]
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.TABLE)
        trigger.qualifier, trigger.enabled = data["qualifier"], data["enabled"]
        retries, window = data["maximum_retry_attempts"], data["maximum_batching_window"]
        summary = f"table {table.name} · batch {data['batch_size']} · "
        if window:
            summary += f"window {window} s · "
        summary += f"from {data['starting_position']} · "
        if data["report_batch_item_failures"]:
            summary += "partial batch responses · "
        if data["bisect_batch_on_function_error"]:
            summary += "split on error · "
        summary += f"retries {'until success' if retries == -1 else retries} · then the dead-letter inbox"
        trigger.config = {
            "table": table.name, "batch_size": data["batch_size"], "maximum_batching_window": window,
            "starting_position": data["starting_position"], "maximum_retry_attempts": retries,
            "report_batch_item_failures": data["report_batch_item_failures"],
            "bisect_batch_on_function_error": data["bisect_batch_on_function_error"], "on_failure": data["on_failure"],
            "summary": summary,
        }
        if trigger.pk is not None:
            trigger.save(update_fields=["qualifier", "enabled", "config"])
            return trigger
        trigger.save()
        # LATEST: from the table's last record now (read in the form's transaction, see triggers._edit).
        latest = data["starting_position"] == self.StartingPosition.LATEST
        position = Table.objects.get(pk=table.pk).last_sequence_number if latest else 0
        StreamCursor.objects.create(trigger=trigger, table=table, position=position)
        return trigger
