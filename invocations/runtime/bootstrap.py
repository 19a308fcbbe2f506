"""The runtime inside an execution environment: import the handler once, then serve invocations.

Runs in the sandbox as `python3 -I /var/runtime/bootstrap.py LIMITS_JSON` with an almost empty environment;
the function's variables arrive in the first frame, so they never pass through the launcher's environment
or command line (bwrap and sh run on the host, before any namespace exists). It imports nothing but the
standard library, and imports all of it (including what traceback loads lazily) before the function's
code directory joins sys.path, so a ZIP that ships json.py, ast.py or typing.py cannot break it.

Wiring, set up by the worker: fd 0 carries requests in, fd 1 carries answers out, fd 2 is the log pipe.
The bootstrap keeps private copies of fds 0 and 1 and points the handler's stdin at /dev/null and its
stdout at the log pipe, so nothing the handler prints can corrupt the protocol.

Protocol, one frame per message: a JSON header line, then `length` raw bytes.
  worker → runtime, once:   {"type": "configure", "length"} + the environment as a JSON object
  runtime → worker, once:   {"type": "init", "ok": true}  or  {"type": "init", "ok": false} + error JSON
  worker → runtime:         {"type": "invoke", "request_id", "deadline_ms", "invoked_function_arn",
                             "client_context", "length"} + event JSON
  runtime → worker:         {"type": "result", "ok": bool, "error_type", "max_rss_kb", "length"} + payload
"""

import ast  # noqa: F401  traceback imports it lazily, after the code directory joins sys.path
import decimal
import importlib
import io
import json
import logging
import os
import resource
import sys
import time
import traceback

MAX_RESPONSE_BYTES = 6 * 1024 * 1024
MAX_ERROR_MESSAGE_CHARS = 64 * 1024
MAX_ERROR_TYPE_CHARS = 128

_current_request_id = ""


class CognitoIdentity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class Client:
    """The mobile SDK's description of the calling app, as Lambda's Python runtime gives it."""

    FIELDS = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, data):
        for name in self.FIELDS:
            setattr(self, name, data.get(name))

    def __repr__(self):
        return f"Client([{','.join(f'{name}={getattr(self, name)}' for name in self.FIELDS)}])"


class ClientContext:
    """The invoker's X-Amz-Client-Context: `custom` and `env` as sent, `client` as a Client (or None)."""

    def __init__(self, data):
        self.custom = data.get("custom")
        self.env = data.get("env")
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    def __repr__(self):
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


class LambdaContext:
    """The context object, with the attributes Lambda's Python runtime gives it."""

    def __init__(self, request, environ):
        self.aws_request_id = request["request_id"]
        self.invoked_function_arn = request["invoked_function_arn"]
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # A string, as in Lambda (it comes from the environment there too).
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity()
        cc = request.get("client_context")
        self.client_context = ClientContext(cc) if cc is not None else None
        self._deadline_ms = request["deadline_ms"]

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},client_context={self.client_context},"
            f"identity={self.identity}])"
        )


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


def setup_logging():
    """Give the root logger Lambda's handler: `[LEVEL]\\ttimestamp\\trequest id\\tmessage`."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


def make_error(error_type, message, stack_trace=()):
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[:MAX_ERROR_MESSAGE_CHARS] + " [truncated]"
    return {
        "errorMessage": message,
        "errorType": error_type[:MAX_ERROR_TYPE_CHARS],
        "requestId": _current_request_id,
        "stackTrace": list(stack_trace)[-50:],
    }


def error_from_exception(exc):
    """Build Lambda's error object from a handler exception, leaving out the bootstrap's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename == __file__:
        frames = frames[1:]
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__} object>"
    return make_error(type(exc).__name__, message, traceback.format_list(frames))


def log_error(error):
    """Write the error to the log the way Lambda's runtime does: [ERROR] Type: message, then the trace."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        for frame in error["stackTrace"]:
            lines.extend(frame.rstrip("\n").splitlines())
    sys.stdout.write("\n".join(lines) + "\n")


def load_handler(handler_name):
    """Import the handler's module (the init phase); return (handler, None) or (None, error)."""
    try:
        module_name, function_name = handler_name.rsplit(".", 1)
    except ValueError:
        return None, make_error("Runtime.MalformedHandlerName", f"Bad handler '{handler_name}': not enough values to unpack")
    module_name = module_name.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        return None, make_error(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name.split('.')[0]} as a handler module",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return None, make_error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}")
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").strip()}\n']
        return None, make_error("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {e}", trace)
    except Exception as e:
        return None, error_from_exception(e)
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, make_error(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return handler, None


def _json_default(obj):
    # Lambda's marshaller accepts Decimal (DynamoDB hands them out).
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def read_frame(stream):
    line = stream.readline(64 * 1024)
    if not line:
        return None, None
    header = json.loads(line)
    body = stream.read(header.get("length", 0))
    return header, body


def write_frame(stream, header, body=b""):
    header["length"] = len(body)
    stream.write(json.dumps(header).encode() + b"\n" + body)
    stream.flush()


def flush_logs():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass


def max_rss_kb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children)


def apply_limits(limits):
    """Lower this process's limits; the handler inherits them and cannot raise them again."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def invoke(handler, request, event_bytes):
    """Run the handler once; return (ok, payload bytes, error type)."""
    global _current_request_id
    _current_request_id = request["request_id"]
    try:
        event = json.loads(event_bytes)
        context = LambdaContext(request, os.environ)
        result = handler(event, context)
    except Exception as e:
        error = error_from_exception(e)
        log_error(error)
        return False, json.dumps(error).encode(), error["errorType"]
    try:
        payload = json.dumps(result, default=_json_default, allow_nan=False).encode()
    except Exception as e:  # TypeError, ValueError, RecursionError, OverflowError from Decimal('Infinity')…
        error = make_error("Runtime.MarshalError", f"Unable to marshal response: {error_from_exception(e)['errorMessage']}")
        log_error(error)
        return False, json.dumps(error).encode(), error["errorType"]
    if len(payload) > MAX_RESPONSE_BYTES:
        error = make_error(
            "Function.ResponseSizeTooLarge",
            f"Response payload size ({len(payload)} bytes) exceeded maximum allowed payload size "
            f"({MAX_RESPONSE_BYTES} bytes).",
        )
        log_error(error)
        return False, json.dumps(error).encode(), error["errorType"]
    return True, payload, ""


def main():
    apply_limits(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    setup_logging()

    header, environment = read_frame(requests)
    if header is None or header.get("type") != "configure":
        return 2
    os.environ.clear()
    os.environ.update(json.loads(environment))
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    # Lambda's order: the function's code, then its layers' python/lib/pythonX.Y/site-packages and python.
    opt = header.get("opt_root") or "/opt"
    site = f"{opt}/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    sys.path[0:0] = [task_root, site, f"{opt}/python"]
    os.chdir(task_root)
    handler, error = load_handler(os.environ["_HANDLER"])
    flush_logs()
    if error:
        log_error(error)
        flush_logs()
        write_frame(answers, {"type": "init", "ok": False, "error_type": error["errorType"]},
                    json.dumps(error).encode())
        return 1
    write_frame(answers, {"type": "init", "ok": True})

    while True:
        request, event_bytes = read_frame(requests)
        if request is None:
            return 0  # the worker closed the pipe: the environment is shutting down
        ok, payload, error_type = invoke(handler, request, event_bytes)
        flush_logs()
        write_frame(answers, {"type": "result", "ok": ok, "error_type": error_type, "max_rss_kb": max_rss_kb()},
                    payload)


if __name__ == "__main__":
    sys.exit(main())
