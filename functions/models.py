import base64
import hashlib
import hmac
import random
import secrets

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
# Lambda's invocation payload limits: 6 MB synchronous, 1 MB asynchronous (since 2025; 256 KB before).
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024


def payload_too_large(size, asynchronous):
    """Return Lambda's RequestTooLargeException message for an event of `size` bytes, or None if it fits."""
    if asynchronous and size > MAX_ASYNC_PAYLOAD_BYTES:
        return f"{size} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD_BYTES} bytes)"
    if size > MAX_SYNC_PAYLOAD_BYTES:
        return f"Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
    return None


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
    class RecursiveLoop(models.TextChoices):
        # The values are the Lambda API's.
        TERMINATE = "Terminate", "Terminate: stop a recursive loop after 16 invocations"
        ALLOW = "Allow", "Allow: let this function's recursive loops run"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="functions")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=256, blank=True)
    runtime = models.CharField(max_length=32)
    handler = models.CharField(max_length=128)
    # The execution role's ARN, as the Lambda API requires one at CreateFunction; nothing here assumes it.
    # Empty for functions created in the console, which asks for none.
    role = models.CharField(max_length=2048, blank=True)
    memory_size = models.PositiveIntegerField(default=128, help_text="MB")
    timeout = models.PositiveIntegerField(default=3, help_text="seconds")
    ephemeral_storage = models.PositiveIntegerField(default=512, help_text="MB of /tmp")
    # Off, the sandbox has only a loopback interface of its own. On, it shares the host's network,
    # filtered to the internet (invocations.runtime.egress).
    outbound_network = models.BooleanField(default=False)
    # None: no limit of its own (the workers bound it). 0: every invocation is throttled.
    reserved_concurrency = models.PositiveIntegerField(null=True, blank=True)
    # Lambda's recursive loop detection: Terminate stops a loop of invocations after 16 of them
    # (invocations.asynchronous.send_to_destination); Allow lets this function's loops run on.
    recursive_loop = models.CharField(max_length=16, choices=RecursiveLoop.choices, default=RecursiveLoop.TERMINATE)
    # The environment variables, encrypted (functions.envvars); never the values in clear.
    environment_token = models.TextField(blank=True, default="")
    # The attached layer versions as invocations need them, [{"arn", "code_sha256"}] in order; a copy of
    # FunctionLayer's rows (which the layer pages query), kept so that invoking costs no extra query.
    layers = models.JSONField(default=list, blank=True)
    # The owner's buckets this function has an enabled notification from, [{"bucket": name, "directory":
    # "<id>-<name>"}] in name order: each is mounted read-only at /mnt/<name> in its sandboxes. Kept by
    # invocations.buckets whenever its notifications change, so that invoking costs no extra query.
    mounts = models.JSONField(default=list, blank=True)
    # Lambda's tags, {key: value}: set through the Lambda API (console.lambda_api.tags keeps Lambda's rules),
    # shown on the function page.
    tags = models.JSONField(default=dict, blank=True)
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
    def sorted_tags(self):
        """[(key, value)] in key order, for the function page (a template cannot read a key named "items")."""
        return sorted(self.tags.items())

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
            "layers": self.layers,
        }

    def set_layers(self, layer_versions):
        """Attach these layer versions, in this order (later ones win where their files overlap)."""
        FunctionLayer.objects.filter(function=self).delete()
        FunctionLayer.objects.bulk_create(
            FunctionLayer(function=self, layer_version=lv, position=i) for i, lv in enumerate(layer_versions)
        )
        self.layers = [{"arn": lv.arn, "code_sha256": lv.code_id} for lv in layer_versions]
        self.save(update_fields=["layers", "last_modified"])

    def publish(self, description=""):
        """Freeze $LATEST into a new numbered version; return (version, created).

        As in Lambda, publishing code and configuration that the latest version already has returns that
        version instead of a new one. Call inside a transaction: the function's row is locked so that two
        publishes cannot take the same number.
        """
        locked = Function.objects.select_for_update().get(pk=self.pk)
        snapshot = locked.config_snapshot()
        latest = self.versions.order_by("-number").first()
        if latest is not None and _comparable(latest.config) == _comparable(snapshot):
            return latest, False
        number = latest.number + 1 if latest else 1
        config = {**snapshot, "version": str(number), "arn": f"{self.arn}:{number}"}
        version = Version.objects.create(function=self, number=number, description=description,
                                         code_id=snapshot["code_sha256"], config=config)
        return version, True

    def resolve(self, qualifier=None):
        """Return the configuration snapshot to run for a qualifier: None or $LATEST, a version number, or an
        alias (which picks its additional version with its weight). Raise Version.DoesNotExist or
        Alias.DoesNotExist for an unknown one."""
        if qualifier in (None, "", LATEST):
            return self.config_snapshot()
        if qualifier.isdigit():
            return self.versions.get(number=int(qualifier)).config
        alias = self.aliases.select_related("version", "additional_version").get(name=qualifier)
        return {**alias.pick_config(), "arn": f"{self.arn}:{alias.name}"}


LATEST = "$LATEST"


def _comparable(config):
    """A snapshot as publish compares it: what runs, with the environment's values rather than its token
    (encrypting the same values twice gives two tokens)."""
    same = {k: v for k, v in config.items() if k not in ("version", "arn", "environment_token")}
    return {**same, "environment": envvars.decrypt(config.get("environment_token", ""))}


class Layer(models.Model):
    """A named library bundle of one owner; its versions are immutable."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="layers")
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # As in Lambda, a deleted version's number is never given again, even once every version is gone.
    last_version_number = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="layer_name_unique_per_owner")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("layers:layer", args=[self.name])

    @property
    def arn(self):
        return f"arn:aws:lambda:{settings.LAMBDA_REGION}:{account_id(self.owner)}:layer:{self.name}"


class LayerVersion(models.Model):
    layer = models.ForeignKey(Layer, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    description = models.CharField(max_length=256, blank=True)
    compatible_runtimes = models.JSONField(default=list)
    code = models.ForeignKey(CodeArtifact, on_delete=models.PROTECT, related_name="layer_versions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["layer__name", "-number"]
        constraints = [models.UniqueConstraint(fields=["layer", "number"], name="layer_version_number_unique")]

    def __str__(self):
        return f"{self.layer.name}:{self.number}"

    @property
    def arn(self):
        return f"{self.layer.arn}:{self.number}"


class FunctionLayer(models.Model):
    """A layer version attached to a function's $LATEST, at a position (0 first)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="function_layers")
    layer_version = models.ForeignKey(LayerVersion, on_delete=models.PROTECT)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]


class Version(models.Model):
    """An immutable, numbered copy of a function's code and configuration."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    description = models.CharField(max_length=256, blank=True)
    code = models.ForeignKey(CodeArtifact, on_delete=models.PROTECT, related_name="versions")
    config = models.JSONField(help_text="the snapshot this version runs with (Function.config_snapshot)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["function", "number"], name="version_number_unique")]

    def __str__(self):
        return str(self.number)


class Alias(models.Model):
    """A name for a version ($LATEST when `version` is empty), optionally sending a share of invocations
    (`additional_weight`, 0–1) to a second version: a canary."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=128)
    description = models.CharField(max_length=256, blank=True)
    version = models.ForeignKey(Version, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    additional_version = models.ForeignKey(Version, on_delete=models.PROTECT, null=True, blank=True,
                                           related_name="+")
    additional_weight = models.FloatField(default=0)
    # Where it pointed before its last move, for one-click rollback; None meant $LATEST.
    previous_version = models.ForeignKey(Version, on_delete=models.SET_NULL, null=True, blank=True,
                                         related_name="+")
    has_previous = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="alias_name_unique")]

    def __str__(self):
        return self.name

    def point_to(self, version, additional_version=None, additional_weight=0.0):
        """Move the alias (remembering where it pointed, for rollback) and set its routing."""
        if version != self.version:
            self.previous_version, self.has_previous = self.version, True
        self.version, self.additional_version, self.additional_weight = version, additional_version, additional_weight
        self.save()

    def roll_back(self):
        """Point the alias where it pointed before its last move, without a canary (again: forward)."""
        if self.has_previous:
            self.point_to(self.previous_version)

    def remove(self):
        """Delete the alias and, as in Lambda, what belongs to it: its HTTP endpoint, schedules, event source
        triggers and asynchronous settings (their past invocations stay). Return how many triggers went.
        Call inside a transaction."""
        triggers, _ = self.function.triggers.filter(qualifier=self.name).delete()
        self.function.event_invoke_configs.filter(qualifier=self.name).delete()
        self.delete()
        return triggers

    def pick_config(self):
        if self.additional_version is not None and random.random() < self.additional_weight:
            return self.additional_version.config
        return self.version.config if self.version is not None else self.function.config_snapshot()


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


# Lambda's asynchronous invocation bounds (PutFunctionEventInvokeConfig).
RETRY_ATTEMPTS_MAX = 2
EVENT_AGE_MIN, EVENT_AGE_MAX = 60, 6 * 3600


class EventInvokeConfig(models.Model):
    """What happens to a function's asynchronous events: how often a failure is retried, how old an event
    may grow, and where its outcome is sent. Lambda keeps one per qualifier: `$LATEST` (unqualified
    invocations), a version number or an alias name."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="event_invoke_configs")
    qualifier = models.CharField(max_length=128, default=LATEST)
    maximum_retry_attempts = models.PositiveSmallIntegerField(default=RETRY_ATTEMPTS_MAX)
    maximum_event_age_seconds = models.PositiveIntegerField(default=EVENT_AGE_MAX)
    # Destination ARNs: a function (a queue or topic once those exist). An empty on-failure destination
    # means the function's dead-letter inbox, so that no failed event is ever dropped unseen.
    on_success = models.CharField(max_length=256, blank=True)
    on_failure = models.CharField(max_length=256, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["qualifier"]
        constraints = [
            models.UniqueConstraint(fields=["function", "qualifier"], name="event_invoke_config_unique"),
        ]

    def __str__(self):
        return f"{self.function.name}:{self.qualifier}"

    def snapshot(self):
        """The settings an asynchronous invocation carries with it (Invocation.config["async"])."""
        return {
            "maximum_retry_attempts": self.maximum_retry_attempts,
            "maximum_event_age_seconds": self.maximum_event_age_seconds,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
        }


def event_invoke_config(function, qualifier=None):
    """Return the asynchronous settings for invocations of `function` through `qualifier`."""
    found = function.event_invoke_configs.filter(qualifier=qualifier or LATEST).first()
    return (found or EventInvokeConfig(function=function)).snapshot()


class Trigger(models.Model):
    """Something that invokes a function (or one of its aliases or versions) by itself: an HTTP endpoint, a
    schedule, a queue, a topic subscription, a bucket notification or a table stream (the Lambda API's event
    source mappings are the queue and table ones). The kind's settings are in `config`, validated by its
    form."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP endpoint"
        SCHEDULE = "schedule", "Schedule"
        QUEUE = "queue", "Queue"
        TOPIC = "topic", "Topic subscription"
        BUCKET = "bucket", "Bucket notification"
        TABLE = "table", "Table stream"

    # For sentences: "Saved the schedule."
    NOUNS = {Kind.HTTP: "HTTP endpoint", Kind.SCHEDULE: "schedule", Kind.QUEUE: "queue trigger",
             Kind.TOPIC: "topic subscription", Kind.BUCKET: "bucket notification", Kind.TABLE: "table stream trigger"}

    class Auth(models.TextChoices):
        NONE = "NONE", "None: anyone with the URL"
        KEY = "KEY", "Secret key in the x-api-key header"

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="triggers")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # "" invokes $LATEST unqualified; otherwise a version number or an alias name.
    qualifier = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    # http: {"auth_type", "cors": {allow_origins, allow_methods, allow_headers, expose_headers, max_age,
    # allow_credentials}}; schedule: {"expression", "timezone"}; the event sources' kinds keep what their
    # forms validate, with "summary": the settings in a line for the function page.
    config = models.JSONField(default=dict)
    # HTTP endpoints: the id in their stable URL, and for KEY auth the SHA-256 of the secret key (shown
    # once when made).
    url_id = models.CharField(max_length=32, unique=True, null=True, blank=True)
    key_sha256 = models.CharField(max_length=64, blank=True)
    # Schedules: the next tick to fire; None while disabled.
    next_fire_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A function URL's LastModifiedTime (the Lambda API's UpdateFunctionUrlConfig and the console's form).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "created_at"]
        constraints = [
            # Lambda: one function URL per function or alias.
            models.UniqueConstraint(fields=["function", "qualifier"], condition=models.Q(kind="http"),
                                    name="one_http_endpoint_per_qualifier"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.function.name}"

    @property
    def noun(self):
        return self.NOUNS[self.kind]

    @property
    def target(self):
        return f"{self.function.name}:{self.qualifier}" if self.qualifier else self.function.name

    @property
    def rule_arn(self):
        """The EventBridge rule a schedule stands for (its events name it in `resources`)."""
        return (f"arn:aws:events:{settings.LAMBDA_REGION}:{account_id(self.function.owner)}:"
                f"rule/{self.function.name[:40]}-schedule-{self.pk}")  # EventBridge rule names: ≤ 64

    def check_key(self, key):
        """Whether `key` is this endpoint's secret key, compared in constant time."""
        given = hashlib.sha256(key.encode()).hexdigest()
        return bool(self.key_sha256) and hmac.compare_digest(given, self.key_sha256)

    def new_key(self):
        """Give the endpoint a new secret key; return it (only its hash is kept)."""
        key = secrets.token_urlsafe(32)
        self.key_sha256 = hashlib.sha256(key.encode()).hexdigest()
        return key
