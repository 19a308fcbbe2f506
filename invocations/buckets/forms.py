import uuid

from django import forms

from functions.models import Trigger
from invocations.buckets import notifications
from invocations.buckets.models import Bucket
from invocations.forms import qualifier_choices


class BucketForm(forms.ModelForm):
    class Meta:
        model = Bucket
        fields = ["name"]
        help_texts = {"name": "3–63 lower-case letters, digits, dots and hyphens; unique among every user's buckets, "
                              "as in S3."}
        error_messages = {"name": {"unique": "That name is taken: bucket names are unique across all users.",
                                   "max_length": "A bucket name has 3 to 63 characters."}}

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def save(self):
        return Bucket.create(self.owner, self.cleaned_data["name"])


class BucketNotificationForm(forms.Form):
    """An S3 event notification to the function: the bucket, the event types, and a key prefix and suffix."""

    bucket = forms.ChoiceField(choices=())
    events = forms.MultipleChoiceField(
        choices=[(t, t) for t in notifications.EVENT_TYPES], initial=["s3:ObjectCreated:*"],
        widget=forms.CheckboxSelectMultiple, error_messages={"required": "Choose at least one event type."})
    prefix = forms.CharField(max_length=1024, required=False, strip=False,
                             help_text="Only keys that start with this, e.g. uploads/ (as the key is, not URL-encoded)")
    suffix = forms.CharField(max_length=1024, required=False, strip=False,
                             help_text="Only keys that end with this, e.g. .jpg")
    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            config = trigger.config
            kwargs.setdefault("initial", {
                "bucket": config["bucket"], "events": config["events"], "prefix": config["prefix"],
                "suffix": config["suffix"], "qualifier": trigger.qualifier, "enabled": trigger.enabled})
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        # Only the function owner's own buckets: a posted id of anyone else's is "not one of the choices".
        self.buckets = {str(b.pk): b for b in Bucket.objects.filter(owner=function.owner)}
        self.fields["bucket"].choices = [(pk, b.name) for pk, b in self.buckets.items()]
        if not self.buckets:
            self.fields["bucket"].help_text = "You have no buckets yet: create one on the Buckets page first."
        self.fields["qualifier"].choices = qualifier_choices(function)

    def clean_bucket(self):
        return self.buckets[self.cleaned_data["bucket"]]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        mine = {"events": data["events"], "prefix": data["prefix"], "suffix": data["suffix"]}
        others = notifications.triggers_of(data["bucket"])
        if self.trigger is not None:
            others = others.exclude(pk=self.trigger.pk)
        for other in others:
            if notifications.overlap(mine, other.config):
                raise forms.ValidationError(
                    "Configurations overlap. Configurations on the same bucket cannot share a common event type "
                    f"(with the notification to {other.target}: {other.config['summary']}).", code="overlap")
        return data

    def save(self):
        data = self.cleaned_data
        bucket = data["bucket"]
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.BUCKET)
        trigger.qualifier = data["qualifier"]
        trigger.enabled = data["enabled"]
        filters = [f"{name} {data[name]}" for name in ("prefix", "suffix") if data[name]]
        trigger.config = {
            "bucket": bucket.pk, "bucket_name": bucket.name,
            # S3's configurationId: the Lambda console gives each notification a UUID.
            "id": trigger.config.get("id") or str(uuid.uuid4()),
            "events": data["events"], "prefix": data["prefix"], "suffix": data["suffix"],
            "summary": " · ".join([bucket.name, ", ".join(data["events"]), *filters]),
        }
        trigger.save()  # Function.mounts follows (apps.py)
        return trigger
