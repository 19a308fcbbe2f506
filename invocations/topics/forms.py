"""Forms for topics (create, publish, subscribe a queue) and for a function's topic subscription. The JSON API
publishes through PublishForm too."""

import json
import uuid

from django import forms

from functions.models import Trigger
from invocations.forms import qualifier_choices
from invocations.queues import attributes
from invocations.queues.attributes import InvalidMessage, MessageTooLarge
from invocations.queues.models import Queue
from invocations.topics import filters
from invocations.topics.models import QueueSubscription, Topic, check_message, check_size, check_subject


class TopicForm(forms.ModelForm):
    class Meta:
        model = Topic
        fields = ["name"]

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Topic.objects.filter(owner=self.owner, name=name).exists():
            raise forms.ValidationError(f"You already have a topic named {name!r}.", code="duplicate")
        return name

    def save(self, commit=True):
        self.instance.owner = self.owner
        return super().save(commit)


class PublishForm(forms.Form):
    """SNS's Publish: a message, a subject and message attributes."""

    message = forms.CharField(strip=False, widget=forms.Textarea(
        attrs={"rows": 6, "spellcheck": "false", "class": "code"}))
    subject = forms.CharField(required=False, max_length=99, help_text="Optional: one line of printable ASCII.")
    message_attributes = forms.CharField(
        label="Message attributes (JSON)", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code",
                                     "placeholder": '{"event": "order_placed", "amount": 12.5}'}),
        help_text="Up to 10. A string is a String attribute, a number a Number; or SNS's form with DataType "
                  "(String, String.Array, Number, Binary) and StringValue or BinaryValue (base64).")

    def __init__(self, *args, topic, **kwargs):
        super().__init__(*args, **kwargs)
        self.topic = topic

    def clean_message(self):
        return _checked(check_message, self.cleaned_data["message"])

    def clean_subject(self):
        return _checked(check_subject, self.cleaned_data["subject"])

    def clean_message_attributes(self):
        text = self.cleaned_data["message_attributes"].strip()
        try:
            raw = json.loads(text) if text else {}
        except json.JSONDecodeError as e:
            raise forms.ValidationError(f"Not valid JSON: {e}", code="invalid_json") from None
        _checked(attributes.parse, raw, types=attributes.SNS_TYPES)
        return raw  # as Topic.publish takes them

    def clean(self):
        data = super().clean()
        if "message" in data and "message_attributes" in data:
            try:
                check_size(data["message"], attributes.parse(data["message_attributes"], types=attributes.SNS_TYPES))
            except MessageTooLarge as e:
                self.add_error("message", forms.ValidationError(str(e), code="too_large"))
        return data

    def save(self):
        data = self.cleaned_data
        return self.topic.publish(data["message"], data["subject"], data["message_attributes"])


def _checked(check, value, **options):
    """Run one of the model's checks on a field's value; turn its InvalidMessage into the field's error."""
    try:
        check(value, **options)
    except InvalidMessage as e:
        raise forms.ValidationError(str(e), code="invalid") from None
    return value


def filter_policy_field():
    return forms.CharField(
        label="Filter policy (JSON)", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code",
                                     "placeholder": '{"event": ["order_placed"], "amount": [{"numeric": [">", 9]}]}'}),
        help_text="Optional, as SNS's FilterPolicy: only messages that match are delivered. Empty for all.")


def filter_policy_scope_field():
    return forms.ChoiceField(
        label="Filter policy scope", choices=[(s, s) for s in filters.SCOPES], initial=filters.ATTRIBUTES,
        required=False,  # SNS's default, MessageAttributes, when not given
        help_text="Match the message attributes, or the message body parsed as JSON (a message that is not "
                  "JSON then never matches).")


def clean_filter_policy(form, data):
    """Check the policy against its scope with filters.parse; store it as the text the user gave."""
    if "filter_policy" in data and "filter_policy_scope" in data:
        data["filter_policy_scope"] = data["filter_policy_scope"] or filters.ATTRIBUTES
        try:
            filters.parse(data["filter_policy"], data["filter_policy_scope"])
        except ValueError as e:
            form.add_error("filter_policy", forms.ValidationError(str(e), code="invalid_filter_policy"))
        else:
            data["filter_policy"] = data["filter_policy"].strip()


class QueueSubscriptionForm(forms.Form):
    queue = forms.ModelChoiceField(queryset=Queue.objects.none(), empty_label=None, error_messages={
        "invalid_choice": "That is not one of your queues: choose a queue you own."})
    raw_message_delivery = forms.BooleanField(
        required=False, help_text="Deliver the message itself, with its attributes as the queue message's, "
                                  "instead of SNS's JSON envelope.")
    filter_policy = filter_policy_field()
    filter_policy_scope = filter_policy_scope_field()

    def __init__(self, *args, topic, **kwargs):
        super().__init__(*args, **kwargs)
        self.topic = topic
        self.fields["queue"].queryset = Queue.objects.filter(owner=topic.owner)

    def clean_queue(self):
        queue = self.cleaned_data["queue"]
        if self.topic.queue_subscriptions.filter(queue=queue).exists():
            raise forms.ValidationError(f"{queue.name} is already subscribed to {self.topic.name}.", code="duplicate")
        return queue

    def clean(self):
        data = super().clean()
        clean_filter_policy(self, data)
        return data

    def save(self):
        return QueueSubscription.objects.create(topic=self.topic, **self.cleaned_data)


class TopicTriggerForm(forms.Form):
    """A function's subscription to one of the owner's topics (SNS's Subscribe with the lambda protocol)."""

    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    topic = forms.ModelChoiceField(queryset=Topic.objects.none(), empty_label=None, error_messages={
        "invalid_choice": "That is not one of your topics: choose a topic you own."})
    enabled = forms.BooleanField(required=False, initial=True)
    filter_policy = filter_policy_field()
    filter_policy_scope = filter_policy_scope_field()

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            kwargs.setdefault("initial", {
                "qualifier": trigger.qualifier, "enabled": trigger.enabled, "topic": trigger.config["topic_id"],
                "filter_policy": trigger.config.get("filter_policy", ""),
                "filter_policy_scope": trigger.config.get("filter_policy_scope", filters.ATTRIBUTES)})
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        self.fields["qualifier"].choices = qualifier_choices(function)
        self.fields["topic"].queryset = Topic.objects.filter(owner=function.owner)

    def clean(self):
        data = super().clean()
        topic = data.get("topic")
        if topic is not None and "qualifier" in data:
            others = self.function.triggers.filter(kind=Trigger.Kind.TOPIC, qualifier=data["qualifier"],
                                                   config__topic_id=topic.pk)
            if self.trigger is not None:
                others = others.exclude(pk=self.trigger.pk)
            if others.exists():
                target = f"{self.function.name}:{data['qualifier']}" if data["qualifier"] else self.function.name
                self.add_error("topic", f"{target} is already subscribed to {topic.name}.")
        clean_filter_policy(self, data)
        return data

    def save(self):
        data = self.cleaned_data
        topic = data["topic"]
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.TOPIC)
        trigger.qualifier = data["qualifier"]
        trigger.enabled = data["enabled"]
        # The subscription keeps its id (in EventSubscriptionArn) while it stays on the same topic.
        same_topic = self.trigger is not None and trigger.config.get("topic_id") == topic.pk
        subscription_id = trigger.config["subscription_id"] if same_topic else str(uuid.uuid4())
        trigger.config = {"topic_id": topic.pk, "topic_name": topic.name, "subscription_id": subscription_id,
                          "summary": f"topic {topic.name}" + (" (filtered)" if data["filter_policy"] else ""),
                          "filter_policy": data["filter_policy"], "filter_policy_scope": data["filter_policy_scope"]}
        trigger.save()
        return trigger
