"""Settings read from the environment (django-environ, explicit casts).

Every setting has a default that serves the embedded mode: SQLite, Celery eager, in-memory channel
layer, console email. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY and DEBUG=false.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from fhirplatform.keys import secret_key, signing_key

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
_env_file = BASE_DIR / ".env"
if _env_file.exists():
    env.read_env(str(_env_file))


def _int_setting(name: str, default: int, minimum: int = 1) -> int:
    try:
        value = env.int(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="embedded-mode-insecure-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    # First, so that `manage.py runserver` is daphne's: one server for HTTP and the WebSocket endpoint.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "resources",
    "authz",
    "audit",
    "careplans",
    "subscriptions",
    "adminui",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The console and the sign-in page must not be framed by another site (clickjacking).
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Bounds the database time of every statement a request runs (resources/limits.py).
    "resources.limits.StatementTimeout",
]

ROOT_URLCONF = "fhirplatform.urls"
# FHIR URLs are exact: no redirects that would turn a POST into a GET.
APPEND_SLASH = False
WSGI_APPLICATION = "fhirplatform.wsgi.application"
ASGI_APPLICATION = "fhirplatform.asgi.application"

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
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE transactions take the write lock up
    # front so that two writers queue on the busy timeout instead of failing with 'database is locked'.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif _db["ENGINE"] in ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"):
    _db["ENGINE"] = "django.db.backends.postgresql"
    _db["CONN_MAX_AGE"] = _int_setting("DB_CONN_MAX_AGE", 600, minimum=0)
    # Server-side binding sends parameters apart from the SQL text, sparing the client the
    # Python-side quoting of every JSON body (the largest cost of bulk writes when profiled).
    _db.setdefault("OPTIONS", {})["server_side_binding"] = env.bool("DB_SERVER_SIDE_BINDING", default=True)
    # A health check costs a `SELECT 1` round trip on every request; off unless asked for.
    _db["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=False)
else:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL or SQLite")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
# Deliveries never run inside a request: without a broker the embedded worker (FHIR_WORKER) runs them.
CELERY_TASK_ALWAYS_EAGER = False
# A task is acknowledged after it ran, and given back to the broker if its worker dies while running
# it, so a killed worker loses nothing (deliveries are idempotent: subscriptions/deliveries.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # Finds what a lost wake-up or a dead worker left behind, retries what is due, expires ended
    # subscriptions and trims old events.
    "subscriptions-sweep": {"task": "subscriptions.sweep", "schedule": 5.0},
    # CarePlans: changed plans planned again, the rolling horizon moved, opened and closed windows.
    "careplans-plan": {"task": "careplans.plan", "schedule": 30.0},
    "careplans-extend": {"task": "careplans.extend", "schedule": 3600.0},
    "careplans-advance": {"task": "careplans.advance", "schedule": 60.0},
}

CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# Sign-in throttling counters (authz/login.py) must be shared by every process: Redis when there is
# one, else the per-process memory cache (the embedded mode runs one process).
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# --- FHIR API ---
# Public base URL used in Location headers and Bundle fullUrls; empty = derived from the request.
FHIR_BASE_URL = env.str("FHIR_BASE_URL", default="")
# Largest request body accepted (bytes); larger requests get 413.
FHIR_MAX_BODY_BYTES = _int_setting("FHIR_MAX_BODY_BYTES", 16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FHIR_MAX_BODY_BYTES
FHIR_DEFAULT_COUNT = _int_setting("FHIR_DEFAULT_COUNT", 20)
FHIR_MAX_COUNT = _int_setting("FHIR_MAX_COUNT", 1000)
FHIR_MAX_BUNDLE_ENTRIES = _int_setting("FHIR_MAX_BUNDLE_ENTRIES", 10000)
# _include:iterate levels followed, and resources added by includes to one page, at most.
FHIR_MAX_INCLUDE_DEPTH = _int_setting("FHIR_MAX_INCLUDE_DEPTH", 4)
FHIR_MAX_INCLUDED = _int_setting("FHIR_MAX_INCLUDED", 5000)
# What one GraphQL request may ask for (resources/graphql/limits.py): nesting depth, field
# selections (fragments expanded), and an estimate of the resources it reads.
FHIR_GRAPHQL_MAX_DEPTH = _int_setting("FHIR_GRAPHQL_MAX_DEPTH", 15)
FHIR_GRAPHQL_MAX_FIELDS = _int_setting("FHIR_GRAPHQL_MAX_FIELDS", 5000)
FHIR_GRAPHQL_MAX_COST = _int_setting("FHIR_GRAPHQL_MAX_COST", 2000)
# What one request may cost (resources/limits.py): database time per statement while serving a
# request (milliseconds; 0 = unbounded), search parameters per search, and comma-separated values
# over all of them. Beyond them the answer is an OperationOutcome `too-costly`.
FHIR_STATEMENT_TIMEOUT_MS = _int_setting("FHIR_STATEMENT_TIMEOUT_MS", 30_000, minimum=0)
FHIR_MAX_SEARCH_PARAMS = _int_setting("FHIR_MAX_SEARCH_PARAMS", 64)
FHIR_MAX_SEARCH_VALUES = _int_setting("FHIR_MAX_SEARCH_VALUES", 1000)
FHIR_MAX_PARAM_VALUES = _int_setting("FHIR_MAX_PARAM_VALUES", 200)

# --- Authentication (authz/) ---
# The OAuth 2.0 / OIDC provider (django-oauth-toolkit) signs ID tokens with an RSA key: give it as
# PEM in OIDC_RSA_PRIVATE_KEY, or as a file path; in the embedded mode a key is generated into the
# file on first use (var/ is not committed).
OIDC_RSA_PRIVATE_KEY_FILE = env.str(
    "OIDC_RSA_PRIVATE_KEY_FILE", default=str(BASE_DIR / "var" / "oidc-key.pem")
)
_oidc_key = env.str("OIDC_RSA_PRIVATE_KEY", default="") or signing_key(OIDC_RSA_PRIVATE_KEY_FILE)
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": _oidc_key,
    "PKCE_REQUIRED": True,
    # S256 only, and tokens kept as SHA-256 checksums rather than in clear (RFC 9700).
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": _int_setting("OAUTH_ACCESS_TOKEN_SECONDS", 3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": _int_setting("OAUTH_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
    "ROTATE_REFRESH_TOKEN": True,
    # RFC 9700 (OAuth 2.0 Security BCP): no implicit or password grant, access tokens never in a URL,
    # `iss` in the authorization response (RFC 9207), and a replayed refresh token revokes its family.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # Production allows https (and custom native-app schemes) only: settings/production.py.
    "ALLOWED_REDIRECT_URI_SCHEMES": env.list("OAUTH_REDIRECT_URI_SCHEMES", default=["https", "http"]),
    "SCOPES_BACKEND_CLASS": "authz.oauth.SmartScopes",
    "OAUTH2_VALIDATOR_CLASS": "authz.oauth.Validator",
}
# Named explicitly so that migrations depending on them resolve (the models are not swapped).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
# The authorization endpoint sends a user who is not signed in here: the end users' page
# (authz/login.py), not the staff-only console login.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/accounts/"
# Failed sign-ins per account name within the window before the name is refused for the window.
FHIR_LOGIN_MAX_FAILURES = _int_setting("FHIR_LOGIN_MAX_FAILURES", 10)
FHIR_LOGIN_FAILURE_WINDOW = _int_setting("FHIR_LOGIN_FAILURE_WINDOW", 15 * 60)

# Key of the `pseudonymize` property filter (authz/filters.py): HMAC-SHA256 over element path and
# value. A key of its own, not SECRET_KEY: give it in FHIR_PSEUDONYM_KEY (at least 32 characters),
# or as a file path; in the embedded mode a random key is generated into the file on first use.
# Every server of a deployment needs the same key, and changing it changes every pseudonym.
FHIR_PSEUDONYM_KEY_FILE = env.str("FHIR_PSEUDONYM_KEY_FILE", default=str(BASE_DIR / "var" / "pseudonym.key"))
FHIR_PSEUDONYM_KEY = env.str("FHIR_PSEUDONYM_KEY", default="") or secret_key(FHIR_PSEUDONYM_KEY_FILE)
if len(FHIR_PSEUDONYM_KEY) < 32:
    raise ImproperlyConfigured("FHIR_PSEUDONYM_KEY must have at least 32 characters (e.g. 64 hex digits)")

# External OIDC issuers whose JWTs are accepted, as a JSON list of objects with the fields of
# authz.models.TrustedIssuer (issuer, jwks_url or discovery_url, audience, claim names, ...).
# More can be added in the console.
FHIR_TRUSTED_ISSUERS = env.json("FHIR_TRUSTED_ISSUERS", default=[])
# One audit row per FHIR API request (audit/). Off only to measure what auditing costs.
FHIR_AUDIT = env.bool("FHIR_AUDIT", default=True)
# The audit rows' hashes are HMAC-SHA256 under this key, kept outside the database, so that a
# rewritten chain does not verify without it. Give it in FHIR_AUDIT_KEY (at least 32 characters,
# the same for every process that writes or verifies the log, on every host), or as a file; in the
# embedded mode a key is generated into the file on first use (var/ is not committed).
FHIR_AUDIT_KEY_FILE = env.str("FHIR_AUDIT_KEY_FILE", default=str(BASE_DIR / "var" / "audit.key"))
FHIR_AUDIT_KEY = env.str("FHIR_AUDIT_KEY", default="") or secret_key(FHIR_AUDIT_KEY_FILE)
if len(FHIR_AUDIT_KEY) < 32:
    raise ImproperlyConfigured("FHIR_AUDIT_KEY must be at least 32 characters")
# Every process anchors the head of its audit chain (an AuditCheckpoint row, in the transaction of
# the row it names) with its first row, then every FHIR_AUDIT_ANCHOR_ROWS rows or, when it has
# written since, FHIR_AUDIT_ANCHOR_SECONDS after the last anchor: a deleted tail shows up to there.
FHIR_AUDIT_ANCHOR_ROWS = _int_setting("FHIR_AUDIT_ANCHOR_ROWS", 100)
FHIR_AUDIT_ANCHOR_SECONDS = _int_setting("FHIR_AUDIT_ANCHOR_SECONDS", 60)
# A file audit_anchor (and audit_verify) also append the chains' heads to, and audit_verify holds
# the database to; best somewhere the database's users cannot write. Empty: the database only.
FHIR_AUDIT_ANCHOR_FILE = env.str("FHIR_AUDIT_ANCHOR_FILE", default="")
# PostgreSQL: the role the application connects as, and the one audit_archive runs as, when they
# are not the role that owns the tables (docs/deployment.md). Set for `migrate`, which then grants
# them what they need and no more on the audit log (audit/roles.py). Empty: nothing is granted.
FHIR_DB_APP_ROLE = env.str("FHIR_DB_APP_ROLE", default="")
FHIR_DB_ARCHIVER_ROLE = env.str("FHIR_DB_ARCHIVER_ROLE", default="")
# Seconds a request waits for its process's audit chain (a write holds it from its row until its
# transaction ends) before it fails unaudited-and-unserved with a 500.
FHIR_AUDIT_LOCK_TIMEOUT = _int_setting("FHIR_AUDIT_LOCK_TIMEOUT", 10)
# Chains per process. One (the default) orders all of a process's rows in one sequence, and its
# write transactions commit one after another (each holds the chain until its commit). More let up
# to that many write transactions of one process commit side by side, each chain still gapless.
FHIR_AUDIT_CHAINS = _int_setting("FHIR_AUDIT_CHAINS", 1)
# `X-Explain: true` from an Admin caller answers with the rule chain's reasoning instead of the
# request's result (authz/explain.py).
FHIR_EXPLAIN = env.bool("FHIR_EXPLAIN", default=False)
# Tolerated clock difference when checking exp/nbf/iat of external JWTs, in seconds.
FHIR_JWT_LEEWAY = _int_setting("FHIR_JWT_LEEWAY", 60, minimum=0)
# API token lifetimes, seconds. Every token expires: FHIR_TOKEN_MAX_LIFETIME is the longest lifetime
# that `$api-token`, `$exchange-token` and `issue_token` accept (a longer one, or 0, is refused, never
# clamped); the TTLs are the lifetimes of tokens minted without one (durable tokens, including those
# traded for a one-time token at `$exchange-token`, and one-time tokens).
_TEN_YEARS = 10 * 365 * 24 * 3600  # an expiry date beyond that is a typo, not a policy
FHIR_TOKEN_MAX_LIFETIME = _int_setting("FHIR_TOKEN_MAX_LIFETIME", 365 * 24 * 3600)
FHIR_API_TOKEN_TTL = _int_setting("FHIR_API_TOKEN_TTL", 90 * 24 * 3600)
FHIR_ONE_TIME_TOKEN_TTL = _int_setting("FHIR_ONE_TIME_TOKEN_TTL", 24 * 3600)
if FHIR_TOKEN_MAX_LIFETIME > _TEN_YEARS:
    raise ImproperlyConfigured(f"FHIR_TOKEN_MAX_LIFETIME must be at most {_TEN_YEARS} seconds (ten years)")
for _name, _ttl in (
    ("FHIR_API_TOKEN_TTL", FHIR_API_TOKEN_TTL),
    ("FHIR_ONE_TIME_TOKEN_TTL", FHIR_ONE_TIME_TOKEN_TTL),
):
    if _ttl > FHIR_TOKEN_MAX_LIFETIME:
        raise ImproperlyConfigured(
            f"{_name} must not exceed FHIR_TOKEN_MAX_LIFETIME ({FHIR_TOKEN_MAX_LIFETIME})"
        )

# --- Subscriptions (subscriptions/) ---
# Who runs deliveries and periodic jobs: "embedded" (a background thread of the server process, the
# default without a broker), "celery" (workers and beat; the default with REDIS_URL or a
# CELERY_BROKER_URL), or "manual" (nothing runs by itself: tests and one-off commands).
FHIR_WORKER = env.str(
    "FHIR_WORKER", default="celery" if REDIS_URL or env.str("CELERY_BROKER_URL", default="") else "embedded"
)
if FHIR_WORKER not in ("embedded", "celery", "manual"):
    raise ImproperlyConfigured("FHIR_WORKER must be embedded, celery or manual")
# Endpoints notifications may reach beyond public addresses: host names, addresses, CIDR ranges.
FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS = env.str("FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS", default="")
# Attempts after the first before a delivery is dead and its subscription in `error`.
FHIR_SUBSCRIPTION_RETRIES = _int_setting("FHIR_SUBSCRIPTION_RETRIES", 6, minimum=0)
# Back-off: the n-th retry waits BACKOFF * 2**(n-1) seconds (at most BACKOFF_MAX), times a random
# factor between 0.5 and 1.5 so that receivers coming back are not hit by every retry at once.
FHIR_SUBSCRIPTION_BACKOFF = env.float("FHIR_SUBSCRIPTION_BACKOFF", default=2.0)
FHIR_SUBSCRIPTION_BACKOFF_MAX = env.float("FHIR_SUBSCRIPTION_BACKOFF_MAX", default=3600.0)
FHIR_SUBSCRIPTION_TIMEOUT = env.float("FHIR_SUBSCRIPTION_TIMEOUT", default=10.0)
# How long a claimed delivery stays with its worker before the sweep may give it to another (the
# worker died mid-attempt): longer than one attempt can take. 0, the default, means three timeouts
# (connect, send, read) and 30 s for the rest of the attempt.
FHIR_SUBSCRIPTION_LEASE = env.float("FHIR_SUBSCRIPTION_LEASE", default=0.0)
if FHIR_SUBSCRIPTION_LEASE and FHIR_SUBSCRIPTION_LEASE <= FHIR_SUBSCRIPTION_TIMEOUT:
    raise ImproperlyConfigured("FHIR_SUBSCRIPTION_LEASE must be longer than FHIR_SUBSCRIPTION_TIMEOUT")
FHIR_SUBSCRIPTION_MAX_PAYLOAD = _int_setting("FHIR_SUBSCRIPTION_MAX_PAYLOAD", 1024 * 1024)
# Subscriptions one subscriber may hold (not deleted); each costs matching work on every write.
FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER = _int_setting("FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER", 100)
# Deliveries the embedded worker runs at once (a slow receiver holds one of them, not the others).
FHIR_SUBSCRIPTION_THREADS = _int_setting("FHIR_SUBSCRIPTION_THREADS", 4)
# Signs every rest-hook and HTTP message delivery (X-FHIR-Signature) when set.
FHIR_SUBSCRIPTION_SIGNING_KEY = env.str("FHIR_SUBSCRIPTION_SIGNING_KEY", default="")
# Email notifications carry no clinical content unless this allows it.
FHIR_SUBSCRIPTION_EMAIL_CONTENT = env.bool("FHIR_SUBSCRIPTION_EMAIL_CONTENT", default=False)
FHIR_SUBSCRIPTION_EMAIL_FROM = env.str("FHIR_SUBSCRIPTION_EMAIL_FROM", default="fhir@localhost")
# Outbox events and finished deliveries are kept this many days (WebSocket replay reaches that far).
FHIR_SUBSCRIPTION_RETENTION_DAYS = _int_setting("FHIR_SUBSCRIPTION_RETENTION_DAYS", 7)
# false: writes record no outbox events, so no subscription is ever notified. Only for measuring what
# the outbox costs a write (`make bench`); never in a deployment that has subscriptions.
FHIR_SUBSCRIPTION_OUTBOX = env.bool("FHIR_SUBSCRIPTION_OUTBOX", default=True)
# WebSocket (subscriptions/consumers.py): notifications replayed to one `bind <id> <number>` at most,
# and subscriptions bound on one socket at most.
FHIR_WEBSOCKET_REPLAY_LIMIT = _int_setting("FHIR_WEBSOCKET_REPLAY_LIMIT", 1000)
FHIR_WEBSOCKET_MAX_BINDINGS = _int_setting("FHIR_WEBSOCKET_MAX_BINDINGS", 100)
# Seconds after which a binding is decided again (credential and rules) before its next ping.
FHIR_WEBSOCKET_RECHECK_SECONDS = _int_setting("FHIR_WEBSOCKET_RECHECK_SECONDS", 60, minimum=0)
# Seconds between the periodic sweeps of the embedded worker (expiry, purge, periodic jobs).
FHIR_WORKER_SWEEP_SECONDS = env.float("FHIR_WORKER_SWEEP_SECONDS", default=5.0)
# Seconds the embedded worker rests after a round: commits meanwhile are matched together.
FHIR_WORKER_MIN_INTERVAL = env.float("FHIR_WORKER_MIN_INTERVAL", default=0.1)

# --- CarePlan scheduling (careplans/) ---
# Every active CarePlan is materialised, not only those tagged careplan-scheduling|materialize.
FHIR_CAREPLAN_ALL_ACTIVE = env.bool("FHIR_CAREPLAN_ALL_ACTIVE", default=False)
# How far ahead Tasks are made (the rolling horizon), days.
FHIR_CAREPLAN_HORIZON_DAYS = _int_setting("FHIR_CAREPLAN_HORIZON_DAYS", 14)
# The zone of plans that name none (IANA name).
FHIR_DEFAULT_TIMEZONE = env.str("FHIR_DEFAULT_TIMEZONE", default="UTC")
try:
    import zoneinfo as _zoneinfo

    _zoneinfo.ZoneInfo(FHIR_DEFAULT_TIMEZONE)
except Exception as _exc:
    raise ImproperlyConfigured(
        f"FHIR_DEFAULT_TIMEZONE '{FHIR_DEFAULT_TIMEZONE}' is not an IANA zone"
    ) from _exc
# Local times of Timing.code (BID, TID...) and of Timing.repeat.when (MORN, ACM, HS...): JSON objects
# that replace the defaults of careplans/timing.py entry by entry.
FHIR_CAREPLAN_CODE_TIMES = env.json("FHIR_CAREPLAN_CODE_TIMES", default={})
FHIR_CAREPLAN_WHEN_TIMES = env.json("FHIR_CAREPLAN_WHEN_TIMES", default={})
# The status a Task takes when its window closes unfulfilled ("failed"), or "" to leave it.
FHIR_CAREPLAN_OVERDUE_STATUS = env.str("FHIR_CAREPLAN_OVERDUE_STATUS", default="failed")
if FHIR_CAREPLAN_OVERDUE_STATUS not in ("", "failed", "cancelled", "rejected"):
    raise ImproperlyConfigured("FHIR_CAREPLAN_OVERDUE_STATUS must be failed, cancelled, rejected or empty")
# What one plan may ask for: activities scheduled, and Tasks made per plan and window (the rest are
# warnings); a plan cannot make the scheduler write without bound.
FHIR_CAREPLAN_MAX_ACTIVITIES = _int_setting("FHIR_CAREPLAN_MAX_ACTIVITIES", 100)
FHIR_CAREPLAN_MAX_TASKS_PER_PLAN = _int_setting("FHIR_CAREPLAN_MAX_TASKS_PER_PLAN", 1000)
# Tasks moved to ready/overdue per run of the minute job, and plans per materialisation batch.
FHIR_CAREPLAN_ADVANCE_BATCH = _int_setting("FHIR_CAREPLAN_ADVANCE_BATCH", 2000)
FHIR_CAREPLAN_BATCH_PLANS = _int_setting("FHIR_CAREPLAN_BATCH_PLANS", 200)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
