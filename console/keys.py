"""The account's access keys (they sign Lambda API calls): list, create (the secret shown once), deactivate,
activate and delete, as IAM's console offers them."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from console.models import MAX_KEYS_PER_USER, AccessKey


def _get_key_for_user(request, key_id):
    return get_object_or_404(AccessKey, user=request.user, access_key_id=key_id)


def key_list(request):
    keys = AccessKey.objects.filter(user=request.user)
    return render(request, "console/keys.html", {"keys": keys, "limit": MAX_KEYS_PER_USER,
                                                 "at_limit": len(keys) >= MAX_KEYS_PER_USER})


@never_cache
@require_POST
def create_key(request):
    """Issue a key and answer the POST with the page that shows its secret, not with a redirect.

    The secret exists in clear only in this response: it is in no session and no message, so neither a
    reload of the list nor the Back button can show it again (never_cache: no-store keeps the page out of
    the browser's cache; reloading it re-sends the POST, which issues another key, never this one).
    """
    with transaction.atomic():
        # Serialise the count and the insert per user, so that two quick clicks cannot pass the limit together
        # (a row lock on PostgreSQL; SQLite's IMMEDIATE transactions serialise all writers anyway).
        get_user_model().objects.select_for_update().get(pk=request.user.pk)
        if AccessKey.objects.filter(user=request.user).count() >= MAX_KEYS_PER_USER:
            messages.error(request, f"You already have {MAX_KEYS_PER_USER} access keys, the limit per user "
                                    f"(as IAM's). Delete one before creating another.")
            return redirect("access_keys")
        key, secret = AccessKey.issue(request.user)
    # The API is served under the console's own root (its paths begin with the API's dates).
    endpoint = request.build_absolute_uri(reverse("home")).rstrip("/")
    environment = {"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": secret,
                   "AWS_DEFAULT_REGION": settings.LAMBDA_REGION, "AWS_ENDPOINT_URL_LAMBDA": endpoint}
    return render(request, "console/keys_created.html", {"key": key, "secret": secret, "environment": environment})


@require_POST
def deactivate_key(request, key_id):
    key = _get_key_for_user(request, key_id)
    key.deactivate()
    messages.success(request, f"Deactivated {key}: requests signed with it are refused until you activate it again.")
    return redirect("access_keys")


@require_POST
def activate_key(request, key_id):
    key = _get_key_for_user(request, key_id)
    key.activate()
    messages.success(request, f"Activated {key}.")
    return redirect("access_keys")


def delete_key(request, key_id):
    """GET asks for confirmation (a deleted key cannot be restored, and works without JavaScript); POST deletes."""
    key = _get_key_for_user(request, key_id)
    if request.method == "POST":
        key.delete()
        messages.success(request, f"Deleted {key}.")
        return redirect("access_keys")
    return render(request, "console/keys_delete.html", {"key": key})
