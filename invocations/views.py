import uuid
from datetime import datetime

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from functions.forms import InvokeForm, TestEventForm
from functions.models import Alias, Function, Version
from functions.views import _get_function_for_user, render_detail
from invocations.invoke import RequestTooLarge, invoke, invoke_and_wait
from invocations.models import Invocation

PAGE_SIZE = 50
# The event and the result are shown up to this size: a 6 MB payload would make the page unusable.
SHOWN_PAYLOAD_BYTES = 256 * 1024
# The live tail shows this many invocations at first, and at most this many more per poll.
TAIL_FIRST, TAIL_MAX = 20, 100
# The list shows only what it needs: the event, result and log can be megabytes each.
LIST_FIELDS = ["id", "function_id", "version", "qualifier", "kind", "source", "trigger_id", "status", "error_type",
               "cold_start", "duration_ms", "billed_duration_ms", "max_memory_used_mb", "cost", "created_at"]


def _get_invocation_for_user(request, pk):
    return get_object_or_404(Invocation.objects.select_related("function"), pk=pk, function__owner=request.user)


class InvocationFilterForm(forms.Form):
    """The list's filters, from the query string; every field is optional."""

    function = forms.ChoiceField(required=False, choices=())
    status = forms.ChoiceField(required=False, choices=[("", "any status")] + Invocation.Status.choices)
    qualifier = forms.CharField(required=False, max_length=128, label="Version or alias")
    source = forms.CharField(required=False, max_length=32)
    trigger = forms.IntegerField(required=False, min_value=1)
    start = forms.ChoiceField(required=False, choices=[("", "cold or warm"), ("cold", "cold"), ("warm", "warm")])
    since = forms.DateTimeField(required=False, label="From",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="To",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    q = forms.CharField(required=False, max_length=200, strip=False, label="Text in the log")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.function_ids = dict(Function.objects.filter(owner=owner).order_by("name").values_list("name", "id"))
        self.fields["function"].choices = [("", "all functions")] + [(n, n) for n in self.function_ids]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            raise forms.ValidationError("“From” must be before “To”.")
        return cleaned

    def filter(self, invocations):
        data = self.cleaned_data
        if data["function"]:
            invocations = invocations.filter(function_id=self.function_ids[data["function"]])
        if data["status"]:
            invocations = invocations.filter(status=data["status"])
        if data["qualifier"]:
            # The version that ran, or the alias (or version) it was invoked by.
            invocations = invocations.filter(Q(version=data["qualifier"]) | Q(qualifier=data["qualifier"]))
        if data["source"]:
            invocations = invocations.filter(source=data["source"])
        if data["trigger"]:
            invocations = invocations.filter(trigger_id=data["trigger"])
        if data["start"]:
            invocations = invocations.filter(cold_start=data["start"] == "cold")
        if data["since"]:
            invocations = invocations.filter(created_at__gte=data["since"])
        if data["until"]:
            invocations = invocations.filter(created_at__lt=data["until"])
        if data["q"]:
            # A scan of the remaining rows' logs (see the README: fine per function, a trigram index beyond).
            invocations = invocations.filter(log__icontains=data["q"])
        return invocations


def _cursor(created_at, pk):
    return f"{created_at.isoformat()}_{pk.hex}"


def _parse_cursor(text):
    """Return (datetime, uuid) from a cursor, or raise ValueError."""
    moment, _, pk = text.rpartition("_")
    moment = datetime.fromisoformat(moment)
    if timezone.is_naive(moment):
        raise ValueError("a cursor carries its time zone")
    return moment, uuid.UUID(pk)


def invocation_list(request):
    form = InvocationFilterForm(request.GET or None, owner=request.user)
    # A subquery, not a join: SQLite then reads the (created_at, id) index newest first and stops after a
    # page (~1 ms at a million rows); the join made it visit every row first (~600 ms).
    invocations = Invocation.objects.filter(function__in=Function.objects.filter(owner=request.user).values("id"))
    if form.is_bound and not form.is_valid():
        return render(request, "invocations/list.html", {"form": form, "invocations": []}, status=400)
    if form.is_bound:
        invocations = form.filter(invocations)
    # Keyset pagination on (created_at, id): any page costs the same as the first, where OFFSET reads
    # every row before it (264 ms at offset 810,000; bench/README.md) and a Paginator adds a COUNT(*).
    before = request.GET.get("before")
    if before:
        try:
            moment, pk = _parse_cursor(before)
        except ValueError:
            return render(request, "invocations/list.html", {"form": form, "invocations": [],
                                                             "cursor_error": True}, status=400)
        # "Older than the cursor", written so that the index can serve it: SQLite reads an OR of the
        # two conditions row by row (~80 ms deep in a million rows), this as one range (~1 ms).
        invocations = invocations.filter(Q(created_at__lte=moment) & ~Q(created_at=moment, id__gte=pk))
    page = list(invocations.order_by("-created_at", "-id").values(*LIST_FIELDS)[:PAGE_SIZE + 1])
    names = {pk: name for name, pk in form.function_ids.items()}
    for invocation in page:
        invocation["function_name"] = names.get(invocation["function_id"], "")  # "": created since
    next_query = None
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        query = request.GET.copy()
        query["before"] = _cursor(page[-1]["created_at"], page[-1]["id"])
        next_query = query.urlencode()
    first_query = None
    if before:
        query = request.GET.copy()
        del query["before"]
        first_query = query.urlencode()
    return render(request, "invocations/list.html", {
        "form": form, "invocations": page, "next_query": next_query, "first_query": first_query,
    })


def function_invocations(request, name):
    function = _get_function_for_user(request, name)
    query = request.GET.copy()
    query["function"] = function.name
    return redirect(f"{reverse('invocations:list')}?{query.urlencode()}")


@require_POST
def invoke_function(request, name):
    function = _get_function_for_user(request, name)
    form = InvokeForm(request.POST, function=function)
    if not form.is_valid():
        return render_detail(request, function, invoke_form=form, status=400)
    qualifier = form.cleaned_data["qualifier"] or None
    try:
        if form.cleaned_data["invocation_type"] == Invocation.Kind.ASYNC:
            invocation = invoke(function, form.cleaned_data["event"], kind=Invocation.Kind.ASYNC,
                                qualifier=qualifier)
            # Lambda answers an asynchronous invocation at once: 202 and the request id.
            return render(request, "invocations/detail.html", _detail_context(invocation), status=202)
        invocation = invoke_and_wait(function, form.cleaned_data["event"], qualifier=qualifier)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        raise Http404("That version or alias no longer exists.") from None
    if invocation.status == Invocation.Status.THROTTLED:
        # Lambda's answer to a throttled synchronous call: 429 TooManyRequestsException.
        return render(request, "invocations/detail.html", _detail_context(invocation), status=429)
    return redirect(invocation)


def _ms_between(start, end):
    return (end - start).total_seconds() * 1000 if start and end else None


def timeline(invocation):
    """Return the invocation's spans, in order: dicts of name, offset_ms (from queueing), duration_ms and
    a note. A span not reached (yet) has no duration."""
    i = invocation
    queued = _ms_between(i.created_at, i.started_at)
    worker = _ms_between(i.started_at, i.finished_at)
    init = float(i.init_duration_ms) if i.init_duration_ms is not None else None
    run = float(i.duration_ms) if i.duration_ms is not None else None
    spans = [{"name": "queued", "offset_ms": 0, "duration_ms": queued,
              "note": f"{i.attempts - 1} earlier attempt(s) and their retry delays" if i.attempts > 1 else ""}]
    offset = queued or 0
    spans.append({"name": "started", "offset_ms": offset if i.started_at else None, "duration_ms": None,
                  "note": i.worker})
    if i.cold_start:
        spans.append({"name": "init", "offset_ms": offset, "duration_ms": init, "note": "cold start"})
        offset += init or 0
    spans.append({"name": "run", "offset_ms": offset if run is not None else None, "duration_ms": run, "note": ""})
    if worker is not None:
        overhead = worker - (init or 0) - (run or 0)
        spans.append({"name": "finished", "offset_ms": queued + worker, "duration_ms": max(overhead, 0),
                      "note": "the worker's own work: sandbox, pipes, recording"})
    else:
        spans.append({"name": "finished", "offset_ms": None, "duration_ms": None, "note": ""})
    if i.kind == Invocation.Kind.ASYNC:
        spans.append({"name": "destination", "offset_ms": None, "duration_ms": None,
                      "note": i.destination or ("next attempt at " + i.retry_at.isoformat()
                                                if i.status == Invocation.Status.QUEUED and i.attempts else "—")})
    total = max([(s["offset_ms"] or 0) + (s["duration_ms"] or 0) for s in spans] + [1])
    for s in spans:
        # The bar of each span, as a share of the whole, for the timeline drawing.
        s["left"] = round(100 * (s["offset_ms"] or 0) / total, 2)
        s["width"] = round(100 * (s["duration_ms"] or 0) / total, 2)
    return spans


def _capped(text):
    """Return (text shown, whole size in bytes): the first SHOWN_PAYLOAD_BYTES of a payload."""
    data = text.encode()
    if len(data) <= SHOWN_PAYLOAD_BYTES:
        return text, len(data)
    return data[:SHOWN_PAYLOAD_BYTES].decode(errors="ignore"), len(data)


def _detail_context(invocation, replay_form=None, event_form=None):
    function = invocation.function
    event, event_bytes = _capped(invocation.event)
    result, result_bytes = _capped(invocation.result)
    return {
        "invocation": invocation, "function": function, "timeline": timeline(invocation),
        "event_text": event, "event_bytes": event_bytes, "event_capped": len(event) < len(invocation.event),
        "result_text": result, "result_bytes": result_bytes, "result_capped": len(result) < len(invocation.result),
        "shown_kb": SHOWN_PAYLOAD_BYTES // 1024,
        "replay_form": replay_form or InvokeForm(function=function, initial={"qualifier": invocation.qualifier}),
        "event_form": event_form or TestEventForm(function=function),
    }


def invocation_detail(request, pk):
    invocation = _get_invocation_for_user(request, pk)
    return render(request, "invocations/detail.html", _detail_context(invocation))


@require_POST
def replay(request, pk):
    """Invoke the function again with this invocation's event, on the version or alias chosen."""
    original = _get_invocation_for_user(request, pk)
    function = original.function
    form = InvokeForm({**request.POST.dict(), "event": original.event}, function=function)
    if not form.is_valid():
        return render(request, "invocations/detail.html", _detail_context(original, replay_form=form), status=400)
    qualifier = form.cleaned_data["qualifier"] or None
    try:
        if form.cleaned_data["invocation_type"] == Invocation.Kind.ASYNC:
            invocation = invoke(function, original.event, kind=Invocation.Kind.ASYNC, qualifier=qualifier)
            messages.success(request, f"Replayed {original.id} asynchronously.")
        else:
            invocation = invoke_and_wait(function, original.event, qualifier=qualifier)
            messages.success(request, f"Replayed {original.id}.")
    except (Version.DoesNotExist, Alias.DoesNotExist):
        form.add_error("qualifier", "That version or alias no longer exists.")
        return render(request, "invocations/detail.html", _detail_context(original, replay_form=form), status=400)
    except RequestTooLarge as e:
        form.add_error(None, f"RequestTooLargeException: {e}.")
        return render(request, "invocations/detail.html", _detail_context(original, replay_form=form), status=400)
    return redirect(invocation)


@require_POST
def save_test_event(request, pk):
    invocation = _get_invocation_for_user(request, pk)
    form = TestEventForm({"name": request.POST.get("name", ""), "event": invocation.event},
                         function=invocation.function)
    if not form.is_valid():
        return render(request, "invocations/detail.html", _detail_context(invocation, event_form=form), status=400)
    event = form.save()
    messages.success(request, f"Saved the event as test event “{event.name}” of {invocation.function.name}.")
    return redirect(invocation)


def tail(request, name):
    function = _get_function_for_user(request, name)
    return render(request, "invocations/tail.html", {"function": function})


def _tail_entry(invocation):
    return {"id": str(invocation.id), "url": invocation.get_absolute_url(), "status": invocation.status,
            "finished_at": invocation.finished_at.isoformat(), "log": invocation.log}


def tail_lines(request, name):
    """The logs of the function's invocations finished after the cursor `after`, oldest first, and the
    cursor to ask with next. Without a cursor: the latest few."""
    function = _get_function_for_user(request, name)
    finished = Invocation.objects.filter(function=function, finished_at__isnull=False).only(
        "id", "status", "finished_at", "log")
    after = request.GET.get("after")
    if after:
        try:
            moment, pk = _parse_cursor(after)
        except ValueError:
            return JsonResponse({"error": "The cursor “after” is not one this endpoint gave."}, status=400)
        # "Finished after the cursor", as one index range (see invocation_list).
        rows = list(finished.filter(Q(finished_at__gte=moment) & ~Q(finished_at=moment, id__lte=pk))
                    .order_by("finished_at", "id")[:TAIL_MAX])
    else:
        rows = list(finished.order_by("-finished_at", "-id")[:TAIL_FIRST])[::-1]
    cursor = _cursor(rows[-1].finished_at, rows[-1].id) if rows else after or ""
    return JsonResponse({"cursor": cursor, "invocations": [_tail_entry(i) for i in rows]})
