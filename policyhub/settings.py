"""PolicyHub settings, read from the environment (see README, "Configuration").

Defaults make `make run` work with no services: SQLite and in-process tasks. Production values
(PostgreSQL, Redis, a real secret) come from the environment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from policyhub.env import env_bool, env_int, env_list, env_str


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, as a Content-Security-Policy source."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# Django's generic classes (ModelAdmin[Model], fields) subscriptable at run time, as typed.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# One machine, on loopback, over plain HTTP (`make run`): a development secret key, mail on the
# console, cookies and links without HTTPS. Not Django's debug mode, which shows tracebacks and
# its own error pages instead of PolicyHub's: that stays DEBUG, off unless asked for.
LOCAL = env_bool("LOCAL", DEBUG)
# The insecure default only exists so the quickstart runs; `check --deploy` flags it.
SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-change-me" if LOCAL else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Sign-in: email accounts with verification, password reset, MFA (TOTP, recovery codes,
    # WebAuthn) and OpenID Connect single sign-on.
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    # The API's OpenAPI schema, its interactive page (assets served locally), and list filters.
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    # PolicyHub's apps, lowest layer first (docs/architecture.md: each imports only those above
    # it in this list, as tests/test_architecture.py checks).
    "policyhub.audit",
    "policyhub.accounts",
    "policyhub.teams",
    "policyhub.policies",
    "policyhub.rendering",
    "policyhub.changes",
    "policyhub.releases",
    "policyhub.fleet",
    "policyhub.delivery",
    "policyhub.exports",
    "policyhub.web",
    "rest_framework",
]

MIDDLEWARE = [
    # Device fetches are answered here, before the stack below (delivery/middleware.py).
    "policyhub.delivery.middleware.DeliveryFastPath",
    # The source address and request id of every audit event the request writes.
    "policyhub.audit.context.RequestOrigin",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Request bodies bounded per endpoint before they are read.
    "policyhub.bodies.BodyLimit",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "policyhub.urls"
WSGI_APPLICATION = "policyhub.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'policyhub.sqlite3'}"),
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # An unreachable database fails a request in seconds, not after minutes of TCP retries.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # No JIT compilation: the fleet's per-device state queries are estimated as costly enough
    # to compile, and compiling took 0.4 s of a 0.75 s dashboard query at 100,000 devices
    # (bench/pages.py), far more than it saved. PolicyHub's queries are short.
    DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Encrypts signing keys at rest. Falls back to SECRET_KEY so that `make run` and the tests need
# none; `check --deploy` requires a strong one of its own in production (releases/checks.py).
SIGNING_KEY_SECRET = env_str("SIGNING_KEY_SECRET", SECRET_KEY)

REDIS_URL = env_str("REDIS_URL", "")


def redis_cache(url: str) -> dict[str, Any]:
    """The cache on the Redis at `url`. It holds only what may be lost (rate limits, used one-time
    codes) and acts as an empty cache while Redis is unreachable, so that signing in keeps
    working through a Redis outage (policyhub/caches.py). A Redis that does not answer at all
    (a dropped route rather than a refused connection) costs a request at most a second."""
    return {
        "BACKEND": "policyhub.caches.ResilientRedisCache",
        "LOCATION": url,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }


if REDIS_URL:
    CACHES = {"default": redis_cache(REDIS_URL)}

# Celery: a Redis broker when REDIS_URL is set; otherwise tasks run in-process (quickstart).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
# Scheduled publish: every minute, a publish run for each organisation with a due change set.
CELERY_BEAT_SCHEDULE = {
    # Scheduled change sets whose time has come get a publish run.
    "publish-due-change-sets": {
        "task": "policyhub.releases.tasks.publish_due_change_sets_task",
        "schedule": 60.0,
    },
    # Runs that lost their task (broker down at commit) or their worker go out again.
    "publish-runs-recover": {
        "task": "policyhub.releases.tasks.publish_runs_recover_task",
        "schedule": 60.0,
    },
    # Releases signed by a revoked key whose re-signing task was lost are re-signed.
    "releases-resign-recover": {
        "task": "policyhub.releases.tasks.releases_resign_recover_task",
        "schedule": 60.0,
    },
}
# A task whose worker died unacknowledged is delivered again after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
# A running publish whose worker has not finished it within this time may be claimed again.
PUBLISH_LEASE_SECONDS = env_int("PUBLISH_LEASE_SECONDS", 900)
if PUBLISH_LEASE_SECONDS < 2:
    raise ImproperlyConfigured("PUBLISH_LEASE_SECONDS must be at least 2 seconds")
# So it is stopped before its lease ends (no two workers ever publish one run): the soft limit
# raises inside the publish, which rolls back and fails the run with the reason; the hard limit
# ends a worker process that did not stop.
PUBLISH_SOFT_TIME_LIMIT = PUBLISH_LEASE_SECONDS - max(1, min(60, PUBLISH_LEASE_SECONDS // 10))
PUBLISH_TIME_LIMIT = PUBLISH_LEASE_SECONDS
# Any other task: the periodic sweeps run every minute and take well under a second.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 45)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 55)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- sign-in (django-allauth) -------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
# Where links in mails (invitations, verification) point: the address people reach PolicyHub at.
BASE_URL = env_str("BASE_URL", "http://127.0.0.1:8000" if LOCAL else f"https://{ALLOWED_HOSTS[0]}")
# People sign in with their email address, which must be verified before it signs anyone in.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[PolicyHub] "
# Nobody signs up uninvited (policyhub.accounts.adapters).
ACCOUNT_ADAPTER = "policyhub.accounts.adapters.InvitationOnlyAccountAdapter"
# So a password reset for an address with no account mails nothing (allauth would invite it to
# sign up, which only an invitation opens).
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
# allauth's rate limits (its defaults, written out: they are part of the product): failed sign-ins
# 10 a minute per address and 5 per 5 minutes per account; they live in the cache (Redis in
# production, shared by every process).
ACCOUNT_RATE_LIMITS = {
    "login_failed": env_str("LOGIN_FAILED_RATE", "10/m/ip,5/5m/key"),
    "login": "30/m/ip",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
}
# Client addresses behind NUM_PROXIES trusted proxies (the same count the device API uses).
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("NUM_PROXIES", 0)
# Two-factor: an authenticator app (TOTP) with recovery codes, and security keys (WebAuthn).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "PolicyHub"
# A phone's clock may be a step (30 s) off: the codes of the neighbouring steps count too.
MFA_TOTP_TOLERANCE = 1
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = LOCAL
# Single sign-on: one OpenID Connect provider, configured from the environment.
OIDC_ISSUER = env_str("OIDC_ISSUER", "")
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": "sso",
                "name": env_str("OIDC_NAME", "Single sign-on"),
                "client_id": env_str("OIDC_CLIENT_ID", ""),
                "secret": env_str("OIDC_CLIENT_SECRET", ""),
                "settings": {"server_url": OIDC_ISSUER},
            }
        ]
        if OIDC_ISSUER
        else [],
    }
}

# --- mail: verification, password reset, invitations ---------------------------------------------
# Printed on the console under `make run`; SMTP from the environment in production.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if LOCAL
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "PolicyHub <policyhub@localhost>")

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Under `make run` the static files are served from the apps' folders, with no collectstatic.
WHITENOISE_USE_FINDERS = LOCAL
WHITENOISE_AUTOREFRESH = LOCAL
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Production hardening; `manage.py check --deploy` runs in the test command.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not LOCAL
CSRF_COOKIE_SECURE = not LOCAL
# A working day's session, renewed while in use; gone when the browser closes.
SESSION_COOKIE_AGE = env_int("SESSION_HOURS", 12) * 3600
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not LOCAL)
SECURE_HSTS_SECONDS = 0 if LOCAL else 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = not LOCAL
SECURE_HSTS_PRELOAD = not LOCAL
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): our own scripts, styles and images only (data: for the
# authenticator's QR code), no framing, forms only to ourselves and the SSO provider.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        # Signing in through SSO posts here, then redirects the form to the provider.
        "form-action": ["'self'", *([_origin(OIDC_ISSUER)] if OIDC_ISSUER else [])],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "policyhub.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, read strictly: bad UTF-8, deep nesting, NaN and duplicate keys are a 400.
    "DEFAULT_PARSER_CLASSES": ["policyhub.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "policyhub.apis.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "UNAUTHENTICATED_USER": None,
    # Enrolment tokens are guessed at nowhere near this rate; a script trying is slowed to it.
    "DEFAULT_THROTTLE_RATES": {"enroll": env_str("ENROLL_RATE", "30/min")},
    # Proxies in front of the app (1 behind nginx): the client address for rate limits is the
    # one the nearest proxy saw, not whatever a client writes into X-Forwarded-For.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}

# The OpenAPI description of /api/v1 (drf-spectacular); `make test` validates it.
SPECTACULAR_SETTINGS = {
    "TITLE": "PolicyHub API",
    "DESCRIPTION": (
        "Organisation policies, change sets, releases and the fleet of the Codex CLI. "
        "Authenticate with an API token (`Authorization: Bearer pht_...`); every write of an "
        "edited object sends `If-Match` with the ETag of its last read."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets that share a field name across the API, each under a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "PublishRunStatusEnum": "policyhub.releases.models.PublishRun.Status",
        "SigningKeyStatusEnum": "policyhub.releases.models.SigningKey.Status",
        "ReleaseStateEnum": "policyhub.releases.apis.RELEASE_STATES",
        "ReleaseFileChangeEnum": "policyhub.releases.apis.FILE_CHANGES",
        "ChangeSetStatusEnum": "policyhub.changes.models.ChangeSet.Status",
        "ProviderKindEnum": "policyhub.policies.apis.KIND_CHOICES",
        "DeviceStateEnum": "policyhub.fleet.selectors.DEVICE_STATES",
        "CodexWindowEnum": "policyhub.fleet.selectors.WINDOW_STATES",
    },
}

# Delivery. Fetches are answered from the host's delivery index, one SQLite file per host and
# database that every web process reads and one of them keeps current from PostgreSQL's change
# announcements (LISTEN/NOTIFY; delivery/cache.py); on SQLite every fetch reads the database.
DELIVERY_CACHE = env_bool("DELIVERY_CACHE", DATABASES["default"]["ENGINE"].endswith("postgresql"))
# Where the index lives: a directory private to the server's user, on a local disk.
DELIVERY_INDEX_DIR = os.environ.get(
    "DELIVERY_INDEX_DIR", os.path.join(tempfile.gettempdir(), f"policyhub-delivery-{os.getuid()}")
)
# How long a process trusts PostgreSQL's word that a credential is no device.
DELIVERY_CACHE_SECONDS = env_int("DELIVERY_CACHE_SECONDS", 300)
# Team entries each process keeps decoded (the rest are read from the index when used).
DELIVERY_TEAM_ENTRIES = env_int("DELIVERY_TEAM_ENTRIES", 500)
# Devices each process keeps as it last found them in the index (about 400 bytes each, 8 MB at
# the default), used while the index has not changed since: a steady fleet's fetches skip SQLite.
DELIVERY_DEVICE_ENTRIES = env_int("DELIVERY_DEVICE_ENTRIES", 20_000)
# Fetch counts (last seen, revision served) are written in batches at most this often.
DELIVERY_FLUSH_SECONDS = env_int("DELIVERY_FLUSH_SECONDS", 2)
# An agent's status report is a few hundred bytes; anything past this is refused with 413.
DEVICE_STATUS_MAX_BYTES = env_int("DEVICE_STATUS_MAX_BYTES", 64 * 1024)
# A device with no fetch or report for this long counts as stale in fleet status.
FLEET_STALE_AFTER_HOURS = env_int("FLEET_STALE_AFTER_HOURS", 24)

# Request bodies (policyhub/bodies.py; docs/limits.md lists every endpoint's): a form post and
# an API request may be this large unless the endpoint says otherwise; none may be larger than
# the largest endpoint's (a whole policy document, JSON-escaped).
FORM_BODY_MAX_BYTES = API_BODY_MAX_BYTES = 2 * 1024 * 1024
# A whole document (policies/limits.py: 8,000,000 characters) sent as UTF-8 JSON: escaping takes
# a line break or a quote to two bytes. A client escaping all non-ASCII text (\uXXXX, six bytes
# a character) fits a smaller document.
DOCUMENT_BODY_MAX_BYTES = 16_000_000
DATA_UPLOAD_MAX_MEMORY_SIZE = DOCUMENT_BODY_MAX_BYTES

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "policyhub.logfilters.RedactSecrets"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django's own handlers (request and development-server lines) without the redaction filter
    # would print the native channel's URL, credential included.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
