"""Message bodies and message attributes as SQS and SNS accept them, and SQS's MD5 digests of both.

Programs send attributes in the services' API form, {"name": {"DataType": "String", "StringValue": "…"}}
(or "BinaryValue", base64); the console also takes {"name": "text"} for a String and {"name": 12} for a
Number. `parse` returns them checked, as Attribute tuples; each service then writes them in its own
event shape.
"""

import base64
import binascii
import hashlib
import json
import re
import struct
from collections import namedtuple
from decimal import Decimal, InvalidOperation

# SQS and SNS: at most 10 attributes on a message (SQS's limit; SNS passes them on to queues).
MAX_ATTRIBUTES = 10
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
SQS_TYPES = ("String", "Number", "Binary")
SNS_TYPES = ("String", "String.Array", "Number", "Binary")
# SQS's allowed characters in a body or string value: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
# #x10000-#x10FFFF. Python strings hold no lone surrogates from JSON or a form, so this finds the rest.
FORBIDDEN_CHARACTERS = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Attribute = namedtuple("Attribute", "name data_type string_value binary_value")


class InvalidMessage(ValueError):
    """A message or its attributes break a rule of SQS or SNS; the text says which."""


class MessageTooLarge(InvalidMessage):
    """A message is over the size limit (256 KB, its attributes included)."""


def check_text(text, what):
    if not isinstance(text, str):
        raise InvalidMessage(f"{what} must be a string.")
    match = FORBIDDEN_CHARACTERS.search(text)
    if match:
        raise InvalidMessage(f"{what} contains the character U+{ord(match.group()):04X}, which SQS does not allow "
                             "(only tab, newline, carriage return and printable Unicode).")


def parse(raw, types=SQS_TYPES):
    """Check message attributes given as a dict (see the module's docstring); return a list of Attribute."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, dict):
        raise InvalidMessage('Message attributes must be a JSON object: {"name": {"DataType": "String", '
                             '"StringValue": "…"}}.')
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidMessage(f"A message has at most {MAX_ATTRIBUTES} attributes; this one has {len(raw)}.")
    return [_attribute(name, value, types) for name, value in raw.items()]


def _attribute(name, value, types):
    if not NAME_PATTERN.match(name) or name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidMessage(f"Attribute name {name!r} is not valid: 1–256 of A-Z a-z 0-9 _ - . (no leading, "
                             "trailing or repeated period).")
    if name.lower().startswith(("aws.", "amazon.")):
        raise InvalidMessage(f"Attribute name {name!r} is reserved: names may not start with AWS. or Amazon.")
    if isinstance(value, bool):  # a bool is an int to Python, not a number to SQS
        raise InvalidMessage(f"Attribute {name!r}: give a string, a number or an object with DataType.")
    if isinstance(value, str):
        value = {"DataType": "String", "StringValue": value}
    elif isinstance(value, (int, float)):
        value = {"DataType": "Number", "StringValue": str(value)}
    if not isinstance(value, dict):
        raise InvalidMessage(f"Attribute {name!r}: give a string, a number or an object with DataType.")
    # The services' API spells the keys DataType/StringValue/BinaryValue; Lambda's events dataType/….
    fields = {key[:1].upper() + key[1:]: item for key, item in value.items()}
    data_type = fields.get("DataType")
    if not isinstance(data_type, str) or not data_type:
        raise InvalidMessage(f"Attribute {name!r} has no DataType (one of {', '.join(types)}).")
    base = data_type.split(".", 1)[0]
    # SQS allows a custom label after the type (Number.float); SNS only its own four types.
    labelled = types == SQS_TYPES and base in SQS_TYPES and NAME_PATTERN.match(data_type)
    if not (data_type in types or labelled):
        raise InvalidMessage(f"Attribute {name!r}: DataType {data_type!r} is not one of {', '.join(types)}"
                             + (" (a custom label may follow, e.g. Number.float)." if types == SQS_TYPES else "."))
    if base == "Binary":
        encoded = fields.get("BinaryValue")
        try:
            binary = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            binary = None
        if not binary:
            raise InvalidMessage(f"Attribute {name!r} of type Binary needs a BinaryValue: non-empty base64.")
        return Attribute(name, data_type, None, binary)
    text = fields.get("StringValue")
    if not isinstance(text, str) or text == "":
        raise InvalidMessage(f"Attribute {name!r} of type {data_type} needs a non-empty StringValue.")
    check_text(text, f"Attribute {name!r}")
    if data_type == "String.Array":
        try:
            array = json.loads(text)
        except json.JSONDecodeError:
            array = None
        if not isinstance(array, list):
            raise InvalidMessage(f"Attribute {name!r} of type String.Array needs a JSON array, e.g. [\"a\", 1].")
    if base == "Number":
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise InvalidMessage(f"Attribute {name!r} of type Number has a value that is not a number: {text!r}.")
    return Attribute(name, data_type, text, None)


def size(body, attributes):
    """The bytes SQS counts against its limit: the body, and each attribute's name, type and value."""
    total = len(body.encode())
    for a in attributes:
        total += len(a.name.encode()) + len(a.data_type.encode())
        total += len(a.binary_value) if a.binary_value is not None else len(a.string_value.encode())
    return total


def md5_of_body(body):
    return hashlib.md5(body.encode()).hexdigest()


def md5_of_attributes(attributes):
    """SQS's MD5OfMessageAttributes: over the attributes sorted by name, each as its length-prefixed name,
    type and value, with a transport byte (1 string, 2 binary) before the value. "" without attributes."""
    if not attributes:
        return ""
    digest = hashlib.md5()

    def field(data):
        digest.update(struct.pack(">I", len(data)) + data)

    for a in sorted(attributes, key=lambda a: a.name):
        field(a.name.encode())
        field(a.data_type.encode())
        if a.binary_value is not None:
            digest.update(b"\x02")
            field(a.binary_value)
        else:
            digest.update(b"\x01")
            field(a.string_value.encode())
    return digest.hexdigest()


def sqs_shape(attributes):
    """Attributes as Lambda's SQS event shows them (messageAttributes)."""
    shaped = {}
    for a in attributes:
        value = ({"binaryValue": base64.b64encode(a.binary_value).decode()} if a.binary_value is not None
                 else {"stringValue": a.string_value})
        shaped[a.name] = {**value, "stringListValues": [], "binaryListValues": [], "dataType": a.data_type}
    return shaped


def from_sqs_shape(shaped):
    """Attribute tuples back from sqs_shape()."""
    return [Attribute(name, value["dataType"], value.get("stringValue"),
                      base64.b64decode(value["binaryValue"]) if "binaryValue" in value else None)
            for name, value in shaped.items()]


def sns_shape(attributes):
    """Attributes as SNS shows them, in Lambda's event and the JSON envelope: {name: {Type, Value}}."""
    return {a.name: {"Type": a.data_type,
                     "Value": base64.b64encode(a.binary_value).decode() if a.binary_value is not None
                     else a.string_value}
            for a in attributes}


def api_shape(attributes):
    """Attributes as SQS's API gives them (ReceiveMessage's MessageAttributes): {name: {DataType,
    StringValue|BinaryValue}}, a binary value in base64."""
    return {a.name: {"DataType": a.data_type,
                     **({"BinaryValue": base64.b64encode(a.binary_value).decode()} if a.binary_value is not None
                        else {"StringValue": a.string_value})}
            for a in attributes}


def chosen(attributes, names):
    """The attributes that ReceiveMessage's MessageAttributeNames asks for: a name, "All" or ".*" for every
    one, or a prefix such as "bar.*" for the names that start with "bar."."""
    def wanted(name):
        return any(pattern in ("All", ".*") or name == pattern
                   or (pattern.endswith(".*") and name.startswith(pattern[:-1])) for pattern in names)
    return [a for a in attributes if wanted(a.name)]
