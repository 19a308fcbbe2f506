"""Bucket pages (list, create, browse by prefix, delete) and an object's URL: GET downloads it, PUT uploads
the request's raw body to it (streamed to disk), DELETE removes it."""

import mimetypes
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.http import require_POST

from invocations.buckets import notifications
from invocations.buckets.forms import BucketForm
from invocations.buckets.models import Bucket, KeyConflict
from invocations.buckets.storage import IncompleteBody
from invocations.sources.api import ApiError, api_view
from invocations.sources.pages import create_from_form

# S3's ListObjects returns at most 1000 keys a page; so does a bucket page here.
LIST_MAX = 1000


def _get_bucket_for_user(request, name):
    return get_object_or_404(Bucket, name=name, owner=request.user)


def bucket_list(request):
    if request.method == "POST":
        form = BucketForm(request.POST, owner=request.user)
        if form.is_valid():
            taken = f"The bucket name {form.cleaned_data['name']!r} is taken: names are unique across all users."
            created = create_from_form(request, form, "bucket", taken)
            if created is not None:
                return created
    else:
        form = BucketForm(owner=request.user)
    buckets = request.user.buckets.annotate(object_count=Count("contents"), total_size=Sum("contents__size"))
    return render(request, "buckets/list.html", {"buckets": buckets, "form": form},
                  status=400 if form.errors else 200)


def bucket_detail(request, name):
    bucket = _get_bucket_for_user(request, name)
    prefix = request.GET.get("prefix", "")
    folders, objects, truncated = _listing(bucket, prefix)
    totals = bucket.contents.aggregate(count=Count("id"), size=Sum("size"))
    crumbs, path = [], ""
    for segment in prefix.split("/")[:-1]:
        path += segment + "/"
        crumbs.append((segment, path))
    return render(request, "buckets/detail.html", {
        "bucket": bucket, "prefix": prefix, "crumbs": crumbs, "folders": folders, "objects": objects,
        "truncated": truncated, "list_max": LIST_MAX, "totals": totals,
        "notifications": notifications.triggers_of(bucket), "max_object_bytes": settings.BUCKET_MAX_OBJECT_BYTES,
        "objects_url": reverse("buckets:object", args=[bucket.name, "-"])[:-1],
    })


def _listing(bucket, prefix):
    """The folders (with their object counts) and objects directly under `prefix`, "/" delimiting folders."""
    folders, objects = {}, []
    # startswith is case-insensitive on SQLite: the exact test is in Python.
    for obj in bucket.contents.filter(key__startswith=prefix).iterator():
        if not obj.key.startswith(prefix):
            continue
        rest = obj.key[len(prefix):]
        if "/" in rest:
            folder = rest.split("/", 1)[0]
            folders[folder] = folders.get(folder, 0) + 1
        else:
            objects.append(obj)
    items = sorted(folders.items())
    truncated = len(items) + len(objects) > LIST_MAX
    return items[:LIST_MAX], objects[:max(0, LIST_MAX - len(items))], truncated


@require_POST
def bucket_delete(request, name):
    bucket = _get_bucket_for_user(request, name)
    count = bucket.contents.count()
    if count and request.POST.get("with_objects") != "on":
        messages.error(request, f"{bucket.name} holds {count} object(s): tick “also delete its objects” to delete "
                                "them with it.")
        return redirect(bucket)
    bucket.delete_with_objects()
    messages.success(request, f"Deleted bucket {bucket.name}" + (f" and its {count} object(s)." if count else "."))
    return redirect("buckets:list")


@require_POST
def object_delete(request, name):
    """The bucket page's Delete button: delete one object, sending its ObjectRemoved:Delete notifications."""
    bucket = _get_bucket_for_user(request, name)
    key = request.POST.get("key", "")
    if bucket.delete_object(key, notifications.Requester.of(request)):
        messages.success(request, f"Deleted {key}.")
    else:
        messages.error(request, f"There is no object {key}.")
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return redirect(f"{bucket.get_absolute_url()}?{urlencode({'prefix': folder})}" if folder else bucket)


@api_view
def object_view(request, name, key):
    bucket = _get_bucket_for_user(request, name)
    if request.method in ("GET", "HEAD"):
        return _download(bucket, key)
    if request.method == "PUT":
        return _upload(request, bucket, key)
    if request.method == "DELETE":
        bucket.delete_object(key, notifications.Requester.of(request))
        return HttpResponse(status=204)  # also for a key that was not there, as S3 answers
    raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on an object: GET, PUT or DELETE.")


def _download(bucket, key):
    obj = bucket.contents.filter(key=key).first()
    if obj is None:
        raise Http404("No such object.")
    try:
        file = open(obj.path, "rb")
    except FileNotFoundError:  # deleted since the row was read
        raise Http404("No such object.") from None
    # An attachment, never rendered: the bytes are the owner's, but they are served from the console's origin.
    response = FileResponse(file, as_attachment=True, filename=obj.name, content_type=obj.content_type)
    response["ETag"] = obj.etag
    response["Last-Modified"] = obj.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
    response["Content-Security-Policy"] = "sandbox"
    return response


def _upload(request, bucket, key):
    length = request.META.get("CONTENT_LENGTH")
    if not length or not length.isdigit():
        raise ApiError(411, "MissingContentLength", "Send the Content-Length header.")
    length = int(length)
    if length > settings.BUCKET_MAX_OBJECT_BYTES:
        raise ApiError(413, "EntityTooLarge", f"The object is {filesizeformat(length)}; the largest is "
                                              f"{filesizeformat(settings.BUCKET_MAX_OBJECT_BYTES)}.")
    content_type = (request.META.get("CONTENT_TYPE") or mimetypes.guess_type(key)[0]
                    or "binary/octet-stream")[:255]
    try:
        obj = bucket.put_object(key, request, length, content_type, notifications.Requester.of(request))
    except KeyConflict as e:
        raise ApiError(409, "KeyConflict", e.message) from None
    except ValidationError as e:
        raise ApiError(400, "InvalidArgument", f"Invalid key {key!r}: {e.message}") from None
    except IncompleteBody as e:
        raise ApiError(400, "IncompleteBody", str(e)) from None
    response = JsonResponse({"Key": obj.key, "Size": obj.size, "ETag": obj.etag, "Location": obj.get_absolute_url()})
    response["ETag"] = obj.etag
    return response
