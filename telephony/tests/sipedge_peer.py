"""The SIP edge on real peers, for the tests: the edge itself (Kamailio running
sipedge/kamailio.cfg as `manage.py sipedge_config` writes it), a Kamailio registrar that
plays the S-CSCF (sip/registrar.cfg), and sipp as UEs or as a scripted S-CSCF. Every
process binds to loopback, runs in its own session and is stopped with its whole group,
even when a test fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from django.core.management import call_command

SIP_DIR = Path(__file__).resolve().parent / "sip"
DBTEXT_SCHEMA = Path("/usr/share/kamailio/dbtext/kamailio")
# The presence and pua tables the registrar's modules open (db_text, nothing persisted).
DBTEXT_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "pua")
START_SECONDS = 10


def free_port() -> int:
    """A loopback port free for both UDP and TCP (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


class Peer:
    """A process of a peer, in a session of its own; stop() ends the whole group."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path | None = None):
        self.name, self.log_path = name, log
        self._log = log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed program with test arguments
            argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def rpc(url: str, method: str, *params, timeout: float = 10):
    """A Kamailio JSON-RPC command; its result, or an AssertionError with its error."""
    answer = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=timeout
    ).json()
    assert "error" not in answer, answer
    return answer.get("result")


def start_kamailio(name: str, cfg: Path, folder: Path, rpc_url: str) -> Peer:
    peer = Peer(name, ["kamailio", "-f", str(cfg), "-DD", "-E", "-w", str(folder)], folder / f"{name}.log")
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            rpc(rpc_url, "core.version", timeout=1)
            return peer
        except (requests.RequestException, ValueError):
            if peer.process.poll() is not None or time.monotonic() > deadline:
                peer.stop()
                raise RuntimeError(f"{name} did not start:\n{peer.log()[-3000:]}") from None
            time.sleep(0.05)


@dataclass
class SipLab:
    """The edge and the registrar that plays its S-CSCF, both on loopback."""

    folder: Path
    domain: str
    edge_port: int
    edge_rpc_url: str
    registrar_port: int
    registrar_rpc_url: str
    edge: Peer
    registrar: Peer

    @property
    def edge_address(self) -> str:
        return f"127.0.0.1:{self.edge_port}"

    @property
    def registrar_address(self) -> str:
        return f"127.0.0.1:{self.registrar_port}"

    def restart_edge(self) -> None:
        self.edge.stop()
        self.edge = start_kamailio("edge", self.folder / "edge" / "kamailio.cfg", self.folder, self.edge_rpc_url)

    def stop(self) -> None:
        for peer in (self.edge, self.registrar):
            peer.stop()


def start_lab(folder: Path, *, portal_url: str, token: str, domain: str, settings) -> SipLab:
    """Write the edge's configuration with sipedge_config, as an operator does, and start
    it beside the registrar. The edge trusts 127.0.0.1 only, so a request from any other
    loopback address plays an untrusted sender."""
    edge_port, edge_rpc, registrar_port, registrar_rpc = (free_port() for _ in range(4))
    edge_rpc_url = f"http://127.0.0.1:{edge_rpc}/RPC"
    settings.SIP_EDGE_LISTEN = [f"udp:127.0.0.1:{edge_port}", f"tcp:127.0.0.1:{edge_port}"]
    settings.SIP_EDGE_AS_URI = f"sip:portal-as@127.0.0.1:{edge_port}"
    settings.SIP_EDGE_RPC_URL = edge_rpc_url
    settings.SIP_EDGE_PORTAL_URL = portal_url
    settings.SIP_EDGE_TRUSTED_SCSCFS = ["127.0.0.1"]
    settings.SIP_EDGE_WORKERS = 2
    os.environ["SIP_EDGE_TOKEN"] = token
    try:
        call_command("sipedge_config", out=str(folder / "edge"), timer_seconds=1)
    finally:
        del os.environ["SIP_EDGE_TOKEN"]

    dbtext = folder / "dbtext"
    dbtext.mkdir()
    for table in DBTEXT_TABLES:
        shutil.copyfile(DBTEXT_SCHEMA / table, dbtext / table)
    registrar_cfg = folder / "registrar.cfg"
    text = (SIP_DIR / "registrar.cfg").read_text()
    for name, value in {
        "REG_ADDRESS": "127.0.0.1",
        "REG_RPC_PORT": str(registrar_rpc),
        "REG_PORT": str(registrar_port),
        "REG_DOMAIN": domain,
        "REG_DBTEXT": str(dbtext),
        "REG_AS_URI": f"sip:portal-as@127.0.0.1:{edge_port}",
    }.items():
        text = text.replace(name, value)
    registrar_cfg.write_text(text)

    registrar_rpc_url = f"http://127.0.0.1:{registrar_rpc}/RPC"
    registrar = start_kamailio("registrar", registrar_cfg, folder, registrar_rpc_url)
    try:
        edge = start_kamailio("edge", folder / "edge" / "kamailio.cfg", folder, edge_rpc_url)
    except Exception:
        registrar.stop()
        raise
    return SipLab(
        folder=folder,
        domain=domain,
        edge_port=edge_port,
        edge_rpc_url=edge_rpc_url,
        registrar_port=registrar_port,
        registrar_rpc_url=registrar_rpc_url,
        edge=edge,
        registrar=registrar,
    )


def sipp(
    scenario: str,
    remote: str,
    folder: Path,
    *,
    local_ip: str = "127.0.0.1",
    calls: int = 1,
    inf: Path | None = None,
    keys: dict[str, str] | None = None,
    timeout: int = 20,
) -> subprocess.CompletedProcess:
    """Run a scenario of sip/ to its end (sipp exits 0 when every call passed)."""
    argv = [
        "sipp", "-sf", str(SIP_DIR / scenario), remote,
        "-i", local_ip, "-p", str(free_port()), "-m", str(calls), "-r", "50",
        "-timeout", f"{timeout}s", "-timeout_error", "-nostdin", "-nd",
        "-trace_err", "-error_file", str(folder / f"{scenario}.errors"),
        "-trace_msg", "-message_file", str(folder / f"{scenario}.messages"),
    ]  # fmt: skip
    if inf is not None:
        argv += ["-inf", str(inf)]
    for name, value in (keys or {}).items():
        argv += ["-key", name, value]
    return subprocess.run(  # noqa: S603 - a fixed program with test arguments
        argv, capture_output=True, text=True, timeout=timeout + 10, cwd=folder
    )


def messages(folder: Path, scenario: str) -> str:
    """What sipp sent and received in a scenario run."""
    path = folder / f"{scenario}.messages"
    return path.read_text(errors="replace") if path.exists() else ""
