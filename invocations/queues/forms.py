"""Forms for queues (create and configure, send a message) and for a function's queue trigger. The JSON API
sends messages through SendMessageForm too, and checks ReceiveMessage's parameters with ReceiveMessageForm."""

import json

from django import forms

from functions.models import Trigger
from invocations.forms import qualifier_choices
from invocations.queues import attributes
from invocations.queues.models import (DELAY_MAX, VISIBILITY_TIMEOUT_MAX, WAIT_TIME_MAX, InvalidMessage,
                                        MessageTooLarge, Queue, check_body, check_size)


class QueueForm(forms.ModelForm):
    """SQS's CreateQueue and SetQueueAttributes: the name (fixed once made), visibility timeout, retention
    and the redrive policy (dead-letter queue and maxReceiveCount)."""

    class Meta:
        model = Queue
        fields = ["name", "visibility_timeout", "message_retention", "dead_letter_queue", "max_receive_count"]
        labels = {"visibility_timeout": "Visibility timeout (seconds)",
                  "message_retention": "Message retention (seconds)",
                  "dead_letter_queue": "Dead-letter queue", "max_receive_count": "Maximum receives"}

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        others = Queue.objects.filter(owner=owner)
        if self.instance.pk is not None:
            others = others.exclude(pk=self.instance.pk)  # a queue cannot be its own dead-letter queue
            self.fields["name"].disabled = True  # SQS queues are never renamed
        field = self.fields["dead_letter_queue"]
        field.queryset = others
        field.empty_label = "none"
        field.error_messages["invalid_choice"] = "Choose one of your other queues as the dead-letter queue."

    def clean_name(self):
        name = self.cleaned_data["name"]
        if self.instance.pk is None and Queue.objects.filter(owner=self.owner, name=name).exists():
            raise forms.ValidationError(f"You already have a queue named {name!r}.", code="duplicate")
        return name

    def save(self, commit=True):
        queue = super().save(commit=False)
        queue.owner = self.owner
        retention_changed = queue.pk is not None and "message_retention" in self.changed_data
        if commit:
            queue.save()
            if retention_changed:
                queue.retention_changed()
        return queue


class SendMessageForm(forms.Form):
    """SQS's SendMessage: a body, message attributes and a delay."""

    body = forms.CharField(label="Message body", strip=False, widget=forms.Textarea(
        attrs={"rows": 6, "spellcheck": "false", "class": "code"}))
    message_attributes = forms.CharField(
        label="Message attributes (JSON)", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code",
                                     "placeholder": '{"color": "red", "size": 3, "note": {"DataType": "String", '
                                                    '"StringValue": "fragile"}}'}),
        help_text="Up to 10. A string is a String attribute, a number a Number; or SQS's form with DataType and "
                  "StringValue or BinaryValue (base64).")
    delay_seconds = forms.IntegerField(label="Delay (seconds)", min_value=0, max_value=DELAY_MAX, required=False,
                                       initial=0, help_text="Hidden this long after sending (0–900).")

    def __init__(self, *args, queue, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = queue

    def clean_body(self):
        body = self.cleaned_data["body"]
        try:
            check_body(body)
        except InvalidMessage as e:
            raise forms.ValidationError(str(e), code="invalid_body") from None
        return body

    def clean_message_attributes(self):
        text = self.cleaned_data["message_attributes"].strip()
        try:
            return attributes.parse(json.loads(text) if text else {})
        except json.JSONDecodeError as e:
            raise forms.ValidationError(f"Not valid JSON: {e}", code="invalid_json") from None
        except InvalidMessage as e:
            raise forms.ValidationError(str(e), code="invalid_attributes") from None

    def clean(self):
        data = super().clean()
        if "body" in data and "message_attributes" in data:
            try:
                check_size(data["body"], data["message_attributes"])
            except MessageTooLarge as e:
                self.add_error("body", forms.ValidationError(str(e), code="too_large"))
        return data

    def save(self, sender_id=""):
        data = self.cleaned_data
        return self.queue.put(data["body"], data["message_attributes"], sender_id=sender_id,
                              delay_seconds=data["delay_seconds"] or 0)


class ReceiveMessageForm(forms.Form):
    """SQS's ReceiveMessage, for the JSON API: how many, how long they stay hidden, how long to wait."""

    max_number_of_messages = forms.IntegerField(min_value=1, max_value=10, required=False)
    visibility_timeout = forms.IntegerField(min_value=0, max_value=VISIBILITY_TIMEOUT_MAX, required=False)
    wait_time_seconds = forms.IntegerField(min_value=0, max_value=WAIT_TIME_MAX, required=False)
    message_attribute_names = forms.Field(required=False)

    def clean_message_attribute_names(self):
        names = self.cleaned_data["message_attribute_names"] or []
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise forms.ValidationError('Give a list of names, e.g. ["All"] or ["color", "bar.*"].')
        return names


class QueueTriggerForm(forms.Form):
    """An event source mapping from one of the owner's queues (Lambda's CreateEventSourceMapping for SQS)."""

    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    queue = forms.ModelChoiceField(queryset=Queue.objects.none(), empty_label=None, error_messages={
        "invalid_choice": "That is not one of your queues: choose a queue you own."})
    batch_size = forms.IntegerField(min_value=1, max_value=10, initial=10,
                                    help_text="Messages per invocation, at most (1–10).")
    maximum_batching_window = forms.IntegerField(
        label="Batching window (seconds)", min_value=0, max_value=300, initial=0,
        help_text="Wait up to this long for a full batch (0–300); 0 invokes as soon as a message is visible.")
    maximum_concurrency = forms.IntegerField(
        min_value=2, max_value=1000, initial=2,
        help_text="Batches in flight at once for this trigger (2–1000).")
    report_batch_item_failures = forms.BooleanField(
        label="Report batch item failures", required=False,
        help_text='The function may return {"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}: only '
                  "those messages come back; the rest are deleted.")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            config = trigger.config
            kwargs.setdefault("initial", {
                "qualifier": trigger.qualifier, "enabled": trigger.enabled, "queue": config["queue_id"],
                **{name: config[name] for name in ("batch_size", "maximum_batching_window", "maximum_concurrency",
                                                   "report_batch_item_failures")},
            })
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        self.fields["qualifier"].choices = qualifier_choices(function)
        self.fields["queue"].queryset = Queue.objects.filter(owner=function.owner)

    def clean(self):
        data = super().clean()
        queue = data.get("queue")
        if queue is not None and "qualifier" in data:
            others = self.function.triggers.filter(kind=Trigger.Kind.QUEUE, qualifier=data["qualifier"],
                                                   config__queue_id=queue.pk)
            if self.trigger is not None:
                others = others.exclude(pk=self.trigger.pk)
            if others.exists():
                self.add_error("queue", f"{self.trigger_target(data['qualifier'])} already has a trigger on "
                                        f"{queue.name} (Lambda allows one mapping per queue and function).")
        if queue is not None and queue.visibility_timeout < self.function.timeout:
            # Lambda's rule: a batch would become visible, and be delivered again, while its run goes on.
            self.add_error("queue", f"{queue.name}'s visibility timeout ({queue.visibility_timeout} s) is less than "
                                    f"the function's timeout ({self.function.timeout} s): raise it first.")
        return data

    def trigger_target(self, qualifier):
        return f"{self.function.name}:{qualifier}" if qualifier else self.function.name

    def save(self):
        data = self.cleaned_data
        queue = data["queue"]
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.QUEUE)
        trigger.qualifier = data["qualifier"]
        trigger.enabled = data["enabled"]
        summary = (f"{queue.name} · batch {data['batch_size']} · window {data['maximum_batching_window']} s · "
                   f"concurrency {data['maximum_concurrency']}")
        if data["report_batch_item_failures"]:
            summary += " · partial batch responses"
        trigger.config = {
            "queue_id": queue.pk, "queue_name": queue.name, "batch_size": data["batch_size"],
            "maximum_batching_window": data["maximum_batching_window"],
            "maximum_concurrency": data["maximum_concurrency"],
            "report_batch_item_failures": data["report_batch_item_failures"], "summary": summary,
        }
        trigger.save()
        return trigger
