"""What the event sources' console pages share."""

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.shortcuts import redirect


def create_from_form(request, form, noun, taken):
    """Save a valid form for a new resource and redirect to it, or return None.

    The name's uniqueness was checked by the form, but another request may take the name between that
    check and the save: then `taken` becomes the name's error and the caller shows the form again.
    """
    try:
        with transaction.atomic():
            resource = form.save()
    except IntegrityError:
        form.add_error("name", taken)
        return None
    messages.success(request, f"Created {noun} {resource.name}.")
    return redirect(resource)
