"""The real PyHSS 2.0 for the peer tests: started once per test session on loopback,
from a writable copy of ``../shared/peers/pyhss-2.0.0`` in a temporary folder, with its
own SQLite file, a private ``redis-server`` on a free port, and its own virtual
environment (``make peers`` builds it). Every process started here is stopped by pid
at the end, also when a test or the start-up fails.

The operator's data (an APN, AUC keys and the EPC ``subscriber`` row of each IMSI) is
created over PyHSS's own REST API, as an operator would, with ``provision_line``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from portal.lab import PyHss
from portal.testing import peers_dir

PROVISIONING_KEY = "peer-test-provisioning-key"
# The IMS domain PyHSS puts into its Cx answers (from its MCC and MNC).
IMS_DOMAIN = "ims.mnc001.mcc001.3gppnetwork.org"
# The SIM key of every line provisioned here. PyHSS answers a Digest-MD5 MAR with the
# ki string as stored as the password: case matters (upper-case hex, as operators write it).
LAB_KI = "0" * 31 + "1"


class RealPyHss(PyHss):
    """The lab's PyHSS with what the tests read and do behind the portal's back."""

    def __init__(self, root: Path, venv: Path) -> None:
        super().__init__(root, venv, provisioning_key=PROVISIONING_KEY)

    def stop_api(self) -> None:
        """PyHSS's REST API goes away (the HSS itself stays)."""
        self.stop(["api"])

    def start_api(self) -> None:
        self.spawn(
            "api", [str(self.venv / "bin" / "python"), "apiService.py"], self.root / "services"
        )
        self.wait_until_answering()

    def server_assignment(self, imsi: str) -> int:
        """The result code of PyHSS's answer to an S-CSCF's SAR (REGISTRATION) for
        the IMSI: 2001 (success), or 5005 and the like (a refusal)."""
        self.start_diameter()
        client = Path(__file__).with_name("pyhss_cx.py")
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), str(client), str(self.root),
             str(self.diameter_port), imsi, IMS_DOMAIN],
            env={**os.environ, "PYHSS_CONFIG": str(self.root / "peer-config.yaml")},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the Cx client failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])["saa"]

    @contextlib.contextmanager
    def database_locked(self) -> Iterator[None]:
        """Another writer holds PyHSS's SQLite database: its reads and writes wait
        (SQLite's busy timeout) and then fail with "database is locked"."""
        holder = sqlite3.connect(self.database, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    # --- Reading PyHSS directly (its own database, the truth the tests compare) -----

    def rows(self, table: str) -> list[dict]:
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608

    def ims_subscribers(self) -> dict[str, dict]:
        """Every ``ims_subscriber`` row by MSISDN."""
        return {row["msisdn"]: row for row in self.rows("ims_subscriber")}

    def enabled(self, imsi: str) -> bool:
        (row,) = [r for r in self.rows("subscriber") if r["imsi"] == imsi]
        return bool(row["enabled"])

    def execute(self, sql: str, *params) -> None:
        """A change made behind the portal's back (drift, an orphan)."""
        with contextlib.closing(sqlite3.connect(self.database)) as db, db:
            db.execute(sql, params)

    def call(self, method: str, path: str, body=None):
        answer = self.session.request(method, self.url + path, json=body, timeout=30)
        assert answer.status_code == 200, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def provision_line(self, imsi: str, *, enabled: bool = True, ki: str = LAB_KI) -> dict:
        return super().provision_line(imsi, ki=ki, enabled=enabled)

    def clear_ims(self) -> None:
        """Forget every ``ims_subscriber`` row between tests (the operator's rows stay)."""
        self.execute("DELETE FROM ims_subscriber")


def pyhss_venv() -> Path:
    venv = Path(settings.BASE_DIR) / "var" / "peers" / "pyhss-venv"
    if not (venv / ".installed").exists():
        import pytest

        message = f"PyHSS's own environment is not built ({venv}); run `make peers`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return venv


@contextlib.contextmanager
def running_pyhss(tmp: Path) -> Iterator[RealPyHss]:
    source = peers_dir() / "pyhss-2.0.0"
    venv = pyhss_venv()
    root = tmp / "pyhss"
    # A copy: PyHSS resolves ifc_path against its own root, and writes beside it.
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("docs", ".git"))
    peer = RealPyHss(root, venv)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()
