"""Write the SIP edge's Kamailio configuration from the portal's settings.

The script itself (sipedge/kamailio.cfg) ships with the project and is copied as it is;
what differs per deployment goes into edge.defs beside it: the listen addresses, the AS
URI, the trusted S-CSCFs, the portal's URL and the edge's network-client credential.
Every value is checked before it is written, so that nothing read from the environment
can add a line of script.
"""

import ipaddress
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

SCRIPT = Path(settings.BASE_DIR) / "sipedge" / "kamailio.cfg"
STI_SCRIPT = SCRIPT.with_name("sti.py")
LISTEN_RE = re.compile(r"^(udp|tcp|tls):(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})$")
SIP_URI_RE = re.compile(
    r"^sips?:[A-Za-z0-9._~+-]+@[A-Za-z0-9.-]+(?::\d{1,5})?(?:;[A-Za-z0-9=._-]+)*$"
)
TOKEN_RE = re.compile(r"^ntk_[A-Za-z0-9_-]{16,128}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]+$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?:/[A-Za-z0-9._~/-]*)?$")
# Kamailio reads a SIP message into one 64 KiB buffer; the edge refuses NOTIFY bodies over
# this with 413 (the portal's own limit, NETWORK_MAX_BODY_BYTES, is higher).
MAX_BODY_BYTES = 60_000
SUBSCRIPTION_MARGIN_SECONDS = 30
# Registrations a restarted edge takes from the portal at each tick: a page fits the 64 KiB
# the edge reads of an answer, and a restart paces its SUBSCRIBEs.
RESTORE_PAGE = 200


class Command(BaseCommand):
    help = "Write the SIP edge's configuration (kamailio.cfg and edge.defs) into --out."

    def add_arguments(self, parser):
        parser.add_argument("--out", default="var/sipedge", help="The folder to write into.")
        parser.add_argument(
            "--demo-token",
            action="store_true",
            help="Use the demo network client's credential (make run; DEBUG only).",
        )
        parser.add_argument(
            "--restore-page",
            type=int,
            default=RESTORE_PAGE,
            help="Registrations a restarted edge takes from the portal at each tick.",
        )
        parser.add_argument(
            "--timer-seconds",
            type=int,
            default=5,
            help="How often the edge renews subscriptions about to end (seconds).",
        )

    def handle(self, *args, out, demo_token, restore_page, timer_seconds, **options):
        token = os.environ.get("SIP_EDGE_TOKEN", "")
        if demo_token:
            if not settings.DEBUG:
                raise CommandError("--demo-token only runs with DJANGO_DEBUG on.")
            from portal.management.commands.seed_demo import DEMO_NETWORK_TOKEN

            token = DEMO_NETWORK_TOKEN
        if not TOKEN_RE.match(token):
            raise CommandError(
                "Set SIP_EDGE_TOKEN to the credential of the edge's network client "
                "(Django admin: Network clients; it starts with ntk_)."
            )
        folder = Path(out).resolve()
        defs = edge_defs(
            token=token,
            timer_seconds=timer_seconds,
            restore_page=restore_page,
            sti_script=folder / "sti.py",
        )
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCRIPT, folder / "kamailio.cfg")
        shutil.copyfile(STI_SCRIPT, folder / "sti.py")
        target = folder / "edge.defs"
        # The credential is in this file: readable by its owner only, from the start.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(defs)
        self.stdout.write(f"Wrote {folder / 'kamailio.cfg'} and {target}.")


def edge_defs(
    *,
    token: str,
    timer_seconds: int,
    restore_page: int = RESTORE_PAGE,
    sti_script: Path = STI_SCRIPT,
) -> str:
    listen = [_checked(LISTEN_RE, value, "SIP_EDGE_LISTEN") for value in settings.SIP_EDGE_LISTEN]
    as_uri = _checked(SIP_URI_RE, settings.SIP_EDGE_AS_URI, "SIP_EDGE_AS_URI")
    portal_url = _checked(URL_RE, settings.SIP_EDGE_PORTAL_URL, "SIP_EDGE_PORTAL_URL")
    rpc = urlsplit(_checked(URL_RE, settings.SIP_EDGE_RPC_URL, "SIP_EDGE_RPC_URL"))
    if rpc.scheme != "http" or not rpc.hostname or not rpc.port or rpc.path != "/RPC":
        raise CommandError("SIP_EDGE_RPC_URL must look like http://127.0.0.1:5071/RPC.")
    try:
        trusted = [
            str(ipaddress.ip_network(n, strict=False)) for n in settings.SIP_EDGE_TRUSTED_SCSCFS
        ]
    except ValueError as exc:
        raise CommandError(f"SIP_EDGE_TRUSTED_SCSCFS: {exc}") from exc
    if not trusted:
        raise CommandError("SIP_EDGE_TRUSTED_SCSCFS names no S-CSCF: the edge would take none.")
    if not 60 <= settings.SIP_EDGE_SUBSCRIBE_EXPIRES <= 86_400:
        raise CommandError("SIP_EDGE_SUBSCRIBE_EXPIRES must be between 60 and 86400 seconds.")
    if not 1 <= settings.SIP_EDGE_TRANSACTION_SECONDS <= 60:
        raise CommandError("SIP_EDGE_TRANSACTION_SECONDS must be between 1 and 60.")
    if not 0 <= settings.SIP_EDGE_STI_BUDGET_MS <= 5000:
        raise CommandError("SIP_EDGE_STI_BUDGET_MS must be between 0 (off) and 5000.")
    if not PATH_RE.match(str(sti_script)):
        raise CommandError(f"The edge's folder cannot be named in its script: {sti_script}.")
    if not 1 <= restore_page <= RESTORE_PAGE:
        raise CommandError(f"--restore-page must be between 1 and {RESTORE_PAGE}.")
    if not 1 <= timer_seconds <= 60:
        raise CommandError("--timer-seconds must be between 1 and 60.")
    host = as_uri.split("@", 1)[1].split(";", 1)[0].split(":", 1)[0]
    rpc_host = f"[{rpc.hostname}]" if ":" in rpc.hostname else rpc.hostname
    values = {
        "EDGE_CHILDREN": settings.SIP_EDGE_WORKERS,
        "EDGE_TIMER_INTERVAL": timer_seconds,
        "EDGE_TRUSTED_SCSCF": ",".join(trusted),
        "EDGE_PORTAL_URL": portal_url.rstrip("/"),
        "EDGE_TOKEN": token,
        "EDGE_SUB_EXPIRES": settings.SIP_EDGE_SUBSCRIBE_EXPIRES,
        "EDGE_FR_TIMER": settings.SIP_EDGE_TRANSACTION_SECONDS * 1000,
        "EDGE_SUB_MARGIN": SUBSCRIPTION_MARGIN_SECONDS,
        "EDGE_MAX_BODY": MAX_BODY_BYTES,
        "EDGE_RESTORE_PAGE": restore_page,
        "EDGE_HOST": host,
        "EDGE_AS_URI": as_uri,
        "EDGE_RPC_PORT": rpc.port,
        "EDGE_STI_BUDGET_MS": settings.SIP_EDGE_STI_BUDGET_MS,
        "EDGE_STI_SCRIPT": sti_script,
    }
    lines = ["# Written by `manage.py sipedge_config` from the portal's settings: do not edit."]
    lines += [f"listen={value}" for value in listen]
    lines.append(f"listen=tcp:{rpc_host}:{rpc.port}")
    lines += [f'#!substdef "!{name}!{value}!g"' for name, value in values.items()]
    if settings.SIP_EDGE_STI_BUDGET_MS:  # 0: the edge relays INVITEs without asking
        lines.append("#!define WITH_STI")
    return "\n".join(lines) + "\n"


def _checked(pattern: re.Pattern, value: str, name: str) -> str:
    if not pattern.match(value):
        raise CommandError(f"{name} is not valid: {value!r}.")
    return value
