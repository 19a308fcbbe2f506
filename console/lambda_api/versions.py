"""Versions and aliases: PublishVersion, ListVersionsByFunction, CreateAlias, GetAlias, UpdateAlias,
DeleteAlias, ListAliases. Validation is the console's (PublishForm, AliasForm); the models do the work."""

from django.db import IntegrityError, transaction

from console.lambda_api.api import (
    form_invalid,
    get_function,
    next_marker,
    no_content,
    operation,
    paging,
    read_json,
    respond,
)
from console.lambda_api.errors import ApiError, conflict, invalid, not_found
from console.lambda_api.shapes import function_configuration, revision_id
from functions import envvars
from functions.forms import AliasForm, PublishForm
from functions.models import LATEST, Alias

ALIAS_PARAMS = {"name": "Name", "description": "Description", "version": "FunctionVersion",
                "additional_version": "RoutingConfig.AdditionalVersionWeights",
                "additional_weight": "RoutingConfig.AdditionalVersionWeights"}


def _function(request, value, for_update=False):
    """The caller's function, named without a qualifier (these operations act on the function itself)."""
    function, qualifier = get_function(request, value, for_update=for_update)
    if qualifier:
        raise invalid(f"The function name must not carry a qualifier here, not :{qualifier}.")
    return function


def _precondition_failed(what):
    return ApiError(412, "PreconditionFailedException", "The Revision Id provided does not match the latest "
                                                        f"Revision Id. Call the {what} API to retrieve the latest "
                                                        "Revision Id")


@operation("PublishVersion")
def publish_version(request, function_name):
    data = read_json(request)
    form = PublishForm({"description": data.get("Description") or ""})
    if not form.is_valid():
        raise form_invalid(form, {"description": "Description"})
    try:
        with transaction.atomic():
            function = _function(request, function_name, for_update=True)
            latest = function_configuration(function)
            code_sha256 = data.get("CodeSha256")
            if code_sha256 and code_sha256 != latest["CodeSha256"]:
                raise invalid(f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                              f"({latest['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.")
            if data.get("RevisionId") and data["RevisionId"] != latest["RevisionId"]:
                raise _precondition_failed("GetFunction")
            # As in Lambda, unchanged code and configuration give back the latest version, not a new one.
            version, _ = function.publish(form.cleaned_data["description"])
    except IntegrityError:
        # Another publish took the number first (SQLite cannot lock the row).
        raise conflict("Another version was published at the same moment: try again.") from None
    except envvars.InvalidToken:
        raise ApiError(502, "KMSAccessDeniedException", "The environment variables cannot be decrypted with "
                                                        "the keys in ENVIRONMENT_KEYS.") from None
    return respond(function_configuration(function, version), status=201)


@operation("ListVersionsByFunction")
def list_versions_by_function(request, function_name):
    function = _function(request, function_name)
    after, max_items = paging(request)
    # $LATEST first, then the published versions in ascending order; the marker is the last label shown.
    if after is None:
        page, after_number = [None], 0
    elif after == LATEST:
        page, after_number = [], 0
    elif isinstance(after, str) and after.isdigit():
        page, after_number = [], int(after)
    else:
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    versions = function.versions.select_related("code").filter(number__gt=after_number).order_by("number")
    page += list(versions[:max_items + 1 - len(page)])
    body = {"Versions": [function_configuration(function, version) for version in page[:max_items]]}
    marker = next_marker(page, max_items, key=lambda version: str(version.number) if version else LATEST)
    if marker:
        body["NextMarker"] = marker
    return respond(body)


def alias_configuration(alias):
    shape = {
        "AliasArn": f"{alias.function.arn}:{alias.name}",
        "Name": alias.name,
        "FunctionVersion": str(alias.version.number) if alias.version else LATEST,
        "Description": alias.description,
        "RevisionId": revision_id("alias", alias.pk, alias.updated_at.isoformat()),
    }
    if alias.additional_version is not None:
        shape["RoutingConfig"] = {
            "AdditionalVersionWeights": {str(alias.additional_version.number): alias.additional_weight}}
    return shape


def _version_choice(value, param):
    """AliasForm's choice for a FunctionVersion: "" is $LATEST, a number is itself."""
    if value == LATEST:
        return ""
    if not isinstance(value, str) or not value.isdigit():
        # $LATEST.PUBLISHED (Lambda's newest alias target) has no counterpart here.
        raise invalid(f"{param}: use $LATEST or a published version's number, not {value!r}.")
    return value


def _routing(routing):
    """AliasForm's (additional_version, additional_weight) from an API RoutingConfig."""
    if routing is None:
        return "", ""
    weights = routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None
    if weights is None or weights == {}:
        return "", ""
    # The form has one canary version and one weight; Lambda's map allows one entry too.
    if not isinstance(weights, dict) or len(weights) != 1:
        raise invalid("RoutingConfig.AdditionalVersionWeights: give one version and its weight, "
                      'e.g. {"2": 0.1}.')
    (version, weight), = weights.items()
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise invalid(f"RoutingConfig.AdditionalVersionWeights: the weight must be a number, not {weight!r}.")
    return _version_choice(version, "RoutingConfig.AdditionalVersionWeights"), weight


def _save_alias(function, form):
    """Validate and save an AliasForm, answering its errors as Lambda does; return the alias."""
    if not form.is_valid():
        errors = form.errors.as_data()
        for field in ("version", "additional_version"):
            missing = [e for e in errors.get(field, []) if e.code == "invalid_choice"]
            if missing:
                number = form.data[field]
                raise not_found(f"Function not found: {function.arn}:{number}")
        if any(e.code == "duplicate" for e in errors.get("name", [])):
            raise conflict(f"Alias already exists: {function.arn}:{form.data['name']}")
        raise form_invalid(form, ALIAS_PARAMS)
    try:
        with transaction.atomic():
            return form.save()
    except IntegrityError:
        # Created by another request between validation and save.
        raise conflict(f"Alias already exists: {function.arn}:{form.cleaned_data['name']}") from None


@operation("CreateAlias")
def create_alias(request, function_name):
    function = _function(request, function_name)
    data = read_json(request)
    if "FunctionVersion" not in data:
        # The form reads no version as $LATEST; the API requires one to be named.
        raise invalid("FunctionVersion: this field is required.")
    additional_version, additional_weight = _routing(data.get("RoutingConfig"))
    form = AliasForm({
        "name": data.get("Name") or "",
        "description": data.get("Description") or "",
        "version": _version_choice(data["FunctionVersion"], "FunctionVersion"),
        "additional_version": additional_version,
        "additional_weight": additional_weight,
    }, function=function)
    alias = _save_alias(function, form)
    return respond(alias_configuration(alias), status=201)


def _get_alias(function, name, for_update=False):
    aliases = function.aliases.select_related("version", "additional_version")
    if for_update:
        aliases = aliases.select_for_update(of=("self",))
    try:
        return aliases.get(name=name)
    except Alias.DoesNotExist:
        raise not_found(f"Alias not found: {function.arn}:{name}") from None


@operation("GetAlias")
def get_alias(request, function_name, alias_name):
    function = _function(request, function_name)
    return respond(alias_configuration(_get_alias(function, alias_name)))


@operation("UpdateAlias")
def update_alias(request, function_name, alias_name):
    function = _function(request, function_name)
    data = read_json(request)
    with transaction.atomic():
        alias = _get_alias(function, alias_name, for_update=True)
        if data.get("RevisionId") and data["RevisionId"] != alias_configuration(alias)["RevisionId"]:
            raise _precondition_failed("GetAlias")
        # Only what is sent changes, as in Lambda: the rest is the alias as it is.
        current = AliasForm(function=function, alias=alias).initial
        if "FunctionVersion" in data:
            version = _version_choice(data["FunctionVersion"], "FunctionVersion")
        else:
            version = current["version"]
        if "RoutingConfig" in data:
            additional_version, additional_weight = _routing(data["RoutingConfig"])
        else:
            additional_version, additional_weight = current["additional_version"], current["additional_weight"]
        form = AliasForm({
            "name": alias.name,
            "description": data["Description"] if "Description" in data else alias.description,
            "version": version,
            "additional_version": additional_version,
            "additional_weight": "" if additional_weight is None else additional_weight,
        }, function=function, alias=alias)
        # point_to() remembers where the alias pointed: the console's rollback works after an API move too.
        alias = _save_alias(function, form)
    return respond(alias_configuration(alias))


@operation("DeleteAlias")
def delete_alias(request, function_name, alias_name):
    function = _function(request, function_name)
    with transaction.atomic():
        _get_alias(function, alias_name, for_update=True).remove()
    return no_content()


@operation("ListAliases")
def list_aliases(request, function_name):
    function = _function(request, function_name)
    after, max_items = paging(request)
    aliases = function.aliases.select_related("version", "additional_version").order_by("name")
    if "FunctionVersion" in request.GET:
        # The aliases that point at that version (their FunctionVersion; a canary's version does not count).
        version = _version_choice(request.GET["FunctionVersion"], "FunctionVersion")
        if version:
            aliases = aliases.filter(version__number=int(version))
        else:
            aliases = aliases.filter(version__isnull=True)
    if after is not None:
        if not isinstance(after, str):
            raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
        aliases = aliases.filter(name__gt=after)
    page = list(aliases[:max_items + 1])
    body = {"Aliases": [alias_configuration(alias) for alias in page[:max_items]]}
    marker = next_marker(page, max_items, key=lambda alias: alias.name)
    if marker:
        body["NextMarker"] = marker
    return respond(body)
