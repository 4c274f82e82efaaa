"""A production-like deployment on loopback for one benchmark: gunicorn with several
workers and Celery workers per queue, against the bench database and Redis DB, with
DEBUG off. Started and stopped by the benchmark; every process it starts is its own
child, stopped by its id at the end.

While it runs, a sampler reads each process's resident memory from /proc, so every
benchmark reports the peak RSS of a web worker and of a Celery worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# A fixed key for the signing keys at rest in the bench database, so that credentials
# made by one run (bench_data) unseal in the next; the bench database holds nothing else.
BENCH_FERNET_KEY = "YmVuY2gtc3Rpci1rZXlzLWF0LXJlc3QtMzItYnl0ZXM="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_environment(
    var_dir: Path, *, database_url: str, broker_url: str, cache_url: str
) -> dict[str, str]:
    """The environment of every process of the deployment (and of the bench itself):
    production mode with the values production refuses to start without."""
    key_file = var_dir / "oidc-rsa.pem"
    if not key_file.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    secret_file = var_dir / "secret-key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secret_file.read_text(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        # TLS ends in front of the portal in production; the load tools send the
        # proxy's X-Forwarded-Proto header.
        "BEHIND_TLS_PROXY": "true",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CACHE_URL": cache_url,
        "OIDC_RSA_PRIVATE_KEY_FILE": str(key_file),
        "OIDC_RESOURCE_SERVERS": "https://ims.mnc001.mcc001.3gppnetwork.org",
        "STIR_KEY_ENCRYPTION_KEY": BENCH_FERNET_KEY,
        "PORTAL_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "INFO",
    }


@dataclass
class Memory:
    """Peak resident memory (kB) seen per role; a role is e.g. "web worker"."""

    peaks: dict[str, int] = field(default_factory=dict)

    def see(self, role: str, kb: int) -> None:
        if kb > self.peaks.get(role, 0):
            self.peaks[role] = kb

    def mb(self) -> dict[str, float]:
        return {role: round(kb / 1024, 1) for role, kb in sorted(self.peaks.items())}


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


class Deployment:
    """gunicorn plus Celery workers, as a context manager."""

    def __init__(
        self,
        env: dict[str, str],
        var_dir: Path,
        *,
        web_workers: int = 5,
        sync_concurrency: int = 4,
        bulk_concurrency: int = 4,
        extra_env: dict[str, str] | None = None,
        celery: bool = True,
        name: str = "bench",
    ):
        self.env = {**os.environ, **env, **(extra_env or {})}
        self.var_dir = var_dir
        self.web_workers = web_workers
        self.sync_concurrency = sync_concurrency
        self.bulk_concurrency = bulk_concurrency
        self.celery = celery
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.memory = Memory()
        self._sampling = threading.Event()
        self._logs: list = []

    # --- processes ------------------------------------------------------------------

    def _start(self, role: str, argv: list[str]) -> None:
        log = open(self._log_path(role), "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        self.processes[role] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._purge_queues()
        self._start(
            "web",
            [
                str(BIN / "gunicorn"),
                "portal.wsgi",
                "--workers",
                str(self.web_workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--backlog",
                "2048",
                "--timeout",
                "120",
                "--graceful-timeout",
                "10",
            ],
        )
        if self.celery:
            workers = {
                "sync": ("sync", self.sync_concurrency),
                "bulk": ("bulk", self.bulk_concurrency),
                "imports": ("imports", 1),
                "notify": ("notify,celery", 1),
            }
            for role, (queues, concurrency) in workers.items():
                self._start(
                    f"celery-{role}",
                    [
                        str(BIN / "celery"),
                        "-A",
                        "portal",
                        "worker",
                        "-Q",
                        queues,
                        "--concurrency",
                        str(concurrency),
                        "--loglevel",
                        "INFO",
                        "-n",
                        f"bench-{role}-{self.port}@localhost",
                        "--without-mingle",
                        "--without-gossip",
                        "--without-heartbeat",
                    ],
                )
        self._wait_ready()
        self._sampling.set()
        threading.Thread(target=self._sample, daemon=True).start()

    def _purge_queues(self) -> None:
        import redis

        redis.Redis.from_url(self.env["CELERY_BROKER_URL"]).flushdb()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        pending = {role for role in self.processes if role.startswith("celery-")}
        web_up = False
        while time.monotonic() < deadline:
            for role, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{role} exited at start:\n{self.log_tail(role)}")
            if not web_up:
                with contextlib.suppress(requests.RequestException):
                    web_up = requests.get(f"{self.base_url}/healthz", timeout=2).ok
            for role in list(pending):
                if b" ready." in self._log_path(role).read_bytes():
                    pending.discard(role)
            if web_up and not pending:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the deployment did not start within {timeout:.0f}s")

    def _log_path(self, role: str) -> Path:
        return self.var_dir / f"{self.name}-{role}.log"

    def log_tail(self, role: str, lines: int = 30) -> str:
        path = self._log_path(role)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._sampling.is_set():
            self._sample_once()
        self._sampling.clear()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Its own process group (start_new_session): the pool children too.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    # --- memory ----------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        """Processes by role: web workers, and each Celery worker's pool processes."""
        roles: dict[str, list[int]] = {}
        for role, process in self.processes.items():
            if process.poll() is not None:
                continue
            children = _children(process.pid)
            if role == "web":
                roles["web worker"] = children
            else:
                roles[f"{role} worker (pool)"] = children
                roles[f"{role} worker (main)"] = [process.pid]
        return roles

    def _sample_once(self) -> None:
        for role, pids in self.pids().items():
            for pid in pids:
                # The high-water mark catches peaks between two samples.
                self.memory.see(role, _status_kb(pid, "VmHWM"))

    def _sample(self) -> None:
        while self._sampling.is_set():
            self._sample_once()
            time.sleep(0.25)

    def tasks_run(self, task: str) -> dict[str, int]:
        """How many times each Celery worker (by role) received ``task``."""
        needle = re.compile(rb"Task " + re.escape(task.encode()) + rb"\[[^\]]+\] received")
        return {
            role: len(needle.findall(self._log_path(role).read_bytes()))
            for role in self.processes
            if role.startswith("celery-")
        }

    def web_worker_pids(self) -> list[int]:
        return self.pids().get("web worker", [])

    def celery_pool_pids(self, role: str) -> list[int]:
        return self.pids().get(f"celery-{role} worker (pool)", [])
