"""A function's settings beside its configuration: reserved concurrency, recursive loop detection, asynchronous
invocation (retries, event age, destinations) and its function URLs. Each is the console's own setting,
validated by the console's own form: ConfigurationForm, EventInvokeConfigForm and HttpEndpointForm."""

from django.db import IntegrityError, transaction

from console.lambda_api.api import (
    get_function,
    get_unqualified_function,
    next_marker,
    no_content,
    operation,
    paging,
    read_json,
    respond,
)
from console.lambda_api.errors import conflict, invalid, not_found
from functions.forms import ConfigurationForm
from functions.models import LATEST, EventInvokeConfig, Trigger
from invocations.forms import EventInvokeConfigForm, HttpEndpointForm, qualifier_choices
from invocations.triggers import endpoint_url


def form_error(form, names):
    """InvalidParameterValueException naming the API parameter (from `names`, by form field) and the form's
    own message."""
    field, errors = next(iter(form.errors.items()))
    return invalid(f"{names.get(field, field)}: {' '.join(errors)}")


def _whole_function(request, function_name):
    """The function a List operation lists the settings of: named without a version or alias."""
    return get_unqualified_function(
        request, function_name, "Name the function without a version or alias: the list holds the settings of each.")


def _page(request, items, key, maximum=50):
    """Return (page, NextMarker or None): the `items` (a queryset) after the request's Marker in the order of
    their string field `key`, at most MaxItems of them. These lists page at most 50 (the service model's
    MaxItems and MaxFunctionEventInvokeConfigListItems)."""
    after, max_items = paging(request, default=maximum, maximum=maximum)
    if after is not None and not isinstance(after, str):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    if after is not None:
        items = items.filter(**{f"{key}__gt": after})
    page = list(items.order_by(key)[:max_items + 1])
    return page[:max_items], next_marker(page, max_items, key=lambda item: getattr(item, key))


# Reserved concurrency ---------------------------------------------------------------------------------------

def _unqualified(request, function_name):
    return get_unqualified_function(
        request, function_name, "Reserved concurrency applies to a function as a whole: name it without a version "
        "or alias.", for_update=request.method != "GET")


@operation("PutFunctionConcurrency")
def put_function_concurrency(request, function_name):
    data = read_json(request)
    if data.get("ReservedConcurrentExecutions") is None:
        raise invalid("ReservedConcurrentExecutions is required.")
    with transaction.atomic():
        function = _unqualified(request, function_name)
        # The whole configuration form, bound with the function's settings as they are: whatever rule it
        # has for reserved concurrency applies here too. Only that field is written.
        # Lambda also refuses to leave fewer than 100 of the account's executions unreserved; not here, where
        # a reservation only caps its own function (invocations.concurrency) and takes nothing from the
        # others, and where the console's form lets one function reserve the whole quota: one rule, the form's.
        current = {name: getattr(function, name) for name in ConfigurationForm.base_fields}
        form = ConfigurationForm({**current, "reserved_concurrency": data["ReservedConcurrentExecutions"]},
                                 function=function)
        if "reserved_concurrency" in form.errors:
            raise invalid(f"ReservedConcurrentExecutions: {' '.join(form.errors['reserved_concurrency'])}")
        function.reserved_concurrency = form.cleaned_data["reserved_concurrency"]
        # Not last_modified: as in Lambda, concurrency is not part of the function's configuration.
        function.save(update_fields=["reserved_concurrency"])
    return respond({"ReservedConcurrentExecutions": function.reserved_concurrency})


@operation("GetFunctionConcurrency")
def get_function_concurrency(request, function_name):
    function = _unqualified(request, function_name)
    if function.reserved_concurrency is None:
        return respond({})
    return respond({"ReservedConcurrentExecutions": function.reserved_concurrency})


@operation("DeleteFunctionConcurrency")
def delete_function_concurrency(request, function_name):
    with transaction.atomic():
        function = _unqualified(request, function_name)
        function.reserved_concurrency = None
        function.save(update_fields=["reserved_concurrency"])
    return no_content()


# Recursive loop detection -----------------------------------------------------------------------------------

def _recursion_function(request, function_name, for_update=False):
    return get_unqualified_function(
        request, function_name, "Recursive loop detection applies to a function as a whole: name it without a "
        "version or alias.", for_update=for_update)


@operation("PutFunctionRecursionConfig")
def put_function_recursion_config(request, function_name):
    data = read_json(request)
    # The form keeps a value left out as it is (a console form posted without it); the API requires one.
    if data.get("RecursiveLoop") is None:
        raise invalid("RecursiveLoop is required.")
    with transaction.atomic():
        function = _recursion_function(request, function_name, for_update=True)
        # As PutFunctionConcurrency: the console's whole configuration form, only this field written.
        current = {name: getattr(function, name) for name in ConfigurationForm.base_fields}
        form = ConfigurationForm({**current, "recursive_loop": data["RecursiveLoop"]}, function=function)
        if "recursive_loop" in form.errors:
            raise invalid(f"RecursiveLoop: {' '.join(form.errors['recursive_loop'])}")
        function.recursive_loop = form.cleaned_data["recursive_loop"]
        # Not last_modified: as in Lambda, this is not part of the function's configuration.
        function.save(update_fields=["recursive_loop"])
    return respond({"RecursiveLoop": function.recursive_loop})


@operation("GetFunctionRecursionConfig")
def get_function_recursion_config(request, function_name):
    return respond({"RecursiveLoop": _recursion_function(request, function_name).recursive_loop})


# Asynchronous invocation -------------------------------------------------------------------------------------

EVENT_INVOKE_FIELDS = {
    "qualifier": "Qualifier", "maximum_retry_attempts": "MaximumRetryAttempts",
    "maximum_event_age_seconds": "MaximumEventAgeInSeconds",
    "on_success": "DestinationConfig.OnSuccess.Destination", "on_failure": "DestinationConfig.OnFailure.Destination",
}


def _qualifier_choice(function, qualifier):
    """The forms' value for a qualifier ("" for $LATEST); ResourceNotFoundException for an unknown one."""
    choice = "" if qualifier in (None, LATEST) else qualifier
    if choice not in dict(qualifier_choices(function)):
        raise not_found(f"Function not found: {function.arn}:{qualifier}")
    return choice


def _destination(config, outcome):
    destination = (config or {}).get(outcome) or {}
    if not isinstance(destination, dict):
        raise invalid(f"DestinationConfig.{outcome} must be an object with a Destination.")
    return destination.get("Destination") or ""


def _default(value, default):
    return default if value is None else value


def _event_invoke_form(function, choice, data, current):
    """EventInvokeConfigForm bound with the API's parameters; what `data` leaves out is `current`'s."""
    destinations = data.get("DestinationConfig")
    if destinations is not None and not isinstance(destinations, dict):
        raise invalid("DestinationConfig must be an object.")
    return EventInvokeConfigForm({
        "qualifier": choice,
        "maximum_retry_attempts": _default(data.get("MaximumRetryAttempts"), current.maximum_retry_attempts),
        "maximum_event_age_seconds": _default(data.get("MaximumEventAgeInSeconds"),
                                              current.maximum_event_age_seconds),
        # DestinationConfig is one parameter: when sent, it sets both destinations (an outcome it leaves out
        # has none), as Lambda's UpdateFunctionEventInvokeConfig does.
        "on_success": current.on_success if destinations is None else _destination(destinations, "OnSuccess"),
        "on_failure": current.on_failure if destinations is None else _destination(destinations, "OnFailure"),
    }, function=function)


def _existing_config(function, qualifier):
    """The function's EventInvokeConfig for `qualifier`; ResourceNotFoundException when it has none."""
    choice = _qualifier_choice(function, qualifier)
    config = function.event_invoke_configs.filter(qualifier=choice or LATEST).first()
    if config is None:
        raise not_found(f"The function {function.arn}:{choice or LATEST} doesn't have an EventInvokeConfig")
    return config


def _event_invoke_config(function, config):
    return {
        "LastModified": config.updated_at.timestamp(),
        "FunctionArn": f"{function.arn}:{config.qualifier}",
        "MaximumRetryAttempts": config.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": config.maximum_event_age_seconds,
        "DestinationConfig": {
            "OnSuccess": {"Destination": config.on_success} if config.on_success else {},
            "OnFailure": {"Destination": config.on_failure} if config.on_failure else {},
        },
    }


@operation("PutFunctionEventInvokeConfig")
def put_function_event_invoke_config(request, function_name):
    data = read_json(request)
    with transaction.atomic():
        function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"), for_update=True)
        # Put replaces the whole configuration: what it leaves out takes Lambda's default (the model's).
        form = _event_invoke_form(function, _qualifier_choice(function, qualifier), data, EventInvokeConfig())
        if not form.is_valid():
            raise form_error(form, EVENT_INVOKE_FIELDS)
        config = form.save()
    return respond(_event_invoke_config(function, config))


@operation("GetFunctionEventInvokeConfig")
def get_function_event_invoke_config(request, function_name):
    function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"))
    return respond(_event_invoke_config(function, _existing_config(function, qualifier)))


@operation("UpdateFunctionEventInvokeConfig")
def update_function_event_invoke_config(request, function_name):
    data = read_json(request)
    if all(data.get(name) is None for name in
           ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")):
        raise invalid("You must specify at least one of error handling or destination setting.")
    with transaction.atomic():
        function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"), for_update=True)
        config = _existing_config(function, qualifier)
        # Unlike Put, only what is sent changes.
        form = _event_invoke_form(function, _qualifier_choice(function, qualifier), data, config)
        if not form.is_valid():
            raise form_error(form, EVENT_INVOKE_FIELDS)
        config = form.save()
    return respond(_event_invoke_config(function, config))


@operation("DeleteFunctionEventInvokeConfig")
def delete_function_event_invoke_config(request, function_name):
    with transaction.atomic():
        function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"), for_update=True)
        # Its invocations take Lambda's defaults again (functions.models.event_invoke_config).
        _existing_config(function, qualifier).delete()
    return no_content()


@operation("ListFunctionEventInvokeConfigs")
def list_function_event_invoke_configs(request, function_name):
    function = _whole_function(request, function_name)
    page, marker = _page(request, function.event_invoke_configs.all(), "qualifier")
    body = {"FunctionEventInvokeConfigs": [_event_invoke_config(function, config) for config in page]}
    if marker:
        body["NextMarker"] = marker
    return respond(body)


# Function URLs: the console's HTTP endpoints ---------------------------------------------------------------

URL_FIELDS = {
    "qualifier": "Qualifier", "auth_type": "AuthType", "allow_origins": "Cors.AllowOrigins",
    "allow_methods": "Cors.AllowMethods", "allow_headers": "Cors.AllowHeaders",
    "expose_headers": "Cors.ExposeHeaders", "max_age": "Cors.MaxAge", "allow_credentials": "Cors.AllowCredentials",
}
CORS_LISTS = {"AllowOrigins": "allow_origins", "AllowMethods": "allow_methods", "AllowHeaders": "allow_headers",
              "ExposeHeaders": "expose_headers"}


def _url_alias(function, qualifier):
    """The alias a function URL is for ("" for the function itself). Lambda gives URLs to a function or an
    alias, never to a version (the console's form also offers versions, so this rule is the API's own)."""
    if qualifier is None:
        return ""
    if qualifier.isdigit() or qualifier == LATEST:
        raise invalid(f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy "
                      "constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")
    if not function.aliases.filter(name=qualifier).exists():
        raise not_found(f"Function not found: {function.arn}:{qualifier}")
    return qualifier


def _auth_type(value):
    """The console's auth type for AuthType. Our endpoints are public (NONE) or take a secret key that the
    console shows once; AWS_IAM (SigV4-signed requests to the URL) has no equivalent here, and mapping it to
    a key the API cannot return would make a URL nobody can call."""
    if value == "NONE":
        return Trigger.Auth.NONE
    if value == "AWS_IAM":
        raise invalid("AuthType AWS_IAM is not supported: function URLs here are public (AuthType NONE) or take "
                      "a secret key in the x-api-key header, which the console sets up and shows once.")
    raise invalid(f"1 validation error detected: Value '{value}' at 'authType' failed to satisfy constraint: "
                  "Member must satisfy enum value set: [NONE, AWS_IAM]")


def _buffered(data):
    if data.get("InvokeMode") not in (None, "BUFFERED"):
        raise invalid(f"InvokeMode {data['InvokeMode']} is not supported: function URLs here answer with the "
                      "whole response (BUFFERED).")


def _endpoint_data(alias, data):
    """HttpEndpointForm's data for CreateFunctionUrlConfig's parameters."""
    _buffered(data)
    return {"qualifier": alias, "auth_type": _auth_type(data.get("AuthType")), **_cors_data(data.get("Cors") or {})}


# HttpEndpointForm's CORS fields when a Cors parameter sets none of them.
NO_CORS = {"allow_origins": "", "allow_methods": "", "allow_headers": "", "expose_headers": "", "max_age": None,
           "allow_credentials": False}


def _cors_data(cors):
    """HttpEndpointForm's CORS fields for a Cors parameter."""
    if not isinstance(cors, dict):
        raise invalid("Cors must be an object.")
    form_data = dict(NO_CORS)
    for key, field in CORS_LISTS.items():
        values = cors.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid(f"Cors.{key} must be a list of strings.")
        if any("," in v for v in values):  # the form's fields are comma-separated
            raise invalid(f"Cors.{key}: an item may not contain a comma.")
        form_data[field] = ", ".join(values)
    if cors.get("MaxAge") is not None:
        form_data["max_age"] = cors["MaxAge"]
    if cors.get("AllowCredentials"):
        form_data["allow_credentials"] = "on"
    return form_data


def _timestamp(moment):
    """ISO 8601, as Lambda writes a function URL's times: "2021-10-31T17:41:29.484Z"."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _url_config(request, function, trigger):
    config = {
        "FunctionUrl": endpoint_url(request, trigger),
        "FunctionArn": f"{function.arn}:{trigger.qualifier}" if trigger.qualifier else function.arn,
        # A console endpoint with a secret key is not public: AWS_IAM is the model's only such value.
        "AuthType": "AWS_IAM" if trigger.config.get("auth_type") == Trigger.Auth.KEY else "NONE",
        "CreationTime": _timestamp(trigger.created_at),
        "LastModifiedTime": _timestamp(trigger.updated_at),
        "InvokeMode": "BUFFERED",
    }
    cors = trigger.config.get("cors")
    if cors:
        config["Cors"] = {
            "AllowCredentials": cors.get("allow_credentials", False),
            **{key: cors.get(field, []) for key, field in CORS_LISTS.items()},
            "MaxAge": cors.get("max_age", 0),
        }
    return config


def _exists(function):
    return conflict(f"Failed to create function url config for [functionArn = {function.arn}]. "
                    "Error message:  FunctionUrlConfig exists for this Lambda function")


@operation("CreateFunctionUrlConfig")
def create_function_url_config(request, function_name):
    data = read_json(request)
    try:
        with transaction.atomic():
            function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"),
                                               for_update=True)
            alias = _url_alias(function, qualifier)
            form = HttpEndpointForm(_endpoint_data(alias, data), function=function)
            if not form.is_valid():
                if form.has_error("qualifier", "duplicate"):
                    raise _exists(function)
                raise form_error(form, URL_FIELDS)
            trigger, _ = form.save()
    except IntegrityError:  # another request made the same URL meanwhile
        raise _exists(function) from None
    response = _url_config(request, function, trigger)
    del response["LastModifiedTime"]  # CreateFunctionUrlConfig's response has none
    return respond(response, status=201)


def _endpoint(function, qualifier):
    """The function's (or its alias's) HTTP endpoint; ResourceNotFoundException when it has none."""
    trigger = function.triggers.filter(kind=Trigger.Kind.HTTP, qualifier=_url_alias(function, qualifier)).first()
    if trigger is None:
        raise not_found("The resource you requested does not exist.")
    return trigger


@operation("GetFunctionUrlConfig")
def get_function_url_config(request, function_name):
    function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"))
    return respond(_url_config(request, function, _endpoint(function, qualifier)))


@operation("UpdateFunctionUrlConfig")
def update_function_url_config(request, function_name):
    data = read_json(request)
    _buffered(data)
    with transaction.atomic():
        function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"), for_update=True)
        trigger = _endpoint(function, qualifier)
        # Only what is sent changes: the form starts from the endpoint's settings, as the console's page shows
        # them; a Cors sent replaces the whole of it.
        form_data = dict(HttpEndpointForm(function=function, trigger=trigger).initial)
        auth_type = data.get("AuthType")
        # AWS_IAM is how a secret-key endpoint shows (_url_config): sent back as it was read, it keeps its key.
        if auth_type is not None and not (auth_type == "AWS_IAM" and form_data["auth_type"] == Trigger.Auth.KEY):
            form_data["auth_type"] = _auth_type(auth_type)
        if data.get("Cors") is not None:
            form_data.update(_cors_data(data["Cors"]))
        form = HttpEndpointForm(form_data, function=function, trigger=trigger)
        if not form.is_valid():
            raise form_error(form, URL_FIELDS)
        trigger, _ = form.save()
    return respond(_url_config(request, function, trigger))


@operation("DeleteFunctionUrlConfig")
def delete_function_url_config(request, function_name):
    with transaction.atomic():
        function, qualifier = get_function(request, function_name, request.GET.get("Qualifier"), for_update=True)
        _endpoint(function, qualifier).delete()  # its invocations stay, without it (as the console's delete)
    return no_content()


@operation("ListFunctionUrlConfigs")
def list_function_url_configs(request, function_name):
    function = _whole_function(request, function_name)
    # The function's own URL lists first (its qualifier is ""), then each alias's by name.
    page, marker = _page(request, function.triggers.filter(kind=Trigger.Kind.HTTP), "qualifier")
    body = {"FunctionUrlConfigs": [_url_config(request, function, trigger) for trigger in page]}
    if marker:
        body["NextMarker"] = marker
    return respond(body)
