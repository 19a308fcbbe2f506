"""Pages for a function's triggers (every kind an event source registers, invocations.sources) and its
asynchronous settings."""

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.models import LATEST, Alias, Trigger, Version
from functions.views import _get_function_for_user
from invocations import endpoints, schedules
from invocations.forms import EventInvokeConfigForm, HttpEndpointForm
from invocations.sources import trigger_kinds


def endpoint_url(request, trigger):
    return request.build_absolute_uri(reverse("endpoint", args=[trigger.url_id]))


def trigger_new(request, name, kind):
    function = _get_function_for_user(request, name)
    if kind not in trigger_kinds:
        raise Http404("No such kind of trigger.")
    return _edit(request, function, kind, None)


def trigger_edit(request, name, pk):
    function = _get_function_for_user(request, name)
    trigger = get_object_or_404(function.triggers, pk=pk)
    return _edit(request, function, trigger.kind, trigger)


def _edit(request, function, kind, trigger):
    form_class = trigger_kinds[kind].form_class
    key = None
    if request.method == "POST":
        form = form_class(request.POST, function=function, trigger=trigger)
        if form.is_valid() and "preview" not in request.POST:
            try:
                with transaction.atomic():
                    saved = form.save()
            except IntegrityError:  # another request added the same endpoint meanwhile
                form.add_error("qualifier", "That function or alias already has an HTTP endpoint.")
            else:
                # An HTTP endpoint's form also returns a new secret key.
                trigger, key = saved if isinstance(saved, tuple) else (saved, None)
                if key is None:
                    messages.success(request, f"Saved the {trigger.noun}.")
                    return redirect(f"{function.get_absolute_url()}#triggers")
                # The secret key is shown this once: only its hash is kept.
                form = form_class(function=function, trigger=trigger)
    else:
        form = form_class(function=function, trigger=trigger)
    context = {
        "function": function, "kind": kind, "kind_label": Trigger.Kind(kind).label, "trigger": trigger,
        "form": form, "new_key": key,
        "url": endpoint_url(request, trigger) if trigger is not None and kind == Trigger.Kind.HTTP else None,
        "preview": form.preview() if kind == Trigger.Kind.SCHEDULE else None,
    }
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "invocations/trigger.html", context, status=status)


@require_POST
def trigger_delete(request, name, pk):
    function = _get_function_for_user(request, name)
    trigger = get_object_or_404(function.triggers, pk=pk)
    trigger.delete()  # its invocations stay, without it
    messages.success(request, f"Deleted the {trigger.noun}.")
    return redirect(f"{function.get_absolute_url()}#triggers")


@require_POST
def trigger_new_key(request, name, pk):
    function = _get_function_for_user(request, name)
    trigger = get_object_or_404(function.triggers, pk=pk, kind=Trigger.Kind.HTTP)
    key = trigger.new_key()
    trigger.config["auth_type"] = Trigger.Auth.KEY
    trigger.save(update_fields=["key_sha256", "config"])
    form = HttpEndpointForm(function=function, trigger=trigger)
    return render(request, "invocations/trigger.html", {
        "function": function, "kind": trigger.kind, "kind_label": Trigger.Kind(trigger.kind).label,
        "trigger": trigger, "form": form, "new_key": key, "url": endpoint_url(request, trigger),
    })


@require_POST
def trigger_fire(request, name, pk):
    """Fire a trigger now with a sample event, through the path its real events take."""
    function = _get_function_for_user(request, name)
    trigger = get_object_or_404(function.triggers.select_related("function__owner"), pk=pk)
    kind = trigger_kinds.get(trigger.kind)
    if kind is None:
        raise Http404("No such kind of trigger.")
    return kind.fire(request, trigger)


def fire_schedule(request, trigger):
    try:
        invocation = schedules.fire(trigger, timezone.now())
    except (Version.DoesNotExist, Alias.DoesNotExist):  # as its ticks are, when the alias is deleted
        messages.error(request, f"The schedule was not fired: {trigger.target} no longer exists.")
        return redirect(f"{trigger.function.get_absolute_url()}#triggers")
    messages.success(request, "Fired the schedule: its invocation is queued.")
    return redirect(invocation)


def fire_endpoint(request, trigger):
    response = endpoints.serve(endpoints.sample_request(request, trigger), trigger, "/", authenticated=True)
    invocation_id = response.get("X-Amzn-RequestId")
    if invocation_id is None:  # refused before invoking (e.g. the endpoint is disabled)
        messages.error(request, f"The endpoint answered {response.status_code}: {response.content.decode()}")
        return redirect(f"{trigger.function.get_absolute_url()}#triggers")
    messages.success(request, f"GET {endpoint_url(request, trigger)} answered {response.status_code}.")
    return redirect("invocations:detail", invocation_id)


@require_POST
def trigger_toggle(request, name, pk):
    function = _get_function_for_user(request, name)
    trigger = get_object_or_404(function.triggers, pk=pk)
    trigger.enabled = not trigger.enabled
    trigger.save(update_fields=["enabled"])
    if trigger.kind == Trigger.Kind.SCHEDULE:
        schedules.arm(trigger)  # from now: ticks passed while disabled are not fired
    messages.success(request, f"{'Enabled' if trigger.enabled else 'Disabled'} the {trigger.noun}.")
    return redirect(f"{function.get_absolute_url()}#triggers")


def async_config(request, name):
    """Retry attempts, maximum event age and destinations, per qualifier (Lambda's event invoke config)."""
    function = _get_function_for_user(request, name)
    if request.method == "POST":
        form = EventInvokeConfigForm(request.POST, function=function)
        if form.is_valid():
            config = form.save()
            messages.success(request, f"Saved the asynchronous settings for {config.qualifier}.")
            return redirect("functions:async_config", function.name)
    else:
        form = EventInvokeConfigForm(function=function)
    configs = function.event_invoke_configs.all()
    return render(request, "invocations/async_config.html", {
        "function": function, "form": form, "configs": configs, "latest": LATEST,
    }, status=400 if form.errors else 200)
