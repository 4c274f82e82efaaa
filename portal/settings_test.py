"""Test settings: the production module with what tests need changed."""

import os

# Tests run in development mode (the production module's default is off); a test that
# needs production values computes them in a fresh process (portal/tests/test_settings.py).
os.environ["DJANGO_DEBUG"] = "true"

from .settings import *  # noqa: F403
from .settings import (
    CELERY_BROKER_TRANSPORT_OPTIONS,
    CELERY_BROKER_URL,
    DATABASES,
    VAR_DIR,
)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Static files straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Tasks run in the test process unless a test drives a real worker (marker "worker").
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a worker process started by a test can open it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

if CELERY_BROKER_URL.startswith("filesystem://"):
    # Keep the tests' messages apart from those of a portal served by `make run`.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        key: value.replace(str(VAR_DIR / "broker"), str(VAR_DIR / "test-broker"))
        if isinstance(value, str)
        else value
        for key, value in CELERY_BROKER_TRANSPORT_OPTIONS.items()
    }

# Call records are written directly unless a test exercises the record stream itself
# (it sets CALL_RECORD_STREAM_URL), so that a test reads the record its call made.
# A worker started by such a test is given it in its environment.
if "CALL_RECORD_STREAM_URL" not in os.environ:
    CALL_RECORD_STREAM_URL = ""

# Pages are rendered for each request unless a test exercises the page fragments' cache
# (kernel/fragments.py), so that a test sees rows it wrote straight to the database
# (PAGE_FRAGMENT_SECONDS=10 runs the page tests with the cache, as deployed).
PAGE_FRAGMENT_SECONDS = int(os.environ.get("PAGE_FRAGMENT_SECONDS", "0"))
