"""A real IMS core for the tests, on loopback: the real PyHSS 2.0 with its Diameter
service (``pyhss_peer``), Kamailio's IMS S-CSCF running the project's ``lab/scscf.cfg``
(Digest-MD5 over Cx against PyHSS, the iFC's third-party REGISTER, the `reg` event
package) and the portal's SIP edge as ``sipedge_config`` writes it (``sip_peers``).

PyHSS runs from a writable copy that holds the project's iFC template (``lab/ifc.xml``,
which names the edge's AS URI): the ``ims_subscriber`` rows the portal writes name it
with ``HSS_PYHSS_IFC_PATH`` = ``IFC_PATH``. Everything binds 127.0.0.1, each process
runs in its own process group and is stopped by its pid when the block ends, also when
the start fails. The S-CSCF is ready once its Diameter peer is open (CER/CEA done).

    with running_ims_core(tmp_path, portal_url=live_server.url, token=token) as core:
        settings.HSS_PYHSS_URL, settings.HSS_PYHSS_IFC_PATH = core.hss.url, IFC_PATH
        ...  # UEs register at core.scscf_address with IMPI and ki
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .pyhss_peer import IMS_DOMAIN, RealPyHss, running_pyhss
from .sip_peers import (
    DBTEXT_SCHEMA,
    Edge,
    RunningKamailio,
    free_port,
    new_edge,
    running_kamailio,
)

LAB_DIR = Path(settings.BASE_DIR) / "lab"
# Where the iFC template sits in PyHSS's copy: PyHSS resolves ifc_path against its own
# root only (no absolute path, no "..").
IFC_PATH = "lab/ifc.xml"
# The presence tables the S-CSCF's presence module opens (db_text; nothing is kept).
PRESENCE_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap")
DIAMETER_TIMEOUT = 20  # seconds for the S-CSCF's Diameter peer to open


def install_ifc(hss: RealPyHss, as_uri: str) -> str:
    """The project's iFC template in PyHSS's copy, naming ``as_uri``; its ifc_path."""
    target = hss.root / IFC_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((LAB_DIR / "ifc.xml").read_text().replace("PORTAL_AS_URI", as_uri))
    return IFC_PATH


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

    @property
    def uri(self) -> str:
        return f"sip:{self.address}"

    def configure(self, *, hss: RealPyHss, trusted_as: str) -> None:
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
            "SCSCF_DOMAIN": IMS_DOMAIN,
            "SCSCF_CDP_XML": str(self.folder / "cdp.xml"),
            "SCSCF_DBTEXT": str(dbtext),
            "SCSCF_TRUSTED_AS": trusted_as,
            "SCSCF_HSS_API": hss.url,
        }
        defs = [f'#!substdef "!{name}!{value}!g"' for name, value in values.items()]
        (self.folder / "scscf.defs").write_text("\n".join(defs) + "\n")
        cdp = (LAB_DIR / "cdp.xml").read_text()
        for name, value in {
            "SCSCF_FQDN": f"scscf.{IMS_DOMAIN}",
            "SCSCF_DOMAIN": IMS_DOMAIN,
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
    folder: Path, *, hss: RealPyHss, trusted_as: str = "127.0.0.1/32"
) -> Iterator[RunningKamailio]:
    """The lab S-CSCF peered with ``hss`` (whose Diameter service must be up); yielded
    once its Diameter peer is open. ``.sip_port`` is where UEs register."""
    scscf = Scscf(folder, free_port(socket.SOCK_DGRAM), free_port(), free_port())
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


@dataclass
class ImsCore:
    """PyHSS (REST and Diameter), the S-CSCF and the portal's SIP edge, running."""

    hss: RealPyHss
    scscf: RunningKamailio
    edge: Edge
    running_edge: RunningKamailio
    folder: Path
    domain: str = IMS_DOMAIN

    @property
    def scscf_address(self) -> str:
        return f"127.0.0.1:{self.scscf.sip_port}"

    def scscf_log(self) -> str:
        return (self.scscf.folder / "kamailio.out").read_text(errors="replace")

    def edge_log(self) -> str:
        return (self.edge.folder / "kamailio.out").read_text(errors="replace")


@contextlib.contextmanager
def running_ims_core(folder: Path, *, portal_url: str, token: str) -> Iterator[ImsCore]:
    """The whole core for a portal at ``portal_url``; ``token`` is the edge's network
    client credential. PyHSS is started here (about 2 s), then its Diameter service,
    the edge and the S-CSCF."""
    with running_pyhss(folder) as hss:
        hss.start_diameter()
        edge = new_edge(folder / "edge", portal_url=portal_url, token=token)
        install_ifc(hss, f"sip:portal-as@{edge.address}")
        with edge.running() as running_edge, running_scscf(folder / "scscf", hss=hss) as scscf:
            yield ImsCore(hss, scscf, edge, running_edge, folder)
