"""What changed between two versions of a function: files (with a text diff) and configuration."""

import difflib
import zipfile

from django.core.files.storage import default_storage

from functions import envvars

# Text diffs of files larger than this are not shown (the file is only said to have changed).
MAX_DIFF_BYTES = 256 * 1024
# Configuration entries that always differ between versions, or are shown elsewhere.
NOT_COMPARED = {"version", "arn", "code_sha256", "environment_token", "function_id"}


def _entries(artifact):
    """Return {name: (CRC, size)} of the artifact's files: enough to tell which changed, without reading them."""
    with default_storage.open(artifact.storage_name) as f, zipfile.ZipFile(f) as zf:
        return {i.filename: (i.CRC, i.file_size) for i in zf.infolist() if not i.is_dir()}


def _read_small(artifact, name):
    """Return the file's text if it is small UTF-8 text, else None (without reading a large one)."""
    with default_storage.open(artifact.storage_name) as f, zipfile.ZipFile(f) as zf:
        info = zf.getinfo(name)
        if info.file_size > MAX_DIFF_BYTES:
            return None
        return _text(zf.read(info))


def _text(data):
    if len(data) > MAX_DIFF_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def diff_versions(old, new):
    """Compare two (label, code artifact, config snapshot) triples; return what changed, for the page.

    Environment variables are compared by value but shown by key only: the values are secrets.
    """
    (old_label, old_code, old_config), (new_label, new_code, new_config) = old, new
    result = {"added": [], "removed": [], "changed": [], "config": [], "environment": []}
    if old_code.pk != new_code.pk:
        before, after = _entries(old_code), _entries(new_code)
        result["added"] = sorted(set(after) - set(before))
        result["removed"] = sorted(set(before) - set(after))
        for name in sorted(set(before) & set(after)):
            if before[name] == after[name]:
                continue
            a, b = _read_small(old_code, name), _read_small(new_code, name)
            lines = None
            if a is not None and b is not None:
                lines = "".join(difflib.unified_diff(
                    a.splitlines(keepends=True), b.splitlines(keepends=True),
                    fromfile=f"{old_label}/{name}", tofile=f"{new_label}/{name}",
                ))
            result["changed"].append((name, lines))
    for key in sorted((set(old_config) | set(new_config)) - NOT_COMPARED):
        if old_config.get(key) != new_config.get(key):
            result["config"].append((key, old_config.get(key), new_config.get(key)))
    env_before = envvars.decrypt(old_config.get("environment_token", ""))
    env_after = envvars.decrypt(new_config.get("environment_token", ""))
    for key in sorted(set(env_before) | set(env_after)):
        if key not in env_before:
            result["environment"].append((key, "added"))
        elif key not in env_after:
            result["environment"].append((key, "removed"))
        elif env_before[key] != env_after[key]:
            result["environment"].append((key, "changed"))
    result["same"] = not any(result[k] for k in ("added", "removed", "changed", "config", "environment"))
    return result
