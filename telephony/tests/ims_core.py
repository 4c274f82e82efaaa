"""A real IMS core for the tests, on loopback: the lab's (``portal/lab.py``, the module
``make lab`` runs too) with the tests' PyHSS (``pyhss_peer``: a copy of PyHSS 2.0 per test
folder, the tests' provisioning key and the peer helpers) on free ports.

    with running_ims_core(tmp_path, portal_url=live_server.url, token=token) as core:
        settings.HSS_PYHSS_URL, settings.HSS_PYHSS_IFC_PATH = core.hss.url, IFC_PATH
        ...  # UEs register at core.scscf_address with IMPI and ki
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from portal import lab
from portal.lab import IFC_PATH, ImsCore
from portal.testing import peers_dir

from .pyhss_peer import RealPyHss, pyhss_venv

__all__ = ["IFC_PATH", "ImsCore", "running_ims_core"]


@contextlib.contextmanager
def running_ims_core(folder: Path, *, portal_url: str, token: str) -> Iterator[ImsCore]:
    """The whole core for a portal at ``portal_url``; ``token`` is the edge's network
    client credential. PyHSS starts first (about 2 s), then its Diameter service, the
    edge and the S-CSCF; everything stops when the block ends."""
    venv = pyhss_venv()  # skips (or fails under CI) without PyHSS's environment
    root = folder / "pyhss"
    shutil.copytree(
        peers_dir() / "pyhss-2.0.0", root, ignore=shutil.ignore_patterns("docs", ".git")
    )
    hss = RealPyHss(root, venv)
    with lab.running_ims_core(folder, hss=hss, portal_url=portal_url, token=token) as core:
        yield core
