"""Faultline settings: one module, every value from the environment.

Defaults suit a newcomer's laptop (SQLite, a local Redis started by `make run`);
DATABASE_URL and REDIS_URL switch to real services. A bad value stops start-up
with a message naming the variable (see config/env.py).
"""

import os
import tempfile
from pathlib import Path

import dj_database_url
from kombu import Queue
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Production profile -------------------------------------------------------------
# DEBUG=0 (the default) is production: a real SECRET_KEY is required, and HTTPS is assumed
# (redirect, Secure cookies, HSTS), so `manage.py check --deploy` is clean with nothing more
# than SECRET_KEY and ALLOWED_HOSTS. Anything less safe is an explicit opt-out: PLAIN_HTTP=1
# for a classroom LAN without TLS (what `HOST=0.0.0.0 make run` sets), the SECURE_* variables.
# DEBUG=1 is for your own machine only (`make run` on 127.0.0.1 sets it).
DEBUG = env_bool("DEBUG", default=False)
DEV_SECRET_KEY_PREFIX = "faultline-dev-only-"
SECRET_KEY = env_str("SECRET_KEY")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = DEV_SECRET_KEY_PREFIX + str(BASE_DIR).encode().hex()[:32]  # a laptop's key, never a server's
elif not DEBUG and (not SECRET_KEY or SECRET_KEY.startswith(DEV_SECRET_KEY_PREFIX) or len(set(SECRET_KEY)) < 5 or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "SECRET_KEY is missing, too short or a development key: with DEBUG=0 (production) set it to a long random "
        "value, for example the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'. "
        "(`make run` makes one for you; DEBUG=1 is only for your own machine.)"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

PLAIN_HTTP = env_bool("PLAIN_HTTP", default=False)
_HTTPS = not DEBUG and not PLAIN_HTTP
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # the machine's own checks and scrapes speak plain HTTP to the app
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=_HTTPS)
# Behind a proxy that terminates TLS: the header it sets to "https" (e.g. X-Forwarded-Proto). Only set
# it when the proxy overwrites that header on every request; otherwise a client could claim HTTPS.
if _proxy_header := env_str("PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "template_partials",
    "accounts",
    "courseware",
    "practice",
    "labs",
    "workshops",
]

MIDDLEWARE = [
    "config.metrics.RequestMetricsMiddleware",  # outermost: counts every response, a redirect to HTTPS included
    "django.middleware.security.SecurityMiddleware",
    "config.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.RedisDownMiddleware",
    "config.ratelimits.TooManyRequestsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            "libraries": {"site": "config.site_tags"},  # what every page links to, worked out once
        },
    },
]

# --- Database --------------------------------------------------------------------
# SQLite serves several processes (web, relay, workers) at once: WAL lets readers
# run beside the one writer, synchronous=NORMAL is safe under WAL and ~10x faster
# per commit, IMMEDIATE takes the write lock at BEGIN so two writers queue on the
# busy timeout instead of failing with "database is locked" half-way through.
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "config.sqlite"  # Django's, remembering each statement's placeholders
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    # Tests need a file, not :memory:, so a worker process sees the test's rows.
    # The pid keeps parallel runs apart.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"faultline-test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side binding: psycopg sends the parameters beside the statement instead of quoting each one
    # into its text in Python, and a statement run 5 times on a connection is then prepared, so the server
    # parses and plans the pipeline's hot statements once per connection (measured on the campaign bench,
    # bench/pipeline.py). A pooler that cannot keep prepared statements (PgBouncer in transaction mode
    # before 1.21) needs DB_PREPARED_STATEMENTS=0.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5 if env_bool("DB_PREPARED_STATEMENTS", True) else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis -----------------------------------------------------------------------
# One Redis serves as broker, live-event bus and heartbeat store. Every key this
# project writes starts with REDIS_KEY_PREFIX, so test runs (and two checkouts) on
# one server never share keys; Celery's own keys take the same prefix.
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes={"redis", "rediss", "unix"})
REDIS_KEY_PREFIX = env_str("FAULTLINE_REDIS_PREFIX", "faultline:")


def redis_cache(url: str, prefix: str) -> dict:
    """Django's cache in the project's Redis (the rate limits' counters), shared by every web process.

    A function, so the test harness can point it at the test Redis as it does everything else.
    Short timeouts: a rate limit must not hang a log-in while Redis is unreachable (config/ratelimits.py).
    """
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix + "cache",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }


CACHES = redis_cache(REDIS_URL, REDIS_KEY_PREFIX)

# --- Celery (read by config/celery.py with the CELERY_ namespace) -----------------
# The worker is the system under test, so the settings favour never losing a task
# over raw speed: late acks, requeue when a worker dies mid-task, one message
# prefetched per process. The visibility timeout (how long Redis waits for an ack
# before handing the message to another worker) is short so a crashed worker's
# message comes back within a lab, and task time limits sit below it so no healthy
# task is redelivered while it still runs.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 60, minimum=10)
# The bulk lanes' worker yields the CPU to pages and live streams (config/celery.py); 0 keeps its priority.
WORKER_NICENESS = env_int("WORKER_NICENESS", 10, minimum=0)
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "global_keyprefix": REDIS_KEY_PREFIX,
}
# Celery reads the visibility timeout in three places; set it in all of them so no
# component falls back to Redis's one-hour default.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = CELERY_VISIBILITY_TIMEOUT - 10
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_VISIBILITY_TIMEOUT - 15
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "default"
# The lab pipeline's queues, named here once. "urgent" is the lane for transactional
# and security messages, so they never wait behind a campaign; the worker listens
# on every queue in this list.
LAB_QUEUES = ["urgent", "email", "sms", "push", "inapp"]
# The order saga's messages (lab 7): commands, replies and events between its simulated services.
LAB_SAGA_QUEUE = "saga"
CELERY_TASK_QUEUES = [Queue(name) for name in [*LAB_QUEUES, LAB_SAGA_QUEUE, CELERY_TASK_DEFAULT_QUEUE]]
CELERY_TIMEZONE = "UTC"
# Reuse a worker's database connections across tasks (config.celery closes a broken or old one).
CELERY_DB_REUSE_MAX = 1000

# How often the worker and the relay write their heartbeat, and how old one may
# be before /healthz calls that process down.
HEARTBEAT_INTERVAL = 2
HEARTBEAT_TTL = env_int("HEARTBEAT_TTL", 6, minimum=3)

# --- Labs -------------------------------------------------------------------------
# A run nobody has used for this long is deleted by the relay's housekeeping.
LAB_RUN_IDLE_MINUTES = env_int("LAB_RUN_IDLE_MINUTES", 12 * 60, minimum=1)
# Days a workshop's runs stay (read-only, for its debrief) after the instructor ends it; then the relay deletes them.
WORKSHOP_KEEP_DAYS = env_int("WORKSHOP_KEEP_DAYS", 14, minimum=1)
# Seconds a published message may sit unclaimed before the relay publishes it again
# (a Redis restart can lose what it held; the database still knows).
LAB_REDELIVER_AFTER = env_int("LAB_REDELIVER_AFTER", 60, minimum=1)
# Seconds a worker may hold a delivery before the relay takes it over (the worker is presumed lost).
LAB_SENDING_LEASE = env_int("LAB_SENDING_LEASE", 15, minimum=2)
# Seconds after acceptance a message may keep waiting for an open circuit breaker; past it the
# next refusal dead-letters it (group breaker_open).
LAB_MESSAGE_DEADLINE = env_int("LAB_MESSAGE_DEADLINE", 600, minimum=5)
# The provider client's timeout.
LAB_PROVIDER_TIMEOUT_MS = env_int("LAB_PROVIDER_TIMEOUT_MS", 2000, minimum=10)
LAB_RELAY_BATCH = env_int("LAB_RELAY_BATCH", 500, minimum=1)
# Where lab pages open their live event stream (server-sent events under /live/, served over
# ASGI by the `live` process). "/" means the pages' own origin: a reverse proxy sends /live/ to
# the live process (deploy/), the default in production (HTTPS). Unset over plain HTTP: the
# same host on the web port + 1, as `make run` starts it. Or the live process's public URL.
LAB_LIVE_URL = env_str("LAB_LIVE_URL") or ("/" if _HTTPS else None)
# Where lab 9's simulated services answer (labs/services.py, in the live process): the API's
# synchronous path calls them there, and so does the template service when it asks the
# preferences service. By default the live process on this machine, on LIVE_PORT, at the address
# the Procfile binds it to (HOST): a host that listens on its network address alone does not
# answer on 127.0.0.1.
def _live_address(host: str) -> str:
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{wildcard}]" if ":" in wildcard else wildcard


LAB_SERVICES_URL = env_url(
    "LAB_SERVICES_URL",
    f"http://{_live_address(env_str('HOST', '127.0.0.1'))}:{env_int('LIVE_PORT', 8001, minimum=1)}",
    schemes={"http", "https"},
)
# Seconds between a live stream's keep-alives; at each it also checks that the session still
# owns the run, so logging out ends the stream within this long.
LAB_STREAM_HEARTBEAT = env_int("LAB_STREAM_HEARTBEAT", 15, minimum=1)
# The share of one core the lab pages' panel refreshes may take together, in percent: each answer
# tells its page when to ask again, dividing this among the pages open (labs/pace.py).
LAB_PANELS_CPU_PERCENT = env_int("LAB_PANELS_CPU_PERCENT", 50, minimum=1)

# --- Operations -----------------------------------------------------------------
# /metrics answers staff and the machine itself; a Prometheus on another machine (or in another
# container) sends `Authorization: Bearer <METRICS_TOKEN>`. Unset: no token opens it.
METRICS_TOKEN = env_str("METRICS_TOKEN") or None
if METRICS_TOKEN is not None and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN is too short: use at least 32 random characters, for example the output of: "
                               "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")  # fmt: skip

# --- Auth ------------------------------------------------------------------------
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
INSTRUCTOR_GROUP = "instructor"
# Django's ModelBackend, refusing an account or address over its failed log-in limit (accounts/limits.py).
AUTHENTICATION_BACKENDS = ["accounts.backends.LimitedModelBackend"]

# --- Rate limits (config/ratelimits.py; counted in Redis in fixed windows) ---------------------
# Failed log-ins per account are strict; per address generous, since a classroom shares one.
RATELIMIT_LOGIN_PER_ACCOUNT = env_rate("RATELIMIT_LOGIN_PER_ACCOUNT", "5/m")
RATELIMIT_LOGIN_PER_ADDRESS = env_rate("RATELIMIT_LOGIN_PER_ADDRESS", "30/m")
# Every sign-up attempt, successful or not: it also bounds probing which user names exist.
RATELIMIT_SIGNUP_PER_ADDRESS = env_rate("RATELIMIT_SIGNUP_PER_ADDRESS", "60/h")
# Password-reset requests: per e-mail address typed (few: each sends a mail) and per client address.
RATELIMIT_RESET_PER_ACCOUNT = env_rate("RATELIMIT_RESET_PER_ACCOUNT", "3/h")
RATELIMIT_RESET_PER_ADDRESS = env_rate("RATELIMIT_RESET_PER_ADDRESS", "20/h")
# Requests per lab run API key.
RATELIMIT_API_PER_KEY = env_rate("RATELIMIT_API_PER_KEY", "600/m")
# Behind a reverse proxy, the header in which it passes the client's address (e.g. X-Real-IP).
# Leave it unset otherwise: a client could then name any address it likes.
CLIENT_ADDRESS_HEADER = env_str("CLIENT_ADDRESS_HEADER") or None

# --- E-mail (password reset) -----------------------------------------------------
# Without EMAIL_HOST, mails are printed on the web process's output (works offline, fine on a laptop);
# with it, they go out by SMTP.
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Faultline <faultline@localhost>")

# --- I18N, static ----------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only for `collectstatic` in a production image; WhiteNoise serves from the finders otherwise.
STATIC_ROOT = env_str("STATIC_ROOT") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# WhiteNoise serves straight from the source folders, so no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# The lab API's campaign endpoint takes up to 1,000 notifications in one body.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
SESSION_ENGINE = "accounts.sessions"  # Django's database sessions, read with a plain query (see the module)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Lab 9's simulated services answer 503 and 504 on purpose, and httpx logs every request at
    # INFO: neither belongs in the log, where a load would bury everything else.
    "filters": {"not_lab_services": {"()": "django.utils.log.CallbackFilter",
                                     "callback": lambda record: not getattr(getattr(record, "request", None), "path", "").startswith("/live/services/")}},
    "loggers": {"httpx": {"level": "WARNING"}, "django.request": {"filters": ["not_lab_services"]}},
}
