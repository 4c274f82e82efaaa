"""Helpers that every app's tests share: signed-in clients with a verified second
factor, current TOTP codes, and the tenancy checks."""

from typing import TYPE_CHECKING

from django.conf import settings
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

if TYPE_CHECKING:
    import subprocess


def totp_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def sign_in_verified(client, user):
    """Sign ``client`` in as ``user`` with a session that has passed the second factor."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    client.force_login(user, backend="accounts.backends.EmailBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# --- Tenancy ----------------------------------------------------------------------------


def url_patterns(patterns=None, prefix="", namespace=""):
    """(name, route, parameter names) of every named URL, walking includes."""
    import re

    from django.urls import URLResolver, get_resolver

    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = ":".join(filter(None, [namespace, pattern.app_name or pattern.namespace]))
            yield from url_patterns(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif pattern.name:
            route = prefix + str(pattern.pattern)
            params = set(re.findall(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>", route))
            names = {a or b for a, b in params} - {"format"}
            yield ":".join(filter(None, [namespace, pattern.name])), route, names


def assert_other_enterprise_gets_404(client, url: str, methods=("get", "post")) -> None:
    """``url`` addresses another enterprise's object: the methods it serves must answer
    404, as for an object that does not exist (the others 405, which tells nothing)."""
    # API bodies are JSON; an empty object gets past parsing to the object lookup.
    body = {"data": "{}", "content_type": "application/json"} if url.startswith("/api/") else {}
    answers = {
        method: getattr(client, method)(
            url, **(body if method in ("post", "patch") else {})
        ).status_code
        for method in methods
    }
    assert set(answers.values()) <= {404, 405}, f"{url} answered {answers}"
    assert 404 in answers.values(), f"{url} answered {answers}"


# --- A real Celery worker ------------------------------------------------------------


def worker_database_url() -> str:
    """The URL of the database the tests run on, for a worker in another process."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    credentials = quote(s["USER"]) + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


QUEUES = settings.TASK_QUEUES


class CeleryWorker:
    """A Celery worker process on the configured broker (Redis in CI) and the test
    database; started by the ``celery_worker`` fixture, stopped after the test.

    The fault drills start several: on some of the queues, on a broker of their own,
    with a concurrency, and they pause, kill and restart them."""

    READY_TIMEOUT = 60

    def __init__(
        self,
        extra_env=None,
        *,
        queues=QUEUES,
        hostname: str = "",
        broker_url: str = "",
        concurrency: int = 1,
        purge: bool = True,
    ):
        import uuid

        self.hostname = hostname or f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.extra_env = extra_env or {}
        self.queues = tuple(queues)
        self.broker_url = broker_url
        self.concurrency = concurrency
        self.purge = purge
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self):
        return self.launch().wait_ready()

    def launch(self):
        """Start the process without waiting for it to be ready (start several at once)."""
        import os
        import subprocess
        import sys
        import threading

        from portal.celery import app

        if self.purge:  # messages of an earlier test must not reach this one
            with app.connection_for_write(self.broker_url or None) as conn:
                for queue in QUEUES:
                    conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
                    conn.default_channel.queue_purge(queue)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings_test",
            "DATABASE_URL": worker_database_url(),
            **({"CELERY_BROKER_URL": self.broker_url} if self.broker_url else {}),
            **self.extra_env,
        }
        pool = (
            ["--pool=solo"]
            if self.concurrency == 1
            else ["--pool=prefork", f"--concurrency={self.concurrency}"]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", *pool,
             "-Q", ",".join(self.queues),
             "--loglevel=INFO", "-n", self.hostname, "--without-mingle", "--without-gossip"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: kill() takes the pool too
        )  # fmt: skip
        self.ready = threading.Event()

        def read():
            for line in self._started.stdout or ():
                self.output.append(line)
                if " ready." in line:
                    self.ready.set()

        threading.Thread(target=read, daemon=True).start()
        return self

    def wait_ready(self):
        import time

        deadline = time.monotonic() + self.READY_TIMEOUT
        while not self.ready.wait(0.2):
            if self._started.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Celery worker did not start:\n" + "".join(self.output))
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def _started(self) -> "subprocess.Popen[str]":
        if self.process is None:
            raise RuntimeError("The worker has not been started.")
        return self.process

    def _signal_group(self, signum) -> None:
        import os

        if self.running:
            os.killpg(self._started.pid, signum)

    def stop(self):
        import signal
        import subprocess

        if self.running:
            self._signal_group(signal.SIGCONT)  # a paused worker cannot shut down
            self._started.terminate()
            try:
                self._started.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        """SIGKILL, as a crash or an out-of-memory killer would (pool processes too)."""
        import signal

        self._signal_group(signal.SIGKILL)
        self._started.wait()

    def pause(self):
        """SIGSTOP: the worker freezes where it is (a stalled process, a long GC pause)."""
        import signal

        self._signal_group(signal.SIGSTOP)

    def resume(self):
        import signal

        self._signal_group(signal.SIGCONT)


def wait_for(condition, timeout: float = 30, interval: float = 0.1):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# --- Races between connections ----------------------------------------------------------


def backend_pid() -> int:
    """The PostgreSQL server process of this thread's connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked_by(holder: int, timeout: float = 10) -> None:
    """Wait until another connection queues for a lock that backend ``holder`` holds.

    A race test releases the holder only then: a sleep instead proves nothing on a
    slow machine, where the waiter may not have reached the lock yet."""
    from django.db import connection

    def someone_waits():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(pid))",
                [holder],
            )
            return cursor.fetchone()[0]

    try:
        wait_for(someone_waits, timeout, interval=0.02)
    except AssertionError:
        raise AssertionError(f"no connection waited for a lock of backend {holder}") from None


def response_text(response) -> str:
    """The body of a plain or streaming response."""
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def _wait_for_an_unused_totp_step(device: TOTPDevice) -> None:
    """django-otp refuses a code of a time step already used (replay protection): a
    second sign-in within the same step waits for the next one."""
    import time

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    while totp.t() <= device.last_t:
        time.sleep(0.5)
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)


def sign_in_browser(page, user, password: str) -> None:
    """Sign in through the real login and second-factor pages."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    page.goto("/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()
    if device is not None:
        _wait_for_an_unused_totp_step(device)
        page.get_by_role("textbox", name="Code").fill(totp_code(device))
        page.get_by_role("button", name="Verify").click()
    page.wait_for_url(lambda url: "/account/2fa" not in url and "/login" not in url)


# --- Real peers -------------------------------------------------------------------------


def peers_dir():
    """``../shared/peers`` beside the project (PyHSS's source and the peers' facts).

    A user's clone has no such folder: the tests that need it skip, saying why. CI has it,
    and there a missing folder is a failure, never a silent skip."""
    import os
    from pathlib import Path

    import pytest

    path = Path(settings.BASE_DIR).parent / "shared" / "peers"
    if not path.is_dir():
        message = f"the real peers are not beside this clone ({path} is absent)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the peer tests")
        pytest.skip(message)
    return path


def require_program(name: str) -> str:
    """The path of ``name`` (a peer from Debian's packages, installed by ``make test``);
    a skip outside CI when it is missing, a failure under ``CI=true``."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it: `make peers`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
