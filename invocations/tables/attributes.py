"""DynamoDB's typed JSON (AttributeValue): strict validation with messages that name the attribute, an item's
size as DynamoDB counts it, and key values as text.

An item is {"name": {"S": "x"}, "n": {"N": "1"}, "m": {"M": {...}}, "l": {"L": [...]}, "b": {"B": "base64"},
"bool": {"BOOL": true}, "null": {"NULL": true}, "ss": {"SS": [...]}, "ns": {"NS": [...]}, "bs": {"BS": [...]}}.
"""

import base64
import binascii
import hashlib
import json
import math
import re
from decimal import Decimal

# DynamoDB's limits (Service, account, and table quotas in Amazon DynamoDB).
MAX_ITEM_BYTES = 400 * 1024
MAX_DEPTH = 32
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
# Numbers: up to 38 significant digits, magnitude from 1E-130 to 9.99…E+125 (or zero).
MAX_NUMBER_DIGITS = 38
MIN_EXPONENT, MAX_EXPONENT = -130, 125

TYPES = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
KEY_TYPES = ("S", "N", "B")
NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class InvalidItem(ValueError):
    """The typed JSON breaks one of DynamoDB's rules; the message says which, and where."""


def parse_item(text):
    """Parse the JSON text of an item; return it validated (see clean_item). Raise InvalidItem."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidItem(f"The item is not valid JSON: {e}.") from None
    return clean_item(item)


def clean_item(item):
    """Return the item with its numbers and binaries in their canonical form; raise InvalidItem naming the
    first attribute that breaks DynamoDB's rules, or the item's size over 400 KB."""
    if not isinstance(item, dict):
        raise InvalidItem('An item is a JSON object of attributes, e.g. {"id": {"S": "a1"}}.')
    if not item:
        raise InvalidItem("An item needs at least its key attributes.")
    try:
        # JSON may carry a lone surrogate ("\ud800"), which no UTF-8 string (DynamoDB's) can hold.
        json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidItem("The item holds text that is not valid UTF-8 (a lone surrogate).") from None
    cleaned = _map(item, "", 1)
    size = item_size(cleaned)
    if size > MAX_ITEM_BYTES:
        raise InvalidItem(f"Item size has exceeded the maximum allowed size: {size:,} bytes (attribute names and "
                          f"values in UTF-8), over DynamoDB's limit of {MAX_ITEM_BYTES:,} bytes (400 KB).")
    return cleaned


def _path(parent, name):
    return f"{parent}.{name}" if parent else name


def _map(attributes, parent, depth):
    cleaned = {}
    for name, value in attributes.items():
        if name == "":
            inside = f" (inside attribute {_quoted(parent)})" if parent else ""
            raise InvalidItem(f"An attribute name may not be empty{inside}.")
        cleaned[name] = _value(value, _path(parent, name), depth)
    return cleaned


def _quoted(path):
    return f"'{path}'"


def _value(value, path, depth):
    where = f"attribute {_quoted(path)}"
    if depth > MAX_DEPTH:
        raise InvalidItem(f"{where}: nested more than {MAX_DEPTH} levels deep.")
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidItem(f'{where}: a value is an object with exactly one type ({", ".join(TYPES)}), '
                          'e.g. {"S": "text"}.')
    [(kind, inner)] = value.items()
    if kind == "S":
        if not isinstance(inner, str):
            raise InvalidItem(f"{where}: S must be a string.")
        return {"S": inner}
    if kind == "N":
        return {"N": _number(inner, where, "N")}
    if kind == "B":
        return {"B": _binary(inner, where, "B")}
    if kind == "BOOL":
        if not isinstance(inner, bool):
            raise InvalidItem(f"{where}: BOOL must be true or false.")
        return {"BOOL": inner}
    if kind == "NULL":
        if inner is not True:
            raise InvalidItem(f"{where}: NULL must be true.")
        return {"NULL": True}
    if kind == "M":
        if not isinstance(inner, dict):
            raise InvalidItem(f'{where}: M must be an object of attributes, e.g. {{"M": {{"a": {{"S": "x"}}}}}}.')
        return {"M": _map(inner, path, depth + 1)}
    if kind == "L":
        if not isinstance(inner, list):
            raise InvalidItem(f'{where}: L must be a list of values, e.g. {{"L": [{{"S": "x"}}]}}.')
        return {"L": [_value(element, f"{path}[{i}]", depth + 1) for i, element in enumerate(inner)]}
    if kind in ("SS", "NS", "BS"):
        return {kind: _set(kind, inner, where)}
    raise InvalidItem(f"{where}: unknown type {kind!r}; the types are {', '.join(TYPES)}.")


def _number(inner, where, kind):
    if not isinstance(inner, str):
        raise InvalidItem(f'{where}: {kind} must be a number string, e.g. {{"N": "42"}}.')
    if not NUMBER.fullmatch(inner):
        raise InvalidItem(f"{where}: {kind} must be a number string; {inner!r} is not a number.")
    return canonical_number(inner, where)


def canonical_number(text, where):
    """The number as DynamoDB keeps it: leading and trailing zeros trimmed, no exponent."""
    sign, digits, exponent = Decimal(text).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[0] == 0:
        digits.pop(0)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        return "0"
    if len(digits) > MAX_NUMBER_DIGITS:
        raise InvalidItem(f"{where}: a number may have at most {MAX_NUMBER_DIGITS} significant digits; "
                          f"{text!r} has {len(digits)}.")
    magnitude = len(digits) - 1 + exponent  # the power of ten of the first digit
    if not MIN_EXPONENT <= magnitude <= MAX_EXPONENT:
        raise InvalidItem(f"{where}: {text!r} is out of DynamoDB's number range "
                          "(1E-130 to 9.9999999999999999999999999999999999999E+125, positive or negative).")
    return format(Decimal((sign, digits, exponent)), "f")


def _binary(inner, where, kind):
    if not isinstance(inner, str):
        raise InvalidItem(f"{where}: {kind} must be a base64 string.")
    try:
        raw = base64.b64decode(inner, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidItem(f"{where}: {kind} must be a base64 string; {inner[:40]!r} is not base64.") from None
    return base64.b64encode(raw).decode()


def _set(kind, inner, where):
    if not isinstance(inner, list):
        raise InvalidItem(f'{where}: {kind} must be a list, e.g. {{"{kind}": [...]}}.')
    if not inner:
        raise InvalidItem(f"{where}: an {kind} set may not be empty.")
    element = kind[0]
    cleaned = []
    for value in inner:
        if element == "S":
            if not isinstance(value, str):
                raise InvalidItem(f"{where}: every member of SS must be a string.")
            cleaned.append(value)
        elif element == "N":
            cleaned.append(_number(value, where, "every member of NS"))
        else:
            cleaned.append(_binary(value, where, "every member of BS"))
    seen = set()
    for value in cleaned:
        if value in seen:
            raise InvalidItem(f"{where}: {kind} holds {value!r} twice; a set's members are distinct.")
        seen.add(value)
    # A set has no order: kept sorted, two writes of the same set compare equal.
    return sorted(cleaned, key=Decimal) if element == "N" else sorted(cleaned)


# Sizes, as in "DynamoDB item sizes and formats" (CapacityUnitCalculations): names and values in UTF-8; a
# number is 1 byte per two significant digits plus 1; a binary its raw bytes; BOOL and NULL 1 byte; a list or
# map 3 bytes plus its elements, and 1 byte for each element.


def item_size(item):
    """The item's size in bytes as DynamoDB counts it (also the size of a key, or of a stream image)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value):
    [(kind, inner)] = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(v) + 1 for name, v in inner.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(v) for v in inner)
    return sum(len(base64.b64decode(v)) for v in inner)  # BS


def _number_size(text):
    significant = text.lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


# Keys


def key_text(value):
    """A key attribute's value as text: the string, the canonical number, or the base64 of the bytes."""
    [(_, inner)] = value.items()
    return inner


def parse_key_text(kind, text, where):
    """Read a key value given as text (e.g. in a URL) for a key attribute of type `kind`; return its typed
    value. Raise InvalidItem."""
    if kind == "N":
        return {"N": _number(text, where, "N")}
    if kind == "B":
        return {"B": _binary(text, where, "B")}
    return {"S": text}


def key_hash(partition, sort):
    """What makes an item's key unique in its table, whatever the length of its key values."""
    return hashlib.sha256(json.dumps([partition, sort]).encode()).hexdigest()
