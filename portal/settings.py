"""Settings for the portal, driven by environment variables.

Nothing set: production mode (DJANGO_DEBUG off), which refuses to start without a real
secret key, allowed hosts and a shared cache. DJANGO_DEBUG=true (`make run`, the test
settings) gives the embedded default: SQLite, a broker on the file system, the builtin
HSS, development secrets. See the configuration table in README.md.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography import x509
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# Off unless set: a deploy that forgets a variable must not serve debug pages with a
# public development key.
DEBUG = env_bool("DJANGO_DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

if DEBUG:
    SECRET_KEY = SECRET_KEY or _DEV_SECRET_KEY
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]
else:
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure") or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
            "when DJANGO_DEBUG is off."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DJANGO_DEBUG is off.")

# The operator that runs this portal; shown in the page header and in emails.
OPERATOR_NAME = os.environ.get("OPERATOR_NAME", "iCA")
# The public URL, the one source of every absolute link: emails (invitations, password
# reset), the SCIM base URL and OIDC issuer (and so discovery), x5u certificate URLs and
# seed_demo's output. `make run PORT=…` sets it to the address it serves on.
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Bearer token for /metrics (Prometheus); unset in production: /metrics is off.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# prometheus-client reads this itself: the directory the processes of a machine share
# their metrics in. Missing, the first request would fail writing to it: fail at start.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not os.path.isdir(
    os.environ["PROMETHEUS_MULTIPROC_DIR"]
):
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name an existing directory.")
# A Celery worker on a machine without a web process serves its machine's request-free
# metrics (task latency and outcomes) on this port; 0: it does not.
METRICS_WORKER_PORT = int(os.environ.get("METRICS_WORKER_PORT", "0"))
METRICS_WORKER_ADDRESS = os.environ.get("METRICS_WORKER_ADDRESS", "127.0.0.1")
if METRICS_WORKER_PORT and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The pool's processes run the tasks, not the one that would serve them.
    raise ImproperlyConfigured("METRICS_WORKER_PORT needs PROMETHEUS_MULTIPROC_DIR.")
# How many reverse proxies in front of the portal append to X-Forwarded-For.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "portal.apps.AuthenticatorAppsConfig",
    "portal.apps.BackupCodesConfig",
    "portal.apps.SignInLockoutsConfig",
    "portal.apps.OAuthConfig",
    "portal",
    "accounts",
    "telephony",
]

MIDDLEWARE = [
    # First: every log line of the request carries its id, and the latency is the whole.
    "kernel.observability.RequestObservabilityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    # Above WhiteNoise, so that static files are refused to frames as well.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The call path's routes are answered here: nothing below serves a machine's call.
    "telephony.network.callpath.CallPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.EnterpriseMiddleware",
    "accounts.middleware.TimeZoneMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "portal.middleware.RuleViolationMiddleware",
    # Last, as django-axes asks, so that it sees every login attempt's outcome.
    "axes.middleware.AxesMiddleware",
]

# `make run` runs with DEBUG on; its visitors still get the portal's own error pages,
# not Django's debug pages (which list every URL pattern, or the settings); tracebacks
# go to the log. DJANGO_DEBUG_ERROR_PAGES=true shows Django's debug pages again.
if DEBUG and not env_bool("DJANGO_DEBUG_ERROR_PAGES", False):
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.common.CommonMiddleware") + 1,
        "portal.middleware.PortalErrorPagesMiddleware",
    )

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.portal",
            ],
        },
    },
]

FORM_RENDERER = "kernel.forms.PortalFormRenderer"

# --- Database -------------------------------------------------------------------------
_SQLITE_PATH = VAR_DIR / "portal.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{_SQLITE_PATH}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
        # Behind PgBouncer in transaction mode a cursor cannot outlive its transaction.
        disable_server_side_cursors=env_bool("DATABASE_TRANSACTION_POOLING", False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, with a health check that skips a connection which has just answered.
    DATABASES["default"]["ENGINE"] = "kernel.postgresql"
    if not env_bool("DATABASE_TRANSACTION_POOLING", False):
        # The portal's queries are all short, but a few are estimated above
        # jit_above_cost (per-row subqueries the planner counts for every row):
        # compiling them took longer than running them (docs/benchmarks.md). PgBouncer
        # refuses this startup option; behind it, set jit = off on the database role
        # instead (README).
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded run has a web process and a worker writing to one file: wait for
    # the lock instead of failing, and take the write lock at BEGIN.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts and authentication -----------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses locked-out credentials before any password check.
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.EmailBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 2
INVITATION_VALIDITY = timedelta(days=int(os.environ.get("INVITATION_VALIDITY_DAYS", "7")))

OTP_TOTP_ISSUER = f"{OPERATOR_NAME} Business Portal"
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

# Login throttling: five failures for one account from one address lock it for 15 minutes.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
# One count per account however its email is capitalised (F-02).
AXES_USERNAME_CALLABLE = "accounts.backends.sign_in_name"
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "kernel.http.client_ip"
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False

SESSION_COOKIE_AGE = 60 * 60 * 12
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# --- Security headers ------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    # Behind a TLS-terminating proxy, trust its X-Forwarded-Proto.
    if env_bool("BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Internationalisation and static files -------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Email ---------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "portal@localhost")
if os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "portal.mail.SmtpBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    # Embedded run: every email lands as a file under var/mail, readable by the demo.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"

# --- Celery --------------------------------------------------------------------------
# Unset: kombu's file-system transport, a broker that needs no server; a real worker
# and beat still consume from it. Set: normally Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60 * 60}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task
# unless this is set: a new PostgreSQL connection per push. Set (far beyond any
# worker's life), it leaves connections to Django's CONN_MAX_AGE and health checks,
# which portal/celery.py applies around each task as Django does around a request.
CELERY_DB_REUSE_MAX = 2**31
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Separate queues, so that a bulk import never delays a leaver's kill-switch: network
# changes on "sync", messages on "notify", an import's pushes on "bulk", the import itself
# on "imports" (a long task, whose process would otherwise not push while it runs),
# housekeeping on "celery". At scale, give each queue its own workers (see README,
# "Running on several machines").
TASK_QUEUES = ("sync", "notify", "bulk", "imports", "celery")
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "telephony.tasks.sync_identity": {"queue": "sync"},
    "telephony.tasks.sync_identities": {"queue": "sync"},
    "telephony.tasks.deregister_ue": {"queue": "sync"},
    "telephony.tasks.reconcile_hss": {"queue": "sync"},
    "telephony.tasks.apply_registration_reports": {"queue": "sync"},
    "telephony.tasks.send_network_notice": {"queue": "notify"},
    "telephony.tasks.send_network_notices": {"queue": "notify"},
    "accounts.tasks.deliver_invitation": {"queue": "notify"},
    "accounts.tasks.deliver_invitations": {"queue": "notify"},
    "accounts.tasks.email_notification": {"queue": "notify"},
    "telephony.tasks.run_import": {"queue": "imports"},
}
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "portal.tasks.heartbeat", "schedule": 30.0},
    "hss-check": {"task": "portal.tasks.check_hss", "schedule": 60.0},  # for /readyz
    "sync-sweep": {"task": "telephony.tasks.sweep_sync_queue", "schedule": 30.0},
    "grant-expiry": {"task": "telephony.tasks.expire_grants", "schedule": 60.0},
    "deactivation-expiry": {
        "task": "telephony.tasks.offboard_expired_deactivations",
        "schedule": 300.0,
    },
    "registration-expiry": {"task": "telephony.tasks.expire_registrations", "schedule": 30.0},
    "registration-reports": {
        "task": "telephony.tasks.apply_registration_reports",
        "schedule": 5.0,
    },
    "invitation-sweep": {"task": "accounts.tasks.sweep_invitations", "schedule": 60.0},
    "call-record-retention": {"task": "telephony.tasks.purge_call_records", "schedule": 3600.0},
}

# --- Telephony and the HSS -----------------------------------------------------------
HSS_BACKEND = os.environ.get("HSS_BACKEND", "builtin")
if HSS_BACKEND not in {"builtin", "pyhss"}:
    raise ImproperlyConfigured(f"HSS_BACKEND must be 'builtin' or 'pyhss', got {HSS_BACKEND!r}")
# The builtin (simulated) HSS: added latency per call, and a share of calls that fail.
HSS_BUILTIN_LATENCY_MS = float(os.environ.get("HSS_BUILTIN_LATENCY_MS", "0"))
HSS_BUILTIN_FAILURE_RATE = float(os.environ.get("HSS_BUILTIN_FAILURE_RATE", "0"))
# PyHSS 2.0 REST API.
HSS_PYHSS_URL = os.environ.get("HSS_PYHSS_URL", "http://127.0.0.1:8080").rstrip("/")
HSS_PYHSS_PROVISIONING_KEY = os.environ.get("HSS_PYHSS_PROVISIONING_KEY", "")
HSS_PYHSS_IFC_PATH = os.environ.get("HSS_PYHSS_IFC_PATH", "default_ifc.xml")
HSS_PYHSS_SH_TEMPLATE_PATH = os.environ.get(
    "HSS_PYHSS_SH_TEMPLATE_PATH", "default_sh_user_data.xml"
)
HSS_TIMEOUT_SECONDS = float(os.environ.get("HSS_TIMEOUT_SECONDS", "10"))
# Subscriber data crosses the network: production talks TLS unless told otherwise.
_PLAIN_HSS_URL = HSS_BACKEND == "pyhss" and not HSS_PYHSS_URL.startswith("https://")
if _PLAIN_HSS_URL and not DEBUG and not env_bool("HSS_PYHSS_ALLOW_PLAIN_HTTP", False):
    raise ImproperlyConfigured("HSS_PYHSS_URL must be https:// in production.")

# Sync: tries per change, backoff (exponential with full jitter, capped), the lease a
# worker holds while pushing, and when the sweep re-queues a change whose task was lost.
SYNC_MAX_ATTEMPTS = int(os.environ.get("SYNC_MAX_ATTEMPTS", "8"))
SYNC_BACKOFF_BASE_SECONDS = float(os.environ.get("SYNC_BACKOFF_BASE_SECONDS", "2"))
SYNC_BACKOFF_CAP_SECONDS = float(os.environ.get("SYNC_BACKOFF_CAP_SECONDS", "600"))
# Longer than the slowest push (a PyHSS push makes up to a dozen calls of HSS_TIMEOUT_SECONDS).
SYNC_LEASE_SECONDS = int(os.environ.get("SYNC_LEASE_SECONDS", "300"))
SYNC_SWEEP_AFTER_SECONDS = int(os.environ.get("SYNC_SWEEP_AFTER_SECONDS", "300"))
RECONCILE_INTERVAL_MINUTES = int(os.environ.get("RECONCILE_INTERVAL_MINUTES", "15"))
CELERY_BEAT_SCHEDULE["hss-reconcile"] = {
    "task": "telephony.tasks.reconcile_hss",
    "schedule": RECONCILE_INTERVAL_MINUTES * 60.0,
}

# Messages towards the clients on UEs: "builtin" records them, "webhook" posts them,
# "sip" has the SIP edge send each as a SIP MESSAGE to its UE.
NETWORK_NOTIFY_BACKEND = os.environ.get("NETWORK_NOTIFY_BACKEND", "builtin")
if NETWORK_NOTIFY_BACKEND not in {"builtin", "webhook", "sip"}:
    raise ImproperlyConfigured("NETWORK_NOTIFY_BACKEND must be 'builtin', 'webhook' or 'sip'.")
NETWORK_NOTIFY_WEBHOOK_URL = os.environ.get("NETWORK_NOTIFY_WEBHOOK_URL", "")
NETWORK_NOTIFY_WEBHOOK_SECRET = os.environ.get("NETWORK_NOTIFY_WEBHOOK_SECRET", "")
if NETWORK_NOTIFY_BACKEND == "webhook" and not (
    NETWORK_NOTIFY_WEBHOOK_URL and NETWORK_NOTIFY_WEBHOOK_SECRET
):
    raise ImproperlyConfigured("The webhook notifier needs NETWORK_NOTIFY_WEBHOOK_URL and _SECRET.")
# Largest reginfo or registration-event body the network API accepts.
NETWORK_MAX_BODY_BYTES = 512 * 1024

# The SIP edge (docs/architecture.md, "The SIP edge"): Kamailio as the application server the S-CSCFs send
# third-party REGISTERs to; `manage.py sipedge_config` writes its configuration from these.
# Its network-client credential comes from the SIP_EDGE_TOKEN environment variable of
# that command only, never from the settings.
SIP_EDGE_LISTEN = env_list("SIP_EDGE_LISTEN") or ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
SIP_EDGE_AS_URI = os.environ.get("SIP_EDGE_AS_URI", "sip:portal-as@127.0.0.1:5070")
# The S-CSCFs whose REGISTERs the edge takes: addresses or networks (CIDR).
SIP_EDGE_TRUSTED_SCSCFS = env_list("SIP_EDGE_TRUSTED_SCSCFS") or ["127.0.0.1"]
# How long the edge waits for the final answer to a request it sends (MESSAGE, SUBSCRIBE).
SIP_EDGE_TRANSACTION_SECONDS = int(os.environ.get("SIP_EDGE_TRANSACTION_SECONDS", "10"))
# Where the edge answers Kamailio's JSON-RPC (the portal sends SIP requests through it).
# It answers when the request's transaction ends: the portal waits a little longer.
SIP_EDGE_RPC_URL = os.environ.get("SIP_EDGE_RPC_URL", "http://127.0.0.1:5071/RPC")
SIP_EDGE_RPC_TIMEOUT_SECONDS = SIP_EDGE_TRANSACTION_SECONDS + 5.0
# The lab (`make lab`, portal/lab.py): an IMS core in a box on loopback. With LAB_MODE the
# identity page of a lab SIM shows its digest password (the SIM's ki) and LAB_REGISTRAR,
# the lab S-CSCF's address: a convenience for a softphone, refused outside DEBUG.
LAB_MODE = env_bool("LAB_MODE", False)
if LAB_MODE and not DEBUG:
    raise ImproperlyConfigured("LAB_MODE only runs with DJANGO_DEBUG on: it shows SIM keys.")
LAB_REGISTRAR = os.environ.get("LAB_REGISTRAR", "")
# Where a MESSAGE to a UE without a public GRUU goes first (the users' S-CSCF); empty:
# straight to the contact.
SIP_EDGE_SCSCF_URI = os.environ.get("SIP_EDGE_SCSCF_URI", "")
# How a sign-out in the portal reaches the network: "hss", the HSS backend's de-registration
# (PyHSS: Cx RTR; the report that follows confirms), or "scscf", the S-CSCF's administrative
# interface (Kamailio's JSON-RPC at SIP_SCSCF_RPC_URL): the S-CSCF sends itself, at
# SIP_SCSCF_URI, the UE's de-REGISTER of that one contact, and its 200 confirms; a
# suspended or removed identity's IMPUs are de-registered there with regscscf.dereg_impu.
SIGN_OUT_VIA = os.environ.get("SIGN_OUT_VIA", "hss")
if SIGN_OUT_VIA not in {"hss", "scscf"}:
    raise ImproperlyConfigured("SIGN_OUT_VIA must be 'hss' or 'scscf'.")
SIP_SCSCF_RPC_URL = os.environ.get("SIP_SCSCF_RPC_URL", "")
SIP_SCSCF_URI = os.environ.get("SIP_SCSCF_URI", "")
if SIGN_OUT_VIA == "scscf" and not (SIP_SCSCF_RPC_URL and SIP_SCSCF_URI):
    raise ImproperlyConfigured("SIGN_OUT_VIA=scscf needs SIP_SCSCF_RPC_URL and SIP_SCSCF_URI.")
SIP_NOTICE_FROM = os.environ.get(
    "SIP_NOTICE_FROM", f"sip:notices@{urlsplit(PORTAL_BASE_URL).hostname or 'localhost'}"
)
# How the edge reaches the portal's network API.
SIP_EDGE_PORTAL_URL = os.environ.get("SIP_EDGE_PORTAL_URL", PORTAL_BASE_URL).rstrip("/")
SIP_EDGE_SUBSCRIBE_EXPIRES = int(os.environ.get("SIP_EDGE_SUBSCRIBE_EXPIRES", "3600"))
SIP_EDGE_WORKERS = int(os.environ.get("SIP_EDGE_WORKERS", "4"))
# How long the edge waits for the portal's answer about an INVITE (signing or verifying)
# before it relays the call unsigned or unverified and counts it (milliseconds).
SIP_EDGE_STI_BUDGET_MS = int(os.environ.get("SIP_EDGE_STI_BUDGET_MS", "200"))
# What the edge does with an incoming call whose Identity fails verification: "mark" it
# (verstat=TN-Validation-Failed) and relay it, "reject" it with the RFC 8224 code, or
# "reject-unsigned", which also refuses calls without a verifiable Identity (428).
STIR_SIP_VERIFICATION_POLICY = os.environ.get("STIR_SIP_VERIFICATION_POLICY", "mark")
if STIR_SIP_VERIFICATION_POLICY not in {"mark", "reject", "reject-unsigned"}:
    raise ImproperlyConfigured(
        "STIR_SIP_VERIFICATION_POLICY must be 'mark', 'reject' or 'reject-unsigned'."
    )

# Call authentication (STIR/SHAKEN).
# Encrypts signing keys at rest (a Fernet key); unset: derived from DJANGO_SECRET_KEY.
STIR_KEY_ENCRYPTION_KEY = os.environ.get("STIR_KEY_ENCRYPTION_KEY", "")
# Where certificates are served, the base of every x5u (HTTPS in production).
STIR_CERT_REPOSITORY_URL = os.environ.get(
    "STIR_CERT_REPOSITORY_URL", f"{PORTAL_BASE_URL}/certs"
).rstrip("/")
# How far a PASSporT's iat may be from the time of the call (RFC 8224 suggests 60 s).
STIR_MAX_AGE_SECONDS = int(os.environ.get("STIR_MAX_AGE_SECONDS", "60"))
# The SHAKEN certificate policy our certificates name, the policies (or arcs) accepted in
# other carriers' leaves, and the CRL our certificates point to (when there is one).
STIR_CERTIFICATE_POLICY = os.environ.get("STIR_CERTIFICATE_POLICY", "2.16.840.1.114569.1.1.1")
# "any": leaves without a policy pass too (while certificates issued before the portal
# named one are replaced).
STIR_ACCEPTED_CERTIFICATE_POLICIES = env_list("STIR_ACCEPTED_CERTIFICATE_POLICIES") or [
    "2.16.840.1.114569.1.1"
]
if STIR_ACCEPTED_CERTIFICATE_POLICIES == ["any"]:
    STIR_ACCEPTED_CERTIFICATE_POLICIES = []
STIR_CRL_URL = os.environ.get("STIR_CRL_URL", "")
STIR_CRL_ISSUER = os.environ.get("STIR_CRL_ISSUER", "")  # an RFC 4514 DN, e.g. CN=STI-PA CRL
for _name, _parse in (
    ("STIR_CRL_ISSUER", x509.Name.from_rfc4514_string),
    ("STIR_CERTIFICATE_POLICY", x509.ObjectIdentifier),
):
    try:
        _parse(globals()[_name])
    except ValueError as _exc:
        raise ImproperlyConfigured(f"{_name} is not valid: {globals()[_name]!r}") from _exc
# Fetching other carriers' x5u (docs/security.md, "x5u fetch policy"): HTTPS to public
# addresses only, unless the operator lists private networks (comma-separated CIDRs) or,
# for labs, allows http to loopback.
STIR_X5U_TIMEOUT_SECONDS = float(os.environ.get("STIR_X5U_TIMEOUT_SECONDS", "2"))
STIR_X5U_CACHE_SECONDS = int(os.environ.get("STIR_X5U_CACHE_SECONDS", "3600"))
STIR_X5U_ALLOWED_NETWORKS = env_list("STIR_X5U_ALLOWED_NETWORKS")
try:
    for _network in STIR_X5U_ALLOWED_NETWORKS:
        ipaddress.ip_network(_network, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"STIR_X5U_ALLOWED_NETWORKS: {_exc}") from _exc
STIR_X5U_ALLOW_HTTP = env_bool("STIR_X5U_ALLOW_HTTP", False)
if STIR_X5U_ALLOW_HTTP and not DEBUG:
    raise ImproperlyConfigured("STIR_X5U_ALLOW_HTTP is for labs: production fetches HTTPS only.")
CALL_RECORD_RETENTION_DAYS = int(os.environ.get("CALL_RECORD_RETENTION_DAYS", "90"))
# Call records leave the request path through a Redis stream (telephony/callauth/records.py):
# the broker's Redis unless named; empty (the embedded default) writes each one directly.
CALL_RECORD_STREAM_URL = os.environ.get(
    "CALL_RECORD_STREAM_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
)
# How long a batch may stay unacknowledged before another writer takes it over (its
# writer died): longer than a batch takes to write.
CALL_RECORD_CLAIM_IDLE_SECONDS = float(os.environ.get("CALL_RECORD_CLAIM_IDLE_SECONDS", "30"))
if CALL_RECORD_STREAM_URL:
    CELERY_BEAT_SCHEDULE["call-records"] = {
        "task": "telephony.tasks.store_call_records",
        "schedule": 1.0,
    }

# Numbers: a number an identity left is not reused before this many days.
NUMBER_QUARANTINE_DAYS = int(os.environ.get("NUMBER_QUARANTINE_DAYS", "90"))
# Digits of the MNC in the operator's IMSIs (2 or 3), for IMSI-derived IMPIs.
IMSI_MNC_DIGITS = int(os.environ.get("IMSI_MNC_DIGITS", "2"))

# --- OpenID Connect identity management (django-oauth-toolkit) --------------------------
# The RS256 key that signs ID tokens and access tokens. Production: a PEM file shared by
# every web process; older keys stay in OIDC_RSA_PRIVATE_KEYS_INACTIVE_FILES (comma
# separated) so that tokens they signed still verify while the key is rotated.
OIDC_RSA_PRIVATE_KEY_FILE = os.environ.get("OIDC_RSA_PRIVATE_KEY_FILE", "")


def _oidc_key() -> str:
    if OIDC_RSA_PRIVATE_KEY_FILE:
        return Path(OIDC_RSA_PRIVATE_KEY_FILE).read_text()
    if not DEBUG:
        raise ImproperlyConfigured(
            "OIDC_RSA_PRIVATE_KEY_FILE must be set when DJANGO_DEBUG is off."
        )
    # Development: one key, made on first start and kept under var/.
    path = VAR_DIR / "oidc-rsa.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path.read_text()


OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OIDC_SCOPES = {
    "openid": "Sign you in",
    "profile": "Your name",
    "email": "Your email address",
    "mmtel": "Use your business telephony identities (MMTEL)",
    "3gpp:mc:ptt_service": "Mission-critical push-to-talk",
    "3gpp:mc:video_service": "Mission-critical video",
    "3gpp:mc:data_service": "Mission-critical data",
}
# The resource servers (RFC 8707) access tokens are for. The first is every token's
# audience (RFC 9068 "aud") unless the client narrows it with "resource": the operator's
# MMTEL realm as its elements check it. The default is 3GPP's test network (MCC 001):
# production must name its own, or every token carries an audience no element expects.
OIDC_RESOURCE_SERVERS = env_list("OIDC_RESOURCE_SERVERS")
if not OIDC_RESOURCE_SERVERS and not DEBUG:
    raise ImproperlyConfigured("OIDC_RESOURCE_SERVERS must be set when DJANGO_DEBUG is off.")
OIDC_RESOURCE_SERVERS = OIDC_RESOURCE_SERVERS or ["https://ims.mnc001.mcc001.3gppnetwork.org"]
for _resource in OIDC_RESOURCE_SERVERS:  # RFC 8707 §2: an absolute URI, no fragment
    if not _resource.startswith("https://") or "#" in _resource or len(_resource) < 9:
        raise ImproperlyConfigured(f"OIDC_RESOURCE_SERVERS: {_resource!r} is not an https URI.")
# Who fills the "impus" claim of the mmtel scope: accounts issues the tokens but does not
# know telephony (it sits below it), so the shell names the selector here.
OIDC_IMPUS_OF = "telephony.selectors.usable_impus"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": _oidc_key(),
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [
        Path(p).read_text() for p in env_list("OIDC_RSA_PRIVATE_KEYS_INACTIVE_FILES")
    ],
    "OIDC_ISS_ENDPOINT": PORTAL_BASE_URL,
    "PKCE_REQUIRED": True,
    "SCOPES": OIDC_SCOPES,
    "DEFAULT_SCOPES": ["openid"],
    # Discovery says what is true: the code flow only, public clients (PKCE, no secret).
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none"],
    # A token narrowed to a resource server still reaches the userinfo endpoint.
    "RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR": "accounts.oidc.token_serves",
    "OAUTH2_VALIDATOR_CLASS": "accounts.oidc.PortalValidator",
    "ACCESS_TOKEN_GENERATOR": "accounts.oidc.signed_access_token",
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OIDC_ACCESS_TOKEN_SECONDS", "3600")),
    "REFRESH_TOKEN_EXPIRE_SECONDS": 30 * 24 * 3600,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"] if DEBUG else ["https"],
    "REQUEST_APPROVAL_PROMPT": "auto",
    # The OAuth 2.0 Security BCP (RFC 9700) throughout: no implicit or password grant,
    # PKCE S256 only, tokens only in the Authorization header, "iss" in authorization
    # responses, tokens stored as checksums, refresh tokens rotated with reuse detection,
    # exact redirect URIs.
    **{
        f"COMPLIANT_BCP_RFC9700_{gate}": True
        for gate in (
            "IMPLICIT_GRANT",
            "PASSWORD_GRANT",
            "PKCE_METHOD",
            "ACCESS_TOKEN_TRANSPORT",
            "AUTHZ_RESPONSE_ISS",
            "TOKEN_STORAGE",
            "REFRESH_TOKEN",
            "REDIRECT_URI_MATCHING",
            "PKCE_REQUIRED",
        )
    },
}

# --- REST API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiTokenAuthentication",
        "accounts.api.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.EnterpriseRole"],
    "DEFAULT_PAGINATION_CLASS": "kernel.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kernel.api.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "kernel.api.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "kernel.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["kernel.ratelimit.CredentialRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": [],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Request-rate limits (kernel/ratelimit.py), counted in the cache: with several
# processes, point CACHE_URL at Redis so that they count together. Empty: no limit.
API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "1200/minute")  # per token or user
NETWORK_RATE_LIMIT = os.environ.get("NETWORK_RATE_LIMIT", "")  # per network client
# Refused requests per address at /o/token/ (answered ones do not count).
TOKEN_RATE_LIMIT = os.environ.get("TOKEN_RATE_LIMIT", "60/minute")
# "callpath": the facts signing and verification decide on (kernel/generations.py), and
# rendered page fragments (kernel/fragments.py), both lapsed by the generations there.
# Without Redis it is a dummy: a per-process copy could not be told of the worker's
# changes, so every call reads the database then.
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "kernel.cache.LastingRedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        },
        "callpath": {
            "BACKEND": "kernel.cache.LastingRedisCache",
            "LOCATION": os.environ["CACHE_URL"],
            # One database's facts: give each deployment its own CACHE_URL database.
            "KEY_PREFIX": "callpath",
        },
    }
elif not DEBUG:
    # A per-process cache would count rate limits and lockouts per process, silently.
    raise ImproperlyConfigured("CACHE_URL must be set (Redis) when DJANGO_DEBUG is off.")
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "callpath": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
# How long a cached call fact may live unused; changes make it stale at once anyway.
CALL_FACTS_CACHE_SECONDS = int(os.environ.get("CALL_FACTS_CACHE_SECONDS", "600"))
# How long a web process's call path takes a change's generation, read from the cache,
# as current (kernel/generations.py, _Near): another process's change reaches its
# calls within this. The contract is one second; 0 reads the cache on every call.
CALL_FACTS_NEAR_SECONDS = float(os.environ.get("CALL_FACTS_NEAR_SECONDS", "0.5"))
# How old a cached page fragment (the lists, the admin home: kernel/fragments.py) may be
# shown; recorded changes make it stale at once anyway. 0: every request renders.
PAGE_FRAGMENT_SECONDS = int(os.environ.get("PAGE_FRAGMENT_SECONDS", "10"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Enterprise IMS Portal API",
    "DESCRIPTION": (
        "Manage an enterprise's employees, their IMS/MMTEL identities and devices. "
        "Authenticate with `Authorization: Bearer <token>` using an API token that an "
        "enterprise admin creates in the portal; every call acts within that token's "
        "enterprise."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {"ServiceEnum": "accounts.models.Service"},
}

# --- Logging -------------------------------------------------------------------------
# One line per event with the request id (also in the tasks a request queued): JSON
# lines by default, for a log shipper; LOG_FORMAT=plain for a person at a terminal.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "kernel.observability.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "kernel.observability.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},
        # oauthlib writes authorization codes and tokens into its DEBUG lines: never
        # below INFO, whatever LOG_LEVEL says (portal/tests/test_secrets_in_logs.py).
        "oauthlib": {"level": "INFO"},
    },
}
