from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony"

    def ready(self):
        # Services queue tasks by name (kernel.enqueue): register them in every process.
        # The sync engine ends an identity's registrations when the HSS drops it; the
        # registrations context is above the engine, so it is plugged in here.
        from telephony.identities import sync
        from telephony.registrations.records import end_registrations_of

        from . import tasks  # noqa: F401

        if end_registrations_of not in sync.registration_enders:
            sync.registration_enders.append(end_registrations_of)
