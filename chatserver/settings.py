"""Sonor settings: the only module that reads the environment.

Nothing set gives the embedded default: SQLite and generated secrets under SONOR_DATA_DIR,
the in-memory channel layer, one process. DATABASE_URL and REDIS_URL scale it out.
"""

import ipaddress
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SONOR_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _generated_secret(name: str) -> str:
    """A secret kept in the data directory, generated on first run (never in the repo)."""
    path = DATA_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _loopback(host: str | None) -> bool:
    """A host name or address on this machine only (an empty host is a local socket)."""
    host = (host or "").strip().strip("[]").lower()
    if host in {"", "localhost"} or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


SONOR_DEMO = _env_bool("SONOR_DEMO")
DEBUG = _env_bool("SONOR_DEBUG")
SECRET_KEY = os.environ.get("SONOR_SECRET_KEY") or _generated_secret("secret_key")

ALLOWED_HOSTS = _env_list("SONOR_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
# Origins allowed to open sockets and post with cookies; native apps send no Origin.
SONOR_ALLOWED_ORIGINS = _env_list(
    "SONOR_ALLOWED_ORIGINS",
    "http://127.0.0.1:8000,http://localhost:8000",
)
CSRF_TRUSTED_ORIGINS = SONOR_ALLOWED_ORIGINS
# Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (IPs or CIDRs; default
# none): chatserver/core/client_address.py decides every client address from the peer and these.
SONOR_TRUSTED_PROXIES = _env_list("SONOR_TRUSTED_PROXIES")
for _proxy in SONOR_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"SONOR_TRUSTED_PROXIES: {_proxy!r} is not an IP or CIDR"
                                   ) from _exc

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "identity",
    "notify",
    "chatserver",
]

# Django's own middleware, with hooks that run on the event loop (chatserver/core/middleware.py).
MIDDLEWARE = [
    "chatserver.core.middleware.InlineUntrustedProxyHeadersMiddleware",
    "chatserver.core.middleware.InlineSecurityMiddleware",
    "chatserver.core.middleware.InlineSessionMiddleware",
    "chatserver.core.middleware.InlineCommonMiddleware",
    "chatserver.core.middleware.InlineCsrfViewMiddleware",
    "chatserver.core.middleware.InlineAuthenticationMiddleware",
    "chatserver.core.middleware.InlineMessageMiddleware",
    "chatserver.core.middleware.InlineXFrameOptionsMiddleware",
]

# Paths that take only an API key, never a cookie: Django's middleware for browsers (sessions,
# CSRF, users, messages) is skipped there (chatserver/core/middleware.py).
SONOR_KEY_ONLY_PATHS = ("/api/agency/",)
ROOT_URLCONF = "chatserver.urls"
ASGI_APPLICATION = "chatserver.asgi.application"
AUTH_USER_MODEL = "identity.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
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

DATABASE_URL = os.environ.get("DATABASE_URL", "")
_SQLITE_OPTIONS = {
    # WAL lets the socket server and the worker read while one of them writes.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "sonor.sqlite3"),
            "TEST": {"NAME": str(DATA_DIR / "test-sonor.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = _SQLITE_OPTIONS
    DATABASES["default"]["CONN_MAX_AGE"] = 60  # the WAL pragmas run once per connection

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: one Redis message per process for a group, dispatched locally.
            "BACKEND": "chatserver.core.layers.RedisPubSubLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatserver.core.layers.InMemoryLayer",
            # The process hub's channel carries every room and user event of the process.
            "CONFIG": {"channel_capacity": {"hub.*": 100_000}},
        }
    }

# Shared counters (per-agency rate limits): Redis across processes, else this process only.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "sonor",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "mn"
LANGUAGES = [("mn", "Монгол"), ("en", "English")]
TIME_ZONE = "Asia/Ulaanbaatar"
USE_I18N = True
# The web client's catalogs (templates: django, scripts: djangojs); compiled .mo files are
# committed next to the .po files.
LOCALE_PATHS = [BASE_DIR / "frontend" / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
STATIC_ROOT = DATA_DIR / "static"

SESSION_COOKIE_NAME = "sonor_admin"
SONOR_SESSION_COOKIE = "sonor_session"
# Secure cookies and HSTS by default; only demo mode (plain http on loopback) goes without.
SECURE_COOKIES = _env_bool("SONOR_SECURE_COOKIES", default=not SONOR_DEMO)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
# Sent on HTTPS responses only (SecurityMiddleware), so plain-http development is untouched.
SECURE_HSTS_SECONDS = _env_int("SONOR_HSTS_SECONDS", 31536000 if SECURE_COOKIES else 0)
if SONOR_TRUSTED_PROXIES:
    # request.is_secure() believes our TLS-terminating proxy; the header from anyone else is
    # dropped by UntrustedProxyHeadersMiddleware before Django reads it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Identity rules (seconds and counts), overridable for operations.
SONOR_PHONE_CODE_TTL = int(os.environ.get("SONOR_PHONE_CODE_TTL", "300"))
SONOR_PHONE_CODE_ATTEMPTS = int(os.environ.get("SONOR_PHONE_CODE_ATTEMPTS", "5"))
SONOR_PHONE_CODES_PER_HOUR = int(os.environ.get("SONOR_PHONE_CODES_PER_HOUR", "5"))
SONOR_QR_TOKEN_TTL = int(os.environ.get("SONOR_QR_TOKEN_TTL", "60"))
SONOR_QR_ROTATE_EVERY = int(os.environ.get("SONOR_QR_ROTATE_EVERY", "30"))
# A device session ends after this many days unused, and this many days after its login.
SONOR_SESSION_IDLE_DAYS = _env_float("SONOR_SESSION_IDLE_DAYS", 30)
SONOR_SESSION_MAX_DAYS = _env_float("SONOR_SESSION_MAX_DAYS", 180)
# Closing the account needs an SMS code, or a login this recent (minutes).
SONOR_ACCOUNT_CLOSE_FRESH_MINUTES = _env_float("SONOR_ACCOUNT_CLOSE_FRESH_MINUTES", 10)
# Per client address: QR login sockets a minute; admin login attempts (also per user name)
# in 15 minutes. Email: verification links live this long; new addresses a user may set
# an hour. All counted through the cache (Redis when set), so they hold across servers.
SONOR_QR_CONNECTS_PER_MINUTE = _env_int("SONOR_QR_CONNECTS_PER_MINUTE", 30)
SONOR_ADMIN_LOGIN_ATTEMPTS = _env_int("SONOR_ADMIN_LOGIN_ATTEMPTS", 10)
SONOR_EMAIL_VERIFY_HOURS = _env_float("SONOR_EMAIL_VERIFY_HOURS", 24)
SONOR_EMAIL_SETS_PER_HOUR = _env_int("SONOR_EMAIL_SETS_PER_HOUR", 5)

# Where citizens reach this server (links in emails).
SONOR_PUBLIC_URL = os.environ.get("SONOR_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
SONOR_METRICS_FROM = _env_list("SONOR_METRICS_FROM", "127.0.0.1,::1")

# Socket limits.
SONOR_WS_MAX_FRAME_BYTES = 64 * 1024
# hello returns at most this many missed events per stream, else says resync.
SONOR_RESUME_LIMIT = int(os.environ.get("SONOR_RESUME_LIMIT", "1000"))
# ... and at most this many room events in all; further rooms are named in resync.
SONOR_RESUME_TOTAL_LIMIT = int(os.environ.get("SONOR_RESUME_TOTAL_LIMIT", "5000"))
SONOR_WS_RATE_PER_SECOND = float(os.environ.get("SONOR_WS_RATE_PER_SECOND", "20"))
SONOR_WS_RATE_BURST = int(os.environ.get("SONOR_WS_RATE_BURST", "60"))
# Each process re-checks its sockets' sessions this often (seconds), in one query, in case
# the layer dropped a revocation.
SONOR_WS_SESSION_RECHECK = float(os.environ.get("SONOR_WS_SESSION_RECHECK", "60"))
# ... and a new socket's session and rooms this soon after it joined its groups, in one query
# for all sockets new by then (what changed while it authenticated).
SONOR_WS_FRESH_RECHECK = float(os.environ.get("SONOR_WS_FRESH_RECHECK", "0.5"))
# Refused frames (over the rate, too large, not JSON, invalid) a socket may send: this many at
# once, refilled at this rate; past that it is closed with 4429.
SONOR_WS_REFUSED_BURST = int(os.environ.get("SONOR_WS_REFUSED_BURST", "20"))
SONOR_WS_REFUSED_PER_SECOND = float(os.environ.get("SONOR_WS_REFUSED_PER_SECOND", "1"))
# Open sockets per account and per client address, in each server process (4429 beyond).
SONOR_WS_MAX_SOCKETS_PER_USER = int(os.environ.get("SONOR_WS_MAX_SOCKETS_PER_USER", "20"))
SONOR_WS_MAX_SOCKETS_PER_ADDRESS = int(os.environ.get("SONOR_WS_MAX_SOCKETS_PER_ADDRESS", "2000"))

# A serving process collects its oldest objects' cyclic garbage this often (seconds), not
# whenever Python would (a pause of every socket: chatserver/core/collector.py).
SONOR_GC_FULL_SECONDS = _env_float("SONOR_GC_FULL_SECONDS", 600)
if SONOR_GC_FULL_SECONDS <= 0:
    raise ImproperlyConfigured("SONOR_GC_FULL_SECONDS must be a positive number of seconds.")

# Agency API and inbox.
SONOR_AGENCY_RATE_PER_MINUTE = int(os.environ.get("SONOR_AGENCY_RATE_PER_MINUTE", "600"))
# A rotated API key keeps working this long beside its successor.
SONOR_API_KEY_ROTATION_GRACE_HOURS = float(
    os.environ.get("SONOR_API_KEY_ROTATION_GRACE_HOURS", "24"))
SONOR_BROADCAST_MAX_RECIPIENTS = int(os.environ.get("SONOR_BROADCAST_MAX_RECIPIENTS", "50000"))
SONOR_BROADCAST_BATCH = int(os.environ.get("SONOR_BROADCAST_BATCH", "500"))
SONOR_WORKER_SLEEP = float(os.environ.get("SONOR_WORKER_SLEEP", "1.0"))
# Run the worker's jobs inside the server process (the embedded default: one process).
SONOR_EMBEDDED_WORKER = _env_bool("SONOR_EMBEDDED_WORKER")
# Planned maintenance is announced this many working days ahead (terms 13.2). Working days
# are Monday to Friday in TIME_ZONE, less Mongolia's public holidays (the `holidays`
# package's calendar: Tsagaan Sar, Buddha's and Chinggis Khaan's birthdays move every year),
# plus the days the government adds and less the ones it moves (YYYY-MM-DD lists).
SONOR_MAINTENANCE_NOTICE_WORKING_DAYS = int(
    os.environ.get("SONOR_MAINTENANCE_NOTICE_WORKING_DAYS", "2"))
SONOR_HOLIDAYS_ADD = _env_list("SONOR_HOLIDAYS_ADD")
SONOR_HOLIDAYS_REMOVE = _env_list("SONOR_HOLIDAYS_REMOVE")

# Chat limits: chatserver/chat/config.py says what each one means.
SONOR_CHAT_MEMBER_LIMIT = _env_int("SONOR_CHAT_MEMBER_LIMIT", 10000)
SONOR_CHAT_GROUP_INITIAL_MAX = _env_int("SONOR_CHAT_GROUP_INITIAL_MAX", 200)
SONOR_CHAT_SEND_RATE = _env_int("SONOR_CHAT_SEND_RATE", 30)
SONOR_CHAT_SEND_WINDOW = _env_int("SONOR_CHAT_SEND_WINDOW", 10)
SONOR_CHAT_NEW_ACCOUNT_DAYS = _env_int("SONOR_CHAT_NEW_ACCOUNT_DAYS", 7)
SONOR_CHAT_NEW_ACCOUNT_DIRECT_PER_DAY = _env_int("SONOR_CHAT_NEW_ACCOUNT_DIRECT_PER_DAY", 5)
SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY = _env_int("SONOR_CHAT_NEW_ACCOUNT_ADDS_PER_DAY", 20)
SONOR_CHAT_INVITE_TTL_DAYS = _env_int("SONOR_CHAT_INVITE_TTL_DAYS", 30)
SONOR_CHAT_OPEN_INVITES_MAX = _env_int("SONOR_CHAT_OPEN_INVITES_MAX", 50)
SONOR_CHAT_REPORTS_PER_HOUR = _env_int("SONOR_CHAT_REPORTS_PER_HOUR", 20)
SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE = _env_int("SONOR_CHAT_RECEIPTS_AGGREGATE_ABOVE", 50)
SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS = _env_int("SONOR_CHAT_RECEIPTS_AGGREGATE_SECONDS", 2)
SONOR_CHAT_TYPING_INTERVAL = _env_float("SONOR_CHAT_TYPING_INTERVAL", 3.0)
SONOR_CHAT_HISTORY_MAX = _env_int("SONOR_CHAT_HISTORY_MAX", 100)
SONOR_CHAT_PRESENCE_TTL = _env_int("SONOR_CHAT_PRESENCE_TTL", 150)
# Each process writes its sockets' presence changes together, this often (seconds).
SONOR_CHAT_PRESENCE_FLUSH = float(os.environ.get("SONOR_CHAT_PRESENCE_FLUSH", "1"))
SONOR_CHAT_SOCKET_BUFFER = _env_int("SONOR_CHAT_SOCKET_BUFFER", 1000)
SONOR_CHAT_USER_ROUTES_PER_HOUR = _env_int("SONOR_CHAT_USER_ROUTES_PER_HOUR", 100)
SONOR_CHAT_DISCOVERY_PER_HOUR = _env_int("SONOR_CHAT_DISCOVERY_PER_HOUR", 60)

# Delivery pipeline: validity per category (hours; SMS operators keep a message 96 h),
# SMS escalation (send only if still unread after N minutes; 0 = at once), retries.
SONOR_DELIVERY_VALIDITY_HOURS = {"default": 96, "chat": 24, "security": 24}
SONOR_SMS_ESCALATION_MINUTES = {
    category: int(minutes)
    for category, _, minutes in (
        item.partition(":") for item in _env_list("SONOR_SMS_ESCALATION_MINUTES", "payment:30")
    )
}
SONOR_DELIVERY_BATCH = int(os.environ.get("SONOR_DELIVERY_BATCH", "50"))
SONOR_DELIVERY_LEASE_SECONDS = int(os.environ.get("SONOR_DELIVERY_LEASE_SECONDS", "60"))
SONOR_DELIVERY_MAX_ATTEMPTS = int(os.environ.get("SONOR_DELIVERY_MAX_ATTEMPTS", "12"))
SONOR_DELIVERY_RETRY_BASE_SECONDS = float(os.environ.get("SONOR_DELIVERY_RETRY_BASE", "10"))
SONOR_DELIVERY_RETRY_CAP_SECONDS = float(os.environ.get("SONOR_DELIVERY_RETRY_CAP", "3600"))

# Outside services; unset means the development outbox (the demo senders).
SONOR_SMTP_URL = os.environ.get("SONOR_SMTP_URL", "")
SONOR_SMPP_URL = os.environ.get("SONOR_SMPP_URL", "")
SONOR_SMS_HTTP_URL = os.environ.get("SONOR_SMS_HTTP_URL", "")
SONOR_FCM_CREDENTIALS = os.environ.get("SONOR_FCM_CREDENTIALS", "")
SONOR_FCM_URL = os.environ.get("SONOR_FCM_URL", "")

# DAN, the national SSO (OAuth 2.0 authorization code: identity/login/dan.py). One base URL
# names DAN's three endpoints, or each is set on its own; unset means the method is off.
SONOR_DAN_URL = os.environ.get("SONOR_DAN_URL", "").rstrip("/")
SONOR_DAN_AUTHORIZE_URL = os.environ.get("SONOR_DAN_AUTHORIZE_URL") or (
    SONOR_DAN_URL and f"{SONOR_DAN_URL}/oauth2/authorize")
SONOR_DAN_TOKEN_URL = os.environ.get("SONOR_DAN_TOKEN_URL") or (
    SONOR_DAN_URL and f"{SONOR_DAN_URL}/oauth2/token")
SONOR_DAN_SERVICE_URL = os.environ.get("SONOR_DAN_SERVICE_URL") or (
    SONOR_DAN_URL and f"{SONOR_DAN_URL}/oauth2/api/v1/service")
SONOR_DAN_CLIENT_ID = os.environ.get("SONOR_DAN_CLIENT_ID", "")
SONOR_DAN_CLIENT_SECRET = os.environ.get("SONOR_DAN_CLIENT_SECRET", "")
# Where DAN sends the browser back (registered with DAN); unset: /dan/callback on the address
# the browser used, which is wrong behind a TLS-terminating proxy.
SONOR_DAN_REDIRECT_URL = os.environ.get("SONOR_DAN_REDIRECT_URL", "")
# The state-registry (XYP) service asked for: the citizen's ID card, from this WSDL.
SONOR_DAN_CITIZEN_WSDL = os.environ.get("SONOR_DAN_CITIZEN_WSDL",
                                        "https://xyp.gov.mn/citizen-1.5.0/ws?WSDL")
SONOR_DAN_TIMEOUT = _env_float("SONOR_DAN_TIMEOUT", 10.0)  # seconds, each call to DAN
SONOR_DAN_STATE_TTL = _env_int("SONOR_DAN_STATE_TTL", 600)  # seconds to consent at DAN
SONOR_DAN_PKCE = _env_bool("SONOR_DAN_PKCE", True)  # off only for a peer that refuses it
for _dan_url in (SONOR_DAN_AUTHORIZE_URL, SONOR_DAN_TOKEN_URL, SONOR_DAN_SERVICE_URL,
                 SONOR_DAN_REDIRECT_URL):
    # The client secret and the citizen's data travel here: TLS, except on this machine.
    if _dan_url and not _dan_url.startswith("https://") and urlsplit(_dan_url).hostname not in {
            "127.0.0.1", "localhost", "::1"}:
        raise ImproperlyConfigured(f"SONOR_DAN_* addresses must be https:// ({_dan_url})")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SONOR_LOG_LEVEL", "INFO")},
    # Not a line per socket opened or closed: with 10,000s of sockets per process that is
    # most of the log (and measurably slower connects). Errors still show.
    "loggers": {"django.channels.server": {"level": "WARNING"},
                "uvicorn.error": {"level": "WARNING"}},
}


def _production_signs() -> list[str]:
    """What in the configuration says this server faces real users."""
    signs = []
    db_host = urlsplit(DATABASE_URL).hostname if DATABASE_URL else None
    if DATABASE_URL and not DATABASE_URL.startswith("sqlite") and not _loopback(db_host):
        signs.append(f"DATABASE_URL points at {db_host}")
    if REDIS_URL and not _loopback(urlsplit(REDIS_URL).hostname):
        signs.append(f"REDIS_URL points at {urlsplit(REDIS_URL).hostname}")
    public_hosts = [h for h in ALLOWED_HOSTS if not _loopback(h) and h != "testserver"]
    if public_hosts:
        signs.append(f"SONOR_ALLOWED_HOSTS names {', '.join(public_hosts)}")
    if _env_bool("SONOR_SECURE_COOKIES"):
        signs.append("SONOR_SECURE_COOKIES is on")
    return signs


# Demo mode shows every SMS code and email link at /demo/outbox to anyone: never on a server
# that looks like production, unless an operator insists (SONOR_DEMO_FORCE=1, logged).
if SONOR_DEMO and (_signs := _production_signs()):
    if not _env_bool("SONOR_DEMO_FORCE"):
        message = ("refusing to start in demo mode (SONOR_DEMO=1): the configuration looks "
                   f"like production ({'; '.join(_signs)}). Demo mode shows every SMS code and "
                   "email link at /demo/outbox. Unset SONOR_DEMO, or set SONOR_DEMO_FORCE=1.")
        sys.stderr.write(f"sonor: {message}\n")
        raise ImproperlyConfigured(message)
    sys.stderr.write("sonor: WARNING demo mode forced (SONOR_DEMO_FORCE=1) on a configuration "
                     f"that looks like production: {'; '.join(_signs)}\n")
