"""The tables' JSON API for programs (HTTP Basic, or the session with CSRF: invocations.sources.api), with
DynamoDB's operations and error names:

- POST /tables/<name>/items/ {"Item": {...}, "ReturnValues": "NONE" | "ALL_OLD"}: PutItem
- GET /tables/<name>/items/?pk=…[&sk=…]: GetItem, {"Item": {...}} or {} when there is none
- DELETE /tables/<name>/items/?pk=…[&sk=…][&ReturnValues=ALL_OLD]: DeleteItem

Key values in the query are text: a string, a number, or base64 for a binary key.
"""

from django.http import JsonResponse

from invocations.sources.api import ApiError, api_view, read_json
from invocations.tables.attributes import InvalidItem, clean_item, parse_key_text
from invocations.tables.models import Table

INVALID = "One or more parameter values were invalid: "


@api_view
def items(request, name):
    table = Table.objects.filter(owner=request.user, name=name).select_related("owner").first()
    if table is None:  # another user's table too: it does not exist for this caller
        raise ApiError(400, "ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
    if request.method == "POST":
        return _put_item(request, table)
    if request.method == "GET":
        return _get_item(request, table)
    if request.method == "DELETE":
        return _delete_item(request, table)
    raise ApiError(405, "UnknownOperationException", "Use POST (PutItem), GET (GetItem) or DELETE (DeleteItem).")


def _put_item(request, table):
    data = read_json(request)
    return_values = _return_values(data.get("ReturnValues", "NONE"))
    if "Item" not in data:
        raise ApiError(400, "ValidationException", "The request needs an Item (DynamoDB's typed JSON).")
    try:
        item = clean_item(data["Item"])
        _, old = table.put_item(item)
    except InvalidItem as e:
        raise ApiError(400, "ValidationException", INVALID + str(e)) from None
    return JsonResponse({"Attributes": old} if return_values == "ALL_OLD" and old is not None else {})


def _get_item(request, table):
    item = table.find(_keys(request, table))
    return JsonResponse({"Item": item.data} if item is not None else {})


def _delete_item(request, table):
    return_values = _return_values(request.GET.get("ReturnValues", "NONE"))
    _, old = table.delete_item(_keys(request, table))
    return JsonResponse({"Attributes": old} if return_values == "ALL_OLD" and old is not None else {})


def _return_values(value):
    if value not in ("NONE", "ALL_OLD"):
        raise ApiError(400, "ValidationException", f"ReturnValues is NONE or ALL_OLD here, not {value!r}.")
    return value


def _keys(request, table):
    """The key attributes named by the query's pk (and sk), typed as the table's keys are."""
    keys = {}
    for (role, name, kind, _), parameter in zip(table.key_schema(), ("pk", "sk")):
        text = request.GET.get(parameter)
        if text is None:
            raise ApiError(400, "ValidationException",
                           f"The query needs {parameter}: the value of the {role} key '{name}' (type {kind}).")
        try:
            keys[name] = parse_key_text(kind, text, f"'{name}' ({parameter})")
        except InvalidItem as e:
            raise ApiError(400, "ValidationException", INVALID + str(e)) from None
    if not table.sort_key_name and "sk" in request.GET:
        raise ApiError(400, "ValidationException", f"Table {table.name} has no sort key: send only pk.")
    try:
        table.keys_of(keys)
    except InvalidItem as e:
        raise ApiError(400, "ValidationException", INVALID + str(e)) from None
    return keys
