import functools
import json
import subprocess

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from functions import envvars
from functions.codezip import MAX_UNZIPPED_BYTES, ZipRejected, ZipSummary
from functions.models import (
    EPHEMERAL_MAX,
    EPHEMERAL_MIN,
    MEMORY_MAX,
    MEMORY_MIN,
    NAME_PATTERN,
    RESERVED_CONCURRENCY_MAX,
    TIMEOUT_MAX,
    TIMEOUT_MIN,
    Alias,
    CodeArtifact,
    Function,
    Layer,
    LayerVersion,
    TestEvent,
    payload_too_large,
)

validate_name = RegexValidator(
    NAME_PATTERN, "Use 1 to 64 letters, digits, hyphens (-) and underscores (_).", code="invalid_name"
)
validate_handler = RegexValidator(
    r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$",
    "Use module.function, e.g. lambda_function.handler (Python identifiers separated by dots).",
    code="invalid_handler",
)
validate_event_name = RegexValidator(
    r"^[A-Za-z0-9_-]{1,25}$", "Use 1 to 25 letters, digits, hyphens and underscores.", code="invalid_event_name"
)


@functools.cache
def host_runtime():
    """Return the sandbox interpreter's runtime name, e.g. python3.11."""
    out = subprocess.run(
        [settings.SANDBOX_PYTHON, "-I", "-c", "import sys; print('python%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return out.stdout.strip()


def parse_event(text, asynchronous=False):
    """Return `text` as JSON, or raise ValidationError naming the problem."""
    too_large = payload_too_large(len(text.encode()), asynchronous)
    if too_large:
        raise forms.ValidationError(f"RequestTooLargeException: {too_large}.", code="too_large")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise forms.ValidationError(f"The event is not valid JSON: {e}.", code="invalid_json") from None


class CodeField(forms.FileField):
    """A ZIP upload, validated completely; its ZipSummary is left on the field's form."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "A .zip of at most 50 MB with your handler module at its root.")
        super().__init__(**kwargs)
        self.widget.attrs["accept"] = ".zip,application/zip"


def _inspect_code(upload):
    try:
        return CodeArtifact.inspect(upload)
    except ZipRejected as e:
        raise forms.ValidationError(str(e), code="bad_zip") from None


def _check_handler_module(form, handler, summary):
    module = handler.rsplit(".", 1)[0]
    if not summary.has_module(module):
        path = module.replace(".", "/")
        form.add_error(
            "handler" if "handler" in form.fields else "code",
            forms.ValidationError(
                f"The ZIP has no module {module!r}: expected {path}.py or {path}/__init__.py.", code="no_module"
            ),
        )


class SettingsFields(forms.Form):
    """The settings a function is created with and can change later."""

    memory_size = forms.IntegerField(
        label="Memory (MB)", min_value=MEMORY_MIN, max_value=MEMORY_MAX, initial=128,
        help_text=f"{MEMORY_MIN} to {MEMORY_MAX} MB.",
    )
    timeout = forms.IntegerField(
        label="Timeout (seconds)", min_value=TIMEOUT_MIN, max_value=TIMEOUT_MAX, initial=3,
        help_text=f"{TIMEOUT_MIN} to {TIMEOUT_MAX} seconds.",
    )
    ephemeral_storage = forms.IntegerField(
        label="Ephemeral storage (MB)", min_value=EPHEMERAL_MIN, max_value=EPHEMERAL_MAX, initial=512,
        required=False, help_text=f"The size of /tmp: {EPHEMERAL_MIN} to {EPHEMERAL_MAX} MB.",
    )
    outbound_network = forms.BooleanField(
        label="Outbound network", required=False,
        help_text="Off: the function has no network at all. On: it reaches the internet, but not this host "
                  "nor private or link-local addresses (where the host has the egress filter: see /status/).",
    )
    description = forms.CharField(max_length=256, required=False)

    def clean_ephemeral_storage(self):
        return self.cleaned_data["ephemeral_storage"] or EPHEMERAL_MIN


class FunctionForm(SettingsFields):
    field_order = ["name", "runtime", "handler", "code"]

    name = forms.CharField(max_length=64, validators=[validate_name])
    runtime = forms.ChoiceField(choices=())
    handler = forms.CharField(max_length=128, initial="lambda_function.handler", validators=[validate_handler])
    code = CodeField()

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        runtime = host_runtime()
        self.fields["runtime"].choices = [(runtime, runtime)]
        self.fields["runtime"].initial = runtime
        self.code_summary = None

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Function.objects.filter(owner=self.owner, name=name).exists():
            raise forms.ValidationError(f"You already have a function named {name!r}.", code="duplicate")
        return name

    def clean_code(self):
        upload = self.cleaned_data["code"]
        self.code_summary = _inspect_code(upload)
        return upload

    def clean(self):
        data = super().clean()
        if self.code_summary and data.get("handler"):
            _check_handler_module(self, data["handler"], self.code_summary)
        return data

    def save(self):
        """Store the code and create the function; call inside a transaction."""
        data = self.cleaned_data
        artifact = CodeArtifact.store(data["code"], self.code_summary)
        return Function.objects.create(
            owner=self.owner, code=artifact,
            **{k: data[k] for k in ("name", "runtime", "handler", *SettingsFields.base_fields)},
        )


class ConfigurationForm(SettingsFields):
    """Change a function's settings; invocations already queued keep the configuration they were given."""

    field_order = ["handler"]

    handler = forms.CharField(max_length=128, validators=[validate_handler])
    reserved_concurrency = forms.IntegerField(
        label="Reserved concurrency", min_value=0, max_value=RESERVED_CONCURRENCY_MAX, required=False,
        help_text="The most invocations of this function that run at once. Empty: no limit of its own; "
                  "0: every invocation is throttled.",
    )
    recursive_loop = forms.ChoiceField(
        label="Recursive loops", choices=Function.RecursiveLoop.choices, required=False,
        help_text="A chain of asynchronous invocations through destinations (this function's own, or a topic's) "
                  "is stopped after 16 invocations, as Lambda's recursive loop detection does. Allow only for a "
                  "loop that ends by itself.",
    )

    def __init__(self, *args, function, **kwargs):
        initial = {name: getattr(function, name) for name in self.base_fields}
        super().__init__(*args, initial=initial, **kwargs)
        self.function = function

    def clean_recursive_loop(self):
        # Left out (a form posted before this setting existed), it stays as it is.
        return self.cleaned_data["recursive_loop"] or self.function.recursive_loop

    def clean(self):
        data = super().clean()
        if data.get("handler"):
            _check_handler_module(self, data["handler"], ZipSummary(files=self.function.code.files))
        return data

    def save(self):
        for name, value in self.cleaned_data.items():
            setattr(self.function, name, value)
        self.function.save(update_fields=[*self.cleaned_data, "last_modified"])
        return self.function


class CodeForm(forms.Form):
    """Replace a function's code with a new ZIP."""

    code = CodeField()

    def __init__(self, *args, function, **kwargs):
        super().__init__(*args, **kwargs)
        self.function = function
        self.code_summary = None

    def clean_code(self):
        upload = self.cleaned_data["code"]
        self.code_summary = _inspect_code(upload)
        _check_handler_module(self, self.function.handler, self.code_summary)
        error = _too_large_with_layers(self.code_summary.unzipped_size, layers_unzipped_size(self.function.layers))
        if error:
            raise error
        return upload

    def save(self):
        artifact = CodeArtifact.store(self.cleaned_data["code"], self.code_summary)
        self.function.replace_code(artifact)
        return artifact


def _version_choices(function, latest_label="$LATEST"):
    return [("", latest_label)] + [(str(v.number), f"{v.number}" + (f" – {v.description}" if v.description else ""))
                                   for v in function.versions.all()]


class InvokeForm(forms.Form):
    qualifier = forms.ChoiceField(label="Version or alias", required=False, choices=())
    invocation_type = forms.ChoiceField(
        choices=[("RequestResponse", "Synchronous: wait for the result"),
                 ("Event", "Asynchronous: queue it, with retries")],
        initial="RequestResponse", required=False,
    )
    event = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
        initial='{\n  "key1": "value1"\n}', strip=False,
    )

    def __init__(self, *args, function, **kwargs):
        super().__init__(*args, **kwargs)
        aliases = [(a.name, f"alias {a.name}") for a in function.aliases.all()]
        self.fields["qualifier"].choices = _version_choices(function) + aliases

    def clean(self):
        cleaned = super().clean()
        cleaned["invocation_type"] = cleaned.get("invocation_type") or "RequestResponse"
        if "event" in cleaned:
            try:
                parse_event(cleaned["event"], asynchronous=cleaned["invocation_type"] == "Event")
            except forms.ValidationError as e:
                self.add_error("event", e)
        return cleaned


def _too_large_with_layers(code_bytes, layer_bytes):
    total = code_bytes + layer_bytes
    if total > MAX_UNZIPPED_BYTES:
        return forms.ValidationError(
            f"The function and its layers unzip to {total} bytes; Lambda allows {MAX_UNZIPPED_BYTES} together.",
            code="too_large",
        )
    return None


def layers_unzipped_size(layers):
    shas = [layer["code_sha256"] for layer in layers]
    sizes = dict(CodeArtifact.objects.filter(sha256__in=shas).values_list("sha256", "unzipped_size"))
    return sum(sizes.get(sha, 0) for sha in shas)


class LayerForm(forms.Form):
    """Upload a ZIP as a new version of a layer (the layer is created with its first version)."""

    name = forms.CharField(max_length=64, validators=[validate_name])
    description = forms.CharField(max_length=256, required=False)
    compatible_runtimes = forms.MultipleChoiceField(choices=(), required=False, widget=forms.CheckboxSelectMultiple)
    code = CodeField(help_text="A .zip of at most 50 MB; put Python packages under python/ to import them.")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        runtime = host_runtime()
        self.fields["compatible_runtimes"].choices = [(runtime, runtime)]
        self.code_summary = None

    def clean_code(self):
        upload = self.cleaned_data["code"]
        self.code_summary = _inspect_code(upload)
        return upload

    def save(self):
        """Store the code and the new layer version; call inside a transaction."""
        data = self.cleaned_data
        artifact = CodeArtifact.store(data["code"], self.code_summary)
        layer, _ = Layer.objects.get_or_create(owner=self.owner, name=data["name"])
        layer = Layer.objects.select_for_update().get(pk=layer.pk)
        layer.last_version_number += 1
        layer.save(update_fields=["last_version_number"])
        return LayerVersion.objects.create(
            layer=layer, number=layer.last_version_number, description=data["description"],
            compatible_runtimes=data["compatible_runtimes"], code=artifact,
        )


class FunctionLayersForm(forms.Form):
    """The layer versions of a function, in order: the POST's `layer` values (empty ones skipped)."""

    MAX_LAYERS = 5

    def __init__(self, data=None, *, function):
        super().__init__(data)
        self.function = function
        self.chosen = []

    def clean(self):
        ids = [value for value in (self.data.getlist("layer") if self.data else []) if value]
        if len(ids) > self.MAX_LAYERS:
            raise forms.ValidationError(f"A function can use at most {self.MAX_LAYERS} layers.", code="too_many")
        if not all(value.isdigit() for value in ids):
            raise forms.ValidationError("Choose layer versions from the list.", code="invalid")
        found = {lv.pk: lv for lv in LayerVersion.objects.select_related("layer__owner", "code").filter(
            pk__in=[int(value) for value in ids], layer__owner=self.function.owner)}
        chosen = []
        for value in ids:
            lv = found.get(int(value))
            if lv is None:  # another owner's, or gone: the same answer either way
                raise forms.ValidationError("That layer version does not exist.", code="unknown")
            if any(other.layer_id == lv.layer_id for other in chosen):
                raise forms.ValidationError(f"The layer {lv.layer.name} is attached twice.", code="duplicate")
            chosen.append(lv)
        error = _too_large_with_layers(self.function.code.unzipped_size, sum(lv.code.unzipped_size for lv in chosen))
        if error:
            raise error
        self.chosen = chosen
        return {}

    def save(self):
        self.function.set_layers(self.chosen)
        return self.chosen


class PublishForm(forms.Form):
    description = forms.CharField(max_length=256, required=False)


ALIAS_NAME = RegexValidator(
    r"^(?!\d+$)[A-Za-z0-9_-]{1,128}$",
    "Use 1 to 128 letters, digits, hyphens and underscores, not only digits (those name versions).",
    code="invalid_alias",
)


class AliasForm(forms.Form):
    """Create an alias, or move one (its name is then fixed)."""

    name = forms.CharField(max_length=128, validators=[ALIAS_NAME])
    description = forms.CharField(max_length=256, required=False)
    version = forms.ChoiceField(choices=(), required=False)  # "" is $LATEST
    additional_version = forms.ChoiceField(label="Canary version", required=False, choices=())
    additional_weight = forms.FloatField(label="Canary weight", required=False, min_value=0, max_value=1,
                                         help_text="The share of invocations (0 to 1) the canary version gets.")

    def __init__(self, *args, function, alias=None, **kwargs):
        if alias is not None:
            kwargs.setdefault("initial", {
                "name": alias.name, "description": alias.description,
                "version": str(alias.version.number) if alias.version else "",
                "additional_version": str(alias.additional_version.number) if alias.additional_version else "",
                "additional_weight": alias.additional_weight or None,
            })
        super().__init__(*args, **kwargs)
        self.function, self.alias = function, alias
        self.fields["version"].choices = _version_choices(function)
        self.fields["additional_version"].choices = _version_choices(function, latest_label="none")
        if alias is not None:
            self.fields["name"].disabled = True

    def _version(self, number):
        return self.function.versions.get(number=int(number)) if number else None

    def clean_name(self):
        name = self.cleaned_data["name"]
        if self.alias is None and self.function.aliases.filter(name=name).exists():
            raise forms.ValidationError(f"This function already has an alias named {name!r}.", code="duplicate")
        return name

    def clean(self):
        data = super().clean()
        version, additional = data.get("version"), data.get("additional_version")
        weight = data.get("additional_weight")
        if additional:
            if not version:
                self.add_error("additional_version", "An alias of $LATEST cannot send a share to another version "
                                                     "(as in Lambda): point it at a published version first.")
            elif additional == version:
                self.add_error("additional_version", "The canary version must differ from the alias's version.")
            if weight is None:
                self.add_error("additional_weight", "Give the canary's share, between 0 and 1.")
        elif weight:
            self.add_error("additional_version", "A weight needs a canary version.")
        return data

    def save(self):
        data = self.cleaned_data
        version, additional = self._version(data["version"]), self._version(data.get("additional_version"))
        weight = (data.get("additional_weight") or 0.0) if additional else 0.0
        if self.alias is None:
            return Alias.objects.create(function=self.function, name=data["name"], description=data["description"],
                                        version=version, additional_version=additional, additional_weight=weight)
        self.alias.description = data["description"]
        self.alias.point_to(version, additional, weight)
        return self.alias


class TestEventForm(forms.Form):
    __test__ = False  # not a pytest test class, despite its name
    # Its name field shares the page's form with Invoke: a browser-required name would block invoking.
    use_required_attribute = False

    name = forms.CharField(label="Event name", max_length=25, validators=[validate_event_name])
    event = forms.CharField(strip=False)

    def __init__(self, *args, function, **kwargs):
        super().__init__(*args, **kwargs)
        self.function = function

    def clean_event(self):
        text = self.cleaned_data["event"]
        parse_event(text)
        return text

    def save(self):
        event, _ = TestEvent.objects.update_or_create(
            function=self.function, name=self.cleaned_data["name"], defaults={"body": self.cleaned_data["event"]}
        )
        return event


class VariableForm(forms.Form):
    key = forms.CharField(max_length=128, required=False, widget=forms.TextInput(attrs={"class": "mono"}))
    value = forms.CharField(required=False, strip=False, widget=forms.TextInput(attrs={"class": "mono"}))

    def clean_key(self):
        key = self.cleaned_data["key"].strip()
        if key in envvars.RESERVED:
            raise forms.ValidationError(f"{key} is reserved: Lambda sets it for every function.", code="reserved")
        if key and not envvars.KEY_PATTERN.match(key):
            raise forms.ValidationError(
                f"{key!r} is not a valid key: use a letter, then at least one letter, digit or underscore.",
                code="invalid_key",
            )
        return key

    def clean(self):
        data = super().clean()
        if not data.get("key") and data.get("value") and not self.errors:
            self.add_error("key", forms.ValidationError("A value needs a key.", code="no_key"))
        return data


class BaseVariableFormSet(forms.BaseFormSet):
    """The rows of the environment variables editor; rows without a key, or marked to delete, drop out."""

    def __init__(self, *args, function, **kwargs):
        self.function = function
        if not args and "initial" not in kwargs:
            kwargs["initial"] = [{"key": k, "value": v} for k, v in sorted(function.environment.items())]
        super().__init__(*args, **kwargs)

    def clean(self):
        if any(self.errors):
            return
        variables = {}
        for form in self.forms:
            key = form.cleaned_data.get("key")
            if not key or form.cleaned_data.get("DELETE"):
                continue
            if key in variables:
                raise forms.ValidationError(f"The key {key} appears twice.", code="duplicate")
            variables[key] = form.cleaned_data.get("value", "")
        used = envvars.size(variables)
        if used > envvars.MAX_BYTES:
            raise forms.ValidationError(
                f"The environment variables take {used} bytes; Lambda allows {envvars.MAX_BYTES} (keys and values).",
                code="too_large",
            )
        self.variables = variables

    def save(self):
        self.function.set_environment(self.variables)
        return self.variables


VariableFormSet = forms.formset_factory(VariableForm, formset=BaseVariableFormSet, extra=3, can_delete=True,
                                        max_num=200, validate_max=True)
