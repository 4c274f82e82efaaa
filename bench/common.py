"""What every benchmark shares: the scales, the environment, Django in the bench process
(for preparing data, counting queries and checking results), and signed-in sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from .deploy import ROOT, Deployment, bench_environment

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/3"
# Production refuses a per-process cache: rate limits count in Redis, apart from the broker.
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/4"
# What production's TLS-terminating proxy adds to each request.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


@dataclass(frozen=True)
class Scale:
    name: str
    employees: int
    ues: int
    calls: int
    small_employees: int
    import_rows: int
    storm_events: int
    seconds: int  # per load-tool run


SCALES = {
    "full": Scale("full", 10_000, 25_000, 500_000, 50, 10_000, 100_000, 10),
    "small": Scale("small", 1_000, 2_500, 50_000, 50, 500, 5_000, 3),
}


@dataclass
class Context:
    scale: Scale
    var_dir: Path
    env: dict[str, str]
    web_workers: int
    sync_concurrency: int
    bulk_concurrency: int
    data: dict = field(default_factory=dict)

    @property
    def network_token(self) -> str:
        return self.data["network_token"]

    def deployment(self, name: str, **options) -> Deployment:
        return Deployment(
            self.env,
            self.var_dir,
            name=name,
            web_workers=self.web_workers,
            sync_concurrency=self.sync_concurrency,
            bulk_concurrency=self.bulk_concurrency,
            **options,
        )


def make_context(
    scale: Scale, *, web_workers: int, sync_concurrency: int, bulk_concurrency: int, var_dir: Path
) -> Context:
    var_dir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    _ensure_database(database_url)
    broker_url = os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER_URL)
    cache_url = os.environ.get("BENCH_CACHE_URL", DEFAULT_CACHE_URL)
    env = bench_environment(
        var_dir, database_url=database_url, broker_url=broker_url, cache_url=cache_url
    )
    os.environ.update(env)
    import django

    django.setup()
    return Context(scale, var_dir, env, web_workers, sync_concurrency, bulk_concurrency)


def _ensure_database(url: str) -> None:
    """Create the bench database on first use (its server must be running)."""
    import dj_database_url
    import psycopg2
    from psycopg2 import sql

    config = dj_database_url.parse(url)
    options = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "password": config["PASSWORD"] or None,
    }
    # Not ``with server``: psycopg2 opens a transaction there, and CREATE DATABASE
    # refuses to run in one.
    server = psycopg2.connect(dbname="postgres", **options)
    server.autocommit = True
    try:
        with server.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
    finally:
        server.close()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def collectstatic(ctx: Context) -> None:
    """Production serves hashed static files (WhiteNoise's manifest): collect them once."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **ctx.env},
        check=True,
    )


def make_data(ctx: Context) -> dict:
    """(Re)make the bench data at the context's scale; returns bench_data's report."""
    from django.core.management import call_command

    out = StringIO()
    s = ctx.scale
    call_command(
        "bench_data",
        employees=s.employees,
        ues=s.ues,
        calls=s.calls,
        small_employees=s.small_employees,
        stdout=out,
    )
    ctx.data = json.loads(out.getvalue())
    (ctx.var_dir / "bench-data.json").write_text(out.getvalue())
    return ctx.data


def reuse_data(ctx: Context) -> dict | None:
    """The report of the last bench_data run, if its data is still there."""
    path = ctx.var_dir / "bench-data.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    from accounts.models import Enterprise, NetworkClient
    from kernel.credentials import hash_secret

    made = Enterprise.objects.filter(slug__in=data["enterprises"]).count()
    token_ok = NetworkClient.objects.filter(
        key_hash=hash_secret(data["network_token"]), revoked_at=None
    ).exists()
    if made != len(data["enterprises"]) or not token_ok:
        return None
    ctx.data = data
    return data


def session_cookie(email: str) -> str:
    """A session of ``email`` that has passed the second factor, as its cookie value."""
    from django.test import Client

    from accounts.models import User
    from portal.testing import sign_in_verified

    client = Client()
    sign_in_verified(client, User.objects.get(email=email))
    return client.cookies["sessionid"].value


def session_headers(cookie: str) -> dict[str, str]:
    return {"Cookie": f"sessionid={cookie}", **PROXY_HEADERS}


def own_enterprise(*, slug: str, name: str, sip_domain: str, first_tn: int, quota: int):
    """The enterprise a benchmark brings of its own (made once, kept for later runs), with
    10,000 numbers from ``first_tn`` and an identity quota of at least ``quota``."""
    from accounts.audit import Actor
    from accounts.models import Enterprise
    from accounts.tests.factories import EnterpriseFactory
    from telephony.inventory import services as inventory

    enterprise = Enterprise.objects.filter(slug=slug).first()
    if enterprise is None:
        enterprise = EnterpriseFactory.create(name=name, slug=slug, sip_domain=sip_domain)
        inventory.number_block_create(
            actor=Actor.system(),
            enterprise=enterprise,
            first_number=f"+{first_tn}",
            last_number=f"+{first_tn + 9999}",
        )
    enterprise.contract.identity_quota = max(enterprise.contract.identity_quota, quota)
    enterprise.contract.save(update_fields=["identity_quota"])
    return enterprise


def own_employee(enterprise, email: str):
    """An employee of a benchmark's own enterprise. Nobody signs in as one: no password
    is hashed (a thousand hashes took minutes of a first run)."""
    from accounts.models import Role, User

    user = User(
        enterprise=enterprise,
        email=email,
        full_name=email.split("@")[0],
        role=Role.EMPLOYEE,
        status=User.Status.ACTIVE,
    )
    user.set_unusable_password()
    user.save()
    return user
