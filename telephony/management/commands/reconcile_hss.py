from django.core.management.base import BaseCommand

from telephony.identities import sync


class Command(BaseCommand):
    help = "Compare the HSS with the portal now and repair drift (beat runs this periodically)."

    def handle(self, *args, **options):
        report = sync.reconcile()
        self.stdout.write(
            f"compared {report.compared} identities, drift found in {report.drifted}, "
            f"orphans removed {report.orphans_removed}"
        )
