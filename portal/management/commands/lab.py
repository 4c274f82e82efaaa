"""``make lab``: the whole chain on loopback — the real PyHSS, Kamailio's IMS S-CSCF, the
portal's SIP edge, and the portal with its worker (as ``make run`` runs them) on PyHSS —
until Ctrl-C. ``--stop`` (``make lab-stop``) stops whatever a lab left running, by the pid
files under ``var/lab/``. Processes and configuration come from ``portal/lab.py``, the
module the end-to-end tests use.

The lab starts from scratch each time: a fresh PyHSS and the demo's data in a portal state
of its own (``PORTAL_VAR_DIR``, set by ``make lab``), so nothing of ``make run`` changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from portal import lab
from portal.management.commands.seed_demo import DEMO_NETWORK_TOKEN, DEMO_PASSWORD

# The demo's SIM lines are of PLMN 262/01: PyHSS serves that home network, whose IMS
# domain is then Swift Delivery's SIP domain (the AoRs the S-CSCF reports resolve there).
MCC, MNC = "262", "01"
# The lab's own ports, apart from `SIP_EDGE=1 make run`'s (portal 8000, edge 5070 and
# 5071) and the well-known ones (SIP 5060, Diameter 3868), so that both run at once: the
# portal on 8100 (`make lab`'s LAB_PORT) and everything else in 8101-8106.
PORTS = lab.Ports(
    hss_api=8101, hss_diameter=8102, scscf_sip=8103, scscf_rpc=8104, edge_sip=8105, edge_rpc=8106
)


def lab_folder() -> Path:
    return Path(settings.BASE_DIR) / "var" / "lab"


class Command(BaseCommand):
    help = (
        "Run the lab IMS core with the portal on loopback until Ctrl-C (--stop: stop a leftover)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stop", action="store_true", help="Stop a lab left running.")
        parser.add_argument("--address", default="127.0.0.1:8100", help="The portal's address.")

    def handle(self, *args, stop: bool, address: str, **options):
        folder = lab_folder()
        stopped = lab.stop_leftovers(folder) if folder.exists() else []
        if stop:
            self.stdout.write(f"Stopped {len(stopped)} process group(s) of the lab.")
            return
        if not settings.DEBUG:
            raise CommandError("The lab only runs with DJANGO_DEBUG on: its secrets are public.")
        if not Path(settings.VAR_DIR).resolve().is_relative_to(folder.resolve()):
            raise CommandError("Run the lab through `make lab`: it keeps its own portal state.")
        try:
            for name in ("kamailio", "redis-server"):
                lab.program(name)
            # The lab starts afresh; the copy of PyHSS's release is made here.
            for child in folder.iterdir() if folder.exists() else ():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
            hss = lab.PyHss.copy_of_release(
                folder, mcc=MCC, mnc=MNC, api_port=PORTS.hss_api, diameter_port=PORTS.hss_diameter
            )
        except lab.LabUnavailable as exc:
            raise CommandError(f"The lab cannot start: {exc}") from exc
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # TERM stops it as Ctrl-C
        call_command("migrate", "--noinput", verbosity=0)
        call_command("seed_demo", lab_domain=hss.domain)
        portal_url = f"http://{address}"
        started = time.monotonic()
        with lab.running_ims_core(
            folder, hss=hss, portal_url=portal_url, token=DEMO_NETWORK_TOKEN, ports=PORTS
        ) as core:
            lines = self.provision_lines(hss)
            env = self.portal_environment(core)
            commands = {
                "worker": [sys.executable, "-m", "celery", "-A", "portal", "worker", "--beat",
                           "-Q", "sync,notify,bulk,celery", "--loglevel=INFO", "--concurrency=2"],
                "web": [sys.executable, "manage.py", "runserver", "--noreload", address],
            }  # fmt: skip
            portal: list[subprocess.Popen] = []
            # A Ctrl-C from here on, even while the lab still starts, stops what started.
            try:
                for name, argv in commands.items():
                    portal.append(
                        lab.spawn(name, argv, folder, cwd=Path(settings.BASE_DIR), env=env)
                    )
                self.push_identities(folder / "worker.out", portal[0])
                self.report(core, lines, portal_url, time.monotonic() - started)
                self.wait(*portal)
            except KeyboardInterrupt:
                self.stdout.write("\nStopping the lab...")
            finally:
                for process in reversed(portal):
                    lab.stop(process)
                for name in commands:
                    (folder / f"{name}.pid").unlink(missing_ok=True)
        self.stdout.write("The lab stopped.")

    def provision_lines(self, hss: lab.PyHss) -> list[tuple[str, str]]:
        """The operator's side, over PyHSS's REST API: an APN, and the AUC keys and EPC
        subscriber of every SIM line in the portal's pools."""
        from telephony.models import SimLine

        lines = [
            (imsi, lab.lab_ki(imsi)) for imsi in SimLine.objects.values_list("imsi", flat=True)
        ]
        for imsi, ki in lines:
            hss.provision_line(imsi, ki=ki)
        return lines

    def push_identities(self, worker_log: Path, worker: subprocess.Popen) -> None:
        """Push every identity once the worker listens: the embedded broker drops what
        was queued before a worker declared its queues (the demo's own pushes)."""
        from telephony.identities import sync
        from telephony.models import Identity

        deadline = time.monotonic() + 60
        while " ready." not in worker_log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"The worker did not start; its log is {worker_log}.")
            time.sleep(0.2)
        for identity_id in Identity.objects.live().values_list("pk", flat=True):
            sync.queue_push(identity_id)

    def portal_environment(self, core: lab.ImsCore) -> dict[str, str]:
        """The portal's settings for the lab: PyHSS as its HSS, notices as SIP MESSAGEs
        through the edge, sign-outs at the S-CSCF (PyHSS's RTR never reaches it)."""
        return {
            **os.environ,
            "HSS_BACKEND": "pyhss",
            "HSS_PYHSS_URL": core.hss.url,
            "HSS_PYHSS_PROVISIONING_KEY": core.hss.provisioning_key,
            "HSS_PYHSS_IFC_PATH": lab.IFC_PATH,
            "NETWORK_NOTIFY_BACKEND": "sip",
            "SIP_EDGE_RPC_URL": core.edge.rpc_url,
            "SIGN_OUT_VIA": "scscf",
            "SIP_SCSCF_RPC_URL": core.scscf.rpc_url,
            "SIP_SCSCF_URI": f"sip:{core.scscf_address}",
            "LAB_MODE": "true",
            "LAB_REGISTRAR": core.scscf_address,
        }

    def report(self, core: lab.ImsCore, lines, portal_url: str, seconds: float) -> None:
        self.stdout.write(
            f"\nThe lab runs ({seconds:.1f} s to start); Ctrl-C stops everything.\n"
            f"  Portal      {portal_url}/  (demo users, password {DEMO_PASSWORD})\n"
            f"  S-CSCF      sip:{core.scscf_address}  (registrar; domain {core.domain})\n"
            f"  PyHSS REST  {core.hss.url}/docs/\n"
            f"  SIP edge    sip:{core.edge.address}\n"
            f"  SIM lines provisioned in PyHSS: {len(lines)} (each identity's page shows "
            "its IMPI and lab password)\n"
            f"  Logs        {lab_folder()}/\n"
        )

    def wait(self, *processes: subprocess.Popen) -> None:
        """Until Ctrl-C (or TERM: KeyboardInterrupt), or until a process of the portal
        ends by itself."""
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        ended = next(p for p in processes if p.poll() is not None)
        self.stderr.write(
            f"A process of the portal (pid {ended.pid}) ended with {ended.returncode}: "
            "stopping the lab."
        )
