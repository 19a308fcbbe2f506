"""The response shapes of botocore's `lambda` service model, built from our models."""

import hashlib

from functions import envvars
from functions.models import LATEST, CodeArtifact


def timestamp(moment):
    """Lambda's timestamp format: "2026-11-26T15:44:12.123+0000"."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def revision_id(*parts):
    """A RevisionId that changes whenever what it is computed from changes (uuid-shaped, like AWS's)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def default_role(function):
    """The Role shown for a function created in the console, which asks for none."""
    return f"arn:aws:iam::{function.arn.split(':')[4]}:role/lambda-execution"


def function_configuration(function, version=None):
    """FunctionConfiguration of $LATEST, or of a published Version (its frozen snapshot)."""
    config = version.config if version is not None else function.config_snapshot()
    code = version.code if version is not None else function.code
    environment = envvars.decrypt(config.get("environment_token", ""))
    layer_sizes = dict(CodeArtifact.objects.filter(sha256__in=[l["code_sha256"] for l in config["layers"]])
                       .values_list("sha256", "size"))
    modified = version.created_at if version is not None else function.last_modified
    shape = {
        "FunctionName": function.name,
        "FunctionArn": config["arn"] if version is not None else function.arn,
        "Runtime": config["runtime"],
        "Role": function.role or default_role(function),
        "Handler": config["handler"],
        "CodeSize": code.size,
        "Description": version.description if version is not None else function.description,
        "Timeout": config["timeout"],
        "MemorySize": config["memory_size"],
        "LastModified": timestamp(modified),
        "CodeSha256": code.sha256_base64,
        "Version": config["version"] if version is not None else LATEST,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision_id(function.pk, config["version"], modified.isoformat()),
        "Layers": [{"Arn": l["arn"], "CodeSize": layer_sizes.get(l["code_sha256"], 0)} for l in config["layers"]],
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": config["ephemeral_storage"]},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": config["log_group_name"]},
    }
    if environment:
        shape["Environment"] = {"Variables": environment}
    return shape
