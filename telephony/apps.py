from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Telephony"

    def ready(self):
        # Services queue tasks by name (kernel.enqueue): register them in every process.
        # The sync engine ends an identity's registrations when the HSS drops it; the
        # registrations context is above the engine, so it is plugged in here; so is
        # forgetting its third-party registrations (no edge subscribes for it again), and,
        # first, while the registrations still name their IMPUs, de-registering its UEs at
        # the S-CSCF where SIGN_OUT_VIA says so.
        from django.core.signals import request_finished

        from telephony.callauth import records
        from telephony.identities import sync
        from telephony.registrations.records import end_registrations_of
        from telephony.registrations.signout import deregister_identity_at_scscf
        from telephony.registrations.third_party import forget_registrations_of

        from . import tasks  # noqa: F401

        for ender in (deregister_identity_at_scscf, end_registrations_of, forget_registrations_of):
            if ender not in sync.registration_enders:
                sync.registration_enders.append(ender)
        # The call path's records are appended once its answer is sent (records.answer_first).
        request_finished.connect(records.append_held, dispatch_uid="call-records-held")
