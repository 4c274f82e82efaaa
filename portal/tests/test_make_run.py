"""`make run` as a new user starts it: on a port of their choosing, every link the portal
prints, shows or sends names that port, and a mistyped address gets the portal's own
"not found" page, not Django's list of every URL pattern."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from django.urls import include, path

from portal.testing import sign_in_browser, wait_for, worker_database_url

ROOT = Path(__file__).resolve().parents[2]
DEMO_PASSWORD = "demo-Portal-2026"  # seed_demo's fixed password (DEBUG only)
DEMO_NETWORK_TOKEN_SEED = b"demo network token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def users_environment() -> dict[str, str]:
    """A user's shell around `make run` or `make lab`: the real settings, not this suite's
    (no DJANGO_*), nor the flags of the `make test` around it, nor its broker and cache:
    the portal's embedded ones serve, so that its worker and this suite's never take each
    other's tasks (the database is the test database, named by the caller)."""
    suite = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CELERY_BROKER_URL", "CACHE_URL"}
    return {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k not in suite}


class MakeRun:
    """`make run PORT=…` in its own process group, on the test database; stopped as a
    user stops it (Ctrl-C: SIGINT to the group), then killed if it hangs."""

    def __init__(self, port: int, var_dir: Path):
        self.port = port
        self.var_dir = var_dir
        self.output: list[str] = []
        env = users_environment()
        env.pop("PORTAL_BASE_URL", None)
        env.update(DATABASE_URL=worker_database_url(), PORTAL_VAR_DIR=str(var_dir))
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_serving(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"make run stopped:\n{self.text}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"make run did not serve within {timeout}s:\n{self.text}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The Celery worker runs in a process group of its own; make's trap stops it.
        # Should it have survived, it is found by this run's own var folder.
        for pid in self.processes_of_this_run():
            os.kill(pid, signal.SIGKILL)

    def processes_of_this_run(self) -> list[int]:
        marker = f"PORTAL_VAR_DIR={self.var_dir}".encode()
        pids = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if marker in environ.read_bytes().split(b"\0"):
                    pids.append(int(environ.parent.name))
            except OSError:
                continue
        return pids


def passport_header(identity_header: str) -> dict:
    """The JOSE header of a SIP Identity header value's PASSporT."""
    encoded = identity_header.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_make_run_on_another_port_links_everything_to_that_port(browser, tmp_path):
    import hashlib

    from accounts.models import NetworkClient, User

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = MakeRun(port, tmp_path)
    try:
        run.wait_serving()

        # seed_demo's printed links: the sign-in page, API, network API, SCIM, discovery.
        printed = re.findall(r"https?://[^\s'\")]+", run.text)
        assert f"Sign in at {base}/" in run.text
        assert f"{base}/scim/v2/" in printed
        assert f"{base}/.well-known/openid-configuration" in printed
        assert not [url for url in printed if url.startswith("http://127.0.0.1:8000")]

        # OIDC discovery: the issuer and every endpoint.
        discovery = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
        assert discovery["issuer"] == base
        endpoints = {
            key: value for key, value in discovery.items() if key.endswith(("_endpoint", "_uri"))
        }
        assert endpoints and all(url.startswith(f"{base}/") for url in endpoints.values()), (
            endpoints
        )

        # STIR/SHAKEN: the x5u of a signed call points at this portal's certificates.
        token = f"{NetworkClient.TOKEN_PREFIX}_demo_{hashlib.sha256(DEMO_NETWORK_TOKEN_SEED).hexdigest()[:32]}"
        signed = requests.post(
            f"{base}/network/v1/stir/signing",
            json={"signingRequest": {
                "orig": {"tn": "4930555000"}, "dest": {"tn": ["4940123499"]},
                "iat": int(time.time()), "origid": "3f2c1e5a-7d4e-4b9f-8000-1c2d3e4f5a6b",
            }},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )  # fmt: skip
        assert signed.status_code == 200, signed.text
        identity = signed.json()["signingResponse"]["identity"]
        assert passport_header(identity)["x5u"].startswith(f"{base}/certs/")
        assert f";info=<{base}/certs/" in identity

        # The admin's Settings: SCIM base URL and OIDC issuer.
        context = browser.new_context(base_url=base)
        context.set_default_timeout(15_000)
        page = context.new_page()
        admin = User.objects.get(email="admin@swift-delivery.example")
        sign_in_browser(page, admin, DEMO_PASSWORD)
        page.goto("/enterprise/identity-provider/")
        assert page.get_by_text(f"{base}/scim/v2/", exact=True).is_visible()
        assert page.get_by_test_id("oidc-issuer").inner_text() == base

        # An invitation email, sent by the worker that `make run` started.
        page.goto("/users/invite/")
        page.get_by_label("Full name").fill("Nina New")
        page.get_by_label("Email").fill("nina.new@swift-delivery.example")
        page.get_by_role("button", name="Send invitation").click()
        page.wait_for_url(lambda url: "/users/invite/" not in url)
        context.close()
        mail = wait_for(
            lambda: [
                p.read_text() for p in (tmp_path / "mail").glob("*") if "nina.new" in p.read_text()
            ],
            timeout=60,
        )
        links = re.findall(r"https?://\S+", mail[0])
        assert links and all(link.startswith(f"{base}/") for link in links), links

        # A mistyped address: the portal's own page, though `make run` runs with DEBUG on.
        missing = requests.get(f"{base}/no-such-page/", timeout=10)
        assert missing.status_code == 404
        assert "There is nothing here" in missing.text
        assert "URLconf" not in missing.text
    finally:
        run.stop()
    assert not run.processes_of_this_run()


@pytest.fixture
def debug_on(settings):
    """DEBUG on with the middleware where the settings put it then (they are read once)."""
    settings.DEBUG = True
    middleware = "portal.middleware.PortalErrorPagesMiddleware"
    stack = [m for m in settings.MIDDLEWARE if m != middleware]
    stack.insert(stack.index("django.middleware.common.CommonMiddleware") + 1, middleware)
    settings.MIDDLEWARE = stack
    return settings


def test_with_debug_on_not_found_pages_are_the_portals_own(admin_client, debug_on):
    for url in ("/no-such-page/", "/users/999999/edit/"):  # no pattern; no such object
        response = admin_client.get(url)
        assert response.status_code == 404
        assert "There is nothing here" in response.text
        assert "URLconf" not in response.text


def broken_view(request):
    raise RuntimeError("a bug in a view")


# This module doubles as a URLconf: the portal's URLs and one view with a bug.
urlpatterns = [path("broken/", broken_view), path("", include("portal.urls"))]


def test_with_debug_on_a_server_error_shows_the_portals_page_and_logs_the_traceback(
    admin_client, debug_on, caplog
):
    debug_on.ROOT_URLCONF = __name__
    admin_client.raise_request_exception = False
    response = admin_client.get("/broken/")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "Traceback" not in response.text and "SECRET_KEY" not in response.text
    assert "a bug in a view" in caplog.text  # the developer still gets the traceback


def test_without_the_middleware_debug_on_shows_djangos_page(admin_client, settings):
    """The checks above can fail: this is the page they keep away."""
    settings.DEBUG = True
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "ErrorPages" not in m]
    assert "URLconf" in admin_client.get("/no-such-page/").text
