"""OutboundHQ backend settings: one module, every value read once from the environment.

Misconfiguration never raises here: each problem is recorded in CONFIG_ERRORS and reported
by the system check `outboundhq.E001` (see outboundhq/checks.py), which names the variable.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
CONFIG_ERRORS: list[tuple[str, str]] = []

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")


def _read(variable: str, cast: type, default: object) -> object:
    """Read one variable; a value that does not parse is reported, and the default used."""
    try:
        return env.get_value(variable, cast=cast, default=default)
    except (ValueError, ImproperlyConfigured) as exc:
        CONFIG_ERRORS.append((variable, f"cannot be parsed ({exc})"))
        return default


# --- Django core -------------------------------------------------------------------------
DEBUG = _read("DJANGO_DEBUG", bool, False)
SECRET_KEY = _read("DJANGO_SECRET_KEY", str, "")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG"  # noqa: S105
    else:
        CONFIG_ERRORS.append(
            ("DJANGO_SECRET_KEY", "is required unless DJANGO_DEBUG=true; set a long random value")
        )
        # A placeholder so Django can start far enough to run the check that reports this.
        SECRET_KEY = "unset-" + "x" * 50
ALLOWED_HOSTS = _read("DJANGO_ALLOWED_HOSTS", list, ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read("DJANGO_CSRF_TRUSTED_ORIGINS", list, [])

INSTALLED_APPS = [
    # Admin modules are discovered by outboundhq/urls.py, not at start-up: commands such as the
    # executor then start without importing every admin page, form and serializer.
    "outboundhq.site.OutboundHQAdminConfig",
    "django.contrib.auth",
    "axes",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "outboundhq",
    "profiles",
    "sequences",
    "smartlead",
]

MIDDLEWARE = [
    "outboundhq.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Smartlead's webhook deliveries leave the stack here (what they skip: see the class).
    "outboundhq.middleware.WebhookFastPath",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "outboundhq.middleware.ContentSecurityPolicy",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "outboundhq.urls"
WSGI_APPLICATION = "outboundhq.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Ours first: admin/base_site.html (branding, favicon, styles) overrides the admin's own.
        "DIRS": [BASE_DIR / "outboundhq" / "templates"],
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Date-times in the admin carry their time zone (outboundhq/formats/en/formats.py).
FORMAT_MODULE_PATH = ["outboundhq.formats"]
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Webhook bodies are capped at 1 MB by the receiver itself, which answers 413 with JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Admin: path, passwords, login throttling (django-axes) ------------------------------
# A path other than the well-known admin/ keeps most scanners off the login page.
ADMIN_PATH = str(_read("DJANGO_ADMIN_PATH", str, "admin/")).strip("/") + "/"
if ADMIN_PATH == "/":
    CONFIG_ERRORS.append(("DJANGO_ADMIN_PATH", "must not be empty (e.g. admin/ or ops-7f3/)"))
    ADMIN_PATH = "admin/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes' backend first: it refuses a locked-out address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _read("DJANGO_ADMIN_LOGIN_FAILURE_LIMIT", int, 5)
AXES_COOLOFF_TIME = timedelta(minutes=_read("DJANGO_ADMIN_LOGIN_COOLOFF_MINUTES", int, 15))
AXES_RESET_ON_SUCCESS = True
# Counted per client address and, separately, per username: one source cannot guess passwords,
# and many sources (rotating addresses) cannot guess one account's. The price: anyone can lock
# an account out for the cool-off; `manage.py axes_reset` lifts it.
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_CLIENT_IP_CALLABLE = "outboundhq.admin.client_ip"
# Peers whose X-Forwarded-For is believed (outboundhq/admin.py: client_ip): addresses or
# networks. Railway's edge reaches the service from its private network, so by default the
# private ranges; a client that reaches gunicorn from anywhere else is counted by its own
# address, whatever it writes in the header. Empty: trust no header at all.
PRIVATE_NETWORKS = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fc00::/7"
TRUSTED_PROXIES = []
for _network in _read("DJANGO_TRUSTED_PROXIES", list, PRIVATE_NETWORKS.split(",")):
    if not _network.strip():
        continue
    try:
        TRUSTED_PROXIES.append(ipaddress.ip_network(_network.strip(), strict=False))
    except ValueError:
        CONFIG_ERRORS.append(
            ("DJANGO_TRUSTED_PROXIES", f"has {_network!r}, which is no address or network")
        )

# --- Database ----------------------------------------------------------------------------
# The embedded default is a SQLite file so a fresh clone runs with nothing else installed.
# In production DATABASE_URL is Supabase's connection string (?sslmode=require is honoured).
SUPPORTED_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")
try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
    if DATABASES["default"].get("ENGINE") not in SUPPORTED_ENGINES:
        raise ValueError("use postgres://user:password@host:port/dbname or sqlite:///path")
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    CONFIG_ERRORS.append(
        ("DATABASE_URL", f"is not a database URL this service understands ({exc})")
    )
    # The dummy backend refuses every query, so a bad URL can never reach a wrong database.
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
DATABASES["default"]["CONN_MAX_AGE"] = _read("DATABASE_CONN_MAX_AGE", int, 60)
# A `SELECT 1` before each request's (or task's) first query. gunicorn.conf.py turns it off for
# the web processes, where it cost every webhook delivery a round trip (see outboundhq/db.py).
DATABASE_CONN_HEALTH_CHECKS = _read("DATABASE_CONN_HEALTH_CHECKS", bool, True)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = DATABASE_CONN_HEALTH_CHECKS
# Supavisor/PgBouncer in transaction mode cannot keep a server-side cursor between statements.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = _read(
    "DATABASE_TRANSACTION_POOLING", bool, False
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Executor threads and the web server share one file: take the write lock when a
    # transaction starts and wait for it, instead of failing half-way with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that stops answering must turn /health into a 503, not a hung worker.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)

# --- REST framework ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "outboundhq.views.json_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OutboundHQ backend API",
    "DESCRIPTION": "Connect a Smartlead account, activate sequences, receive Smartlead webhooks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs pages' JavaScript and CSS come from this app (drf-spectacular-sidecar's static
    # files, served by WhiteNoise), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Supabase auth (the connect API) -----------------------------------------------------
SUPABASE_URL = _read("SUPABASE_URL", str, "")
SUPABASE_JWT_SECRET = _read("SUPABASE_JWT_SECRET", str, "")
SUPABASE_JWKS_CACHE_SECONDS = _read("SUPABASE_JWKS_CACHE_SECONDS", int, 600)
# A token with an unknown key id refetches the JWKS at most this often (no refetch floods).
SUPABASE_JWKS_MIN_REFRESH_SECONDS = _read("SUPABASE_JWKS_MIN_REFRESH_SECONDS", int, 30)
CORS_ALLOWED_ORIGINS = _read("CORS_ALLOWED_ORIGINS", list, [])

# --- Smartlead ---------------------------------------------------------------------------
SMARTLEAD_BASE_URL = _read("SMARTLEAD_BASE_URL", str, "https://server.smartlead.ai/api/v1")
# One request budget per SDR key, shared by every process (smartlead/api/limits.py): Smartlead's
# Standard plan allows 60 a minute and 1,000 an hour (Pro: 120 and 3,000).
SMARTLEAD_REQUESTS_PER_MINUTE = _read("SMARTLEAD_REQUESTS_PER_MINUTE", int, 60)
SMARTLEAD_REQUESTS_PER_HOUR = _read("SMARTLEAD_REQUESTS_PER_HOUR", int, 1000)
# Where the budgets live: auto (Redis with REDIS_URL, else Postgres, else memory), redis,
# postgres or memory (one process only).
SMARTLEAD_BUDGET_STORE = _read("SMARTLEAD_BUDGET_STORE", str, "auto")
SMARTLEAD_LEADS_PER_REQUEST = _read("SMARTLEAD_LEADS_PER_REQUEST", int, 100)
SMARTLEAD_CONNECT_TIMEOUT = _read("SMARTLEAD_CONNECT_TIMEOUT", float, 5.0)
SMARTLEAD_READ_TIMEOUT = _read("SMARTLEAD_READ_TIMEOUT", float, 30.0)
SMARTLEAD_WEBHOOK_SECRET = _read("SMARTLEAD_WEBHOOK_SECRET", str, "")
SMARTLEAD_WEBHOOK_SIGNING_SECRET = _read("SMARTLEAD_WEBHOOK_SIGNING_SECRET", str, "")
# Rotation: the secret before SMARTLEAD_WEBHOOK_SECRET, still accepted (its per-campaign tokens
# and, while legacy URLs are, itself) until every webhook is re-saved (docs/DEPLOY.md).
SMARTLEAD_WEBHOOK_SECRET_PREVIOUS = _read("SMARTLEAD_WEBHOOK_SECRET_PREVIOUS", str, "")
# Campaigns provisioned before per-campaign tokens carry `?secret=<the secret>`, which opens
# every campaign: refused unless ops turn this on; the executor moves them to their own URL
# (sequences/webhook_switch.py).
SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET = _read(
    "SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET", bool, False
)
SMARTLEAD_SCHEDULE_TIMEZONE = _read("SMARTLEAD_SCHEDULE_TIMEZONE", str, "America/New_York")
# A mailbox sends only at or above this warmup reputation (0-100); unset: not checked.
SMARTLEAD_MIN_WARMUP_REPUTATION = _read("SMARTLEAD_MIN_WARMUP_REPUTATION", float, None)
# Replies as people send them (docs/WEBHOOKS.md, "Replies and categories"). Each campaign's
# settings carry them (provisioning, and the outbox for campaigns set up before a change).
# An out-of-office reply pauses the enrollment until the date it states (else this many days)
# and Smartlead is told not to count it as a reply; `false`: it ends the enrollment as `replied`.
SMARTLEAD_OUT_OF_OFFICE_PAUSE = _read("SMARTLEAD_OUT_OF_OFFICE_PAUSE", bool, True)
SMARTLEAD_OUT_OF_OFFICE_DAYS = _read("SMARTLEAD_OUT_OF_OFFICE_DAYS", int, 7)
if not 1 <= SMARTLEAD_OUT_OF_OFFICE_DAYS <= 90:
    CONFIG_ERRORS.append(("SMARTLEAD_OUT_OF_OFFICE_DAYS", "must be between 1 and 90 (days)"))
    SMARTLEAD_OUT_OF_OFFICE_DAYS = 7
# Smartlead's auto_pause_domain_leads_on_reply: a reply pauses the SDR's other leads at the same
# company (email domain), at Smartlead and in the app.
SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY = _read("SMARTLEAD_PAUSE_SAME_COMPANY_ON_REPLY", bool, False)
# Whom a prospect's opt-out reaches (sequences/optouts.py): every SDR's contact with the
# address (organisation), or only the contacts of the SDR it happened with (sdr).
OPT_OUT_SCOPE = str(_read("OPT_OUT_SCOPE", str, "organisation")).strip().lower()
if OPT_OUT_SCOPE not in ("organisation", "sdr"):
    CONFIG_ERRORS.append(("OPT_OUT_SCOPE", "must be organisation or sdr"))
    OPT_OUT_SCOPE = "organisation"
PUBLIC_BASE_URL = _read("PUBLIC_BASE_URL", str, "")
# The SDRs' keys are stored encrypted (profiles/crypto.py): the first key encrypts, all decrypt.
SMARTLEAD_KEY_ENCRYPTION_KEYS = [k for k in _read("SMARTLEAD_KEY_ENCRYPTION_KEYS", list, []) if k]
if not SMARTLEAD_KEY_ENCRYPTION_KEYS:
    if DEBUG:
        # Fixed and published (README), so a development database keeps working across runs;
        # base64 of "outboundhq-development-only-key!". Never used with DEBUG off.
        SMARTLEAD_KEY_ENCRYPTION_KEYS = ["b3V0Ym91bmRocS1kZXZlbG9wbWVudC1vbmx5LWtleSE="]
    else:
        CONFIG_ERRORS.append(
            (
                "SMARTLEAD_KEY_ENCRYPTION_KEYS",
                "is required unless DJANGO_DEBUG=true; generate one with "
                '`python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"`',
            )
        )

# --- Executor ----------------------------------------------------------------------------
CRON_SECRET = _read("CRON_SECRET", str, "")
# POST /cron/execute-sequences runs inside a web request: it must end before gunicorn's timeout
# (60 s); what it leaves is done by the next run.
CRON_TIME_BUDGET_SECONDS = _read("CRON_TIME_BUDGET_SECONDS", int, 45)
EXECUTOR_CONCURRENCY = _read("EXECUTOR_CONCURRENCY", int, 8)
EXECUTOR_TIME_BUDGET_SECONDS = _read("EXECUTOR_TIME_BUDGET_SECONDS", int, 600)
# The hourly reconcile pass (smartlead/reconcile.py) stops reading Smartlead after this.
RECONCILE_TIME_BUDGET_SECONDS = _read("RECONCILE_TIME_BUDGET_SECONDS", int, 300)
RECONCILE_CONCURRENCY = _read("RECONCILE_CONCURRENCY", int, 4)
EXECUTOR_CHUNK_SIZE = _read("EXECUTOR_CHUNK_SIZE", int, 2000)
# The schedule shares a run out to django-q2 tasks, one per this many SDRs (at most
# EXECUTOR_MAX_TASKS): every qcluster process that takes one works on the run's SDRs.
EXECUTOR_SDRS_PER_TASK = _read("EXECUTOR_SDRS_PER_TASK", int, 25)
EXECUTOR_MAX_TASKS = _read("EXECUTOR_MAX_TASKS", int, 16)
# A process holding work beats every WORKER_BEAT_SECONDS; one silent for WORKER_TIMEOUT_SECONDS
# (or, on the same host, whose process is gone) is dead, and its work is taken over.
WORKER_BEAT_SECONDS = _read("WORKER_BEAT_SECONDS", float, 5.0)
WORKER_TIMEOUT_SECONDS = _read("WORKER_TIMEOUT_SECONDS", float, 30.0)

# --- Health verdicts, alerts and the status endpoint (outboundhq/verdicts.py, alerts.py) --
# Email goes through Django's mail settings, given as one URL (smtp+tls://user:password@host:587,
# consolemail:// prints them); without it, development prints mail and production needs it to
# email alerts (outboundhq.E008).
EMAIL_URL = _read("EMAIL_URL", str, "")
try:
    _mail = environ.Env.email_url_config(EMAIL_URL or "consolemail://")
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    CONFIG_ERRORS.append(("EMAIL_URL", f"is not a mail URL like smtp+tls://u:p@host:587 ({exc})"))
    _mail = environ.Env.email_url_config("consolemail://")
EMAIL_BACKEND = _mail["EMAIL_BACKEND"]
EMAIL_HOST = _mail["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _mail["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _mail["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _mail["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = bool(_mail.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_mail.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = 10  # an alert check must not hang on a mail server
DEFAULT_FROM_EMAIL = _read("DEFAULT_FROM_EMAIL", str, "OutboundHQ <alerts@localhost>")
ALERT_EMAIL_TO = [a for a in _read("ALERT_EMAIL_TO", list, []) if a]
# A Slack incoming webhook (or anything that takes its {"text": ...} POST). The URL is a secret.
ALERT_WEBHOOK_URL = _read("ALERT_WEBHOOK_URL", str, "")
# Bearer token for GET /status (uptime monitors); staff signed in to the admin need none.
HEALTH_STATUS_TOKEN = _read("HEALTH_STATUS_TOKEN", str, "")

# django-q2: the ORM broker needs no extra server; REDIS_URL switches to Redis.
REDIS_URL = _read("REDIS_URL", str, "")
Q_CLUSTER = {
    # Two deployments sharing one Redis (or a test beside a running service) need two names.
    "name": _read("Q_CLUSTER_NAME", str, "outboundhq"),
    "workers": _read("Q_WORKERS", int, 2),
    # A run must end before django-q2 considers it lost and hands it out again.
    "timeout": EXECUTOR_TIME_BUDGET_SECONDS + 120,
    "retry": EXECUTOR_TIME_BUDGET_SECONDS + 300,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 500,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging -----------------------------------------------------------------------------
LOG_LEVEL = _read("LOG_LEVEL", str, "INFO")
LOG_FORMAT = _read("LOG_FORMAT", str, "text" if DEBUG else "json")
# Readable lines in development carry the request/run ids too; Django's own default handlers
# (console in debug, mail_admins) are replaced by ours, so every record passes the redaction.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "outboundhq.logs.RedactSecretsFilter"},
        "request_context": {"()": "outboundhq.logs.RequestContextFilter"},
    },
    "formatters": {
        "text": {"()": "outboundhq.logs.TextFormatter"},
        "json": {"()": "outboundhq.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in ("text", "json") else "json",
            "filters": ["redact_secrets", "request_context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
    },
}

# --- Production hardening / Sentry -------------------------------------------------------
# Everything below is off (or permissive) with DJANGO_DEBUG=true and on otherwise, so that
# `manage.py check --deploy` is clean with production settings.

# Railway terminates TLS at its edge and forwards plain HTTP with X-Forwarded-Proto; the app is
# only reachable through that proxy, so the header can be trusted there (never in development).
SECURE_PROXY_SSL_HEADER = None if DEBUG else ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _read("DJANGO_SECURE_SSL_REDIRECT", bool, not DEBUG)
# Railway's deploy health check calls /health over plain HTTP, without X-Forwarded-Proto.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else _read("DJANGO_SECURE_HSTS_SECONDS", int, 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"


# On Railway: the deploy health check sends `Host: healthcheck.railway.app`, and the service's
# generated domain is known, so neither has to be repeated in DJANGO_ALLOWED_HOSTS.
if env.str("RAILWAY_ENVIRONMENT_ID", default=""):
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "healthcheck.railway.app"]
    _railway_domain = env.str("RAILWAY_PUBLIC_DOMAIN", default="")
    if _railway_domain:
        ALLOWED_HOSTS.append(_railway_domain)
        CSRF_TRUSTED_ORIGINS = [*CSRF_TRUSTED_ORIGINS, f"https://{_railway_domain}"]

# collectstatic's destination; the build writes it, WhiteNoise serves it (tests use a temp dir).
STATIC_ROOT = Path(_read("DJANGO_STATIC_ROOT", str, str(STATIC_ROOT)))

# drf-spectacular prints schema warnings to stderr as plain text when /api/schema/ is generated,
# which would break the one-JSON-object-per-line logs. `check --deploy` still reports them.
SPECTACULAR_SETTINGS["DISABLE_ERRORS_AND_WARNINGS"] = not DEBUG

SENTRY_DSN = _read("SENTRY_DSN", str, "")
SENTRY_ENVIRONMENT = _read(
    "SENTRY_ENVIRONMENT", str, env.str("RAILWAY_ENVIRONMENT_NAME", default="production")
)
SENTRY_TRACES_SAMPLE_RATE = _read("SENTRY_TRACES_SAMPLE_RATE", float, 0.0)
if not 0.0 <= SENTRY_TRACES_SAMPLE_RATE <= 1.0:
    CONFIG_ERRORS.append(("SENTRY_TRACES_SAMPLE_RATE", "must be between 0 and 1"))
    SENTRY_TRACES_SAMPLE_RATE = 0.0
if SENTRY_DSN:
    from outboundhq.sentry import init_sentry

    _sentry_problem = init_sentry(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        release=env.str("RAILWAY_GIT_COMMIT_SHA", default="") or None,
    )
    if _sentry_problem:
        CONFIG_ERRORS.append(("SENTRY_DSN", _sentry_problem))
