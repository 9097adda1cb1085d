"""Gantry settings, read from the environment only.

With nothing set, Gantry runs on its embedded default: SQLite under var/, a Celery broker on the
filesystem under var/, a file cache, and Google's real API endpoints (the demo points them at the
sandbox). See the configuration table in README.md for every variable.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GANTRY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _embedded_secret_key() -> str:
    """A per-checkout key kept in var/, so sessions survive restarts of the embedded default."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _embedded_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_beat",
    "portal",
    "audit",
    "environments",
    "deployments",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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


# Database: DATABASE_URL, or SQLite under var/. PostgreSQL and MySQL/MariaDB (Cloud SQL) supported.
def _database_config() -> dict:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'gantry.sqlite3'}"
    config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")))
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        # Web, worker and beat share the file: WAL lets readers run beside one writer, and
        # IMMEDIATE transactions take the write lock up front instead of failing half-way.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif engine.endswith("mysql"):
        config.setdefault("OPTIONS", {}).update(
            {"charset": "utf8mb4", "isolation_level": "read committed"}
        )
    if test_name := os.environ.get("GANTRY_TEST_DB_NAME"):
        config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker and Django cache when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gantry",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery: Redis when REDIS_URL is set, else kombu's filesystem transport under var/ (no server).
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "portal.tasks.heartbeat", "schedule": 15.0},
    "probe-due-environments": {"task": "environments.tasks.probe_due", "schedule": 5.0},
    "prune-samples": {"task": "environments.tasks.prune", "schedule": 3600.0},
    "reconcile-deployments": {
        "task": "deployments.tasks.reconcile_deployments",
        "schedule": 30.0,
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

if not DEBUG:
    # Behind the HTTPS load balancer: trust its X-Forwarded-Proto, redirect plain HTTP (but not
    # the load balancer's own health checks), and pin HTTPS with HSTS.
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Gantry's own settings. Empty endpoints mean Google's real APIs.
GANTRY_TOPOLOGY_FILE = Path(
    os.environ.get("GANTRY_TOPOLOGY_FILE", BASE_DIR / "topology" / "nemo.yaml")
)
GANTRY_GCP_PROJECT = os.environ.get("GANTRY_GCP_PROJECT", "")
GANTRY_COMPUTE_ENDPOINT = os.environ.get("GANTRY_COMPUTE_ENDPOINT", "")
GANTRY_CLOUDBUILD_ENDPOINT = os.environ.get("GANTRY_CLOUDBUILD_ENDPOINT", "")
GANTRY_REGISTRY_URL = os.environ.get("GANTRY_REGISTRY_URL", "")
GANTRY_STACK_URL = os.environ.get("GANTRY_STACK_URL", "")
GANTRY_PROBE_TARGETS = os.environ.get("GANTRY_PROBE_TARGETS", "")
GANTRY_PROBE_TIMEOUT = float(os.environ.get("GANTRY_PROBE_TIMEOUT", "3"))
GANTRY_PROBE_SLOW_MS = float(os.environ.get("GANTRY_PROBE_SLOW_MS", "1000"))
GANTRY_STATUS_CONFIRMATIONS = int(os.environ.get("GANTRY_STATUS_CONFIRMATIONS", "3"))
GANTRY_SAMPLE_RETENTION_HOURS = int(os.environ.get("GANTRY_SAMPLE_RETENTION_HOURS", "48"))
GANTRY_ROLLUP_RETENTION_DAYS = int(os.environ.get("GANTRY_ROLLUP_RETENTION_DAYS", "30"))
GANTRY_GITHUB_WEBHOOK_SECRET = os.environ.get("GANTRY_GITHUB_WEBHOOK_SECRET", "")
GANTRY_APPROVAL_TTL = int(os.environ.get("GANTRY_APPROVAL_TTL", str(24 * 3600)))
# Deployment engine (each may be overridden per component in the topology's `options`).
GANTRY_ENGINE_POLL_SECONDS = float(os.environ.get("GANTRY_ENGINE_POLL_SECONDS", "2"))
GANTRY_STEP_LEASE_SECONDS = int(os.environ.get("GANTRY_STEP_LEASE_SECONDS", "120"))
GANTRY_MAX_RETRIES = int(os.environ.get("GANTRY_MAX_RETRIES", "6"))
GANTRY_ROLLOUT_TIMEOUT = float(os.environ.get("GANTRY_ROLLOUT_TIMEOUT", "900"))
GANTRY_VERIFY_PASSES = int(os.environ.get("GANTRY_VERIFY_PASSES", "3"))
GANTRY_VERIFY_INTERVAL = float(os.environ.get("GANTRY_VERIFY_INTERVAL", "5"))
GANTRY_VERIFY_TIMEOUT = float(os.environ.get("GANTRY_VERIFY_TIMEOUT", "300"))
GANTRY_CANARY_SIZE = os.environ.get("GANTRY_CANARY_SIZE", "1")
GANTRY_WARM_SECONDS = float(os.environ.get("GANTRY_WARM_SECONDS", "300"))
# How late a step may be before the beat's reconcile re-enqueues it (a dead worker, a lost task).
GANTRY_RECONCILE_GRACE_SECONDS = float(os.environ.get("GANTRY_RECONCILE_GRACE_SECONDS", "60"))
GANTRY_HEALTHZ_TIMEOUT = float(os.environ.get("GANTRY_HEALTHZ_TIMEOUT", "2"))
