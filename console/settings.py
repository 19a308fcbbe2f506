"""Settings for the console, the workers and the tests: one file, driven by the environment.

Every variable has a default that runs on a fresh machine (SQLite and a Redis on localhost). The README
lists them all; keep that list in step with this file.
"""

import base64
import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name, default):
    value = os.environ.get(name, default)
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name, default):
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envints(name, default):
    """A comma-separated list of whole numbers, none negative."""
    value = os.environ.get(name, default)
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 0:
        raise ImproperlyConfigured(f"{name} must be a comma-separated list of whole seconds, not {value!r}")
    return numbers


def envdecimal(name, default):
    value = os.environ.get(name, default)
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, not {value!r}") from None


def database_from_url(url):
    """Turn sqlite:///path or postgres://user:password@host:port/name into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": parts.path,
            # Web threads and worker processes write to the same file: WAL lets readers go on while
            # one writes, IMMEDIATE takes the write lock up front instead of failing half-way.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Opening the file and running the PRAGMAs costs ~2 ms: keep connections across requests and jobs.
            "CONN_MAX_AGE": None,
            "TEST": {"NAME": os.environ.get("TEST_DATABASE_PATH", str(DATA_DIR / "test-db.sqlite3"))},
        }
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": parts.port or "",
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(f"DATABASE_URL must start with sqlite:// or postgres://, not {url!r}")


# Everything the platform writes at run time (database, code artifacts, the workers' code cache) lives
# here unless a more specific variable says otherwise.
DATA_DIR = Path(os.environ.get("LAMBDA_DATA_DIR", BASE_DIR / ".run"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _generated_once(name, make):
    """Return the text in the data directory's file `name`, writing make() there first if it is missing.

    Written aside and linked into place, so that processes starting together all read the same, whole key.
    """
    path = DATA_DIR / name
    if not path.exists():
        tmp = DATA_DIR / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


# Use SECRET_KEY, else a key generated once into the data directory (never committed).
SECRET_KEY = os.environ.get("SECRET_KEY") or _generated_once("secret_key", lambda: secrets.token_urlsafe(50))
# Fernet keys for functions' environment variables at rest, comma-separated: the first encrypts, all
# decrypt (rotation: put a new key first, run `manage.py rotate_environment_keys`, then drop the old one).
# Without the variable, one key generated once into the data directory.
ENVIRONMENT_KEYS = [k for k in os.environ.get("ENVIRONMENT_KEYS", "").split(",") if k.strip()] or [
    _generated_once("environment_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
]
DEBUG = envbool("DEBUG", "false")
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "console",
    "functions",
    "invocations",
    # Event sources with resources of their own (invocations.sources says how they plug in).
    "invocations.queues",
    "invocations.topics",
    "invocations.buckets",
    "invocations.tables",
    # Per-minute rollups of invocations, the metrics and cost pages.
    "invocations.metrics",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_rq",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF: it must see an oversized upload first, and answer 413 without reading the body.
    "console.middleware.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs sign-in; public views opt out with @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "console.wsgi.application"

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"))}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "functions:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one before collectstatic
STORAGES = {
    # Code artifacts: content-addressed ZIPs. Any Django storage works (django-storages for S3).
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.environ.get("ARTIFACT_STORAGE_DIR", str(DATA_DIR / "artifacts"))},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Uploads: Lambda's 50 MB limit on a directly uploaded ZIP, enforced while the body streams in.
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "console.middleware.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None
# A sync event may be 6 MB (Lambda's limit); the invoke form posts it as a field.
DATA_UPLOAD_MAX_MEMORY_SIZE = 7 * 1024 * 1024

SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "false")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Redis carries jobs and wake-ups; the database holds every record.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The queue invocations go through; separate names let several consoles or test runs share one Redis.
INVOCATION_QUEUE = os.environ.get("INVOCATION_QUEUE", "invocations")
RQ_QUEUES = {INVOCATION_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 960}}
RQ = {"WORKER_CLASS": "invocations.worker.LambdaWorker"}

# Lambda's identity for ARNs and the region the functions see.
LAMBDA_REGION = os.environ.get("LAMBDA_REGION", "us-east-1")

# Prices in US dollars, Lambda's x86 defaults.
PRICE_PER_REQUEST = envdecimal("PRICE_PER_REQUEST", "0.0000002")
PRICE_PER_GB_SECOND = envdecimal("PRICE_PER_GB_SECOND", "0.0000166667")
# Since August 2025 Lambda bills the init phase of on-demand functions too.
BILL_INIT_DURATION = envbool("BILL_INIT_DURATION", "true")

# The sandbox: the interpreter must be readable by an unprivileged uid (not a pyenv under /root).
SANDBOX_PYTHON = os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3")
# Each execution environment runs as its own uid from this range when the worker runs as root.
SANDBOX_UID_MIN = envint("SANDBOX_UID_MIN", 61000)
SANDBOX_UID_MAX = envint("SANDBOX_UID_MAX", 61999)
# Locks that hand each uid to one environment at a time; shared by every worker on the host.
SANDBOX_UID_LOCK_DIR = Path(os.environ.get("SANDBOX_UID_LOCK_DIR", "/run/lambda-sandbox-uids"))
# Where workers unpack code artifacts (read-only for the sandbox; every parent must be world-searchable).
CODE_CACHE_DIR = Path(os.environ.get("CODE_CACHE_DIR", DATA_DIR / "code-cache"))
# Log bytes kept per invocation; the rest is dropped with a marker.
LOG_MAX_BYTES = envint("LOG_MAX_BYTES", 256 * 1024)
# Days an ended invocation's record (event, result, log) is kept before the event-source runner purges it
# (invocations.retention); 0 keeps them for ever. CloudWatch Logs keeps logs for ever by default, but here
# they fill the console's own database, which needs a bound. The metrics and cost rollups are kept.
INVOCATION_RETENTION_DAYS = envint("INVOCATION_RETENTION_DAYS", 30)
if INVOCATION_RETENTION_DAYS < 0:
    # A negative age would put the cutoff in the future and purge every ended invocation.
    raise ImproperlyConfigured(f"INVOCATION_RETENTION_DAYS must be 0 or more, not {INVOCATION_RETENTION_DAYS}")
# Seconds between a worker's upkeep passes: RQ's registry cleaning and failing invocations whose
# worker on this host died.
WORKER_MAINTENANCE_INTERVAL = envint("WORKER_MAINTENANCE_INTERVAL", 60)
# Idle environments one worker keeps: their memory sizes add up to at most this (least recently used
# go first), and each is stopped after this many idle seconds.
ENVIRONMENT_MEMORY_BUDGET_MB = envint("ENVIRONMENT_MEMORY_BUDGET_MB", 4096)
ENVIRONMENT_IDLE_SECONDS = envint("ENVIRONMENT_IDLE_SECONDS", 600)
# Seconds before the first and the second retry of a failed asynchronous event (Lambda: about 1 and 2
# minutes).
ASYNC_RETRY_DELAYS = envints("ASYNC_RETRY_DELAYS", "60,120")
# How long a queued invocation may lack a live RQ job (Redis lost it, or it failed before claiming the
# row) before the workers' sweep queues an asynchronous event again or fails a synchronous invocation.
LOST_JOB_AFTER = envint("LOST_JOB_AFTER", 60)
# HTTP endpoint requests one web process lets wait for their invocation at once; more are answered 429,
# so that endpoints never take every thread (WEB_THREADS) the console's pages need.
ENDPOINT_MAX_WAITING = envint("ENDPOINT_MAX_WAITING", max(1, envint("WEB_THREADS", 8) - 2))
# Where disk-backed /tmp images are made and mounted (every parent must be world-searchable).
SCRATCH_DIR = Path(os.environ.get("SCRATCH_DIR", DATA_DIR / "scratch"))
# Where bucket objects live, one directory per bucket with keys as paths (mounted read-only into sandboxes;
# every parent must be world-searchable), and the largest object one upload may store (S3's: 5 GiB).
BUCKETS_DIR = Path(os.environ.get("BUCKETS_DIR", DATA_DIR / "buckets"))
BUCKET_MAX_OBJECT_BYTES = envint("BUCKET_MAX_OBJECT_BYTES", 5 * 1024 ** 3)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
