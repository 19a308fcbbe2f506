import base64
import hashlib

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models
from django.urls import reverse

from functions import envvars
from functions.codezip import inspect_zip

# Lambda's rules and bounds (CreateFunction in the Lambda API reference).
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MEMORY_MIN, MEMORY_MAX = 128, 10240
TIMEOUT_MIN, TIMEOUT_MAX = 1, 900
EPHEMERAL_MIN, EPHEMERAL_MAX = 512, 10240
# Lambda's default account concurrency quota: the most a function can reserve.
RESERVED_CONCURRENCY_MAX = 1000


def account_id(user):
    """Return the 12-digit account id that stands for `user` in ARNs."""
    return f"{user.pk:012d}"


class CodeArtifact(models.Model):
    """A validated code ZIP, stored once under its SHA-256 whoever uploads it."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.PositiveBigIntegerField()
    unzipped_size = models.PositiveBigIntegerField()
    files = models.JSONField(help_text="[[name, size], …] of the regular files, in archive order")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.sha256

    @property
    def storage_name(self):
        return self.storage_name_for(self.sha256)

    @staticmethod
    def storage_name_for(sha256):
        return f"code/{sha256[:2]}/{sha256}.zip"

    @property
    def sha256_base64(self):
        """Return the hash as Lambda's CodeSha256 shows it (base64 of the digest)."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()

    @classmethod
    def store(cls, upload, summary):
        """Store an already validated upload (a Django File) content-addressed; return its artifact."""
        digest = hashlib.sha256()
        upload.seek(0)
        for chunk in upload.chunks():
            digest.update(chunk)
        sha = digest.hexdigest()
        artifact = cls(sha256=sha, size=upload.size, unzipped_size=summary.unzipped_size, files=summary.files)
        if not default_storage.exists(artifact.storage_name):
            upload.seek(0)
            default_storage.save(artifact.storage_name, upload)
        artifact, _ = cls.objects.get_or_create(sha256=sha, defaults={
            "size": artifact.size, "unzipped_size": artifact.unzipped_size, "files": artifact.files})
        return artifact

    @classmethod
    def inspect(cls, upload):
        """Validate an uploaded file; return the ZipSummary or raise ZipRejected."""
        if hasattr(upload, "temporary_file_path"):
            with open(upload.temporary_file_path(), "rb") as fp:
                return inspect_zip(fp)
        upload.seek(0)
        return inspect_zip(upload.file)


class Function(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="functions")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=256, blank=True)
    runtime = models.CharField(max_length=32)
    handler = models.CharField(max_length=128)
    memory_size = models.PositiveIntegerField(default=128, help_text="MB")
    timeout = models.PositiveIntegerField(default=3, help_text="seconds")
    ephemeral_storage = models.PositiveIntegerField(default=512, help_text="MB of /tmp")
    # Off, the sandbox has only a loopback interface of its own. On, it shares the host's network,
    # filtered to the internet (invocations.runtime.egress).
    outbound_network = models.BooleanField(default=False)
    # None: no limit of its own (the workers bound it). 0: every invocation is throttled.
    reserved_concurrency = models.PositiveIntegerField(null=True, blank=True)
    # The environment variables, encrypted (functions.envvars); never the values in clear.
    environment_token = models.TextField(blank=True, default="")
    code = models.ForeignKey(CodeArtifact, on_delete=models.PROTECT, related_name="functions")
    created_at = models.DateTimeField(auto_now_add=True)
    last_modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Lambda: a name is unique within an account (here: an owner).
            models.UniqueConstraint(fields=["owner", "name"], name="function_name_unique_per_owner"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("functions:detail", args=[self.name])

    @property
    def arn(self):
        return f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(self.owner)}:function:{self.name}"

    @property
    def log_group_name(self):
        return f"/aws/lambda/{self.name}"

    @property
    def environment(self):
        """The environment variables, decrypted."""
        return envvars.decrypt(self.environment_token)

    def set_environment(self, variables):
        self.environment_token = envvars.encrypt(variables)
        self.save(update_fields=["environment_token", "last_modified"])

    def replace_code(self, artifact):
        self.code = artifact
        self.save(update_fields=["code", "last_modified"])

    def config_snapshot(self):
        """Return what an execution environment is built from; equal snapshots may share one."""
        return {
            "function_id": self.pk,
            "function_name": self.name,
            "version": "$LATEST",
            "runtime": self.runtime,
            "handler": self.handler,
            "memory_size": self.memory_size,
            "timeout": self.timeout,
            "ephemeral_storage": self.ephemeral_storage,
            "outbound_network": self.outbound_network,
            "code_sha256": self.code_id,
            "arn": self.arn,
            "log_group_name": self.log_group_name,
            "environment_token": self.environment_token,
        }


class TestEvent(models.Model):
    """A named event saved for invoking a function from the console."""

    __test__ = False  # not a pytest test class, despite its name

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="test_events")
    name = models.CharField(max_length=25)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="test_event_name_unique")]

    def __str__(self):
        return self.name
