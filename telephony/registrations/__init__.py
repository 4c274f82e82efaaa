"""Registrations: the UEs registered for an enterprise's identities, as the IMS core
reports them, and what the portal does about them.

Modules, lowest first: ``reginfo`` and ``sipmessage`` (parsers of the network's
documents, no Django), ``records`` (registration records, history, expiry, ends),
``notify`` (the notification backends, and delivering one notice), ``signout`` (sign-out
of a UE: its notice, then the network), ``notices``
("already logged on" notices, the device limit), ``ingest`` (applying reginfo reports),
``inbox`` (reports answered at once and applied in batches), ``third_party`` (the SIP edge's third-party REGISTERs), ``device_settings`` (per-device
settings), ``export`` (the devices' CSV). Other packages use the modules, and these names, loaded on first use, so that
the parsers still import without the rest (kernel.exports).
"""

from typing import TYPE_CHECKING

from kernel.exports import lazy_exports

if TYPE_CHECKING:
    from telephony.registrations.device_settings import registration_update_settings
    from telephony.registrations.ingest import device_label, resolve_aors
    from telephony.registrations.notify import NoticeError
    from telephony.registrations.records import end_registrations_of
    from telephony.registrations.reginfo import (
        ContactInfo,
        ReginfoDocument,
        ReginfoError,
        RegistrationInfo,
        parse_reginfo_xml,
        parse_registration_events,
    )
    from telephony.registrations.signout import request_sign_out
    from telephony.registrations.sipmessage import (
        SipMessageError,
        ThirdPartyRegister,
        parse_third_party_register,
    )
    from telephony.registrations.third_party import forget_registrations_of

__all__ = [
    "ContactInfo",
    "NoticeError",
    "ReginfoDocument",
    "ReginfoError",
    "RegistrationInfo",
    "SipMessageError",
    "ThirdPartyRegister",
    "device_label",
    "end_registrations_of",
    "forget_registrations_of",
    "parse_reginfo_xml",
    "parse_registration_events",
    "parse_third_party_register",
    "registration_update_settings",
    "request_sign_out",
    "resolve_aors",
]
__getattr__ = lazy_exports(
    __name__,
    {
        "device_settings": ["registration_update_settings"],
        "ingest": ["device_label", "resolve_aors"],
        "notify": ["NoticeError"],
        "records": ["end_registrations_of"],
        "reginfo": [
            "ContactInfo",
            "ReginfoDocument",
            "ReginfoError",
            "RegistrationInfo",
            "parse_reginfo_xml",
            "parse_registration_events",
        ],
        "signout": ["request_sign_out"],
        "sipmessage": ["SipMessageError", "ThirdPartyRegister", "parse_third_party_register"],
        "third_party": ["forget_registrations_of"],
    },
)
