"""The lab IMS core: starting its processes and writing their configuration, for
``manage.py lab`` (``make lab``) and the end-to-end tests alike (telephony/tests/ims_core.py,
pyhss_peer.py, sip_peers.py build on this module).

The real PyHSS 2.0 (REST, and Diameter for Cx) from a writable copy of its release with
the project's iFC template (``lab/ifc.xml``), its own SQLite file and a private
``redis-server``; Kamailio's IMS S-CSCF running ``lab/scscf.cfg``; the portal's SIP edge as
``sipedge_config`` writes it. Everything binds 127.0.0.1, each process runs in its own
process group and is stopped by its pid (SIGTERM, SIGKILL after ten seconds), also when
a start fails; each writes its pid to ``<name>.pid`` in its folder, so that ``manage.py
lab --stop`` finds a leftover. docs/architecture.md, "The lab IMS core", says why each
piece is as it is. It stands for the operator's core: it is not the product.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from telephony.inventory.numbers import lab_ki

__all__ = ["lab_ki"]  # the key the lab provisions for a line (make lab)

LAB_DIR = Path(settings.BASE_DIR) / "lab"
# Where the iFC template sits in PyHSS's copy: PyHSS resolves ifc_path against its own
# root only (no absolute path, no "..").
IFC_PATH = "lab/ifc.xml"
DBTEXT_SCHEMA = Path("/usr/share/kamailio/dbtext/kamailio")
# The presence tables the S-CSCF's presence module opens (db_text; nothing is kept).
PRESENCE_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap")
START_TIMEOUT = 60  # seconds for PyHSS to answer
KAMAILIO_TIMEOUT = 20  # seconds for a Kamailio to answer JSON-RPC
DIAMETER_TIMEOUT = 20  # seconds for the S-CSCF's Diameter peer to open
PROVISIONING_KEY = "lab-provisioning-key"


class LabUnavailable(RuntimeError):
    """Something the lab needs is not on this machine; the message says what."""


def ims_domain(mcc: str, mnc: str) -> str:
    """The IMS home domain of a PLMN (TS 23.003 13.2), the one PyHSS puts in its answers."""
    return f"ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"


# --- Ports and processes -------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now (TCP by default; ``socket.SOCK_DGRAM``: UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_sip_port(*, next_too: bool = False) -> int:
    """A port on 127.0.0.1 free now for both UDP and TCP (SIP listens on both), and with
    ``next_too`` the TCP port after it as well."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket() as tcp, socket.socket() as after:
                tcp.bind(("127.0.0.1", port))
                if next_too:
                    after.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free SIP port on 127.0.0.1")


def program(name: str) -> str:
    """The path of a program the lab runs; LabUnavailable when it is not installed."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else "")
    if not path:
        raise LabUnavailable(f"{name} is not installed (make peers installs Debian's packages).")
    return path


def spawn(name: str, argv: list[str], folder: Path, *, cwd: Path, env=None) -> subprocess.Popen:
    """``argv`` in its own process group, its output in ``folder/<name>.out``, its pid in
    ``folder/<name>.pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.out").open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() takes its children
        )  # fmt: skip
    (folder / f"{name}.pid").write_text(f"{process.pid}\n")
    return process


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers; by pid, never by name."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_leftovers(folder: Path) -> list[int]:
    """Stop every process group whose pid a ``*.pid`` file under ``folder`` names (a lab
    that was not stopped cleanly); the pids stopped."""
    stopped = []
    for pid_file in sorted(folder.rglob("*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            pid_file.unlink(missing_ok=True)
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
                stopped.append(pid)
            if sig == signal.SIGTERM:
                time.sleep(1)
        pid_file.unlink(missing_ok=True)
    return sorted(set(stopped))


# --- PyHSS ----------------------------------------------------------------------------------


def pyhss_source() -> Path:
    """PyHSS 2.0's release beside the project (``../shared/peers/pyhss-2.0.0``, or
    ``LAB_PYHSS_SOURCE``)."""
    default = Path(settings.BASE_DIR).parent / "shared" / "peers" / "pyhss-2.0.0"
    return Path(os.environ.get("LAB_PYHSS_SOURCE", default))


def pyhss_venv() -> Path:
    """PyHSS's own virtual environment (``make peers`` builds it; its pins differ)."""
    return Path(settings.BASE_DIR) / "var" / "peers" / "pyhss-venv"


class PyHss:
    """PyHSS running from ``root`` (a writable copy of its release): its API URL, its
    processes, and the operator's side of its REST API."""

    def __init__(
        self,
        root: Path,
        venv: Path,
        *,
        provisioning_key: str = PROVISIONING_KEY,
        mcc: str = "001",
        mnc: str = "01",
        api_port: int = 0,
        diameter_port: int = 0,
    ) -> None:
        self.root = root
        self.venv = venv
        self.provisioning_key = provisioning_key
        self.mcc, self.mnc = mcc, mnc
        self.domain = ims_domain(mcc, mnc)
        self.database = root / "hss.db"
        self.api_port = api_port or free_port()
        self.redis_port = free_port()
        self.diameter_port = diameter_port or free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()
        self.session.headers["Provisioning-Key"] = provisioning_key
        self._apn_id: int | None = None

    @classmethod
    def copy_of_release(cls, folder: Path, **options) -> PyHss:
        """A fresh writable copy of PyHSS's release in ``folder/pyhss``: PyHSS resolves
        ifc_path against its own root, and writes beside it."""
        source, venv = pyhss_source(), pyhss_venv()
        if not (source / "services" / "apiService.py").exists():
            raise LabUnavailable(
                f"PyHSS 2.0.0's release is not at {source}: the lab runs the real PyHSS. "
                "Put its release there (github.com/nickvsnetworking/pyhss, tag 2.0.0) or "
                "set LAB_PYHSS_SOURCE to it, then run `make peers`."
            )
        if not (venv / ".installed").exists():
            raise LabUnavailable(
                f"PyHSS's own environment is not built ({venv}): run `make peers`."
            )
        root = folder / "pyhss"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("docs", ".git"))
        return cls(root, venv, **options)

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
            OriginRealm=self.domain,
            MCC=self.mcc,
            MNC=self.mnc,
            lock_provisioning=True,
            provisioning_key=self.provisioning_key,
        )
        config["hss"]["gsup"]["bind_port"] = free_port()
        config["snmp"]["port"] = free_port()
        config["benchmarking"]["enabled"] = False
        logs = self.root / "log"
        logs.mkdir(exist_ok=True)
        config["logging"]["logfiles"] = {
            name: str(logs / f"{name}.log") for name in config["logging"]["logfiles"]
        }
        (self.root / "peer-config.yaml").write_text(yaml.safe_dump(config))

    def spawn(self, name: str, argv: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYHSS_CONFIG": str(self.root / "peer-config.yaml")}
        self.processes[name] = spawn(name, argv, self.root, cwd=cwd, env=env)

    def start(self) -> PyHss:
        redis = program("redis-server")
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
            if process is not None:
                stop(process)
                (self.root / f"{name}.pid").unlink(missing_ok=True)

    def start_diameter(self) -> None:
        """PyHSS's Diameter service (Cx for an S-CSCF), once."""
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

    # --- The operator's data, over the REST API ------------------------------------

    def call(self, method: str, path: str, body=None):
        answer = self.session.request(method, self.url + path, json=body, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def provision_line(self, imsi: str, *, ki: str, enabled: bool = True) -> dict:
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


def install_ifc(hss: PyHss, as_uri: str) -> str:
    """The project's iFC template in PyHSS's copy, naming ``as_uri``; its ifc_path."""
    target = hss.root / IFC_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((LAB_DIR / "ifc.xml").read_text().replace("PORTAL_AS_URI", as_uri))
    return IFC_PATH


# --- Kamailio -------------------------------------------------------------------------------


@dataclass
class RunningKamailio:
    process: subprocess.Popen
    folder: Path
    http_port: int
    sip_port: int = 0

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/RPC"

    def rpc(self, method: str, *params, timeout: float = 30) -> dict:
        """One JSON-RPC call; the whole answer (``result`` or ``error``)."""
        call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(self.rpc_url, json=call, timeout=timeout).json()

    def output(self) -> str:
        return (self.folder / "kamailio.out").read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def running_kamailio(cfg: str, folder: Path, http_port: int) -> Iterator[RunningKamailio]:
    """Kamailio in the foreground running ``cfg`` (written to ``folder``), ready once its
    HTTP port (``http_port``, a ``listen=tcp`` of the cfg) answers JSON-RPC."""
    binary = program("kamailio")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kamailio.cfg").write_text(cfg)
    (folder / "run").mkdir(exist_ok=True)
    process = spawn(
        "kamailio",
        [binary, "-DD", "-E", "-f", str(folder / "kamailio.cfg"), "-Y", str(folder / "run"),
         "-w", str(folder)],
        folder,
        cwd=folder,
    )  # fmt: skip
    peer = RunningKamailio(process, folder, http_port)
    try:
        deadline = time.monotonic() + KAMAILIO_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"kamailio exited:\n{peer.output()}")
            with contextlib.suppress(requests.RequestException, ValueError):
                if "result" in peer.rpc("core.version", timeout=2):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not answer JSON-RPC:\n{peer.output()}")
            time.sleep(0.1)
        yield peer
    finally:
        stop(process)
        (folder / "kamailio.pid").unlink(missing_ok=True)


# --- The SIP edge ---------------------------------------------------------------------------


@dataclass
class Edge:
    """The edge's addresses, fixed for its life, so that a restart keeps them."""

    folder: Path
    sip_port: int
    rpc_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    def configure(
        self,
        *,
        portal_url: str,
        token: str,
        transaction_seconds: int = 10,
        workers: int = 2,
        timer_seconds: int = 1,
        restore_page: int = 30,
    ) -> None:
        """Write the edge's configuration with sipedge_config, as an operator does. It
        trusts 127.0.0.1 only, so a request from another loopback address is untrusted."""
        with override_settings(
            SIP_EDGE_LISTEN=[f"udp:127.0.0.1:{self.sip_port}", f"tcp:127.0.0.1:{self.sip_port}"],
            SIP_EDGE_AS_URI=f"sip:portal-as@127.0.0.1:{self.sip_port}",
            SIP_EDGE_RPC_URL=self.rpc_url,
            SIP_EDGE_PORTAL_URL=portal_url,
            SIP_EDGE_TRUSTED_SCSCFS=["127.0.0.1"],
            SIP_EDGE_WORKERS=workers,
            SIP_EDGE_TRANSACTION_SECONDS=transaction_seconds,
        ):
            os.environ["SIP_EDGE_TOKEN"] = token
            try:
                call_command(
                    "sipedge_config",
                    out=str(self.folder),
                    timer_seconds=timer_seconds,
                    restore_page=restore_page,
                )
            finally:
                del os.environ["SIP_EDGE_TOKEN"]

    def running(self) -> contextlib.AbstractContextManager[RunningKamailio]:
        return running_kamailio(
            (self.folder / "kamailio.cfg").read_text(), self.folder, self.rpc_port
        )


def new_edge(
    folder: Path, *, portal_url: str, token: str, sip_port: int = 0, rpc_port: int = 0, **options
) -> Edge:
    """An edge on the given (or free) loopback ports, configured (``options``:
    Edge.configure's)."""
    edge = Edge(folder, sip_port or free_sip_port(), rpc_port or free_port())
    folder.mkdir(parents=True, exist_ok=True)
    edge.configure(portal_url=portal_url, token=token, **options)
    return edge


# --- The S-CSCF -----------------------------------------------------------------------------


@dataclass
class Scscf:
    """The S-CSCF's addresses, chosen before it starts."""

    folder: Path
    sip_port: int
    rpc_port: int
    diameter_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def configure(self, *, hss: PyHss, trusted_as: str) -> None:
        """scscf.cfg as shipped, scscf.defs and cdp.xml for this run."""
        self.folder.mkdir(parents=True, exist_ok=True)
        dbtext = self.folder / "dbtext"
        dbtext.mkdir(exist_ok=True)
        for table in PRESENCE_TABLES:
            (dbtext / table).write_bytes((DBTEXT_SCHEMA / table).read_bytes())
        values = {
            "SCSCF_ADDRESS": "127.0.0.1",
            "SCSCF_PORT": str(self.sip_port),
            "SCSCF_RPC_PORT": str(self.rpc_port),
            "SCSCF_DOMAIN": hss.domain,
            "SCSCF_CDP_XML": str(self.folder / "cdp.xml"),
            "SCSCF_DBTEXT": str(dbtext),
            "SCSCF_TRUSTED_AS": trusted_as,
            "SCSCF_HSS_API": hss.url,
        }
        defs = [f'#!substdef "!{name}!{value}!g"' for name, value in values.items()]
        (self.folder / "scscf.defs").write_text("\n".join(defs) + "\n")
        cdp = (LAB_DIR / "cdp.xml").read_text()
        for name, value in {
            "SCSCF_FQDN": f"scscf.{hss.domain}",
            "SCSCF_DOMAIN": hss.domain,
            "SCSCF_HSS_HOST": "127.0.0.1",
            "SCSCF_HSS_PORT": str(hss.diameter_port),
            "SCSCF_DIAMETER_PORT": str(self.diameter_port),
            "SCSCF_ADDRESS": "127.0.0.1",
        }.items():
            cdp = cdp.replace(name, value)
        (self.folder / "cdp.xml").write_text(cdp)


def diameter_open(scscf: RunningKamailio) -> bool:
    """Whether the S-CSCF's Diameter peer is open: capabilities exchanged (CER/CEA)."""
    answer = scscf.rpc("cdp.list_peers", timeout=2)
    return "_Open" in str(answer.get("result", ""))


@contextlib.contextmanager
def running_scscf(
    folder: Path, *, hss: PyHss, trusted_as: str = "127.0.0.1/32", sip_port: int = 0,
    rpc_port: int = 0,
) -> Iterator[RunningKamailio]:  # fmt: skip
    """The lab S-CSCF peered with ``hss`` (whose Diameter service must be up); yielded
    once its Diameter peer is open. ``.sip_port`` is where UEs register."""
    scscf = Scscf(
        folder, sip_port or free_port(socket.SOCK_DGRAM), rpc_port or free_port(), free_port()
    )
    scscf.configure(hss=hss, trusted_as=trusted_as)
    with running_kamailio((LAB_DIR / "scscf.cfg").read_text(), folder, scscf.rpc_port) as running:
        running.sip_port = scscf.sip_port
        deadline = time.monotonic() + DIAMETER_TIMEOUT
        while not diameter_open(running):
            if running.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the S-CSCF's Diameter peer did not open:\n{running.output()}\n"
                    f"{hss.output('diameter')}"
                )
            time.sleep(0.1)
        yield running


# --- The whole core -------------------------------------------------------------------------


@dataclass
class ImsCore:
    """PyHSS (REST and Diameter), the S-CSCF and the portal's SIP edge, running."""

    hss: PyHss
    scscf: RunningKamailio
    edge: Edge
    running_edge: RunningKamailio
    folder: Path

    @property
    def domain(self) -> str:
        return self.hss.domain

    @property
    def scscf_address(self) -> str:
        return f"127.0.0.1:{self.scscf.sip_port}"

    def scscf_log(self) -> str:
        return (self.scscf.folder / "kamailio.out").read_text(errors="replace")

    def edge_log(self) -> str:
        return (self.edge.folder / "kamailio.out").read_text(errors="replace")


@dataclass
class Ports:
    """Where the lab listens; 0: a free port (the tests)."""

    hss_api: int = 0
    hss_diameter: int = 0
    scscf_sip: int = 0
    scscf_rpc: int = 0
    edge_sip: int = 0
    edge_rpc: int = 0


@contextlib.contextmanager
def running_ims_core(
    folder: Path, *, hss: PyHss, portal_url: str, token: str, ports: Ports | None = None
) -> Iterator[ImsCore]:
    """The whole core for a portal at ``portal_url`` around ``hss`` (started here, then
    its Diameter service, the edge and the S-CSCF); ``token`` is the edge's network-client
    credential."""
    ports = ports or Ports()
    try:
        hss.start()
        hss.start_diameter()
        edge = new_edge(
            folder / "edge", portal_url=portal_url, token=token,
            sip_port=ports.edge_sip, rpc_port=ports.edge_rpc,
        )  # fmt: skip
        install_ifc(hss, f"sip:portal-as@{edge.address}")
        with (
            edge.running() as running_edge,
            running_scscf(
                folder / "scscf", hss=hss, sip_port=ports.scscf_sip, rpc_port=ports.scscf_rpc
            ) as scscf,
        ):
            yield ImsCore(hss, scscf, edge, running_edge, folder)
    finally:
        hss.stop()
