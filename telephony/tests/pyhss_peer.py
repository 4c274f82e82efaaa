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
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml
from django.conf import settings

from portal.testing import peers_dir, require_program

PROVISIONING_KEY = "peer-test-provisioning-key"
# The IMS domain PyHSS puts into its Cx answers (from its MCC and MNC).
IMS_DOMAIN = "ims.mnc001.mcc001.3gppnetwork.org"
START_TIMEOUT = 60
# The SIM key of every line provisioned here. PyHSS answers a Digest-MD5 MAR with the
# ki string as stored as the password: case matters (upper-case hex, as operators write it).
LAB_KI = "0" * 31 + "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RealPyHss:
    """A running PyHSS: its API URL, its files, and helpers that read it directly."""

    def __init__(self, root: Path, venv: Path) -> None:
        self.root = root  # the writable copy of PyHSS's tree
        self.venv = venv
        self.database = root / "hss.db"
        self.api_port = free_port()
        self.redis_port = free_port()
        self.diameter_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()
        self.session.headers["Provisioning-Key"] = PROVISIONING_KEY
        self._apn_id: int | None = None

    # --- Start and stop ------------------------------------------------------------

    def configure(self) -> None:
        config = yaml.safe_load((self.root / "config.yaml").read_text())
        config["database"] = {"db_type": "sqlite", "database": str(self.database)}
        config["api"].update(bind_ip="127.0.0.1", bind_port=self.api_port)
        config["redis"].update(connectionType="tcp", host="127.0.0.1", port=self.redis_port)
        config["metric"].update(bind_ip="127.0.0.1", bind_port=free_port())
        config["hss"].update(
            bind_ip=["127.0.0.1"],
            bind_port=self.diameter_port,
            # An S-CSCF's Diameter stack connects to the peer it names and checks that
            # the answer comes from it: the name is the address, so it resolves.
            OriginHost="127.0.0.1",
            OriginRealm=IMS_DOMAIN,
            lock_provisioning=True,
            provisioning_key=PROVISIONING_KEY,
        )
        config["hss"]["gsup"]["bind_port"] = free_port()
        config["snmp"]["port"] = free_port()
        config["benchmarking"]["enabled"] = False
        logs = self.root / "log"
        logs.mkdir()
        config["logging"]["logfiles"] = {
            name: str(logs / f"{name}.log") for name in config["logging"]["logfiles"]
        }
        (self.root / "peer-config.yaml").write_text(yaml.safe_dump(config))

    def spawn(self, name: str, argv: list[str], cwd: Path) -> None:
        out = (self.root / f"{name}.out").open("wb")
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, "PYHSS_CONFIG": str(self.root / "peer-config.yaml")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() takes its children
        )
        out.close()

    def start(self) -> RealPyHss:
        redis = require_program("redis-server")
        self.configure()
        self.spawn(
            "redis",
            [redis, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            self.root,
        )  # fmt: skip
        python = str(self.venv / "bin" / "python")
        services = self.root / "services"
        # hssService prepares the schema; the API waits for it (and gives up after ~20 s).
        self.spawn("hss", [python, "hssService.py"], services)
        self.spawn("api", [python, "apiService.py"], services)
        self.wait_until_answering()
        return self

    def wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"PyHSS's {name} exited:\n{self.output(name)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/oam/ping", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"PyHSS's API did not answer:\n{self.output('api')}")

    def output(self, name: str) -> str:
        path = self.root / f"{name}.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, names=None) -> None:
        for name in list(names or reversed(self.processes)):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_api(self) -> None:
        """PyHSS's REST API goes away (the HSS itself stays)."""
        self.stop(["api"])

    def start_api(self) -> None:
        self.spawn(
            "api", [str(self.venv / "bin" / "python"), "apiService.py"], self.root / "services"
        )
        self.wait_until_answering()

    def start_diameter(self) -> None:
        """PyHSS's Diameter service (Cx for an S-CSCF), once, until the session ends."""
        if "diameter" in self.processes:
            return
        python = str(self.venv / "bin" / "python")
        self.spawn("diameter", [python, "diameterService.py"], self.root / "services")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.processes["diameter"].poll() is not None:
                raise RuntimeError(f"PyHSS's Diameter service exited:\n{self.output('diameter')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.diameter_port), timeout=1),
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"PyHSS's Diameter service did not listen:\n{self.output('diameter')}")

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

    # --- The operator's data, over the REST API ------------------------------------

    def call(self, method: str, path: str, body=None):
        answer = self.session.request(method, self.url + path, json=body, timeout=30)
        assert answer.status_code == 200, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def provision_line(self, imsi: str, *, enabled: bool = True, ki: str = LAB_KI) -> dict:
        """What the operator does before the portal may use a SIM line: AUC keys and
        the EPC subscriber row (the APN once). The ``ki`` is also the SIM's Digest-MD5
        password over Cx, exactly as stored here."""
        if self._apn_id is None:
            apn = self.call("PUT", "/apn/", {"apn": "internet", "apn_ambr_dl": 0, "apn_ambr_ul": 0})
            self._apn_id = apn["apn_id"]
        auc = self.call(
            "PUT",
            "/auc/",
            {"ki": ki, "opc": "0" * 31 + "2", "amf": "8000", "sqn": 1, "imsi": imsi},
        )
        return self.call(
            "PUT",
            "/subscriber/",
            {
                "imsi": imsi,
                "enabled": enabled,
                "auc_id": auc["auc_id"],
                "default_apn": self._apn_id,
                "apn_list": str(self._apn_id),
            },
        )

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
        yield peer.start()
    finally:
        peer.stop()
