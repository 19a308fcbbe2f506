"""Forms for what invokes a function by itself: asynchronous settings, HTTP endpoints, schedules, and the
dead-letter inbox."""

import secrets
import string

from django import forms

from functions.forms import _version_choices, parse_event
from functions.models import EVENT_AGE_MAX, EVENT_AGE_MIN, LATEST, RETRY_ATTEMPTS_MAX, EventInvokeConfig, Trigger
from invocations.schedules import arm
from invocations.sources import schedule


def qualifier_choices(function):
    """Unqualified ($LATEST), each version and each alias, as a trigger or setting may name them."""
    return _version_choices(function) + [(a.name, f"alias {a.name}") for a in function.aliases.all()]


class EventInvokeConfigForm(forms.Form):
    """Lambda's PutFunctionEventInvokeConfig, for one qualifier."""

    qualifier = forms.ChoiceField(label="Applies to", required=False, choices=())
    maximum_retry_attempts = forms.IntegerField(
        label="Retry attempts", min_value=0, max_value=RETRY_ATTEMPTS_MAX, initial=RETRY_ATTEMPTS_MAX,
        help_text="How often a failed event is tried again (0–2), after about 1 and then 2 minutes.")
    maximum_event_age_seconds = forms.IntegerField(
        label="Maximum event age (seconds)", min_value=EVENT_AGE_MIN, max_value=EVENT_AGE_MAX, initial=EVENT_AGE_MAX,
        help_text="An event older than this (60 s – 6 h) is not tried again; it goes to the failure destination.")
    on_success = forms.ChoiceField(label="On success", required=False, choices=())
    on_failure = forms.ChoiceField(label="On failure", required=False, choices=())

    def __init__(self, *args, function, **kwargs):
        super().__init__(*args, **kwargs)
        self.function = function
        self.fields["qualifier"].choices = qualifier_choices(function)
        # Here, not at the top: the queue and topic apps import this module's neighbours.
        from invocations.queues.models import Queue
        from invocations.topics.models import Topic

        owner = function.owner
        others = ([(f.arn, f"function {f.name}") for f in owner.functions.exclude(pk=function.pk)]
                  + [(q.arn, f"queue {q.name}") for q in Queue.objects.filter(owner=owner)]
                  + [(t.arn, f"topic {t.name}") for t in Topic.objects.filter(owner=owner)])
        # A function as its own destination would invoke itself for ever.
        self.fields["on_success"].choices = [("", "none")] + others
        self.fields["on_failure"].choices = [("", "the dead-letter inbox")] + others

    def save(self):
        data = self.cleaned_data
        config, _ = EventInvokeConfig.objects.update_or_create(
            function=self.function, qualifier=data["qualifier"] or LATEST,
            defaults={name: data[name] for name in
                      ("maximum_retry_attempts", "maximum_event_age_seconds", "on_success", "on_failure")},
        )
        return config


def _list_field(label, help_text):
    return forms.CharField(label=label, required=False, help_text=help_text,
                           widget=forms.TextInput(attrs={"placeholder": "comma-separated"}))


def _split(text):
    return [part.strip() for part in text.split(",") if part.strip()]


class HttpEndpointForm(forms.Form):
    """A function URL: its auth type and CORS settings (Lambda's CreateFunctionUrlConfig)."""

    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    auth_type = forms.ChoiceField(choices=Trigger.Auth.choices, initial=Trigger.Auth.NONE)
    allow_origins = _list_field("CORS allowed origins", "e.g. https://example.com, or * for any; empty: no CORS")
    allow_methods = _list_field("CORS allowed methods", "e.g. GET, POST, or *")
    allow_headers = _list_field("CORS allowed headers", "e.g. content-type, x-api-key")
    expose_headers = _list_field("CORS exposed headers", "")
    max_age = forms.IntegerField(label="CORS max age (seconds)", min_value=0, max_value=86400, required=False)
    allow_credentials = forms.BooleanField(label="CORS allows credentials", required=False)

    METHODS = {"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*"}

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            cors = trigger.config.get("cors", {})
            kwargs.setdefault("initial", {
                "qualifier": trigger.qualifier, "auth_type": trigger.config.get("auth_type"),
                **{name: ", ".join(cors.get(name, [])) for name in
                   ("allow_origins", "allow_methods", "allow_headers", "expose_headers")},
                "max_age": cors.get("max_age"), "allow_credentials": cors.get("allow_credentials", False),
            })
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        self.fields["qualifier"].choices = qualifier_choices(function)
        if trigger is not None:
            self.fields["qualifier"].disabled = True  # the URL belongs to what it invokes

    def clean_qualifier(self):
        qualifier = self.cleaned_data["qualifier"]
        others = self.function.triggers.filter(kind=Trigger.Kind.HTTP, qualifier=qualifier)
        if self.trigger is not None:
            others = others.exclude(pk=self.trigger.pk)
        if others.exists():
            raise forms.ValidationError(
                f"{self.function.name}{':' + qualifier if qualifier else ''} already has an HTTP endpoint "
                "(Lambda allows one URL per function or alias).", code="duplicate")
        return qualifier

    def clean_allow_origins(self):
        origins = _split(self.cleaned_data["allow_origins"])
        for origin in origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise forms.ValidationError(f"{origin!r} is not an origin: use scheme://host[:port], or *.")
        return origins

    def clean_allow_methods(self):
        methods = [m.upper() for m in _split(self.cleaned_data["allow_methods"])]
        unknown = sorted(set(methods) - self.METHODS)
        if unknown:
            raise forms.ValidationError(f"Unknown HTTP method: {', '.join(unknown)}.")
        return methods

    def clean_allow_headers(self):
        return [h.lower() for h in _split(self.cleaned_data["allow_headers"])]

    def clean_expose_headers(self):
        return [h.lower() for h in _split(self.cleaned_data["expose_headers"])]

    def clean(self):
        data = super().clean()
        if data.get("allow_credentials") and "*" in data.get("allow_origins", []):
            self.add_error("allow_credentials", "Browsers refuse credentials with the origin *: name the origins.")
        return data

    def save(self):
        """Save the endpoint; return (trigger, new secret key or None)."""
        data = self.cleaned_data
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.HTTP,
                                          qualifier=data["qualifier"], url_id=_url_id())
        cors = {name: data[name] for name in ("allow_origins", "allow_methods", "allow_headers", "expose_headers")}
        cors.update(max_age=data["max_age"] or 0, allow_credentials=data["allow_credentials"])
        trigger.config = {"auth_type": data["auth_type"], "cors": cors if data["allow_origins"] else {}}
        key = None
        if data["auth_type"] == Trigger.Auth.KEY and not trigger.key_sha256:
            key = trigger.new_key()
        elif data["auth_type"] == Trigger.Auth.NONE:
            trigger.key_sha256 = ""
        trigger.save()
        return trigger, key


def _url_id():
    # Lambda's URL ids are 32 lower-case letters and digits.
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


class ScheduleForm(forms.Form):
    """An EventBridge-style schedule: rate() or cron() in AWS's syntax, in a time zone."""

    qualifier = forms.ChoiceField(label="Invokes", required=False, choices=())
    expression = forms.CharField(max_length=256, initial="rate(5 minutes)",
                                 help_text="rate(5 minutes), rate(1 hour), or cron(0 12 * * ? *): minutes hours "
                                           "day-of-month month day-of-week year, with ? in one day field.")
    # Empty means UTC (clean_timezone), as a rate() needs no zone.
    timezone = forms.CharField(max_length=64, initial="UTC", required=False,
                               help_text="For cron(): e.g. Europe/Paris")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, function, trigger=None, **kwargs):
        if trigger is not None:
            kwargs.setdefault("initial", {"qualifier": trigger.qualifier, "enabled": trigger.enabled,
                                          **trigger.config})
        super().__init__(*args, **kwargs)
        self.function, self.trigger = function, trigger
        self.fields["qualifier"].choices = qualifier_choices(function)

    def clean_expression(self):
        text = self.cleaned_data["expression"].strip()
        try:
            schedule.parse(text)
        except schedule.ScheduleExpressionError as e:
            raise forms.ValidationError(str(e), code="invalid_expression") from None
        return text

    def clean_timezone(self):
        name = self.cleaned_data["timezone"].strip() or "UTC"
        try:
            schedule.validate_timezone(name)
        except schedule.ScheduleExpressionError as e:
            raise forms.ValidationError(str(e), code="invalid_timezone") from None
        return name

    def preview(self, count=5):
        """The next fire times of a valid form (or of the saved schedule); [] when there is nothing to show."""
        if self.is_bound and not self.is_valid():
            return []
        data = self.cleaned_data if self.is_bound else {
            "expression": self.initial.get("expression") or self.fields["expression"].initial,
            "timezone": self.initial.get("timezone") or "UTC",
        }
        anchor = self.trigger.created_at if self.trigger is not None else None
        return schedule.upcoming(data["expression"], data["timezone"], anchor=anchor, count=count)

    def save(self):
        data = self.cleaned_data
        trigger = self.trigger or Trigger(function=self.function, kind=Trigger.Kind.SCHEDULE)
        trigger.qualifier = data["qualifier"]
        trigger.enabled = data["enabled"]
        trigger.config = {"expression": data["expression"], "timezone": data["timezone"]}
        if trigger.pk is None:
            trigger.save()  # created_at is a rate's anchor
        else:
            # Not next_fire_at as it was when the page loaded: a scheduler may have fired that tick since,
            # and writing it back would fire it again.
            trigger.save(update_fields=["qualifier", "enabled", "config"])
        arm(trigger)
        return trigger


class DeadLetterForm(forms.Form):
    payload = forms.CharField(widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "code"}),
                              strip=False)

    def __init__(self, *args, letter, **kwargs):
        super().__init__(*args, **kwargs)
        self.letter = letter

    def clean_payload(self):
        text = self.cleaned_data["payload"]
        # Redriven as it was first invoked (asynchronous.redrive), so within that kind's payload limit.
        parse_event(text, asynchronous=self.letter.invocation.kind == "Event")
        return text
