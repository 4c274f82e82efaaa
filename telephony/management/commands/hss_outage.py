from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from telephony.identities.hss import builtin


class Command(BaseCommand):
    help = (
        "Take the builtin (simulated) HSS down or bring it back, for demos and fault drills: "
        "`hss_outage on [--minutes N] [--reason TEXT]`, `hss_outage off`, `hss_outage` shows it."
    )

    def add_arguments(self, parser):
        parser.add_argument("switch", nargs="?", choices=["on", "off"])
        parser.add_argument("--minutes", type=float, help="back by itself after this long")
        parser.add_argument("--reason", default="", help="shown in Django admin")

    def handle(self, *args, switch=None, minutes=None, reason="", **options):
        if settings.HSS_BACKEND != "builtin":
            raise CommandError("Only the builtin HSS can be switched off (HSS_BACKEND=builtin).")
        if minutes is not None and minutes <= 0:
            raise CommandError("--minutes must be more than 0 (leave it out: until switched off).")
        if switch == "on":
            until = timezone.now() + timedelta(minutes=minutes) if minutes else None
            builtin.outage_start(until=until, reason=reason)
        elif switch == "off":
            builtin.outage_end()
        state = "down" if builtin.outage_active() else "up"
        self.stdout.write(f"The simulated HSS is {state}.")
