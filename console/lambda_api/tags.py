"""Tags on functions: TagResource, UntagResource, ListTags, and the rules CreateFunction's Tags follow too.
The console shows a function's tags and does not edit them, so their rules (Lambda's) live here."""

import re

from django.db import transaction

from console.lambda_api.api import get_unqualified_function, no_content, operation, read_json, respond
from console.lambda_api.errors import invalid

# Lambda's limits (Tagging Lambda functions, in the Lambda developer guide).
MAX_TAGS = 50
KEY_MAX, VALUE_MAX = 128, 256
# Unicode letters, digits and white space, and _ . : / = + - @
SYMBOLS = set("_.:/=+-@")
RESOURCE = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:(?P<type>[a-z-]+):.+$")


def _allowed(text):
    return all(c.isalnum() or c.isspace() or c in SYMBOLS for c in text)


def check_tags(tags):
    """Return `tags` if each key and value keeps Lambda's rules; raise InvalidParameterValueException."""
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise invalid("Tags must be an object of tag keys to string values.")
    for key, value in tags.items():
        if not 1 <= len(key) <= KEY_MAX:
            raise invalid(f"Tags: the key {key!r} must be 1–{KEY_MAX} characters long.")
        if len(value) > VALUE_MAX:
            raise invalid(f"Tags: the value of {key!r} must be at most {VALUE_MAX} characters long.")
        if key.lower().startswith("aws:"):
            raise invalid(f"Tags: the key {key!r} starts with 'aws:', which is reserved for AWS's own tags.")
        if not _allowed(key) or not _allowed(value):
            raise invalid(f"Tags: {key!r} may contain only letters, digits, white space and _ . : / = + - @ "
                          "in its key and value.")
    if len(tags) > MAX_TAGS:
        raise invalid(f"Tags: a function has at most {MAX_TAGS} tags; this would give it {len(tags)}.")
    return tags


def _function(request, resource, for_update=False):
    """The caller's function named by a Resource ARN; only functions (unqualified) have tags here."""
    match = RESOURCE.match(resource)
    if not match:
        raise invalid(f"1 validation error detected: Value '{resource}' at 'resource' failed to satisfy constraint: "
                      "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:…")
    if match["type"] != "function":
        raise invalid(f"{resource}: only functions have tags here.")
    return get_unqualified_function(
        request, resource, "Tags apply to a function as a whole, not to a version or alias: pass the function's "
        "unqualified ARN.", for_update=for_update)


@operation("TagResource")
def tag_resource(request, resource):
    body = read_json(request)
    if not isinstance(body.get("Tags"), dict):
        raise invalid("Tags is required: an object of tag keys to values.")
    check_tags(body["Tags"])
    with transaction.atomic():
        function = _function(request, resource, for_update=True)
        # Existing keys take the new values; the limit counts the tags the function ends with.
        function.tags = check_tags({**function.tags, **body["Tags"]})
        function.save(update_fields=["tags"])  # as in Lambda, tagging does not modify the function
    return no_content()


@operation("UntagResource")
def untag_resource(request, resource):
    keys = request.GET.getlist("tagKeys")
    with transaction.atomic():
        function = _function(request, resource, for_update=True)
        # A key the function does not have is no error, as in Lambda.
        function.tags = {key: value for key, value in function.tags.items() if key not in keys}
        function.save(update_fields=["tags"])
    return no_content()


@operation("ListTags")
def list_tags(request, resource):
    return respond({"Tags": _function(request, resource).tags})
