"""PolicyHub settings, read from the environment (see README, "Configuration").

Defaults make `make run` work with no services: SQLite and in-process tasks. Production values
(PostgreSQL, Redis, a real secret) come from the environment.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from policyhub.env import env_bool, env_int, env_list, env_str

# Django's generic classes (ModelAdmin[Model], fields) subscriptable at run time, as typed.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# The insecure default only exists so the quickstart runs; `check --deploy` flags it.
SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-change-me" if DEBUG else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
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
    "policyhub.web",
    "rest_framework",
]

MIDDLEWARE = [
    # Device fetches are answered here, before the stack below (delivery/middleware.py).
    "policyhub.delivery.middleware.DeliveryFastPath",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Encrypts signing keys at rest; defaults to SECRET_KEY, set it separately to rotate either alone.
SIGNING_KEY_SECRET = env_str("SIGNING_KEY_SECRET", SECRET_KEY)

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }

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
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Production hardening; `manage.py check --deploy` runs in the test command.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = 0 if DEBUG else 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "policyhub.apis.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Enrolment tokens are guessed at nowhere near this rate; a script trying is slowed to it.
    "DEFAULT_THROTTLE_RATES": {"enroll": env_str("ENROLL_RATE", "30/min")},
    # Proxies in front of the app (1 behind nginx): the client address for rate limits is the
    # one the nearest proxy saw, not whatever a client writes into X-Forwarded-For.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}

# Delivery. Device lookups and release bodies are held in each web process and dropped the
# moment PostgreSQL announces a change (LISTEN/NOTIFY); on SQLite every fetch reads the database.
DELIVERY_CACHE = env_bool("DELIVERY_CACHE", DATABASES["default"]["ENGINE"].endswith("postgresql"))
# Even without an announcement, a cached entry is re-read after this long.
DELIVERY_CACHE_SECONDS = env_int("DELIVERY_CACHE_SECONDS", 300)
# Fetch counts (last seen, revision served) are written in batches at most this often.
DELIVERY_FLUSH_SECONDS = env_int("DELIVERY_FLUSH_SECONDS", 2)
# An agent's status report is a few hundred bytes; anything past this is refused with 413.
DEVICE_STATUS_MAX_BYTES = env_int("DEVICE_STATUS_MAX_BYTES", 64 * 1024)
# A device with no fetch or report for this long counts as stale in fleet status.
FLEET_STALE_AFTER_HOURS = env_int("FLEET_STALE_AFTER_HOURS", 24)

# Policy documents arrive as request bodies later; bound them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

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
