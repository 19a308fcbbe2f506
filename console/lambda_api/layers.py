"""Layers: PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers, ListLayerVersions,
DeleteLayerVersion."""

import base64
import binascii
import re

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from console.lambda_api.api import (
    CODE_REQUEST_MAX,
    form_invalid,
    next_marker,
    no_content,
    operation,
    paging,
    read_json,
    respond,
)
from console.lambda_api.code import code_location
from console.lambda_api.errors import ApiError, conflict, invalid, not_found
from console.lambda_api.shapes import timestamp
from functions.forms import LayerForm
from functions.models import Layer, LayerVersion, account_id

# LayerName as the API takes it: a name or a layer ARN (without a version).
LAYER_NAME = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:)?(?P<name>[A-Za-z0-9_-]{1,140})$"
)
# GetLayerVersionByArn's Arn: a layer version's ARN.
LAYER_VERSION_ARN = re.compile(
    r"^(?P<layer>arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]{1,140}):(?P<number>\d{1,9})$"
)
# ListLayers and ListLayerVersions page at most 50 (the service model's MaxLayerListItems).
LAYER_PAGE_MAX = 50
# The functions run on x86_64 (FunctionConfiguration.Architectures), so a layer can only be for that.
ARCHITECTURE = "x86_64"


def _layer_name(request, value):
    """The layer name from a LayerName; another account's or region's layer is not found."""
    match = LAYER_NAME.match(value or "")
    if not match:
        raise invalid(f"1 validation error detected: Value '{value}' at 'layerName' failed to satisfy constraint: "
                      "Member must satisfy regular expression pattern: "
                      "(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+")
    if (match["account"] and match["account"] != account_id(request.user)) or (
            match["region"] and match["region"] != settings.LAMBDA_REGION):
        raise not_found("The resource you requested does not exist.")
    return match["name"]


def _layer_version(request, layer_name, version_number, for_update=False):
    versions = LayerVersion.objects.select_related("layer__owner", "code")
    if for_update:
        versions = versions.select_for_update(of=("self",))
    try:
        return versions.get(layer__owner=request.user, layer__name=_layer_name(request, layer_name),
                            number=version_number)
    except LayerVersion.DoesNotExist:
        raise not_found("The resource you requested does not exist.") from None


def version_item(version):
    """LayerVersionsListItem."""
    return {
        "LayerVersionArn": version.arn,
        "Version": version.number,
        "Description": version.description,
        "CreatedDate": timestamp(version.created_at),
        "CompatibleRuntimes": version.compatible_runtimes,
        "CompatibleArchitectures": [ARCHITECTURE],
    }


def version_shape(request, version):
    """GetLayerVersionResponse (PublishLayerVersion's too)."""
    return {
        "Content": {"Location": code_location(request, version.code), "CodeSha256": version.code.sha256_base64,
                    "CodeSize": version.code.size},
        "LayerArn": version.layer.arn,
        **version_item(version),
    }


@operation("PublishLayerVersion", max_body=CODE_REQUEST_MAX)
def publish_layer_version(request, layer_name):
    name = _layer_name(request, layer_name)
    data = read_json(request)
    content = data.get("Content")
    if not isinstance(content, dict) or not content.get("ZipFile"):
        # There is no S3 here to fetch Content.S3Bucket/S3Key from.
        raise invalid("Content: upload the layer's ZIP as Content.ZipFile (S3 locations are not supported).")
    try:
        archive = base64.b64decode(content["ZipFile"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise invalid("Content.ZipFile: not valid base64.") from None
    if len(archive) > settings.MAX_UPLOAD_BYTES:
        raise ApiError(413, "RequestTooLargeException",
                       f"Content.ZipFile must be at most {settings.MAX_UPLOAD_BYTES} bytes, not {len(archive)}.")
    architectures = data.get("CompatibleArchitectures") or []
    if architectures != [ARCHITECTURE] and architectures:
        # The form has no such field: every function here runs on one architecture.
        raise invalid(f"CompatibleArchitectures: functions here run on {ARCHITECTURE} only.")
    runtimes = data.get("CompatibleRuntimes") or []
    if not isinstance(runtimes, list):
        raise invalid("CompatibleRuntimes: give a list of runtimes.")
    form = LayerForm(
        {"name": name, "description": data.get("Description") or "", "compatible_runtimes": runtimes},
        {"code": SimpleUploadedFile("layer.zip", archive, content_type="application/zip")},
        owner=request.user,
    )
    if not form.is_valid():
        raise form_invalid(form, {"name": "LayerName", "description": "Description",
                                  "compatible_runtimes": "CompatibleRuntimes", "code": "Content.ZipFile"})
    try:
        with transaction.atomic():
            version = form.save()
    except IntegrityError:
        # Another publish of this layer took the number first.
        raise conflict("Another version of this layer was published at the same moment: try again.") from None
    return respond(version_shape(request, version), status=201)


@operation("GetLayerVersion")
def get_layer_version(request, layer_name, version_number):
    return respond(version_shape(request, _layer_version(request, layer_name, version_number)))


@operation("GetLayerVersionByArn")
def get_layer_version_by_arn(request):
    arn = request.GET.get("Arn") or ""
    match = LAYER_VERSION_ARN.match(arn)
    if not match:
        raise invalid(f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: Member "
                      "must satisfy regular expression pattern: "
                      "arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:"
                      "[a-zA-Z0-9-_]+:[0-9]+")
    # The layer's ARN is a LayerName too: another account's or region's layer is not found.
    return respond(version_shape(request, _layer_version(request, match["layer"], int(match["number"]))))


@operation("DeleteLayerVersion")
def delete_layer_version(request, layer_name, version_number):
    name = _layer_name(request, layer_name)
    with transaction.atomic():
        version = (LayerVersion.objects.select_for_update(of=("self",)).select_related("layer__owner")
                   .filter(layer__owner=request.user, layer__name=name, number=version_number).first())
        if version is None:
            # Lambda answers 204 for a version that is not there (the model lists no not-found error).
            return no_content()
        users = sorted(version.functionlayer_set.values_list("function__name", flat=True))
        if users:
            # Lambda deletes it and keeps a copy for the functions; here, as in the console, a function's
            # layer version stays until no function uses it (FunctionLayer protects it).
            raise conflict(f"Layer version {version.arn} is used by {', '.join(users)}: remove it from "
                           f"{'those functions' if len(users) > 1 else 'that function'} first.")
        # The layer stays, even without versions, so that its numbering goes on (it no longer lists).
        version.delete()
    return no_content()


def _runtime_filter(request):
    runtime = request.GET.get("CompatibleRuntime")
    return (lambda version: runtime in version.compatible_runtimes) if runtime else (lambda version: True)


@operation("ListLayers")
def list_layers(request):
    after, max_items = paging(request, default=LAYER_PAGE_MAX, maximum=LAYER_PAGE_MAX)
    if after is not None and not isinstance(after, str):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    matches = _runtime_filter(request)
    layers = Layer.objects.filter(owner=request.user).select_related("owner").prefetch_related("versions")
    if after is not None:
        layers = layers.filter(name__gt=after)
    page = []
    # A layer lists with its newest version that matches the filter; one without is left out.
    for layer in layers.order_by("name"):
        latest = next((v for v in layer.versions.all() if matches(v)), None)
        if latest is not None:
            page.append((layer, latest))
            if len(page) > max_items:
                break
    body = {"Layers": [{"LayerName": layer.name, "LayerArn": layer.arn, "LatestMatchingVersion": version_item(latest)}
                       for layer, latest in page[:max_items]]}
    marker = next_marker(page, max_items, key=lambda item: item[0].name)
    if marker:
        body["NextMarker"] = marker
    return respond(body)


@operation("ListLayerVersions")
def list_layer_versions(request, layer_name):
    name = _layer_name(request, layer_name)
    after, max_items = paging(request, default=LAYER_PAGE_MAX, maximum=LAYER_PAGE_MAX)
    if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    matches = _runtime_filter(request)
    # Newest first, as Lambda lists them; a layer that does not exist has no versions (Lambda's answer too).
    versions = (LayerVersion.objects.select_related("layer__owner")
                .filter(layer__owner=request.user, layer__name=name).order_by("-number"))
    if after is not None:
        versions = versions.filter(number__lt=after)
    page = [version for version in versions if matches(version)][:max_items + 1]
    body = {"LayerVersions": [version_item(version) for version in page[:max_items]]}
    marker = next_marker(page, max_items, key=lambda version: version.number)
    if marker:
        body["NextMarker"] = marker
    return respond(body)
