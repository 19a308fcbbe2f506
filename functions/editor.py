"""The console's inline code editor: read a function's files from its stored ZIP, and write a new ZIP
with one file changed. Like Lambda's console, only for packages of at most 3 MB."""

import io
import zipfile

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from functions.codezip import MAX_UNZIPPED_BYTES, ZipRejected, inspect_zip
from functions.models import CodeArtifact

MAX_EDITABLE_BYTES = 3 * 1024 * 1024


def editable(artifact):
    return artifact.size <= MAX_EDITABLE_BYTES


def read_text(artifact, path):
    """Return the text of the file `path` in the artifact, or None if it is not UTF-8 text."""
    with default_storage.open(artifact.storage_name) as f, zipfile.ZipFile(f) as zf:
        data = zf.read(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def replace_file(artifact, path, text, layer_bytes=0):
    """Return a new stored artifact: the old one's entries, in order and with their modes, `path` rewritten.

    The new ZIP goes through the same validation as an upload; ZipRejected names what is wrong.
    """
    out = io.BytesIO()
    with default_storage.open(artifact.storage_name) as f, zipfile.ZipFile(f) as old, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = text.encode("utf-8") if info.filename == path else old.read(info)
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.external_attr = info.external_attr
            entry.compress_type = zipfile.ZIP_DEFLATED
            new.writestr(entry, data)
    if out.tell() > MAX_EDITABLE_BYTES:
        raise ZipRejected(f"The edited package is larger than {MAX_EDITABLE_BYTES} bytes, the inline editor's limit.")
    out.seek(0)
    summary = inspect_zip(out)
    if summary.unzipped_size + layer_bytes > MAX_UNZIPPED_BYTES:
        raise ZipRejected(f"The function and its layers would unzip to {summary.unzipped_size + layer_bytes} bytes; "
                          f"Lambda allows {MAX_UNZIPPED_BYTES} together.")
    return CodeArtifact.store(ContentFile(out.getvalue(), name="code.zip"), summary)
