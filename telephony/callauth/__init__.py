"""Call authentication: STIR/SHAKEN signing and verification for the IMS core.

Modules: ``credentials`` (STIR credentials, the key store, the x5u repository),
``facts`` (a call's facts), ``signing`` (the STI-AS role and the call panel),
``verification`` (the STI-VS role and its clock), ``retention`` (call-record retention),
``errors`` (the request error, number checks); ``stir/`` is the Django-free core
(PASSporT, certificates, x5u fetch, the attestation decision). Other packages use the
modules, and this name, loaded on first use, so that ``stir`` still imports without
Django (kernel.exports).
"""

from typing import TYPE_CHECKING

from kernel.exports import lazy_exports

if TYPE_CHECKING:
    from telephony.callauth.errors import CallAuthError

__all__ = ["CallAuthError"]
__getattr__ = lazy_exports(__name__, {"errors": ["CallAuthError"]})
