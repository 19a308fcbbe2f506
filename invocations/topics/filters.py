"""SNS subscription filter policies: check a policy as SNS does when it is set, and match a published message
against it.

A policy is a JSON object whose keys name message attributes (FilterPolicyScope "MessageAttributes", the
default) or properties of the message parsed as JSON ("MessageBody", where keys may nest). Each key holds a
list of conditions, any of which may match (OR); every key must match (AND); "$or" holds alternative
policies. Conditions: a string, number, true, false or null (exact match), or one of {"prefix": s},
{"suffix": s}, {"equals-ignore-case": s}, {"anything-but": value, [values] or {"prefix": s}},
{"numeric": ["<", 10]} / {"numeric": [">", 0, "<=", 10]}, {"exists": true|false}.
See https://docs.aws.amazon.com/sns/latest/dg/sns-subscription-filter-policies.html.
"""

import json
from decimal import Decimal, InvalidOperation

ATTRIBUTES, BODY = "MessageAttributes", "MessageBody"
SCOPES = (ATTRIBUTES, BODY)
# SNS's constraints (subscription-filter-policy-constraints.html).
MAX_KEYS = 5
MAX_COMBINATIONS = 150
MAX_POLICY_BYTES = 256 * 1024
NUMERIC_LIMIT = Decimal(10) ** 9
# "Five digits of accuracy after the decimal point": numbers are compared at that precision.
NUMERIC_PRECISION = Decimal("0.00001")

STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case")
NUMERIC_OPERATORS = ("=", "<", "<=", ">", ">=")


def parse(text, scope=ATTRIBUTES):
    """Check a filter policy given as JSON text; return it as a list of alternatives (one per "$or" branch),
    each a list of (key path, conditions), or None for no policy. Raise ValueError naming the problem."""
    if scope not in SCOPES:
        raise ValueError(f"FilterPolicyScope must be {' or '.join(SCOPES)}, not {scope!r}.")
    text = (text or "").strip()
    if not text:
        return None
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise ValueError(f"A filter policy is at most {MAX_POLICY_BYTES:,} bytes (256 KB).")
    try:
        # Numbers as Decimal, so that 301.5 and 3.015e2 are the same number and nothing is lost to floats.
        policy = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as e:
        raise ValueError(f"The filter policy is not valid JSON: {e}.") from None
    if not isinstance(policy, dict):
        raise ValueError("A filter policy is a JSON object: {\"key\": [conditions]}.")
    if not policy:
        return None
    combinations = _check_object(policy, scope, depth=1)
    if combinations > MAX_COMBINATIONS:
        raise ValueError(f"The filter policy is too complex: {combinations} combinations of values; SNS allows at "
                         f"most {MAX_COMBINATIONS} (the number of values in each array multiplied together).")
    alternatives = _expand(policy, ())
    for alternative in alternatives:
        keys = {path[0] for path, _ in alternative}
        if len(keys) > MAX_KEYS:
            raise ValueError(f"A filter policy has at most {MAX_KEYS} keys; this one has {len(keys)} "
                             f"({', '.join(sorted(keys))}).")
    return alternatives


def _is_or(key, value):
    # SNS takes "$or" as the operator only with an array of at least two objects; otherwise it is a plain key.
    return key == "$or" and isinstance(value, list) and len(value) >= 2 and all(isinstance(v, dict) for v in value)


def _check_object(policy, scope, depth):
    """Check one level of a policy; return its number of value combinations as SNS counts them: the
    product of each array's length (times its nesting depth), a "$or" adding up its branches."""
    combinations = 1
    for key, value in policy.items():
        if _is_or(key, value):
            combinations *= sum(_check_object(branch, scope, depth) for branch in value)
        elif isinstance(value, dict):
            if scope == ATTRIBUTES:
                raise ValueError(f"Key {key!r} holds an object: nested keys need FilterPolicyScope MessageBody "
                                 "(message attributes are not nested).")
            combinations *= _check_object(value, scope, depth + 1)
        elif isinstance(value, list):
            if not value:
                raise ValueError(f"Key {key!r} holds an empty array: give at least one condition.")
            for condition in value:
                _check_condition(key, condition)
            combinations *= len(value) * depth
        else:
            raise ValueError(f"Key {key!r} must hold an array of conditions (or, with scope MessageBody, an "
                             "object of nested keys).")
    return combinations


def _check_value(key, value, what="A match value"):
    if isinstance(value, Decimal):
        _check_number(key, value)
    elif not (value is None or isinstance(value, (str, bool))):
        raise ValueError(f"Key {key!r}: {what} must be a string, a number, true, false or null.")


def _check_number(key, number):
    if not number.is_finite() or abs(number) > NUMERIC_LIMIT:
        raise ValueError(f"Key {key!r}: numbers in a filter policy must be between -1,000,000,000 and "
                         f"1,000,000,000; {number} is not.")


def _check_condition(key, condition):
    if not isinstance(condition, dict):
        return _check_value(key, condition)
    if len(condition) != 1:
        raise ValueError(f"Key {key!r}: a match expression has exactly one operator, not {len(condition)}.")
    [(operator, operand)] = condition.items()
    if operator in STRING_OPERATORS:
        if not isinstance(operand, str):
            raise ValueError(f"Key {key!r}: {operator} takes a string.")
    elif operator == "exists":
        if not isinstance(operand, bool):
            raise ValueError(f"Key {key!r}: exists takes true or false.")
    elif operator == "anything-but":
        if isinstance(operand, dict):
            if list(operand) != ["prefix"] or not isinstance(operand["prefix"], str):
                raise ValueError(f"Key {key!r}: anything-but takes a value, an array of values or "
                                 '{"prefix": "…"}.')
        elif isinstance(operand, list):
            if not operand:
                raise ValueError(f"Key {key!r}: anything-but needs at least one value.")
            for value in operand:
                _check_value(key, value, "An anything-but value")
        else:
            _check_value(key, operand, "An anything-but value")
    elif operator == "numeric":
        _check_numeric(key, operand)
    else:
        raise ValueError(f"Key {key!r}: unknown operator {operator!r} (SNS knows prefix, suffix, "
                         "equals-ignore-case, anything-but, numeric and exists).")


def _check_numeric(key, terms):
    """["op", n] with op one of = < <= > >=, or a range [">" or ">=", low, "<" or "<=", high] with low < high."""
    shape = 'numeric takes ["<", 10] or a range such as [">", 0, "<=", 10]'
    if not isinstance(terms, list) or len(terms) not in (2, 4):
        raise ValueError(f"Key {key!r}: {shape}.")
    for operator, number in zip(terms[::2], terms[1::2]):
        if operator not in NUMERIC_OPERATORS:
            raise ValueError(f"Key {key!r}: {operator!r} is not a numeric operator (=, <, <=, >, >=).")
        if not isinstance(number, Decimal):
            raise ValueError(f"Key {key!r}: the value after {operator!r} in numeric must be a number.")
        _check_number(key, number)
    if len(terms) == 4:
        if terms[0] not in (">", ">=") or terms[2] not in ("<", "<="):
            raise ValueError(f"Key {key!r}: a numeric range is a lower bound (> or >=) then an upper bound "
                             "(< or <=).")
        if terms[1] >= terms[3]:
            raise ValueError(f"Key {key!r}: in a numeric range the lower bound must be below the upper bound.")


def _expand(policy, prefix):
    """The policy as alternatives without "$or": each a list of (key path, conditions)."""
    alternatives = [[]]
    for key, value in policy.items():
        if _is_or(key, value):
            branches = [branch for item in value for branch in _expand(item, prefix)]
            alternatives = [mine + theirs for mine in alternatives for theirs in branches]
        elif isinstance(value, dict):
            nested = _expand(value, prefix + (key,))
            alternatives = [mine + theirs for mine in alternatives for theirs in nested]
        else:
            alternatives = [mine + [(prefix + (key,), value)] for mine in alternatives]
    return alternatives


def accepts(policy_text, scope, message, attributes):
    """Whether a subscription with this policy gets the message. `attributes`: the publish's parsed
    attributes (invocations.queues.attributes.Attribute). No policy takes everything."""
    alternatives = parse(policy_text, scope)
    if alternatives is None:
        return True
    if scope == BODY:
        try:
            body = json.loads(message, parse_float=Decimal, parse_int=Decimal)
        except json.JSONDecodeError:
            return False  # SNS: a body-scoped policy never matches a message that is not a JSON object
        if not isinstance(body, dict):
            return False

        def lookup(path):
            return _body_values(body, path)
    else:
        by_name = {a.name: a for a in attributes}

        def lookup(path):
            return _attribute_values(by_name.get(path[0]))
    return any(all(_key_matches(lookup(path), conditions) for path, conditions in alternative)
               for alternative in alternatives)


def _attribute_values(attribute):
    """An attribute's values to match, or None if it is absent. SNS ignores Binary attributes."""
    if attribute is None or attribute.binary_value is not None:
        return None
    if attribute.data_type == "Number":
        return [Decimal(attribute.string_value)]
    if attribute.data_type == "String.Array":
        items = json.loads(attribute.string_value, parse_float=Decimal, parse_int=Decimal)
        return [item for item in items if not isinstance(item, (dict, list))]
    return [attribute.string_value]


def _body_values(body, path):
    """The scalar values at a key path of the message body (through arrays), or None if there are none."""
    found = [body]
    for key in path:
        step = []
        for item in _flatten(found):
            if isinstance(item, dict) and key in item:
                step.append(item[key])
        found = step
    values = [item for item in _flatten(found) if not isinstance(item, dict)]
    return values or None


def _flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _key_matches(values, conditions):
    if values is None:  # absent: only {"exists": false} matches
        return any(isinstance(c, dict) and c.get("exists") is False for c in conditions)
    return any(_condition_matches(values, c) for c in conditions)


def _condition_matches(values, condition):
    if isinstance(condition, dict) and "exists" in condition:
        return condition["exists"] is True
    # Any one value (an array's elements each count) matching the condition is enough.
    return any(_value_matches(value, condition) for value in values)


def _is_number(value):
    return isinstance(value, Decimal)


def _same(value, expected):
    if _is_number(expected):
        return _is_number(value) and _rounded(value) == _rounded(expected)
    # Exact, case-sensitive; true/false/null only match themselves (True == 1 in Python, hence the type check).
    return type(value) is type(expected) and value == expected


def _rounded(number):
    try:
        return number.quantize(NUMERIC_PRECISION)
    except InvalidOperation:  # too many digits to quantize: compare as it is
        return number


def _value_matches(value, condition):
    if not isinstance(condition, dict):
        return _same(value, condition)
    [(operator, operand)] = condition.items()
    if operator == "numeric":
        return _is_number(value) and all(_compare(value, op, bound)
                                         for op, bound in zip(operand[::2], operand[1::2]))
    if operator == "anything-but":
        if isinstance(operand, dict):
            return isinstance(value, str) and not value.startswith(operand["prefix"])
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_same(value, item) for item in excluded)
    if not isinstance(value, str):
        return False
    if operator == "prefix":
        return value.startswith(operand)
    if operator == "suffix":
        return value.endswith(operand)
    return value.casefold() == operand.casefold()  # equals-ignore-case


def _compare(value, operator, bound):
    value, bound = _rounded(value), _rounded(bound)
    return {"=": value == bound, "<": value < bound, "<=": value <= bound, ">": value > bound,
            ">=": value >= bound}[operator]
