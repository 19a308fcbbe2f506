"""SigV4 verification of Lambda API requests, with botocore's own signer.

The signature is recomputed over the request as the client signed it: the path still percent-encoded
(gunicorn's RAW_URI; Django's request.path is decoded), the raw query string, only the headers named in
SignedHeaders (proxies and servers add others), the exact body bytes, and the timestamp from X-Amz-Date.
botocore signs with X-Amz-Content-SHA256 as the payload hash when that header is sent, so the body is then
checked against it separately. Errors carry the names AWS gives them.
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


def verify(request):
    """Return the active AccessKey that signed `request`; raise ApiError (403) otherwise."""
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
    headers = {name.lower(): value for name, value in request.headers.items()}
    if "host" not in signed or any(name not in headers for name in signed):
        raise _forbidden("InvalidSignatureException", MISMATCH)
    query = request.META.get("QUERY_STRING", "")
    unsigned = AWSRequest(method=request.method,
                          url=f"http://{headers['host']}{raw_path(request)}" + (f"?{query}" if query else ""),
                          headers={name: headers[name] for name in signed}, data=request.body)
    unsigned.context["timestamp"] = amz_date  # what the client's add_auth() used
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret), SERVICE, match["region"])
    expected = signer.signature(signer.string_to_sign(unsigned, signer.canonical_request(unsigned)), unsigned)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _forbidden("InvalidSignatureException", MISMATCH)
    content_hash = headers.get("x-amz-content-sha256")
    if content_hash not in (None, "UNSIGNED-PAYLOAD") and not hmac.compare_digest(
            hashlib.sha256(request.body).hexdigest(), content_hash):
        raise ApiError(400, "InvalidSignatureException",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    key.touch()
    return key
