"""What every Lambda API operation shares: the SigV4 check, request ids, body limits, JSON in and out,
error responses, and finding the caller's function from a name or an ARN."""

import base64
import functools
import json
import logging
import re
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from console.lambda_api import auth
from console.lambda_api.errors import ApiError, error_response, invalid, not_found
from functions.models import Function, account_id

logger = logging.getLogger(__name__)

# The request size AWS accepts for CreateFunction and UpdateFunctionCode: a 50 MB ZIP in base64, in JSON.
CODE_REQUEST_MAX = 70_167_211
# Every other operation's JSON body is small (Invoke has its own payload limits, checked by invoke()).
JSON_REQUEST_MAX = 1024 * 1024

# FunctionName as the API takes it: a name, a partial ARN (account:function:name) or a full ARN, with an
# optional :qualifier where the operation allows one.
FUNCTION_NAME = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):function:)?"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
)


def operation(name, max_body=JSON_REQUEST_MAX):
    """Make a view a Lambda API operation: verify the signature (the session cookie never counts, CSRF does
    not apply), set request.user to the key's user, and answer ApiError as AWS does."""

    def decorate(view):
        @csrf_exempt
        @login_not_required
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            request_id = str(uuid.uuid4())
            request.request_id = request_id
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
                if length > max_body:
                    raise ApiError(413, "RequestTooLargeException",
                                   f"Request must be smaller than {max_body} bytes for the {name} operation")
                match, key = auth.identify(request)  # before the body: an unknown caller cannot make us read it
                # Read past DATA_UPLOAD_MAX_MEMORY_SIZE (the console's forms' limit): max_body bounds it here.
                request._body = request.read()
                request.user = auth.verify(request, match, key).user
                response = view(request, *args, **kwargs)
            except ApiError as e:
                response = error_response(e)
            except Http404 as e:
                response = error_response(not_found(str(e) or "The resource you requested does not exist."))
            except Exception:
                # Never a function's failure (that is a 200 with X-Amz-Function-Error): our own. boto3 retries 5xx.
                logger.exception("Lambda API %s failed", name)
                response = error_response(ApiError(500, "ServiceException", "An internal error occurred."))
            # The view may have replaced it: Invoke answers with its invocation's id, as Lambda does.
            response["x-amzn-RequestId"] = request.request_id
            return response

        wrapped.lambda_operation = name
        return wrapped

    return decorate


def respond(data, status=200):
    return HttpResponse(json.dumps(data), status=status, content_type="application/json")


def no_content():
    return HttpResponse(status=204)


def read_json(request):
    """The request's JSON object; raise InvalidRequestContentException naming the problem."""
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "InvalidRequestContentException", f"Could not parse request body into json: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidRequestContentException", "Could not parse request body into json: "
                                                              "expected an object.")
    return data


def parse_function_name(request, value):
    """Return (name, qualifier or None) from a FunctionName; raise InvalidParameterValueException for a
    malformed one, ResourceNotFoundException for another account's or region's."""
    match = FUNCTION_NAME.match(value or "")
    if not match:
        raise invalid(f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy "
                      f"constraint: Member must satisfy regular expression pattern: "
                      f"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?"
                      f"(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
    if (match["account"] and match["account"] != account_id(request.user)) or (
            match["region"] and match["region"] != settings.LAMBDA_REGION):
        raise not_found(f"Function not found: {function_arn(request.user, match['name'], match['qualifier'])}")
    return match["name"], match["qualifier"]


def function_arn(user, name, qualifier=None):
    arn = f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(user)}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def get_function(request, value, qualifier=None, for_update=False):
    """Return (function, qualifier) for the caller's function named by `value` (name or ARN, with an optional
    :qualifier) and the Qualifier parameter; raise ResourceNotFoundException."""
    name, arn_qualifier = parse_function_name(request, value)
    if arn_qualifier and qualifier and arn_qualifier != qualifier:
        raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
    qualifier = qualifier or arn_qualifier
    functions = Function.objects.select_related("code", "owner")
    if for_update:
        # Only the function's row (on PostgreSQL, select_related would lock the owner and the code too).
        functions = functions.select_for_update(of=("self",))
    try:
        function = functions.get(owner=request.user, name=name)
    except Function.DoesNotExist:
        raise not_found(f"Function not found: {function_arn(request.user, name, qualifier)}") from None
    return function, qualifier


def get_unqualified_function(request, value, refusal, for_update=False):
    """The caller's function named by `value`, for an operation on the function as a whole: a name or ARN
    with a :qualifier is InvalidParameterValueException, with `refusal` as its message."""
    function, qualifier = get_function(request, value, for_update=for_update)
    if qualifier:
        raise invalid(refusal)
    return function


def paging(request, default=50, maximum=10000):
    """Return (marker value or None, MaxItems) from the query string; raise InvalidParameterValueException.

    A Marker is opaque to the caller: base64 of the last item's key (a name or a number) on the page before.
    """
    raw_max = request.GET.get("MaxItems")
    try:
        max_items = int(raw_max) if raw_max is not None else default
    except ValueError:
        raise invalid(f"MaxItems must be a number from 1 to {maximum}, not {raw_max!r}.") from None
    if not 1 <= max_items <= maximum:
        raise invalid(f"MaxItems must be from 1 to {maximum}, not {max_items}.")
    marker = request.GET.get("Marker")
    if marker is None:
        return None, max_items
    try:
        value = json.loads(base64.urlsafe_b64decode(marker.encode("ascii")))
    except (ValueError, UnicodeError):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.") from None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise invalid("Invalid Marker: pass the NextMarker of the previous page.")
    return value, max_items


def next_marker(page, max_items, key):
    """The NextMarker for a page that was asked for max_items + 1 items (None: it was the last page)."""
    if len(page) <= max_items:
        return None
    return base64.urlsafe_b64encode(json.dumps(key(page[max_items - 1])).encode()).decode()


def form_invalid(form, params):
    """InvalidParameterValueException for a rejected console form: its first error, named by the API's
    parameter (`params` maps form fields to parameter names)."""
    for field, errors in form.errors.items():
        name = params.get(field, field) if field != "__all__" else ""
        return invalid(f"{name}: {errors[0]}" if name else errors[0])
    return invalid("The request is not valid.")
