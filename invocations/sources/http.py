"""Function URL events: a Django request in, payload format 2.0 out; the function's result back to HTTP.

Pure mapping, no database and no invoking. The shapes follow AWS's documentation:
- request/response payloads: https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
  ("Request payload format", "Response payload format", "Cookies")
- format 2.0 rules (repeated headers and query keys comma-joined, cookies in their own field):
  https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
- CORS: https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html#urls-cors

Request headers under gunicorn: gunicorn (checked in .venv/.../gunicorn/http/wsgi.py `create()` and
with a real gunicorn 27 server) joins a repeated request header into one environ value with "," and
no space ("Header2: value1" + "Header2: value2" -> HTTP_HEADER2="value1,value2"), which is exactly
format 2.0's rule, so environ values are used as they are. Two Cookie headers become "a=1,b=2" the
same way (browsers send one Cookie header, so this only matters for odd clients). Header names that
contain "_" are dropped by gunicorn (header_map="drop"), so turning "_" back into "-" is unambiguous.
"""

import base64
import binascii
import calendar
import json
import re
from datetime import timezone as dt_timezone
from http.cookies import Morsel
from urllib.parse import parse_qsl

from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

# Messages of the error answers the view sends. AWS's own bodies are {"message": ...}:
# - 502: a function error or a response in the wrong format. API Gateway HTTP APIs answer
#   {"message":"Internal Server Error"}
#   (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html,
#   https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html).
# - 429: function URLs answer HTTP 429 when throttled (urls-configuration.html#urls-throttling); the body
#   is not documented there, so we use API Gateway's throttling wording "Too Many Requests"
#   (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html).
# - 504: API Gateway's INTEGRATION_TIMEOUT answer, "Endpoint request timed out"
#   (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
FUNCTION_ERROR = (502, "Internal Server Error")
THROTTLED = (429, "Too Many Requests")
TIMED_OUT = (504, "Endpoint request timed out")

# Request bodies of these types reach the function as text; everything else (and a body with no
# content type) is base64-encoded. AWS only says "If the content type of the request is binary, the
# body is base64-encoded" without listing types; this list is the common textual types, and we still
# fall back to base64 when the bytes are not valid UTF-8, because JSON text cannot carry raw bytes.
TEXT_TYPES = {
    "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded",
}

# Hop-by-hop headers may not be passed to WSGI (wsgiref asserts on them) and Content-Length is ours to
# compute, so these are never copied from the function's "headers".
SKIPPED_RESPONSE_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}

# What a server may write in a response header (RFC 9110 5.1 token names; no control characters but tab in
# values). Django itself only refuses CR and LF in values, so anything else the function returns that breaks
# these rules would make gunicorn fail the whole response with a bare 500 instead of the function URL's 502.
HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
HEADER_VALUE_BAD_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def build_event(request, *, raw_path, api_id, request_id, account_id="anonymous", now=None, hidden_cookies=()):
    """The payload format 2.0 event a function URL sends for `request`, without the cookies named in
    `hidden_cookies`."""
    meta = request.META
    now = (now or timezone.now()).astimezone(dt_timezone.utc)
    raw_query = meta.get("QUERY_STRING", "")
    host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME", "")

    headers = {}
    for key, value in meta.items():
        if key.startswith("HTTP_") and key != "HTTP_COOKIE":  # 2.0 moves cookies to their own field
            headers[key[5:].replace("_", "-").lower()] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:  # WSGI keeps these without HTTP_
            headers[key.replace("_", "-").lower()] = value

    event = {"version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query}
    # Split on ";" and strip rather than on "; " exactly, so "a=1;b=2" splits too.
    cookies = [c.strip() for c in meta.get("HTTP_COOKIE", "").split(";")
               if c.strip() and c.split("=", 1)[0].strip() not in hidden_cookies]
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if raw_query:
        params = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": _hostname(host).split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": meta.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "sourceIp": meta.get("REMOTE_ADDR", ""),
            "userAgent": meta.get("HTTP_USER_AGENT", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        # "12/Mar/2020:19:03:58 +0000"; month names spelled out here so the locale cannot change them.
        "time": f"{now:%d}/{MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000",
        "timeEpoch": calendar.timegm(now.utctimetuple()) * 1000 + now.microsecond // 1000,
    }
    body = request.body
    if body:
        text = _as_text(body, meta.get("CONTENT_TYPE", ""))
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def response_from_result(payload_text):
    """The HTTP answer for a successful invocation's result, as a function URL maps it."""
    try:
        result = json.loads(payload_text)
    except (TypeError, ValueError):
        return error_response(*FUNCTION_ERROR)
    if not (isinstance(result, dict) and "statusCode" in result):
        # Docs: "If your function returns valid JSON and doesn't return a statusCode, Lambda assumes the
        # following: statusCode is 200. content-type is application/json. body is the function response.
        # isBase64Encoded is false." Their string example "Hello, world!" reaches the client with its
        # quotes (content-length: 15), so the body is the JSON text itself, unchanged.
        text = payload_text.decode() if isinstance(payload_text, bytes) else payload_text
        return HttpResponse(text, status=200, content_type="application/json")
    try:
        return _custom_response(result)
    except (TypeError, ValueError, binascii.Error):
        # A response in the wrong format is a 502 (services-apigateway-errors.html).
        return error_response(*FUNCTION_ERROR)


def _custom_response(result):
    status = _status_code(result["statusCode"])
    headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    if not isinstance(headers, dict) or not isinstance(cookies, list):
        raise ValueError("headers must be an object and cookies a list")
    body = result.get("body")
    if body is None:
        body = ""
    elif not isinstance(body, str):
        body = json.dumps(body)  # AWS's own "interpreted response" examples show an object body sent as JSON
    if result.get("isBase64Encoded") is True:
        body = base64.b64decode(body, validate=True)

    response = HttpResponse(body, status=status)
    # The docs only state the application/json default for results without statusCode; a custom
    # response without a content type gets the same default rather than Django's text/html.
    response["Content-Type"] = "application/json"
    for name, value in headers.items():
        if name.lower() not in SKIPPED_RESPONSE_HEADERS:
            # Header values in the payload are strings; other JSON values are sent as their JSON text.
            value = value if isinstance(value, str) else json.dumps(value)
            if not HEADER_NAME_RE.fullmatch(name) or HEADER_VALUE_BAD_RE.search(value):
                raise ValueError(f"invalid response header {name!r}")
            response[name] = value
    for i, cookie in enumerate(cookies):
        if HEADER_VALUE_BAD_RE.search(str(cookie)):
            raise ValueError("invalid cookie")
        # Docs ("Cookies"): Lambda adds each cookie as its own set-cookie header. Django writes one
        # Set-Cookie line per entry of response.cookies, so each raw string gets a morsel of its own.
        morsel = _RawCookie(str(cookie))
        key = morsel.key if morsel.key not in response.cookies else f"{morsel.key}#{i}"
        response.cookies[key] = morsel
    return response


def error_response(status, message):
    """AWS-style JSON error answer: {"message": message}."""
    return HttpResponse(json.dumps({"message": message}), status=status, content_type="application/json")


def preflight_response(request, cors):
    """The answer to a CORS preflight when the URL has a CORS configuration, else None.

    A preflight is an OPTIONS request with Origin and Access-Control-Request-Method (the same test API
    Gateway HTTP APIs use, http-api-cors.html). Other requests, and any request when CORS is not
    configured, go on to the function.
    """
    meta = request.META
    origin = meta.get("HTTP_ORIGIN")
    if not cors or request.method != "OPTIONS" or not origin or not meta.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return None
    allow_origin = _allowed_origin(origin, cors)
    if allow_origin is None:
        # What AWS answers a preflight from an origin it does not allow is not documented: refuse
        # plainly, with no CORS headers, so the browser blocks the request.
        return error_response(403, "Forbidden")
    credentials = bool(cors.get("allow_credentials"))
    response = HttpResponse(status=200)
    del response["Content-Type"]
    _set_origin_headers(response, allow_origin, credentials)
    methods = _list_value(cors.get("allow_methods"), meta.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"), credentials)
    headers = _list_value(cors.get("allow_headers"), meta.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"), credentials)
    if methods:
        response["Access-Control-Allow-Methods"] = methods
    if headers:
        response["Access-Control-Allow-Headers"] = headers
    if cors.get("max_age"):  # AWS's default is 0: no Max-Age, the browser does not cache the preflight
        response["Access-Control-Max-Age"] = str(int(cors["max_age"]))
    return response


def apply_cors(request, response, cors):
    """Add the configured CORS headers to a normal answer; they override the function's own.

    Docs: "Lambda automatically adds the CORS headers to all responses through the function URL ...
    If there are conflicting headers, the configured CORS headers on the function URL take precedence."
    Who may read the answer is the configuration's decision, so the function's Allow-Origin and
    Allow-Credentials are dropped even when the origin is not allowed (never echo a disallowed origin).
    """
    if not cors:
        return response
    origin = request.META.get("HTTP_ORIGIN")
    for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"):
        if name in response:
            del response[name]
    allow_origin = _allowed_origin(origin, cors) if origin else None
    if allow_origin is not None:
        _set_origin_headers(response, allow_origin, bool(cors.get("allow_credentials")))
        if cors.get("expose_headers"):
            response["Access-Control-Expose-Headers"] = ",".join(cors["expose_headers"])
    elif origin:
        patch_vary_headers(response, ["Origin"])  # another origin would get CORS headers; caches must know
    return response


class _RawCookie(Morsel):
    """A Set-Cookie value written exactly as the function returned it.

    http.cookies would re-quote or reject common values (e.g. "Expires=21 Oct 2021 07:48 GMT"), so
    only the name and value are parsed (Django's test client reads them); the line is the raw string.
    """

    def __init__(self, raw):
        super().__init__()
        name, _, rest = raw.partition("=")
        value = rest.split(";", 1)[0].strip()
        self._key, self._value, self._coded_value = name.strip(), value, value
        self.raw = raw

    def OutputString(self, attrs=None):
        return self.raw

    def __reduce__(self):  # pickling (e.g. the cache middleware) must keep the raw line
        return (_RawCookie, (self.raw,))


def _status_code(value):
    # JSON numbers like 201.0 and strings like "201" are accepted as the integer they spell.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or not 100 <= value <= 599:
        raise ValueError(f"invalid statusCode {value!r}")
    return value


def _as_text(body, content_type):
    """The body as a string when its content type is textual and it is UTF-8, else None (base64)."""
    mime = content_type.split(";", 1)[0].strip().lower()
    textual = (
        mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith("+json") or mime.endswith("+xml")
    )
    if not textual:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hostname(host):
    """The host without its port ("[::1]:8000" -> "[::1]", "a.b:8000" -> "a.b")."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


def _allowed_origin(origin, cors):
    """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed.

    A listed origin is echoed. "*" answers "*", except with credentials: browsers refuse "*" on a
    credentialed request (Fetch standard), so the request's origin is echoed instead.
    """
    allowed = cors.get("allow_origins") or []
    if any(o != "*" and o.rstrip("/").lower() == origin.lower() for o in allowed):
        return origin
    if "*" in allowed:
        return origin if cors.get("allow_credentials") else "*"
    return None


def _set_origin_headers(response, allow_origin, credentials):
    response["Access-Control-Allow-Origin"] = allow_origin
    if allow_origin != "*":
        patch_vary_headers(response, ["Origin"])
    if credentials:
        response["Access-Control-Allow-Credentials"] = "true"


def _list_value(configured, requested, credentials):
    """Allow-Methods / Allow-Headers value. "*" is literal on credentialed requests, so echo instead."""
    configured = configured or []
    if "*" in configured and credentials:
        return requested or ""
    return ",".join(configured)
