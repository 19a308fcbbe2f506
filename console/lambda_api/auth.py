"""SigV4 verification of Lambda API requests, with botocore's own signer.

The signature is recomputed over the request as the client signed it: the path still percent-encoded
(gunicorn's RAW_URI; Django's request.path is decoded), the raw query string, only the headers named in
SignedHeaders (proxies and servers add others), the exact body bytes, and the timestamp from X-Amz-Date.
botocore signs with X-Amz-Content-SHA256 as the payload hash when that header is sent, so the body is then
checked against it separately (UNSIGNED-PAYLOAD, which only S3 accepts, is refused). Every X-Amz-*
header must be signed, as AWS requires: Invoke obeys X-Amz-Invocation-Type, X-Amz-Log-Type and
X-Amz-Client-Context, so an eavesdropper must not be able to add one to a captured request.

Two steps, so that an unsigned caller cannot make the server read a 70 MB body: `identify` checks the
header, scope, date and key before the body is read; `verify` checks the signature over it.
Errors carry the names AWS gives them.
"""

import datetime
import hashlib
import hmac
import re
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.conf import settings
from django.utils import timezone

from console.lambda_api.errors import ApiError
from console.models import AccessKey

SERVICE = "lambda"
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
# AWS refuses a request signed more than 5 minutes before or after its own clock.
MAX_SKEW = datetime.timedelta(minutes=5)
MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")


def _forbidden(error_type, message):
    return ApiError(403, error_type, message)


def raw_path(request):
    """The path as the client sent it, still percent-encoded."""
    raw = request.META.get("RAW_URI")  # gunicorn
    if raw:
        path = raw.split("?", 1)[0]
        if path.startswith(("http://", "https://")):  # an absolute-form request line
            path = "/" + path.split("/", 3)[-1]
        return path
    # Other servers give only the decoded path: encode it as botocore encodes URI labels.
    return quote(request.path, safe="/-_.~")


def identify(request):
    """Return (the parsed Authorization header, the active AccessKey it names) if the header is within the
    time and scope AWS allows; raise ApiError (403) otherwise. Reads no body."""
    header = request.headers.get("Authorization", "")
    match = AUTHORIZATION.match(header.strip())
    if not header:
        raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
    if not match:
        raise _forbidden("IncompleteSignatureException",
                         "The Authorization header is not a valid AWS4-HMAC-SHA256 signature: "
                         "expected Credential=…, SignedHeaders=… and Signature=….")
    if match["service"] != SERVICE:
        raise _forbidden("InvalidSignatureException",
                         f"Credential should be scoped to correct service: '{SERVICE}'.")
    if match["region"] != settings.LAMBDA_REGION:
        raise _forbidden("InvalidSignatureException",
                         f"Credential should be scoped to a valid region, not '{match['region']}'. "
                         f"This server's region is '{settings.LAMBDA_REGION}'.")
    amz_date = request.headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise _forbidden("IncompleteSignatureException",
                         "Authorization header requires an X-Amz-Date header of the form YYYYMMDDTHHMMSSZ.") from None
    if not amz_date.startswith(match["date"]):
        raise _forbidden("InvalidSignatureException",
                         f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                         f"HTTP: '{match['date']}' != '{amz_date[:8]}'")
    now = timezone.now()
    if abs(now - signed_at) > MAX_SKEW:
        raise _forbidden("InvalidSignatureException",
                         f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW):%Y%m%dT%H%M%SZ} "
                         f"({now:%Y%m%dT%H%M%SZ} - 5 min.)" if signed_at < now else
                         f"Signature not yet current: {amz_date} is still later than "
                         f"{(now + MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} + 5 min.)")
    key = (AccessKey.objects.select_related("user")
           .filter(access_key_id=match["key"], is_active=True, user__is_active=True).first())
    if key is None:
        raise _forbidden("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = match["headers"].split(";")
    headers = {name.lower() for name in request.headers}
    if "host" not in signed or any(name not in headers for name in signed):
        raise _forbidden("InvalidSignatureException", MISMATCH)
    unsigned = sorted(name for name in headers if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        raise _forbidden("InvalidSignatureException",
                         f"The request carries headers it did not sign: {', '.join(unsigned)}. Every X-Amz-* "
                         f"header must be in SignedHeaders.")
    if request.headers.get("X-Amz-Content-SHA256") == "UNSIGNED-PAYLOAD":
        raise _forbidden("InvalidSignatureException", "UNSIGNED-PAYLOAD is not accepted: sign the body.")
    return match, key


def verify(request, match, key):
    """Return `key` if it signed `request`, body included; raise ApiError (403) otherwise."""
    signed = match["headers"].split(";")
    headers = {name.lower(): value for name, value in request.headers.items()}
    query = request.META.get("QUERY_STRING", "")
    as_signed = AWSRequest(method=request.method,
                           url=f"http://{headers['host']}{raw_path(request)}" + (f"?{query}" if query else ""),
                           headers={name: headers[name] for name in signed}, data=request.body)
    as_signed.context["timestamp"] = headers["x-amz-date"]  # what the client's add_auth() used
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret), SERVICE, match["region"])
    expected = signer.signature(signer.string_to_sign(as_signed, signer.canonical_request(as_signed)), as_signed)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _forbidden("InvalidSignatureException", MISMATCH)
    content_hash = headers.get("x-amz-content-sha256")
    if content_hash is not None and not hmac.compare_digest(
            hashlib.sha256(request.body).hexdigest().encode(), content_hash.encode()):
        raise ApiError(400, "InvalidSignatureException",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    key.touch()
    return key
