"""HSS backends behind one interface; ``backend()`` gives the configured one."""

from django.conf import settings
from django.utils.module_loading import import_string

from telephony.identities.hss.base import (
    Change,
    DeviceSettings,
    HssBackend,
    HssError,
    HssPermanentError,
    HssTransientError,
    SharedAccess,
    Subscription,
)

BACKENDS = {
    "builtin": "telephony.identities.hss.builtin.BuiltinHss",
    "pyhss": "telephony.identities.hss.pyhss.PyHss",
}


def backend() -> HssBackend:
    return import_string(BACKENDS[settings.HSS_BACKEND])()


__all__ = [
    "Change",
    "DeviceSettings",
    "HssBackend",
    "HssError",
    "HssPermanentError",
    "HssTransientError",
    "SharedAccess",
    "Subscription",
    "backend",
]
