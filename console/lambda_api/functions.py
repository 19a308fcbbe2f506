"""The function operations of the Lambda API: CreateFunction, GetFunction, GetFunctionConfiguration,
ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction. The JSON goes through the
console's own forms (functions.forms), so both make the same functions under the same rules."""

import base64
import binascii
import re

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.datastructures import MultiValueDict

from console.lambda_api import api, shapes
from console.lambda_api.api import form_invalid, next_marker, operation, paging, read_json, respond
from console.lambda_api.errors import ApiError, conflict, invalid, not_found
from console.lambda_api.code import code_location
from console.lambda_api.tags import check_tags
from console.middleware import too_large_message
from functions.forms import (
    CodeForm,
    ConfigurationForm,
    FunctionForm,
    FunctionLayersForm,
    VariableFormSet,
    host_runtime,
)
from functions.models import LATEST, Function, LayerVersion, account_id

# The API's name for each form field, so that an error names what the caller sent.
API_NAMES = {
    "name": "FunctionName", "runtime": "Runtime", "handler": "Handler", "code": "Code.ZipFile",
    "memory_size": "MemorySize", "timeout": "Timeout", "ephemeral_storage": "EphemeralStorage.Size",
    "description": "Description", "key": "Environment.Variables", "value": "Environment.Variables",
}
ROLE_PATTERN = re.compile(r"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
LAYER_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
                       r"(?P<name>[A-Za-z0-9_-]+):(?P<number>\d+)$")
JSON_TYPES = {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}


@operation("CreateFunction", max_body=api.CODE_REQUEST_MAX)
def create_function(request):
    body = read_json(request)
    _check_types(body, {"FunctionName": str, "Role": str, "Runtime": str, "Handler": str, "Description": str,
                        "Timeout": int, "MemorySize": int, "Publish": bool, "Code": dict, "Environment": dict,
                        "EphemeralStorage": dict, "Layers": list, "PackageType": str, "Architectures": list,
                        "Tags": dict})
    _check_supported(body, body.get("Code") or {})
    role = _role(body.get("Role"))
    name = _name_to_create(request, body.get("FunctionName"))
    form = FunctionForm({
        "name": name, "runtime": body.get("Runtime", ""), "handler": body.get("Handler", ""),
        "memory_size": body.get("MemorySize", 128), "timeout": body.get("Timeout", 3),
        "ephemeral_storage": (body.get("EphemeralStorage") or {}).get("Size"),
        "description": body.get("Description", ""), "outbound_network": False,
    }, _code_files(body.get("Code") or {}), owner=request.user)
    if form.has_error("name", code="duplicate"):
        raise conflict(f"Function already exist: {name}")
    _raise_form_errors(form)
    variables = _variables(body) if "Environment" in body else {}
    layer_ids = _layer_ids(request, body["Layers"] or []) if "Layers" in body else None
    tags = check_tags(body.get("Tags") or {})
    try:
        with transaction.atomic():
            function = form.save()
            function.role, function.tags = role, tags
            function.save(update_fields=["role", "tags"])
            if variables:
                function.set_environment(variables)
            if layer_ids:
                _attach_layers(function, layer_ids)  # its error rolls the whole function back
            version = function.publish(function.description)[0] if body.get("Publish") else None
    except IntegrityError:
        # The same name was created by another request between validation and save.
        raise conflict(f"Function already exist: {name}") from None
    return respond(shapes.function_configuration(function, version), status=201)


@operation("GetFunction")
def get_function(request, function_name):
    function, qualifier = api.get_function(request, function_name, request.GET.get("Qualifier"))
    configuration, code = _configuration(request, function, qualifier)
    shape = {
        "Configuration": configuration,
        # A signed link to the ZIP that lasts 10 minutes, as AWS's presigned S3 URL does.
        "Code": {"RepositoryType": "S3", "Location": code_location(request, code)},
        "Tags": function.tags,
    }
    if function.reserved_concurrency is not None:
        shape["Concurrency"] = {"ReservedConcurrentExecutions": function.reserved_concurrency}
    return respond(shape)


@operation("GetFunctionConfiguration")
def get_function_configuration(request, function_name):
    function, qualifier = api.get_function(request, function_name, request.GET.get("Qualifier"))
    return respond(_configuration(request, function, qualifier)[0])


@operation("ListFunctions")
def list_functions(request):
    marker, max_items = paging(request)
    all_versions = _function_version(request.GET.get("FunctionVersion"))
    after = _read_marker(marker)
    functions = (Function.objects.filter(owner=request.user, name__gte=after[0]).select_related("code", "owner")
                 .order_by("name"))
    if all_versions:
        functions = functions.prefetch_related("versions__code")
    # Every function is at least one entry, and only the first (the marker's) can be all before the marker:
    # max_items + 2 functions show whether there is a next page.
    entries = []
    for function in functions[:max_items + 2]:
        versions = sorted(function.versions.all(), key=lambda v: v.number) if all_versions else []
        for version in [None, *versions]:
            key = (function.name, version.number if version else 0)
            if key > after:
                entries.append((key, function, version))
    page = {"Functions": [shapes.function_configuration(f, v) for _, f, v in entries[:max_items]]}
    # The marker names the page's last entry: the function's name, with ":N" for a version.
    marker = next_marker(entries, max_items, lambda entry: f"{entry[0][0]}:{entry[0][1]}" if entry[0][1]
                         else entry[0][0])
    if marker:
        page["NextMarker"] = marker
    return respond(page)


@operation("UpdateFunctionCode", max_body=api.CODE_REQUEST_MAX)
def update_function_code(request, function_name):
    body = read_json(request)
    _check_types(body, {"ZipFile": str, "Publish": bool, "RevisionId": str, "Architectures": list})
    _check_supported(body, body)
    with transaction.atomic():
        function, _ = api.get_function(request, function_name, for_update=True)
        _check_revision(body, function)
        form = CodeForm({}, _code_files(body), function=function)
        _raise_form_errors(form)
        form.save()
        version = function.publish(function.description)[0] if body.get("Publish") else None
    return respond(shapes.function_configuration(function, version))


@operation("UpdateFunctionConfiguration")
def update_function_configuration(request, function_name):
    body = read_json(request)
    _check_types(body, {"Role": str, "Runtime": str, "Handler": str, "Description": str, "Timeout": int,
                        "MemorySize": int, "Environment": dict, "EphemeralStorage": dict, "Layers": list,
                        "RevisionId": str})
    with transaction.atomic():
        function, _ = api.get_function(request, function_name, for_update=True)
        _check_revision(body, function)
        # Only what was sent changes: the form starts from the function's current settings.
        data = {name: getattr(function, name) for name in ConfigurationForm.base_fields}
        for api_name, field in (("Handler", "handler"), ("Description", "description"), ("Timeout", "timeout"),
                                ("MemorySize", "memory_size")):
            if api_name in body:
                data[field] = body[api_name]
        if "EphemeralStorage" in body:
            data["ephemeral_storage"] = (body["EphemeralStorage"] or {}).get("Size")
        form = ConfigurationForm(data, function=function)
        _raise_form_errors(form)
        if "Runtime" in body:
            _check_runtime(body["Runtime"])
        role = _role(body["Role"]) if "Role" in body else None
        variables = _variables(body) if "Environment" in body else None
        layer_ids = _layer_ids(request, body["Layers"] or []) if "Layers" in body else None
        form.save()
        if role is not None:
            function.role = role
            function.save(update_fields=["role", "last_modified"])
        if variables is not None:  # as in Lambda, Environment replaces the whole set
            function.set_environment(variables)
        if layer_ids is not None:
            _attach_layers(function, layer_ids)
    return respond(shapes.function_configuration(function))


@operation("DeleteFunction")
def delete_function(request, function_name):
    with transaction.atomic():
        function, qualifier = api.get_function(request, function_name, request.GET.get("Qualifier"),
                                               for_update=True)
        if qualifier is None:
            # Aliases first: they protect the versions they point at, which go with the function.
            function.aliases.all().delete()
            function.delete()
        else:
            _delete_version(function, qualifier)
    return api.no_content()


def _delete_version(function, qualifier):
    """DeleteFunction with a Qualifier: one version goes. What Lambda answers for the other qualifiers is
    not in its API reference; these are its answers as measured against the service."""
    if qualifier == LATEST:
        raise invalid("$LATEST version cannot be deleted without deleting the function.")
    if not qualifier.isdigit():
        raise invalid("Deletion of aliases is not currently supported.")
    version = function.versions.filter(number=int(qualifier)).first()
    if version is None:
        return  # as in Lambda: a version that is not there is no error
    aliases = function.aliases.filter(Q(version=version) | Q(additional_version=version))
    if aliases:
        names = ", ".join(alias.name for alias in aliases)
        raise conflict(f"Unable to delete version because the following aliases reference it: [{names}]")
    # What belongs to the version goes with it, as an alias's does (its past invocations stay).
    function.triggers.filter(qualifier=qualifier).delete()
    function.event_invoke_configs.filter(qualifier=qualifier).delete()
    version.delete()


def _configuration(request, function, qualifier):
    """Return (FunctionConfiguration, code artifact) for $LATEST, a version number or an alias."""
    if qualifier in (None, LATEST):
        return shapes.function_configuration(function), function.code
    missing = not_found(f"Function not found: {api.function_arn(request.user, function.name, qualifier)}")
    if qualifier.isdigit():
        version = function.versions.select_related("code").filter(number=int(qualifier)).first()
        if version is None:
            raise missing
        return shapes.function_configuration(function, version), version.code
    alias = function.aliases.select_related("version__code").filter(name=qualifier).first()
    if alias is None:
        raise missing
    # As in Lambda: the configuration of the version the alias points at, under the alias's ARN.
    configuration = shapes.function_configuration(function, alias.version)
    configuration["FunctionArn"] = f"{function.arn}:{alias.name}"
    return configuration, alias.version.code if alias.version else function.code


def _name_to_create(request, value):
    """The name in CreateFunction's FunctionName, which may be an ARN (without a qualifier)."""
    if not value or ":" not in value:
        return value or ""  # the form says what is wrong with a plain name
    name, qualifier = api.parse_function_name(request, value)
    if qualifier:
        raise invalid(f"FunctionName: {value} has a qualifier; a new function has none.")
    return name


def _code_files(code):
    """The form's files from a Code object (or UpdateFunctionCode's body): ZipFile in base64."""
    if "ZipFile" not in code:
        return {}
    try:
        data = base64.b64decode(code["ZipFile"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise invalid("Code.ZipFile: the ZIP must be sent in base64.") from None
    # The console's UploadLimitMiddleware sees only multipart uploads: the same limit, for JSON.
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise ApiError(413, "RequestTooLargeException", too_large_message())
    return {"code": SimpleUploadedFile("code.zip", data, content_type="application/zip")}


def _check_supported(body, code):
    """Refuse the ways of shipping code that this platform does not have, rather than ignore them."""
    for unsupported in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"):
        if unsupported in code:
            raise invalid(f"{unsupported}: only Code.ZipFile is supported here; send the ZIP itself.")
    if body.get("PackageType", "Zip") != "Zip":
        raise invalid("PackageType: only Zip is supported here.")
    if body.get("Architectures", ["x86_64"]) != ["x86_64"]:
        raise invalid("Architectures: only x86_64 is supported here.")


def _check_types(body, types):
    """Refuse a parameter of the wrong JSON type (botocore checks this client-side; other clients may not):
    a form would turn {"a": 1} into the text "{'a': 1}"."""
    for name, kind in types.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ApiError(400, "InvalidRequestContentException",
                           f"Could not parse request body into json: {name} must be a JSON {JSON_TYPES[kind]}.")


def _check_runtime(runtime):
    # ConfigurationForm has no runtime field (the console cannot change it): the rule is FunctionForm's.
    if runtime != host_runtime():
        raise invalid(_runtime_message(runtime))


def _runtime_message(runtime):
    return f"Runtime: {runtime} is not supported here; the runtime of this host is {host_runtime()}."


def _role(role):
    # Not a form field: the console asks for no role (shapes.default_role stands in for one).
    if not role:
        raise invalid("Role: a role ARN is required.")
    if len(role) > Function._meta.get_field("role").max_length or not ROLE_PATTERN.match(role):
        raise invalid(f"1 validation error detected: Value '{role}' at 'role' failed to satisfy constraint: "
                      f"Member must satisfy regular expression pattern: {ROLE_PATTERN.pattern[1:-1]}")
    return role


def _variables(body):
    """Environment.Variables, checked by the environment editor's formset; return {key: value}."""
    variables = (body["Environment"] or {}).get("Variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise invalid("Environment.Variables: give an object of strings.")
    data = {"form-TOTAL_FORMS": str(len(variables)), "form-INITIAL_FORMS": "0"}
    for i, (key, value) in enumerate(variables.items()):
        data[f"form-{i}-key"], data[f"form-{i}-value"] = key, value
    formset = VariableFormSet(data, function=None)
    if not formset.is_valid():
        messages = [message for form in formset.forms for errors in form.errors.values() for message in errors]
        raise invalid(" ".join(f"Environment.Variables: {m}" for m in messages + formset.non_form_errors()))
    return formset.variables


def _layer_ids(request, arns):
    """The ids of the caller's layer versions named by ARN, in order (FunctionLayersForm takes ids)."""
    ids = []
    for arn in arns:
        match = LAYER_ARN.match(arn) if isinstance(arn, str) else None
        if match is None:
            raise invalid(f"Layers: {arn!r} is not a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:N).")
        found = None
        if match["account"] == account_id(request.user) and match["region"] == settings.LAMBDA_REGION:
            found = LayerVersion.objects.filter(layer__owner=request.user, layer__name=match["name"],
                                                number=int(match["number"])).first()
        if found is None:  # another account's, or gone: the same answer either way
            raise invalid(f"Layers: layer version {arn} does not exist.")
        ids.append(str(found.pk))
    return ids


def _attach_layers(function, layer_ids):
    form = FunctionLayersForm(MultiValueDict({"layer": layer_ids}), function=function)
    if not form.is_valid():
        raise invalid(" ".join(f"Layers: {m}" for m in form.non_field_errors()))
    form.save()


def _raise_form_errors(form):
    """Answer a rejected form as Lambda does: InvalidParameterValueException naming the parameter."""
    if form.is_valid():
        return
    if form.has_error("runtime", code="invalid_choice"):
        raise invalid(_runtime_message(form.data.get("runtime")))  # the form's message lists no runtime
    raise form_invalid(form, API_NAMES)


def _check_revision(body, function):
    """RevisionId: update only the revision the caller last saw."""
    if body.get("RevisionId") and body["RevisionId"] != shapes.function_configuration(function)["RevisionId"]:
        raise ApiError(412, "PreconditionFailedException",
                       "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/"
                       "GetAlias API to retrieve the latest Revision Id")


def _function_version(value):
    if value not in (None, "ALL"):
        raise invalid(f"1 validation error detected: Value '{value}' at 'functionVersion' failed to satisfy "
                      f"constraint: Member must satisfy enum value set: [ALL]")
    return value == "ALL"


def _read_marker(marker):
    """(name, version number; 0 for $LATEST) of the entry a page follows."""
    if marker is None:
        return ("", -1)
    name, _, number = str(marker).partition(":")
    if number and not number.isdigit():
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    return (name, int(number or 0))
