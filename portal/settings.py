"""Gantry settings, read from the environment only.

With nothing set, Gantry runs on its embedded default: SQLite under var/, a Celery broker in a
second SQLite file under var/, a file cache, and Google's real API endpoints (the demo points them
at the sandbox). See the configuration table in README.md for every variable.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal import broker

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
    # The JSON API (portal/api.py); listed so its Swagger UI comes from static files, not a CDN.
    "ninja",
    "axes",
    "csp",
    "portal",
    "audit",
    "environments",
    "deployments",
    "github",
    "notifications",
    "insights",
]
# The demo wiring (demo/: `manage.py sandbox`, `manage.py create_demo_users`) is installed only
# for the demo and the tests: GANTRY_DEMO=1 (`make demo` and Procfile.demo set it), or by
# default whenever DEBUG is on, as it is for the tests. Production (DEBUG=0) does not ship it.
GANTRY_DEMO = env_bool("GANTRY_DEMO", DEBUG)
if GANTRY_DEMO:
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    # First, so every response (redirects and refusals too) and its log lines carry the id.
    "portal.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a parameter: a NUL (\0) in one is a 400, not PostgreSQL's 500.
    "portal.middleware.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Signs in the user of a verified IAP assertion; does nothing without GANTRY_IAP_AUDIENCE.
    "portal.iap.IapMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
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
                "deployments.context_processors.approvals_inbox",
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
    if not engine.endswith("sqlite3"):
        # A database server that does not answer fails the request in seconds (a 503,
        # portal.views.server_error) instead of holding it until the client gives up.
        config.setdefault("OPTIONS", {})["connect_timeout"] = int(
            os.environ.get("GANTRY_DB_CONNECT_TIMEOUT", "5")
        )
    if test_name := os.environ.get("GANTRY_TEST_DB_NAME"):
        config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker and Django cache when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")


def redis_cache(url: str) -> dict:
    """The cache on Redis, which only ever saves work: while Redis is away every read misses and
    every write is dropped (django-redis's IGNORE_EXCEPTIONS, logged), so a webhook, an approval
    or a page never fails because of it."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "gantry",
        "OPTIONS": {
            "IGNORE_EXCEPTIONS": True,
            "LOG_IGNORED_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    }


if REDIS_URL:
    CACHES = {"default": redis_cache(REDIS_URL)}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery: Redis when REDIS_URL is set, else kombu's SQLAlchemy transport on its own SQLite file
# under var/ (no server; portal/broker.py says why not the filesystem transport).
# A publish gives up within seconds when Redis is away (the caller logs it and a beat
# reconciler sends the message later); it never hangs a request.
REDIS_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_BROKER_TRANSPORT_OPTIONS
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = broker.embedded(VAR_DIR)
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
    "redeliver-notifications": {"task": "notifications.tasks.redeliver_stale", "schedule": 60.0},
    "reconcile-deliveries": {"task": "github.tasks.reconcile_deliveries", "schedule": 30.0},
    "sweep-protection-rules": {"task": "github.tasks.sweep_protection_rules", "schedule": 60.0},
    "prune-broker": {"task": "portal.tasks.prune_broker", "schedule": 3600.0},
    "github-catch-up": {
        "task": "github.tasks.catch_up",
        "schedule": float(os.environ.get("GANTRY_GITHUB_CATCHUP_SECONDS", "300")),
    },
}
# Notifications have their own queue (a Redis list named "notifications" when REDIS_URL is set):
# slow webhooks never sit in front of deployment steps. Workers consume `-Q celery,notifications`.
CELERY_TASK_ROUTES = {
    "notifications.tasks.deliver": {"queue": "notifications"},
    "notifications.tasks.redeliver_stale": {"queue": "notifications"},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes counts failed sign-ins per username and address; AxesStandaloneBackend comes first
# so a locked-out pair is refused before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("GANTRY_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("GANTRY_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_SENSITIVE_PARAMETERS = ["password", "token", "secret"]
AXES_CLIENT_IP_CALLABLE = "portal.addresses.client_address"


def env_networks(name: str) -> list[str]:
    """A comma-separated list of CIDRs (a bare address is a /32 or /128), each checked here so a
    typo refuses to start instead of trusting or allowing nothing."""
    import ipaddress

    networks = []
    for entry in env_list(name):
        try:
            networks.append(str(ipaddress.ip_network(entry)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not a network ({exc})") from None
    return networks


# Proxies whose X-Forwarded-For entries are believed (portal/addresses.py): empty trusts none.
# Behind GCP's external Application Load Balancer: 35.191.0.0/16, 130.211.0.0/22 and the load
# balancer's own address (docs/sign-in.md).
if "GANTRY_TRUSTED_PROXY_HOPS" in os.environ:
    raise ImproperlyConfigured(
        "GANTRY_TRUSTED_PROXY_HOPS is replaced by GANTRY_TRUSTED_PROXIES, the networks of the "
        "proxies in front of Gantry (docs/sign-in.md); unset it"
    )
GANTRY_TRUSTED_PROXIES = env_networks("GANTRY_TRUSTED_PROXIES")

# Sign-in through Identity-Aware Proxy (docs/sign-in.md). With an audience set, every request must
# carry IAP's signed assertion, and passwords work only beside it with GANTRY_LOCAL_LOGIN=1.
GANTRY_IAP_AUDIENCE = os.environ.get("GANTRY_IAP_AUDIENCE", "")
GANTRY_IAP_KEYS_URL = os.environ.get(
    "GANTRY_IAP_KEYS_URL", "https://www.gstatic.com/iap/verify/public_key-jwk"
)
GANTRY_IAP_ROLES = os.environ.get("GANTRY_IAP_ROLES", "")
GANTRY_LOCAL_LOGIN = env_bool("GANTRY_LOCAL_LOGIN", False)
AUTHENTICATION_BACKENDS.append("portal.iap.IapBackend")
if GANTRY_IAP_AUDIENCE and not GANTRY_LOCAL_LOGIN:
    AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")

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
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy: everything from Gantry itself, no inline script or style anywhere.
# SVG charts are markup, not images, so img-src needs only 'self' and data: for the admin's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Logs (docs/observability.md): one JSON object per line, or text for a terminal (the default
# with DEBUG on). Either way each line carries its request/deployment id, and secrets are blanked.
GANTRY_LOG_FORMAT = os.environ.get("GANTRY_LOG_FORMAT", "") or ("text" if DEBUG else "json")
if GANTRY_LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"GANTRY_LOG_FORMAT={GANTRY_LOG_FORMAT!r}: use json or text")
# Celery workers keep this configuration instead of installing their own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "portal.logs.ContextFilter"},
        "redact": {"()": "portal.logs.RedactSecrets"},
    },
    "formatters": {
        "text": {"()": "portal.logs.PlainFormatter"},
        "json": {"()": "portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": GANTRY_LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request's full URL at INFO; webhook URLs carry their keys.
    "loggers": {"httpx": {"level": "WARNING"}},
}

# Gantry's own settings. Empty endpoints mean Google's real APIs.
GANTRY_TOPOLOGY_FILE = Path(
    os.environ.get("GANTRY_TOPOLOGY_FILE", BASE_DIR / "topology" / "nemo.yaml")
)
GANTRY_GCP_PROJECT = os.environ.get("GANTRY_GCP_PROJECT", "")
GANTRY_COMPUTE_ENDPOINT = os.environ.get("GANTRY_COMPUTE_ENDPOINT", "")
GANTRY_CLOUDBUILD_ENDPOINT = os.environ.get("GANTRY_CLOUDBUILD_ENDPOINT", "")
GANTRY_REGISTRY_URL = os.environ.get("GANTRY_REGISTRY_URL", "")
# host:port; plaintext only for loopback; empty means Google.
GANTRY_MONITORING_ENDPOINT = os.environ.get("GANTRY_MONITORING_ENDPOINT", "")
# How often the dashboards' Cloud Monitoring figures are read (environments/cloud.py): its
# samples are a minute apart, so reading more often finds nothing new.
GANTRY_CLOUD_METRICS_SECONDS = float(os.environ.get("GANTRY_CLOUD_METRICS_SECONDS", "60"))
# Verification fails when the load balancer's 5xx share for the component passes this (%) in
# any whole minute of it (deployments/verification.py); per component `verify_5xx_ceiling`.
GANTRY_VERIFY_5XX_CEILING = float(os.environ.get("GANTRY_VERIFY_5XX_CEILING", "10"))
GANTRY_STACK_URL = os.environ.get("GANTRY_STACK_URL", "")
GANTRY_PROBE_TARGETS = os.environ.get("GANTRY_PROBE_TARGETS", "")
GANTRY_PROBE_TIMEOUT = float(os.environ.get("GANTRY_PROBE_TIMEOUT", "3"))
GANTRY_PROBE_SLOW_MS = float(os.environ.get("GANTRY_PROBE_SLOW_MS", "1000"))
# Probes of one sweep in flight at once (environments/probes.py: probe_all says why a bound).
GANTRY_PROBE_CONCURRENCY = int(os.environ.get("GANTRY_PROBE_CONCURRENCY", "512"))
GANTRY_STATUS_CONFIRMATIONS = int(os.environ.get("GANTRY_STATUS_CONFIRMATIONS", "3"))
GANTRY_SAMPLE_RETENTION_HOURS = int(os.environ.get("GANTRY_SAMPLE_RETENTION_HOURS", "48"))
GANTRY_ROLLUP_RETENTION_DAYS = int(os.environ.get("GANTRY_ROLLUP_RETENTION_DAYS", "30"))
GANTRY_GITHUB_WEBHOOK_SECRET = os.environ.get("GANTRY_GITHUB_WEBHOOK_SECRET", "")
# Back to GitHub (docs/github.md): a token, or a GitHub App (id, private key, installation).
# Nothing is sent to GitHub unless one of them is set.
GANTRY_GITHUB_API_URL = os.environ.get("GANTRY_GITHUB_API_URL", "https://api.github.com")
GANTRY_GITHUB_TOKEN = os.environ.get("GANTRY_GITHUB_TOKEN", "")
GANTRY_GITHUB_APP_ID = os.environ.get("GANTRY_GITHUB_APP_ID", "")
GANTRY_GITHUB_APP_PRIVATE_KEY = os.environ.get("GANTRY_GITHUB_APP_PRIVATE_KEY", "")
GANTRY_GITHUB_APP_PRIVATE_KEY_FILE = os.environ.get("GANTRY_GITHUB_APP_PRIVATE_KEY_FILE", "")
GANTRY_GITHUB_APP_INSTALLATION_ID = os.environ.get("GANTRY_GITHUB_APP_INSTALLATION_ID", "")
GANTRY_GITHUB_DEPLOYMENT_STATUSES = env_bool("GANTRY_GITHUB_DEPLOYMENT_STATUSES", False)
# How long an accepted build waits for its image to appear in the registry (CI may still be
# pushing) before the delivery fails with the reason.
GANTRY_IMAGE_WAIT_SECONDS = float(os.environ.get("GANTRY_IMAGE_WAIT_SECONDS", "600"))
# Catch-up of missed builds (docs/github-actions.md): how far back its first run looks.
GANTRY_GITHUB_CATCHUP_HOURS = float(os.environ.get("GANTRY_GITHUB_CATCHUP_HOURS", "24"))
# A protection rule no release of its commit reaches within this long is answered "rejected".
GANTRY_PROTECTION_RULE_TIMEOUT = float(os.environ.get("GANTRY_PROTECTION_RULE_TIMEOUT", "3600"))
# Gantry's own address as people reach it, for links sent elsewhere (GitHub, notifications).
GANTRY_BASE_URL = os.environ.get("GANTRY_BASE_URL", "").rstrip("/")
GANTRY_APPROVAL_TTL = int(os.environ.get("GANTRY_APPROVAL_TTL", str(24 * 3600)))
# Deployment engine (each may be overridden per component in the topology's `options`).
GANTRY_ENGINE_POLL_SECONDS = float(os.environ.get("GANTRY_ENGINE_POLL_SECONDS", "2"))
GANTRY_STEP_LEASE_SECONDS = int(os.environ.get("GANTRY_STEP_LEASE_SECONDS", "120"))
GANTRY_MAX_RETRIES = int(os.environ.get("GANTRY_MAX_RETRIES", "6"))
GANTRY_ROLLOUT_TIMEOUT = float(os.environ.get("GANTRY_ROLLOUT_TIMEOUT", "900"))
# A promotion whose Cloud Build is still queued, pending approval or working after this many
# seconds cancels it and fails.
GANTRY_PROMOTION_TIMEOUT = float(os.environ.get("GANTRY_PROMOTION_TIMEOUT", "1800"))
GANTRY_VERIFY_PASSES = int(os.environ.get("GANTRY_VERIFY_PASSES", "3"))
GANTRY_VERIFY_INTERVAL = float(os.environ.get("GANTRY_VERIFY_INTERVAL", "5"))
GANTRY_VERIFY_TIMEOUT = float(os.environ.get("GANTRY_VERIFY_TIMEOUT", "300"))
# Gantry-made instance templates kept per component (newest first) once unused, for rollback.
GANTRY_TEMPLATES_KEPT = int(os.environ.get("GANTRY_TEMPLATES_KEPT", "5"))
GANTRY_CANARY_SIZE = os.environ.get("GANTRY_CANARY_SIZE", "1")
GANTRY_WARM_SECONDS = float(os.environ.get("GANTRY_WARM_SECONDS", "300"))
# How late a step may be before the beat's reconcile re-enqueues it (a dead worker, a lost task).
GANTRY_RECONCILE_GRACE_SECONDS = float(os.environ.get("GANTRY_RECONCILE_GRACE_SECONDS", "60"))
GANTRY_HEALTHZ_TIMEOUT = float(os.environ.get("GANTRY_HEALTHZ_TIMEOUT", "2"))
# Seconds the dashboards' readings are shared between viewers (until the next sweep at the most).
GANTRY_DASHBOARD_CACHE_SECONDS = float(os.environ.get("GANTRY_DASHBOARD_CACHE_SECONDS", "5"))
# /metrics (docs/observability.md): Prometheus's bearer token, and how many days of finished
# deployments the duration histogram covers.
GANTRY_METRICS_TOKEN = os.environ.get("GANTRY_METRICS_TOKEN", "")
GANTRY_METRICS_WINDOW_DAYS = int(os.environ.get("GANTRY_METRICS_WINDOW_DAYS", "30"))
# DORA figures (docs/dora.md): a deployment asked for within this many hours after a failed one of
# the same component is a fix, so counts as rework.
GANTRY_DORA_FIX_HOURS = float(os.environ.get("GANTRY_DORA_FIX_HOURS", "24"))
# Notifications (docs/notifications.md): per-attempt timeout, tries, backoff, when a channel fails.
GANTRY_NOTIFY_TIMEOUT = float(os.environ.get("GANTRY_NOTIFY_TIMEOUT", "5"))
GANTRY_NOTIFY_MAX_ATTEMPTS = int(os.environ.get("GANTRY_NOTIFY_MAX_ATTEMPTS", "6"))
GANTRY_NOTIFY_BACKOFF = float(os.environ.get("GANTRY_NOTIFY_BACKOFF", "10"))
GANTRY_NOTIFY_BACKOFF_MAX = float(os.environ.get("GANTRY_NOTIFY_BACKOFF_MAX", "600"))
GANTRY_NOTIFY_FAILING_AFTER = int(os.environ.get("GANTRY_NOTIFY_FAILING_AFTER", "3"))
# Networks channels may reach besides public addresses, plain http:// included: an internal relay,
# or 127.0.0.1/32 for a receiver on this machine. Empty: https:// to public addresses only.
GANTRY_NOTIFY_ALLOWED_NETWORKS = env_networks("GANTRY_NOTIFY_ALLOWED_NETWORKS")
