"""The dead-letter inbox: a function's asynchronous events that failed every attempt or grew too old.
Each can be read (error, attempts, log), edited, redriven, or purged with the rest."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from functions.models import Alias, Version
from functions.views import _get_function_for_user
from invocations.asynchronous import redrive
from invocations.invoke import RequestTooLarge
from invocations.forms import DeadLetterForm
from invocations.metrics.rollups import record_dead_letters

INBOX_PAGE = 100


def _waiting(function):
    return function.dead_letters.filter(redriven_at__isnull=True).select_related("invocation")


def dead_letters(request, name):
    function = _get_function_for_user(request, name)
    waiting = _waiting(function)
    return render(request, "invocations/dead_letters.html", {
        "function": function,
        "letters": [(letter, DeadLetterForm(initial={"payload": letter.payload}, prefix=str(letter.pk), letter=letter))
                    for letter in waiting[:INBOX_PAGE]],
        "waiting_count": waiting.count(),
        "redriven": function.dead_letters.filter(redriven_at__isnull=False).select_related("invocation")[:20],
    })


@require_POST
def dead_letter_save(request, name, pk):
    """Save an edited payload; with "redrive" in the form, redrive it too."""
    function = _get_function_for_user(request, name)
    letter = get_object_or_404(_waiting(function), pk=pk)
    form = DeadLetterForm(request.POST, prefix=str(letter.pk), letter=letter)
    if not form.is_valid():
        for error in form.errors["payload"]:
            messages.error(request, f"Event {letter.invocation_id}: {error}")
        return redirect("functions:dead_letters", function.name)
    letter.payload = form.cleaned_data["payload"]
    letter.save(update_fields=["payload"])
    if "redrive" in request.POST:
        _redrive(request, letter)
    else:
        messages.success(request, f"Saved the payload of event {letter.invocation_id}.")
    return redirect("functions:dead_letters", function.name)


@require_POST
def dead_letter_redrive(request, name, pk):
    function = _get_function_for_user(request, name)
    letter = get_object_or_404(_waiting(function), pk=pk)
    _redrive(request, letter)
    return redirect("functions:dead_letters", function.name)


@require_POST
def dead_letters_redrive_all(request, name):
    function = _get_function_for_user(request, name)
    sent = sum(_redrive(request, letter, quiet=True) for letter in _waiting(function))
    messages.success(request, f"Redrove {sent} event{'s' if sent != 1 else ''}.")
    return redirect("functions:dead_letters", function.name)


@require_POST
def dead_letters_purge(request, name):
    """Empty the inbox. The invocations themselves, with their logs, stay."""
    function = _get_function_for_user(request, name)
    with transaction.atomic():
        deleted, _ = _waiting(function).delete()
        record_dead_letters(function.pk)
    messages.success(request, f"Purged {deleted} event{'s' if deleted != 1 else ''} from the inbox.")
    return redirect("functions:dead_letters", function.name)


def _redrive(request, letter, quiet=False):
    """Redrive one letter; return 1 if it was sent, else 0 (with a message saying why)."""
    try:
        invocation = redrive(letter)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        messages.error(request, f"Event {letter.invocation_id} was not redriven: "
                                f"{letter.invocation.qualifier} no longer exists.")
        return 0
    except RequestTooLarge as e:
        messages.error(request, f"Event {letter.invocation_id} was not redriven: {e}")
        return 0
    if invocation is None:
        return 0  # redriven meanwhile by another request
    if not quiet:
        messages.success(request, f"Redrove event {letter.invocation_id} as invocation {invocation.pk}.")
    return 1
