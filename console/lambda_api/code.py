"""Short-lived links from which an API caller downloads a ZIP (GetFunction's Code.Location, GetLayerVersion's
Content.Location): Lambda hands out presigned S3 links valid for 10 minutes; these are signed links to the
console, and as there, the link itself is the credential."""

from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.urls import reverse
from django.views.decorators.http import require_GET

from functions.models import CodeArtifact

LOCATION_SECONDS = 10 * 60
LOCATION_SALT = "console.lambda_api.code-location"


def code_location(request, artifact):
    """A URL from which the holder can download the artifact's ZIP for LOCATION_SECONDS, without signing
    in: like Lambda's presigned S3 link, the URL is the credential."""
    token = signing.dumps(artifact.sha256, salt=LOCATION_SALT)
    return request.build_absolute_uri(reverse("lambda_api_code", args=[token]))


@login_not_required
@require_GET
def download_code(request, token):
    try:
        sha256 = signing.loads(token, salt=LOCATION_SALT, max_age=LOCATION_SECONDS)
    except signing.BadSignature:  # expired ones too
        raise Http404("This link is not valid or has expired.") from None
    name = CodeArtifact.storage_name_for(sha256)
    if not default_storage.exists(name):
        raise Http404("This code is gone.")
    return FileResponse(default_storage.open(name), as_attachment=True, filename=f"{sha256}.zip",
                        content_type="application/zip")


download_code.signed_link = True  # for the access tests: public, but only with a valid token
