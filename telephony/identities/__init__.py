"""Identities: an employee's IMS identities, the grants that share them, and keeping the
HSS in step with them.

Modules: ``services`` (identities, grants, onboarding, offboarding and the other flows),
``sync`` (the outbox and sync engine: push, retry, sweep, reconcile), ``hss/`` (the HSS
backends behind one interface; ``hss.backend()`` gives the configured one). Other
packages use the modules, and this name, loaded on first use (kernel.exports says why).
"""

from typing import TYPE_CHECKING

from kernel.exports import lazy_exports

if TYPE_CHECKING:
    from telephony.identities.sync import request_sync

__all__ = ["request_sync"]
__getattr__ = lazy_exports(__name__, {"sync": ["request_sync"]})
