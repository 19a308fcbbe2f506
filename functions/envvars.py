"""Functions' environment variables: Lambda's rules for them, and their encryption at rest.

They are stored as one Fernet token (settings.ENVIRONMENT_KEYS: the first key encrypts, every key
decrypts, so keys rotate with MultiFernet). Only the worker decrypts them, just before it hands them to
a new execution environment; invocation records keep the token, never the values.
"""

import functools
import json
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "KEY_PATTERN", "MAX_BYTES", "RESERVED", "decrypt", "encrypt", "rotate", "size"]

KEY_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+$")
# Lambda's limit: keys and values together.
MAX_BYTES = 4 * 1024
# Set by Lambda itself; a function cannot (PATH, LANG, TZ and the like it can).
RESERVED = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})


@functools.lru_cache(maxsize=4)
def _fernet(keys):
    return MultiFernet([Fernet(key) for key in keys])


def _keys():
    return _fernet(tuple(settings.ENVIRONMENT_KEYS))


def size(variables):
    """Return the bytes Lambda's 4 KB limit counts: every key and value, in UTF-8."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in variables.items())


def encrypt(variables):
    """Return the token for {key: value} ("" for none)."""
    if not variables:
        return ""
    return _keys().encrypt(json.dumps(variables, sort_keys=True).encode()).decode()


def decrypt(token):
    """Return {key: value} from a token; raise InvalidToken if no configured key opens it."""
    if not token:
        return {}
    return json.loads(_keys().decrypt(token.encode()))


def rotate(token):
    """Return the token encrypted again with the first key (it must open with one of the keys)."""
    return _keys().rotate(token.encode()).decode() if token else token
