from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.forms import (
    layers_unzipped_size,
    AliasForm,
    CodeForm,
    ConfigurationForm,
    FunctionForm,
    FunctionLayersForm,
    LayerForm,
    InvokeForm,
    PublishForm,
    TestEventForm,
    VariableFormSet,
)
from functions import diff, editor, envvars
from functions.codezip import ZipRejected
from functions.models import LATEST, Function, Layer, LayerVersion, TestEvent, Trigger

RECENT_INVOCATIONS = 20


def _get_function_for_user(request, name):
    return get_object_or_404(Function.objects.select_related("code", "owner"), owner=request.user, name=name)


# Sets each listed function's figures (last_invoked, invocations_24h, errors_24h, cost_month):
# invocations.metrics registers it from the rollups (functions never imports invocations, DESIGN.md).
annotate_function_list = None


def function_list(request):
    functions = list(Function.objects.filter(owner=request.user))
    if annotate_function_list is not None:
        annotate_function_list(functions, timezone.now())
    return render(request, "functions/list.html", {"functions": functions})


def function_create(request):
    if request.method == "POST":
        form = FunctionForm(request.POST, request.FILES, owner=request.user)
        if form.is_valid():
            try:
                with transaction.atomic():
                    function = form.save()
            except IntegrityError:
                # Another request created the same name between validation and save.
                form.add_error("name", f"You already have a function named {form.cleaned_data['name']!r}.")
            else:
                messages.success(request, f"Created function {function.name}.")
                return redirect(function)
    else:
        form = FunctionForm(owner=request.user)
    return render(request, "functions/create.html", {"form": form})


def function_detail(request, name):
    function = _get_function_for_user(request, name)
    return render_detail(request, function)


def _triggers(function):
    """The function's triggers, each with its invocation count and its latest failed invocation."""
    triggers = list(function.triggers.annotate(invocation_count=Count("invocations")))
    for trigger in triggers:
        trigger.last_error = (trigger.invocations.filter(status__in=FAILED_STATUSES)
                              .only("id", "status", "error_type", "created_at").first())
    return triggers


# Invocation statuses that count as errors (functions does not import invocations: ../shared/DESIGN.md).
FAILED_STATUSES = ["FAILED", "TIMED_OUT", "THROTTLED", "EXPIRED"]


def render_detail(request, function, invoke_form=None, event_form=None, code_form=None, config_form=None,
                  alias_form=None, status=200):
    """Render the function page; the forms given carry the errors of a rejected POST."""
    chosen_id = request.GET.get("event", "") if request.method == "GET" else ""
    chosen = function.test_events.filter(pk=chosen_id).first() if chosen_id.isdigit() else None
    if invoke_form is None:
        invoke_form = InvokeForm(function=function, initial={"event": chosen.body} if chosen else None)
    context = {
        "function": function,
        "files": function.code.files,
        "test_events": function.test_events.all(),
        "chosen_event": chosen,
        "invoke_form": invoke_form,
        "event_form": event_form or TestEventForm(function=function, initial={"name": chosen.name} if chosen else None),
        "code_form": code_form or CodeForm(function=function),
        "config_form": config_form or ConfigurationForm(function=function),
        "invocations": function.invocations.all()[:RECENT_INVOCATIONS],
        # Keys only: the values show on the editor page, after a deliberate click.
        "environment_keys": _environment_keys(function),
        "code_editable": editor.editable(function.code),
        "versions": function.versions.all(),
        "aliases": [
            (alias, AliasForm(function=function, alias=alias))
            for alias in function.aliases.select_related("version", "additional_version", "previous_version")
        ],
        "publish_form": PublishForm(),
        "layer_slots": _layer_slots(function),
        "alias_form": alias_form or AliasForm(function=function),
        "triggers": _triggers(function),
        "trigger_kinds": [(kind, Trigger.NOUNS[kind]) for kind in Trigger.Kind],
        "dead_letter_count": function.dead_letters.filter(redriven_at__isnull=True).count(),
    }
    return render(request, "functions/detail.html", context, status=status)


@require_POST
def function_upload_code(request, name):
    function = _get_function_for_user(request, name)
    form = CodeForm(request.POST, request.FILES, function=function)
    if not form.is_valid():
        return render_detail(request, function, code_form=form, status=400)
    with transaction.atomic():
        artifact = form.save()
    messages.success(request, f"Uploaded new code ({artifact.sha256_base64}).")
    return redirect(function)


@require_POST
def function_configure(request, name):
    function = _get_function_for_user(request, name)
    form = ConfigurationForm(request.POST, function=function)
    if not form.is_valid():
        return render_detail(request, function, config_form=form, status=400)
    form.save()
    messages.success(request, "Saved the configuration.")
    return redirect(f"{function.get_absolute_url()}#configuration")


@require_POST
def function_publish(request, name):
    function = _get_function_for_user(request, name)
    form = PublishForm(request.POST)
    if not form.is_valid():
        return render_detail(request, function, status=400)
    try:
        with transaction.atomic():
            version, created = function.publish(form.cleaned_data["description"])
    except IntegrityError:
        # Another publish took the same number first (SQLite cannot lock the row): say so, lose nothing.
        messages.error(request, "Another version was published at the same moment: try again.")
        return redirect(f"{function.get_absolute_url()}#versions")
    except envvars.InvalidToken:
        messages.error(request, "The environment variables cannot be decrypted with the keys in ENVIRONMENT_KEYS.")
        return redirect(f"{function.get_absolute_url()}#versions")
    if created:
        messages.success(request, f"Published version {version.number}.")
    else:
        messages.info(request, f"Nothing changed since version {version.number}: no new version was published.")
    return redirect(f"{function.get_absolute_url()}#versions")


@require_POST
def function_layers(request, name):
    function = _get_function_for_user(request, name)
    form = FunctionLayersForm(request.POST, function=function)
    if not form.is_valid():
        messages.error(request, " ".join(form.non_field_errors()))
        return render_detail(request, function, status=400)
    with transaction.atomic():
        chosen = form.save()
    messages.success(request, f"The function now uses {len(chosen)} layer{'s' if len(chosen) != 1 else ''}.")
    return redirect(f"{function.get_absolute_url()}#layers")


def layer_list(request):
    """The user's layers, and the upload of a new layer version."""
    if request.method == "POST":
        form = LayerForm(request.POST, request.FILES, owner=request.user)
        if form.is_valid():
            with transaction.atomic():
                version = form.save()
            messages.success(request, f"Created layer version {version.arn}.")
            return redirect(version.layer)
        status = 400
    else:
        form, status = LayerForm(owner=request.user), 200
    layers = Layer.objects.filter(owner=request.user).prefetch_related("versions")
    return render(request, "functions/layers.html", {"layers": layers, "form": form}, status=status)


def layer_detail(request, name):
    layer = get_object_or_404(Layer, owner=request.user, name=name)
    versions = [
        (version, [fl.function for fl in version.functionlayer_set.select_related("function")])
        for version in layer.versions.select_related("code")
    ]
    return render(request, "functions/layer.html", {"layer": layer, "versions": versions})


def version_diff(request, name):
    """Compare two versions ($LATEST included): files with a text diff, configuration, environment keys."""
    function = _get_function_for_user(request, name)
    choices = [LATEST] + [str(v.number) for v in function.versions.all()]
    default_old = choices[1] if len(choices) > 1 else LATEST
    old_label, new_label = request.GET.get("old", default_old), request.GET.get("new", LATEST)
    if old_label not in choices or new_label not in choices:
        raise Http404("No such version of this function.")
    context = {"function": function, "choices": choices, "old": old_label, "new": new_label}
    try:
        context["diff"] = diff.diff_versions(_version_triple(function, old_label), _version_triple(function, new_label))
    except envvars.InvalidToken:
        context["error"] = "The environment variables cannot be decrypted with the keys in ENVIRONMENT_KEYS."
    return render(request, "functions/version_diff.html", context)


def _version_triple(function, label):
    if label == LATEST:
        return label, function.code, function.config_snapshot()
    version = function.versions.select_related("code").get(number=int(label))
    return label, version.code, version.config


@require_POST
def alias_save(request, name):
    """Create an alias, or move an existing one (the form names it)."""
    function = _get_function_for_user(request, name)
    alias = function.aliases.filter(name=request.POST.get("existing", "")).first()
    form = AliasForm(request.POST, function=function, alias=alias)
    if not form.is_valid():
        return render_detail(request, function, alias_form=form, status=400)
    try:
        with transaction.atomic():
            alias = form.save()
    except IntegrityError:
        form.add_error("name", f"This function already has an alias named {form.cleaned_data['name']!r}.")
        return render_detail(request, function, alias_form=form, status=400)
    messages.success(request, f"Alias {alias.name} now points to {alias.version.number if alias.version else '$LATEST'}.")
    return redirect(f"{function.get_absolute_url()}#aliases")


@require_POST
def alias_roll_back(request, name, alias_name):
    function = _get_function_for_user(request, name)
    alias = get_object_or_404(function.aliases, name=alias_name)
    alias.roll_back()
    messages.success(request, f"Alias {alias.name} rolled back to {alias.version.number if alias.version else '$LATEST'}.")
    return redirect(f"{function.get_absolute_url()}#aliases")


@require_POST
def alias_delete(request, name, alias_name):
    function = _get_function_for_user(request, name)
    alias = get_object_or_404(function.aliases, name=alias_name)
    with transaction.atomic():
        triggers = alias.remove()
    messages.success(request, f"Deleted alias {alias_name}" + (f" and its {triggers} trigger(s)." if triggers else "."))
    return redirect(f"{function.get_absolute_url()}#aliases")


def function_edit_code(request, name):
    """The inline editor: pick a file of the package, change it, save it as the function's new code."""
    function = _get_function_for_user(request, name)
    files = [file for file, _ in function.code.files]
    if not editor.editable(function.code):
        messages.error(request, f"The package is larger than {editor.MAX_EDITABLE_BYTES // 2**20} MB: "
                                "upload a new ZIP instead of editing it here.")
        return redirect(f"{function.get_absolute_url()}#code")
    path = request.POST.get("path") or request.GET.get("path") or _handler_file(function, files)
    if path not in files:
        raise Http404("No such file in this function's code.")
    error, status = None, 200
    if request.method == "POST":
        # Browsers send the line ends of a textarea as CRLF; source files want LF.
        text = request.POST.get("text", "").replace("\r\n", "\n")
        try:
            with transaction.atomic():
                artifact = editor.replace_file(function.code, path, text,
                                               layer_bytes=layers_unzipped_size(function.layers))
                function.replace_code(artifact)
        except ZipRejected as e:
            error, status = str(e), 400
        else:
            messages.success(request, f"Saved {path} as new code ({artifact.sha256_base64}).")
            return redirect(f"{function.get_absolute_url()}#test")
    else:
        text = editor.read_text(function.code, path)
    context = {"function": function, "files": files, "path": path, "text": text, "error": error}
    return render(request, "functions/code_editor.html", context, status=status)


def _handler_file(function, files):
    module = function.handler.rsplit(".", 1)[0].replace(".", "/")
    for candidate in (f"{module}.py", f"{module}/__init__.py"):
        if candidate in files:
            return candidate
    return files[0] if files else ""


def _layer_slots(function):
    """The function's five layer slots: (position, chosen layer version id, the owner's layer versions)."""
    available = list(LayerVersion.objects.filter(layer__owner=function.owner).select_related("layer"))
    chosen = [fl.layer_version_id for fl in function.function_layers.all()]
    chosen += [None] * (FunctionLayersForm.MAX_LAYERS - len(chosen))
    return [(i, pk, available) for i, pk in enumerate(chosen)]


def _environment_keys(function):
    try:
        return sorted(function.environment)
    except envvars.InvalidToken:
        return None  # the page says the keys cannot open them


def function_environment(request, name):
    """The environment variables editor: the one page that shows their values."""
    function = _get_function_for_user(request, name)
    if _environment_keys(function) is None:
        messages.error(request, "The environment variables cannot be decrypted with the keys in ENVIRONMENT_KEYS.")
        return redirect(f"{function.get_absolute_url()}#environment")
    if request.method == "POST":
        formset = VariableFormSet(request.POST, function=function)
        if formset.is_valid():
            variables = formset.save()
            messages.success(request, f"Saved {len(variables)} environment variable{'s' if len(variables) != 1 else ''}.")
            return redirect(f"{function.get_absolute_url()}#environment")
        status = 400
    else:
        formset = VariableFormSet(function=function)
        status = 200
    return render(request, "functions/environment.html", {"function": function, "formset": formset}, status=status)


@require_POST
def test_event_save(request, name):
    function = _get_function_for_user(request, name)
    form = TestEventForm(request.POST, function=function)
    if not form.is_valid():
        invoke_form = InvokeForm(function=function, initial={"event": request.POST.get("event", "")})
        return render_detail(request, function, invoke_form=invoke_form, event_form=form, status=400)
    event = form.save()
    messages.success(request, f"Saved test event {event.name}.")
    return redirect(f"{function.get_absolute_url()}?event={event.pk}#test")


@require_POST
def test_event_delete(request, name, pk):
    function = _get_function_for_user(request, name)
    event = get_object_or_404(TestEvent, function=function, pk=pk)
    event.delete()
    messages.success(request, f"Deleted test event {event.name}.")
    return redirect(f"{function.get_absolute_url()}#test")
