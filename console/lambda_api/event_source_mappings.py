"""Event source mappings: CreateEventSourceMapping, GetEventSourceMapping, ListEventSourceMappings,
UpdateEventSourceMapping, DeleteEventSourceMapping. A mapping is the console's queue trigger (an SQS queue
here) or table stream trigger (a DynamoDB stream here), made and changed through the console's own forms
(QueueTriggerForm, TableStreamForm), so each side shows what the other made."""

import re
import uuid

from django.conf import settings
from django.db import transaction

from console.lambda_api.api import get_function, next_marker, operation, paging, read_json, respond
from console.lambda_api.errors import ApiError, conflict, invalid, not_found
from functions.models import LATEST, Trigger, account_id
from invocations.forms import qualifier_choices
from invocations.queues.forms import QueueTriggerForm
from invocations.queues.models import Queue
from invocations.tables.forms import TableStreamForm
from invocations.tables.models import Table

# A mapping's UUID is derived from its trigger's id (an integer): stable, and looked up among the caller's
# own mappings only, so another user's id answers "not found" as one that does not exist.
UUID_NAMESPACE = uuid.UUID("4f7c1c2e-9b1d-5e4a-8a41-6c1f3e2d7b90")
KINDS = (Trigger.Kind.QUEUE, Trigger.Kind.TABLE)
FORMS = {Trigger.Kind.QUEUE: QueueTriggerForm, Trigger.Kind.TABLE: TableStreamForm}
SQS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[^:/]+)$")
STREAM_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                        r"table/(?P<name>[^/]+)/stream/(?P<label>[^/]+)$")
# Lambda answers at most 100 mappings a page, whatever MaxItems asks for.
PAGE_MAX = 100
# Without ScalingConfig, Lambda sets no maximum concurrency of the mapping's own; the queue form's
# highest value is the nearest this platform has.
MAXIMUM_CONCURRENCY_DEFAULT = 1000

# The API's name for each form field, so that an error names what the caller sent.
API_NAMES = {
    "qualifier": "FunctionName", "queue": "EventSourceArn", "table": "EventSourceArn", "batch_size": "BatchSize",
    "maximum_batching_window": "MaximumBatchingWindowInSeconds",
    "maximum_concurrency": "ScalingConfig.MaximumConcurrency",
    "report_batch_item_failures": "FunctionResponseTypes", "enabled": "Enabled",
    "starting_position": "StartingPosition", "maximum_retry_attempts": "MaximumRetryAttempts",
    "on_failure": "DestinationConfig.OnFailure.Destination",
    "bisect_batch_on_function_error": "BisectBatchOnFunctionError",
}
# Parameters of sources this platform does not have (Kafka, MQ, DocumentDB) or of features its triggers
# lack: refused rather than ignored, so that nobody believes a filter or a KMS key is in force.
UNSUPPORTED = ("FilterCriteria", "KMSKeyArn", "MetricsConfig", "LoggingConfig", "Topics", "Queues",
               "SourceAccessConfigurations", "SelfManagedEventSource", "AmazonManagedKafkaEventSourceConfig",
               "SelfManagedKafkaEventSourceConfig", "DocumentDBEventSourceConfig", "ProvisionedPollerConfig",
               "StartingPositionTimestamp", "Tags")
# Per source, the parameters its trigger has no setting for, with the one value each may take: what the
# trigger does anyway (Lambda's default). None: the parameter is not valid for that source at all, as in
# Lambda ("StartingPosition is not valid for SQS event sources.").
FIXED = {
    Trigger.Kind.QUEUE: {"StartingPosition": None, "MaximumRetryAttempts": None, "ParallelizationFactor": None,
                         "MaximumRecordAgeInSeconds": None, "BisectBatchOnFunctionError": None,
                         "TumblingWindowInSeconds": None, "DestinationConfig": None},
    Trigger.Kind.TABLE: {"ScalingConfig": None, "ParallelizationFactor": 1, "MaximumRecordAgeInSeconds": -1,
                         "TumblingWindowInSeconds": 0},
}
SOURCE_NAMES = {Trigger.Kind.QUEUE: "SQS", Trigger.Kind.TABLE: "DynamoDB Streams"}
# botocore checks types client-side; other clients may not, and a form would read {"a": 1} as text.
TYPES = {"FunctionName": str, "EventSourceArn": str, "Enabled": bool, "ScalingConfig": dict,
         "BisectBatchOnFunctionError": bool,
         "FunctionResponseTypes": list, "DestinationConfig": dict}


def mapping_uuid(trigger_or_pk):
    pk = getattr(trigger_or_pk, "pk", trigger_or_pk)
    return str(uuid.uuid5(UUID_NAMESPACE, f"trigger:{pk}"))


def _mappings(user):
    return (Trigger.objects.filter(function__owner=user, kind__in=KINDS).select_related("function__owner")
            .order_by("pk"))


def _get_mapping(request, mapping_id, for_update=False):
    """The caller's queue or table trigger with this UUID; ResourceNotFoundException otherwise."""
    for pk in _mappings(request.user).values_list("pk", flat=True):
        if mapping_uuid(pk) == mapping_id.lower():
            triggers = _mappings(request.user)
            return (triggers.select_for_update(of=("self",)) if for_update else triggers).get(pk=pk)
    raise not_found("The resource you requested does not exist.")


# Event sources ------------------------------------------------------------------------------------------------

def _find_source(request, arn):
    """(kind, the caller's queue or table, or None if it has none by that ARN); InvalidParameterValueException
    for an ARN of a source this platform does not have."""
    if not isinstance(arn, str) or not arn:
        raise invalid("Unrecognized event source: EventSourceArn is required (a queue's or a table stream's ARN).")
    match = SQS_ARN.match(arn)
    if match:
        queue = Queue.objects.filter(owner=request.user, name=match["name"]).first() if _ours(request, match) else None
        return Trigger.Kind.QUEUE, queue
    match = STREAM_ARN.match(arn)
    if match:
        # The label too: a table made again under the same name has a new stream.
        table = (Table.objects.filter(owner=request.user, name=match["name"], stream_label=match["label"]).first()
                 if _ours(request, match) else None)
        return Trigger.Kind.TABLE, table
    raise invalid(f"Unrecognized event source: {arn}. Mappings here read a queue (arn:aws:sqs:…) or a table's "
                  "stream (arn:aws:dynamodb:…:table/NAME/stream/LABEL); Kinesis, Kafka, MQ and DocumentDB are "
                  "not supported.")


def _ours(request, match):
    return match["region"] == settings.LAMBDA_REGION and match["account"] == account_id(request.user)


def _source_of(request, arn):
    kind, source = _find_source(request, arn)
    if source is None:
        # As Lambda answers for a queue or stream the caller cannot read: the same for another account's.
        what = "queue" if kind == Trigger.Kind.QUEUE else "table stream"
        raise invalid(f"EventSourceArn: you have no {what} {arn}.")
    return kind, source


def _event_source_arn(trigger, stream_arns):
    if trigger.kind == Trigger.Kind.QUEUE:  # a queue is never renamed: its ARN follows from the name kept
        return (f"arn:aws:sqs:{settings.LAMBDA_REGION}:{account_id(trigger.function.owner)}:"
                f"{trigger.config['queue_name']}")
    return stream_arns.get(trigger.config["table"], "")


def _stream_arns(user):
    return {table.name: table.stream_arn for table in Table.objects.filter(owner=user)}


# Shapes ----------------------------------------------------------------------------------------------------------

def _configuration(trigger, stream_arns, state=None):
    """EventSourceMappingConfiguration of a queue or table trigger."""
    function, config = trigger.function, trigger.config
    mapping_id = mapping_uuid(trigger)
    shape = {
        "UUID": mapping_id,
        "BatchSize": config["batch_size"],
        "EventSourceArn": _event_source_arn(trigger, stream_arns),
        "FunctionArn": f"{function.arn}:{trigger.qualifier}" if trigger.qualifier else function.arn,
        "LastModified": trigger.updated_at.timestamp(),
        "State": state or ("Enabled" if trigger.enabled else "Disabled"),
        "EventSourceMappingArn": (f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(function.owner)}:"
                                  f"event-source-mapping:{mapping_id}"),
    }
    if trigger.kind == Trigger.Kind.QUEUE:
        shape.update({
            "MaximumBatchingWindowInSeconds": config["maximum_batching_window"],
            "ScalingConfig": {"MaximumConcurrency": config["maximum_concurrency"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if config["report_batch_item_failures"] else [],
            "StateTransitionReason": "USER_INITIATED",  # Lambda's words for SQS mappings
        })
    else:
        shape.update({
            "StartingPosition": config["starting_position"],
            "MaximumBatchingWindowInSeconds": config.get("maximum_batching_window", 0),
            "ParallelizationFactor": 1,
            "DestinationConfig": {"OnFailure": {}},
            "MaximumRecordAgeInSeconds": -1,
            "BisectBatchOnFunctionError": config.get("bisect_batch_on_function_error", False),
            "MaximumRetryAttempts": config["maximum_retry_attempts"],
            "TumblingWindowInSeconds": 0,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if config.get("report_batch_item_failures") else [],
            "StateTransitionReason": "User action",  # Lambda's words for stream mappings
        })
    return shape


# Requests ------------------------------------------------------------------------------------------------------

def _sent(value):
    return value not in (None, {}, [], "")


def _check_request(body, kind):
    for name, kind_of in TYPES.items():
        value = body.get(name)
        if value is not None and not isinstance(value, kind_of):
            raise ApiError(400, "InvalidRequestContentException",
                           f"Could not parse request body into json: {name} has the wrong type.")
    for name in UNSUPPORTED:
        if _sent(body.get(name)):
            raise invalid(f"{name} is not supported here: queue and table stream triggers have no such setting.")
    for name, allowed in FIXED[kind].items():
        if allowed is None and _sent(body.get(name)):
            raise invalid(f"{name} is not valid for {SOURCE_NAMES[kind]} event sources.")
        if allowed is not None and body.get(name) is not None and body[name] != allowed:
            raise invalid(f"{name}: {body[name]!r} is not supported for {SOURCE_NAMES[kind]} event sources here; "
                          f"their triggers do {allowed!r} only.")


def _qualifier_choice(function, qualifier):
    """The forms' value for a qualifier ("" for $LATEST); ResourceNotFoundException for an unknown one."""
    choice = "" if qualifier in (None, LATEST) else qualifier
    if choice not in dict(qualifier_choices(function)):
        raise not_found(f"Function not found: {function.arn}:{qualifier}")
    return choice


def _response_types(body, current):
    types = body.get("FunctionResponseTypes")
    if types is None:
        return current
    if any(t != "ReportBatchItemFailures" for t in types):
        raise invalid(f"1 validation error detected: Value '{types}' at 'functionResponseTypes' failed to satisfy "
                      "constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
                      "[ReportBatchItemFailures]]")
    return bool(types)


def _queue_data(body, qualifier, queue_id, current):
    """QueueTriggerForm's data: what the body sends, else the trigger's current settings (or the defaults)."""
    scaling = body.get("ScalingConfig") or {}
    return {
        "qualifier": qualifier, "queue": queue_id,
        "batch_size": body.get("BatchSize", current.get("batch_size", 10)),
        "maximum_batching_window": body.get("MaximumBatchingWindowInSeconds",
                                            current.get("maximum_batching_window", 0)),
        "maximum_concurrency": scaling.get("MaximumConcurrency",
                                           current.get("maximum_concurrency", MAXIMUM_CONCURRENCY_DEFAULT)),
        "report_batch_item_failures": _response_types(body, current.get("report_batch_item_failures", False)),
    }


def _table_data(body, qualifier, table_name, current):
    """TableStreamForm's data (its table and starting position are fixed once the trigger exists)."""
    destinations = body.get("DestinationConfig") or {}
    if _sent(destinations.get("OnSuccess")):
        raise invalid("DestinationConfig.OnSuccess is not valid for DynamoDB Streams event sources.")
    on_failure = destinations.get("OnFailure") or {}
    return {
        "qualifier": qualifier, "table": table_name,
        "batch_size": body.get("BatchSize", current.get("batch_size", 100)),
        "maximum_batching_window": body.get("MaximumBatchingWindowInSeconds",
                                            current.get("maximum_batching_window", 0)),
        "starting_position": body.get("StartingPosition", current.get("starting_position", "")),
        "maximum_retry_attempts": body.get("MaximumRetryAttempts", current.get("maximum_retry_attempts", -1)),
        "report_batch_item_failures": _response_types(body, current.get("report_batch_item_failures", False)),
        "bisect_batch_on_function_error": body.get("BisectBatchOnFunctionError",
                                                   current.get("bisect_batch_on_function_error", False)),
        "on_failure": on_failure.get("Destination", "") if isinstance(on_failure, dict) else on_failure,
    }


def _form_error(form):
    field, errors = next(iter(form.errors.items()))
    name = API_NAMES.get(field, field) if field != "__all__" else ""
    return invalid(f"{name}: {' '.join(errors)}" if name else " ".join(errors))


def _save(form, function):
    """Save a valid form in the caller's transaction; answer a duplicate mapping as Lambda does."""
    if form.is_valid():
        return form.save()
    if isinstance(form, QueueTriggerForm) and form.has_error("queue"):
        # The form's rule of one trigger per queue and function (its message says so); Lambda's answer to
        # it is a conflict, not a bad parameter.
        queue = Queue.objects.filter(pk=form.data["queue"]).first()
        others = function.triggers.filter(kind=Trigger.Kind.QUEUE, qualifier=form.data["qualifier"],
                                          config__queue_id=form.data["queue"])
        if form.trigger is not None:
            others = others.exclude(pk=form.trigger.pk)
        if queue is not None and others.exists():
            raise conflict(f"An event source mapping with SQS arn (\" {queue.arn} \") and function "
                           f"(\" {function.name} \") already exists. Please update or delete the existing "
                           f"mapping with UUID {mapping_uuid(others.first())}")
    raise _form_error(form)


# Operations --------------------------------------------------------------------------------------------------

@operation("CreateEventSourceMapping")
def create_event_source_mapping(request):
    body = read_json(request)
    kind, source = _source_of(request, body.get("EventSourceArn"))
    _check_request(body, kind)
    with transaction.atomic():
        function, qualifier = get_function(request, body.get("FunctionName") or "", for_update=True)
        qualifier = _qualifier_choice(function, qualifier)
        if kind == Trigger.Kind.QUEUE:
            data = _queue_data(body, qualifier, source.pk, {})
        else:
            data = _table_data(body, qualifier, source.name, {})
        form = FORMS[kind]({**data, "enabled": body.get("Enabled", True)}, function=function)
        trigger = _save(form, function)
    return respond(_configuration(trigger, _stream_arns(request.user)), status=202)


@operation("GetEventSourceMapping")
def get_event_source_mapping(request, mapping_id):
    trigger = _get_mapping(request, mapping_id)
    return respond(_configuration(trigger, _stream_arns(request.user)))


@operation("ListEventSourceMappings")
def list_event_source_mappings(request):
    marker, max_items = paging(request, default=PAGE_MAX)
    max_items = min(max_items, PAGE_MAX)
    if marker is not None and not isinstance(marker, int):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    triggers = _mappings(request.user)
    if request.GET.get("FunctionName"):
        function, qualifier = get_function(request, request.GET["FunctionName"])
        triggers = triggers.filter(function=function)
        if qualifier is not None:
            triggers = triggers.filter(qualifier="" if qualifier == LATEST else qualifier)
    if request.GET.get("EventSourceArn"):
        kind, source = _find_source(request, request.GET["EventSourceArn"])
        if source is None:
            triggers = triggers.none()
        elif kind == Trigger.Kind.QUEUE:
            triggers = triggers.filter(kind=kind, config__queue_id=source.pk)
        else:
            triggers = triggers.filter(kind=kind, config__table=source.name)
    if marker is not None:
        triggers = triggers.filter(pk__gt=marker)
    page = list(triggers[:max_items + 1])
    stream_arns = _stream_arns(request.user)
    response = {"EventSourceMappings": [_configuration(t, stream_arns) for t in page[:max_items]]}
    marker = next_marker(page, max_items, lambda trigger: trigger.pk)
    if marker:
        response["NextMarker"] = marker
    return respond(response)


@operation("UpdateEventSourceMapping")
def update_event_source_mapping(request, mapping_id):
    body = read_json(request)
    with transaction.atomic():
        trigger = _get_mapping(request, mapping_id, for_update=True)
        _check_request(body, trigger.kind)
        function, qualifier = trigger.function, trigger.qualifier
        if body.get("FunctionName"):
            # As in Lambda, an update may point the mapping at another function, version or alias.
            function, qualifier = get_function(request, body["FunctionName"], for_update=True)
            qualifier = _qualifier_choice(function, qualifier)
        if trigger.kind == Trigger.Kind.QUEUE:
            data = _queue_data(body, qualifier, trigger.config["queue_id"], trigger.config)
        else:
            data = _table_data(body, qualifier, trigger.config["table"], trigger.config)
        form = FORMS[trigger.kind]({**data, "enabled": body.get("Enabled", trigger.enabled)},
                                   function=function, trigger=trigger)
        trigger = _save(form, function)
        # The forms keep a trigger's function (the console edits it from that function's page); and the
        # table form saves only its own fields, which leaves updated_at (LastModified) as it was.
        trigger.function = function
        trigger.save(update_fields=["function", "updated_at"])
    return respond(_configuration(trigger, _stream_arns(request.user)), status=202)


@operation("DeleteEventSourceMapping")
def delete_event_source_mapping(request, mapping_id):
    with transaction.atomic():
        trigger = _get_mapping(request, mapping_id, for_update=True)
        # Lambda answers with the mapping as it goes: "Deleting".
        shape = _configuration(trigger, _stream_arns(request.user), state="Deleting")
        trigger.delete()  # its invocations stay, as when the console deletes it
    return respond(shape, status=202)
