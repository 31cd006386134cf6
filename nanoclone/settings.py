"""NanoClone settings: one module, read only from the environment through typed helpers.

Every variable is listed in .env.example and docs/configuration.md (tests/docs/test_configuration.py
holds all three to the same list).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
from cryptography.fernet import Fernet

import nanoclone

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_secret(name: str, path: Path, make: Callable[[], str]) -> str:
    """A secret from the environment, else from a file in the data directory, created on first run."""
    value = env_str(name)
    if value:
        return value
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private (0600) temporary file, then linked into place: link() fails if
    # another process (the web server and the cluster start together) got there first, and then
    # its complete file is the one everybody uses.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


DATA_DIR = Path(env_str("NANOCLONE_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_secret("NANOCLONE_SECRET_KEY", DATA_DIR / "secret_key", lambda: secrets.token_urlsafe(50))
KEY_ENCRYPTION_KEY = env_secret(
    "NANOCLONE_KEY_ENCRYPTION_KEY", DATA_DIR / "key_encryption_key", lambda: Fernet.generate_key().decode()
)
DEBUG = env_bool("NANOCLONE_DEBUG", False)
ALLOWED_HOSTS = env_list("NANOCLONE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("NANOCLONE_CSRF_TRUSTED_ORIGINS")
# Absolute base for image URLs handed to API clients; empty means "the host the request came to".
PUBLIC_URL = env_str("NANOCLONE_PUBLIC_URL").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files: /api/docs works offline
    "django_q",
    "django_htmx",
    "nanoclone",
    "keys",
    "conversations",
    "gallery",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "nanoclone.databases.DatabaseUnavailableMiddleware",  # a page's 503 when the database is busy or down
]

ROOT_URLCONF = "nanoclone.urls"
WSGI_APPLICATION = "nanoclone.wsgi.application"
ASGI_APPLICATION = "nanoclone.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "nanoclone.context_processors.nanoclone",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
# Connections each process may hold at once on PostgreSQL (psycopg's pool; 0: a persistent
# connection per thread instead). A thread takes one for its queries and gives it back when its
# request ends and while it waits on Gemini (conversations.background.release_connection), so a
# hundred requests in flight no longer hold a hundred of PostgreSQL's max_connections.
DB_POOL_SIZE = env_int("NANOCLONE_DB_POOL_SIZE", 20)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "nanoclone.postgresql"  # Django's, safe across fork()
        if DB_POOL_SIZE > 0:
            # Django refuses a pool with persistent connections; the pool hands out healthy ones only.
            DATABASES["default"]["CONN_MAX_AGE"] = 0
            DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
            DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
                "min_size": 2,
                "max_size": DB_POOL_SIZE,
                "timeout": 30,  # seconds a thread waits for a free connection before its request fails
            }
else:
    DATABASES = {
        "default": {
            "ENGINE": "nanoclone.sqlite",  # Django's, plus PRAGMA optimize on close (planner statistics)
            "NAME": str(DATA_DIR / "nanoclone.sqlite3"),
            "OPTIONS": {
                # WAL lets readers run while a writer commits; IMMEDIATE takes the write lock at
                # BEGIN so concurrent writers queue on busy_timeout instead of failing mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Each web and job thread keeps its connection for a minute, as on PostgreSQL: opening one
            # (with the pragmas above) and closing it (PRAGMA optimize) per request cost ~2 ms of CPU.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            # The test database stays in memory, also per pytest-xdist worker (pytest-django adds a
            # worker suffix to file names, and for a custom ENGINE it takes NAME for one).
            "TEST": {"NAME": ":memory:"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Media (images, thumbnails, renditions): the local disk under MEDIA_ROOT, or an S3-compatible bucket
# (AWS S3, Cloudflare R2, Google Cloud Storage's XML API, MinIO, Ceph) that every host shares.
MEDIA_STORE = env_str("NANOCLONE_MEDIA_STORE", "local").lower()
if MEDIA_STORE not in ("local", "s3"):
    raise ValueError(f"NANOCLONE_MEDIA_STORE must be 'local' or 's3', not {MEDIA_STORE!r}.")
# Serve files by redirecting (after the permission check) to a short-lived presigned URL of the
# bucket instead of streaming them through NanoClone; the URL lives this many seconds.
MEDIA_REDIRECT = env_bool("NANOCLONE_MEDIA_REDIRECT", False)
MEDIA_URL_SECONDS = env_int("NANOCLONE_MEDIA_URL_SECONDS", 300)
S3_OPTIONS: dict[str, Any] = {
    "bucket_name": env_str("NANOCLONE_S3_BUCKET"),
    "endpoint_url": env_str("NANOCLONE_S3_ENDPOINT_URL") or None,  # empty: AWS S3
    "region_name": env_str("NANOCLONE_S3_REGION") or None,
    # Empty: boto3's own chain (AWS_ACCESS_KEY_ID..., an instance role).
    "access_key": env_str("NANOCLONE_S3_ACCESS_KEY_ID") or None,
    "secret_key": env_str("NANOCLONE_S3_SECRET_ACCESS_KEY") or None,
    "location": env_str("NANOCLONE_S3_PREFIX"),
    "addressing_style": env_str("NANOCLONE_S3_ADDRESSING_STYLE") or None,  # path for MinIO and most others
    "signature_version": "s3v4",
    "default_acl": None,  # private objects: every file is served permission-checked
    "file_overwrite": True,  # content-addressed: the same name is the same bytes
    "querystring_expire": MEDIA_URL_SECONDS,
    "max_memory_size": 1024 * 1024,  # a file read in pieces spools to disk past this
}
if MEDIA_STORE == "s3" and not S3_OPTIONS["bucket_name"]:
    raise ValueError("NANOCLONE_MEDIA_STORE=s3 needs NANOCLONE_S3_BUCKET.")
STORAGES = {
    "default": (
        {"BACKEND": "gallery.bucket.BucketMedia", "OPTIONS": S3_OPTIONS}
        if MEDIA_STORE == "s3"
        else {"BACKEND": "gallery.storage.LocalMedia"}
    ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_ROOT = BASE_DIR / "static" / "root"  # files browsers ask for at /: /favicon.ico
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = DATA_DIR / "media"
# Uploads above this stay on disk instead of memory; the request body itself is capped below.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("NANOCLONE_MAX_REQUEST_BYTES", 80 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "nanoclone.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "nanoclone.api.auth.OpenAPIAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "nanoclone.api.schema.DocumentedErrors",
    "DEFAULT_RENDERER_CLASSES": ["nanoclone.api.renderers.JSONRenderer"],  # DRF's JSON, by orjson
    # Every door takes JSON (what each reference document says), capped at NANOCLONE_MAX_REQUEST_BYTES.
    "DEFAULT_PARSER_CLASSES": ["nanoclone.api.parsers.CappedJSONParser"],
    "EXCEPTION_HANDLER": "nanoclone.api.envelope.envelope_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NanoClone API",
    "DESCRIPTION": (
        "Gemini image generation through a rotating key pool. Every answer is "
        '`{"success": bool, "data": ..., "error": {"code", "message"} | null}`. '
        "Authenticate with `Authorization: Bearer <token>` (`python manage.py api_token <user>`) or a session."
    ),
    "VERSION": nanoclone.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and docs describe the API and hold no data: open to all, and a token sent along
    # (Swagger UI keeps one, a client may send one everywhere) is ignored there, never a 401.
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Two doors take a `quality` with their own values (the jobs API's and OpenAI's).
    "ENUM_NAME_OVERRIDES": {
        "JobsQualityEnum": "nanoclone.dialects.jobs.QUALITY_GUIDANCE",
        "OpenAIQualityEnum": "nanoclone.dialects.openai.QUALITIES",
    },
}

# --- Gemini and the key pool -------------------------------------------------------------
GEMINI_BASE_URL = env_str("NANOCLONE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")
GEMINI_API_VERSION = env_str("NANOCLONE_GEMINI_API_VERSION", "v1beta")
# Vertex AI's endpoint for express-mode keys and service accounts without a base URL of their own;
# empty: Google's for each credential's location (aiplatform.googleapis.com for global).
VERTEX_BASE_URL = env_str("NANOCLONE_VERTEX_BASE_URL")
GEMINI_TIMEOUT_SECONDS = env_float("NANOCLONE_GEMINI_TIMEOUT", 120.0)
# Empty: the catalogue's default (keys/catalogue.py); an id or alias picks another.
DEFAULT_MODEL = env_str("NANOCLONE_DEFAULT_MODEL", "")
KEY_DAILY_LIMIT = env_int("NANOCLONE_KEY_DAILY_LIMIT", 500)
QUOTA_TIMEZONE = env_str("NANOCLONE_QUOTA_TIMEZONE", "America/Los_Angeles")
KEY_COOLDOWN_HOURS = env_float("NANOCLONE_KEY_COOLDOWN_HOURS", 24.0)
# When every key rests for a model and the first rest ends within this many seconds, a request
# waits for it instead of failing with 503.
MAX_QUEUE_WAIT = env_float("NANOCLONE_MAX_QUEUE_WAIT", 30.0)
# Pacing (keys/pacing.py): the length of Gemini's per-minute quota window (tests and benchmarks
# shorten it with the emulator's --minute-seconds), and how long a limit learned from a 429 is
# trusted before one window runs without it, to see whether Google allows more now.
QUOTA_MINUTE_SECONDS = env_float("NANOCLONE_QUOTA_MINUTE_SECONDS", 60.0)
QUOTA_RELEARN_SECONDS = env_float("NANOCLONE_QUOTA_RELEARN_SECONDS", 3600.0)
# How long an Idempotency-Key holds: the same key and request again get the first job back.
IDEMPOTENCY_HOURS = env_float("NANOCLONE_IDEMPOTENCY_HOURS", 24.0)
# Transient upstream failures (5xx, timeouts) are retried this many times, with backoff.
UPSTREAM_RETRIES = env_int("NANOCLONE_UPSTREAM_RETRIES", 2)
UPSTREAM_BACKOFF_SECONDS = env_float("NANOCLONE_UPSTREAM_BACKOFF", 0.5)

# --- Usage, cost and metrics -------------------------------------------------------------------
# Days the usage ledger (one row per upstream call) is kept; a daily schedule deletes older rows.
USAGE_RETENTION_DAYS = env_int("NANOCLONE_USAGE_RETENTION_DAYS", 90)
# Which of Google's price tiers (the Price table: standard, batch, flex) estimates a call's cost.
PRICE_TIER = env_str("NANOCLONE_PRICE_TIER", "standard")
# /metrics (Prometheus): off unless enabled; then open to staff tokens and to these client addresses.
METRICS_ENABLED = env_bool("NANOCLONE_METRICS", False)
METRICS_ALLOWED_IPS = env_list("NANOCLONE_METRICS_ALLOWED_IPS")
# Counters of several processes (web workers, django-q2 workers) add up through files here:
# prometheus_client's multiprocess mode, which it reads from the environment when first imported.
METRICS_DIR = DATA_DIR / "metrics"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set but empty (a .env copied from .env.example) is unset: prometheus_client would otherwise
    # write its files into the current directory.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if METRICS_ENABLED:
        METRICS_DIR.mkdir(exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
# Where this process counts (empty: in memory, this process alone); /metrics adds up the files there.
METRICS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# --- Generation limits ----------------------------------------------------------------------
MAX_PROMPT_CHARS = env_int("NANOCLONE_MAX_PROMPT_CHARS", 8000)  # about 2000 tokens
MAX_REFERENCE_IMAGES = env_int("NANOCLONE_MAX_REFERENCE_IMAGES", 5)
MAX_IMAGE_BYTES = env_int("NANOCLONE_MAX_IMAGE_BYTES", 10 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("NANOCLONE_MAX_IMAGE_PIXELS", 50_000_000)
THUMBNAIL_SIZE = env_int("NANOCLONE_THUMBNAIL_SIZE", 384)
# How long a signed image URL (handed to hosted-API dialect clients) keeps working, in seconds.
SIGNED_URL_MAX_AGE = env_int("NANOCLONE_SIGNED_URL_MAX_AGE", 7 * 24 * 3600)

# --- Access ----------------------------------------------------------------------------------
# Single-user localhost use: the native API answers without a token (never on a public host).
OPEN_API = env_bool("NANOCLONE_OPEN_API", False)
DEMO_MODE = env_bool("NANOCLONE_DEMO", False)
# New tasks per user through the compatible APIs (evolink, Runbase, AceData), e.g. "30/min";
# empty means unlimited. Over it they answer 429 in their own error shape; polling is never limited.
DIALECT_RATE_LIMIT = env_str("NANOCLONE_DIALECT_RATE_LIMIT")

# --- Browser pages -------------------------------------------------------------------------------
# How the chat page runs a generation: "queue" hands it to the django-q2 cluster (what `serve` runs);
# "thread" runs it in a background thread of the web process (no cluster needed: tests, one-process setups).
CHAT_EXECUTION = env_str("NANOCLONE_CHAT_EXECUTION", "queue").lower()
if CHAT_EXECUTION not in {"queue", "thread"}:
    raise ValueError(f"NANOCLONE_CHAT_EXECUTION must be 'queue' or 'thread', not {CHAT_EXECUTION!r}.")
GALLERY_PAGE_SIZE = env_int("NANOCLONE_GALLERY_PAGE_SIZE", 60)

# --- MCP server ----------------------------------------------------------------------------------
# The user `manage.py mcp` (stdio) acts as; empty: the first superuser. Over HTTP (/mcp) the token decides.
MCP_USER = env_str("NANOCLONE_MCP_USER")
# Image bytes one MCP tool result may carry (agents pay for them in context); previews are 768 px JPEGs.
MCP_MAX_IMAGE_BYTES = env_int("NANOCLONE_MCP_MAX_IMAGE_BYTES", 1_000_000)

# --- Caller-supplied URLs ----------------------------------------------------------------------
NANOCLONE_FETCH_ALLOW_LOOPBACK = env_bool("NANOCLONE_FETCH_ALLOW_LOOPBACK", False)
NANOCLONE_CALLBACK_ALLOW_HTTP = env_bool("NANOCLONE_CALLBACK_ALLOW_HTTP", False)
NANOCLONE_FETCH_MAX_BYTES = MAX_IMAGE_BYTES
NANOCLONE_FETCH_TIMEOUT = env_float("NANOCLONE_FETCH_TIMEOUT", 15.0)
# A CA bundle to trust for https fetches and callbacks instead of certifi's (e.g. a private CA).
NANOCLONE_FETCH_CA_FILE = env_str("NANOCLONE_FETCH_CA_FILE") or None

# --- Webhooks (the jobs API's global webhook; per-request callbacks share the delivery) ----------
WEBHOOK_URL = env_str("WEBHOOK_URL")
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET")
WEBHOOK_ENABLED = env_bool("WEBHOOK_ENABLED", False)
# The payload's "environment" field.
WEBHOOK_ENVIRONMENT = env_str("WEBHOOK_ENVIRONMENT", "production")
WEBHOOK_TIMEOUT_SECONDS = env_float("NANOCLONE_WEBHOOK_TIMEOUT", 10.0)
# Pauses between attempts: len + 1 attempts in all.
WEBHOOK_RETRY_DELAYS = [float(delay) for delay in env_list("NANOCLONE_WEBHOOK_RETRY_DELAYS", "1,2,4")]

# --- Background work (django-q2) ---------------------------------------------------------------
REDIS_URL = env_str("NANOCLONE_REDIS_URL")
Q_CLUSTER: dict[str, object] = {
    "name": "nanoclone",
    "workers": env_int("NANOCLONE_Q_WORKERS", 4),
    # A task that outlives `timeout` is killed; an unacknowledged one is handed out again after
    # `retry` seconds, so retry must exceed timeout or a slow job would run twice at once.
    "timeout": env_int("NANOCLONE_Q_TIMEOUT", 600),
    "retry": env_int("NANOCLONE_Q_RETRY", 660),
    "max_attempts": env_int("NANOCLONE_Q_MAX_ATTEMPTS", 3),
    "catch_up": False,
    "label": "Background tasks",
    "poll": 0.2,
    "orm": "default",
    "ack_failures": True,
    "save_limit": 1000,
    # Where the cluster publishes its heartbeat (django-q2 Stat), read by /health. With the ORM
    # broker it is a cache: a file one, so the web process sees what the cluster processes write.
    "cache": "cluster",
}
# Generations a process of the cluster runs at once: each is seconds of waiting on Gemini, not of
# CPU, so many wait side by side; the key pool (rests, pacing) bounds what reaches Gemini.
GENERATIONS = env_int("NANOCLONE_GENERATIONS", 64)
# Jobs at the Batch API's price (pipeline.batches): how often each cluster process looks at them, how
# long waiting jobs gather before they are sent, how many requests one batch holds, how often a batch
# is polled (backing off to the maximum), and how long a step may take before another process redoes it.
BATCH_LOOK_SECONDS = env_float("NANOCLONE_BATCH_LOOK_SECONDS", 5.0)
BATCH_GATHER_SECONDS = env_float("NANOCLONE_BATCH_GATHER_SECONDS", 60.0)
BATCH_MAX_ITEMS = env_int("NANOCLONE_BATCH_MAX_ITEMS", 500)
BATCH_POLL_SECONDS = env_float("NANOCLONE_BATCH_POLL_SECONDS", 15.0)
BATCH_POLL_MAX_SECONDS = env_float("NANOCLONE_BATCH_POLL_MAX_SECONDS", 300.0)
BATCH_STEP_SECONDS = env_float("NANOCLONE_BATCH_STEP_SECONDS", 300.0)
# Jobs one user may have waiting or running at once (batch work aside); a user's own limit is set
# in admin (Queue limits). Past it the asynchronous doors answer 429 with Retry-After.
MAX_JOBS_PER_USER = env_int("NANOCLONE_MAX_JOBS_PER_USER", 1000)
if GENERATIONS < 1:
    raise ValueError("NANOCLONE_GENERATIONS must be at least 1.")
# How serve runs the cluster: "threads" in its own process (nanoclone/cluster.py), or "processes",
# django-q2's own `manage.py qcluster` beside it (a process per worker; tasks can be timed out).
CLUSTER = env_str("NANOCLONE_CLUSTER", "threads")
if CLUSTER not in ("threads", "processes"):
    raise ValueError(f"NANOCLONE_CLUSTER must be 'threads' or 'processes', not {CLUSTER!r}.")
# A running job holds a lease this long, renewed once a third of it has gone by (by its process's
# heartbeat thread, while it waits on Gemini too); a job whose lease ran out has lost its worker
# and may be taken over.
# Shorter than `retry`, so a task handed out again finds a dead run's lease expired.
JOB_LEASE_SECONDS = env_int("NANOCLONE_JOB_LEASE_SECONDS", 45)
# How often the sweep (conversations.pipeline.recover_stale_jobs) requeues jobs whose lease ran out.
# django-q2 schedules in whole minutes and looks at its schedules every 30 s.
RECOVERY_INTERVAL_MINUTES = env_int("NANOCLONE_RECOVERY_INTERVAL_MINUTES", 1)
if not 3 <= JOB_LEASE_SECONDS < int(Q_CLUSTER["retry"]):  # type: ignore[call-overload]
    raise ValueError("NANOCLONE_JOB_LEASE_SECONDS must be at least 3 and below NANOCLONE_Q_RETRY.")
if int(Q_CLUSTER["timeout"]) >= int(Q_CLUSTER["retry"]):  # type: ignore[call-overload]
    raise ValueError("NANOCLONE_Q_RETRY must exceed NANOCLONE_Q_TIMEOUT, or a slow task would run twice at once.")
if RECOVERY_INTERVAL_MINUTES < 1:
    raise ValueError("NANOCLONE_RECOVERY_INTERVAL_MINUTES must be at least 1.")
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL  # the Redis broker keeps its heartbeat in Redis itself
CACHES = {
    # This process's: API tokens for a few seconds, prices and budgets (keys.cached).
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # What every process and host must count together (the compatible APIs' rate limit): Redis when
    # it is configured, else this process's memory (one host, one web process).
    "shared": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "nanoclone"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "shared"}
    ),
    "cluster": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": DATA_DIR / "cluster-cache",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"retry_later": {"()": "nanoclone.log_filters.ServiceUnavailableIsAWarning"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("NANOCLONE_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"filters": ["retry_later"]},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "google_genai": {"level": "WARNING"},
    },
}

# How many earlier turns of a conversation are sent to Gemini with a new prompt.
HISTORY_TURNS = env_int("NANOCLONE_HISTORY_TURNS", 8)

# The port `serve` listens on unless --port says otherwise (the container image's health check reads
# it too).
PORT = env_int("NANOCLONE_PORT", 8000)
# Threads serving web requests in `serve` (each may wait on Gemini for seconds).
WEB_THREADS = env_int("NANOCLONE_WEB_THREADS", 64)
# Web server processes in `serve`: one process is bound to one core by the GIL. With more than
# one, MCP over HTTP runs stateless (any process can answer any request).
WEB_WORKERS = env_int("NANOCLONE_WEB_WORKERS", 1)
# Seconds `serve` gives requests in flight and running tasks after SIGTERM or Ctrl-C, before it
# cuts them off (their jobs are recovered later). Keep the process manager's stop timeout above it.
SHUTDOWN_GRACE_SECONDS = env_int("NANOCLONE_SHUTDOWN_GRACE_SECONDS", 30)
# The admin account `serve` creates on first start (password generated into the data directory).
ADMIN_USERNAME = env_str("NANOCLONE_ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = env_str("NANOCLONE_ADMIN_PASSWORD")
