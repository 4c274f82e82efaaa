"""HSS backends behind one interface; ``backend()`` gives the configured one."""

from django.conf import settings
from django.utils.module_loading import import_string

from .base import (
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
    "builtin": "telephony.hss.builtin.BuiltinHss",
    "pyhss": "telephony.hss.pyhss.PyHss",
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
