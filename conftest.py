import os

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import (
    AdminFactory,
    EnterpriseFactory,
    HelpdeskFactory,
    StaffFactory,
    UserFactory,
    api_token,
)
from portal.testing import sign_in_verified

# Playwright's sync API runs an event loop in the test thread; the ORM calls that the
# browser tests make around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts with an empty cache: no rate-limit counts of an earlier one,
    no call facts (the shared cache's, or this process's near copy of them)."""
    from django.core.cache import cache

    from kernel import generations

    cache.clear()
    generations.forget_near()


@pytest.fixture
def enterprise(db):
    return EnterpriseFactory(name="Swift Delivery", slug="swift", sip_domain="swift.example")


@pytest.fixture
def other_enterprise(db):
    return EnterpriseFactory(name="Other Co", slug="other", sip_domain="other.example")


@pytest.fixture
def admin(enterprise):
    return AdminFactory(enterprise=enterprise, full_name="Ada Admin", email="ada@swift.example")


@pytest.fixture
def helpdesk(enterprise):
    return HelpdeskFactory(enterprise=enterprise, full_name="Hugo Help", email="hugo@swift.example")


@pytest.fixture
def employee(enterprise):
    return UserFactory(enterprise=enterprise, full_name="Rob Smith", email="rob@swift.example")


@pytest.fixture
def staff(db):
    return StaffFactory(full_name="Olga Operator", email="olga@operator.example")


@pytest.fixture
def admin_client(client, admin):
    return sign_in_verified(client, admin)


@pytest.fixture
def helpdesk_client(client, helpdesk):
    return sign_in_verified(client, helpdesk)


@pytest.fixture
def employee_client(client, employee):
    return sign_in_verified(client, employee)


@pytest.fixture
def staff_client(client, staff):
    return sign_in_verified(client, staff)


@pytest.fixture
def api(enterprise):
    """An API client holding a read-write token of ``enterprise``."""
    token, raw = api_token(enterprise)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.token = token
    return client


@pytest.fixture
def celery_worker(transactional_db):
    """A real worker process consuming from the configured broker; tasks sent during
    the test go through the broker instead of running eagerly."""
    from portal.celery import app
    from portal.testing import CeleryWorker

    worker = CeleryWorker().start()
    app.conf.task_always_eager = False
    try:
        yield worker
    finally:
        app.conf.task_always_eager = True
        worker.stop()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (no browser download)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
