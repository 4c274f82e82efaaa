"""The contract every HSS backend keeps.

Keyed by natural keys (MSISDN, IMSI), never by a row id of the remote system. Writes
are idempotent upserts of a whole desired state, so a repeated push is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class HssError(Exception):
    """A push or read that did not happen."""


class HssTransientError(HssError):
    """Worth retrying: timeouts, refused connections, overload, server errors."""


class HssPermanentError(HssError):
    """Retrying will not help: the HSS refuses this state as it is."""


@dataclass(frozen=True)
class SharedAccess:
    """Another identity's TN that this identity's owner may use (a grant)."""

    msisdn: str
    make_calls: bool
    receive_calls: bool

    @property
    def label(self) -> str:
        rights = [r for r, on in (("make", self.make_calls), ("receive", self.receive_calls)) if on]
        return f"{self.msisdn} ({'/'.join(rights)})"


@dataclass(frozen=True)
class DeviceSettings:
    """A UE's own settings (each registration keeps its own), for devices whose user
    changed them from the identity's defaults."""

    device: str
    services: tuple[str, ...] = ()
    default_impu: str = ""
    do_not_disturb: bool = False
    ring_priority: int = 3

    @property
    def label(self) -> str:
        return (
            f"{self.device}: services={','.join(self.services) or 'all'} "
            f"default={self.default_impu or '-'} dnd={self.do_not_disturb} priority={self.ring_priority}"
        )


@dataclass(frozen=True)
class Subscription:
    """The desired (or actual) IMS subscription of one identity."""

    msisdn: str
    impi: str
    imsi: str = ""
    impus: tuple[str, ...] = ()
    enabled: bool = True
    services: tuple[str, ...] = ()
    display_name: str = ""
    shared: tuple[SharedAccess, ...] = ()
    devices: tuple[DeviceSettings, ...] = ()


@dataclass(frozen=True)
class Change:
    """One push of an identity: its desired state and what the HSS was last given for
    it. The sync engine decides which leftovers may go (numbers and lines no other
    live identity holds); the backend decides the order of its writes."""

    desired: Subscription | None  # None: the HSS should hold nothing for the identity
    pushed_msisdn: str = ""  # the number of the last push that landed ("": none yet)
    pushed_imsi: str = ""  # the line of the last push that landed
    stale_msisdn: str = ""  # a number the identity left: its subscription goes
    released_line: str = ""  # a line no live identity uses any more: it stops attaching


class HssBackend:
    """What the sync engine asks of an HSS. ``operation_id`` travels with each write so
    that the HSS's own log can be matched with the portal's sync history."""

    name = "abstract"
    # Whether the HSS can hold IMPUs beyond those derived from MSISDN and IMSI.
    supports_aliases = True
    # Whether every identity needs a SIM line (an HSS deriving the IMPI from the IMSI).
    requires_line = False
    # Whether a deregistration is done when the call returns; otherwise the S-CSCF
    # confirms it later with a reginfo notification.
    confirms_deregistration = False
    # Whether the HSS keeps each UE's own settings (``Subscription.devices``).
    holds_device_settings = True

    def apply(self, change: Change, *, operation_id: str) -> None:
        """Bring the HSS in step with one identity. This order suits an HSS that holds
        each subscription once by MSISDN: the new state goes in first (if the HSS
        refuses it, the old one still works), then the number and line it left are
        cleaned up."""
        if change.desired is not None:
            self.upsert(change.desired, operation_id=operation_id)
        if change.stale_msisdn:
            self.deregister(change.stale_msisdn, imsi=change.pushed_imsi)
            self.remove(change.stale_msisdn, operation_id=operation_id)
        if change.released_line:
            self.release_line(change.released_line, operation_id=operation_id)

    def check(self) -> str:
        """A problem that would refuse every write (a wrong key), found without
        changing anything; "" when none is known."""
        return ""

    def upsert(self, subscription: Subscription, *, operation_id: str) -> None:
        raise NotImplementedError

    def remove(self, msisdn: str, *, operation_id: str, keep_imsi: str = "") -> None:
        """Remove the IMS subscription of this MSISDN; a missing one is not an error.
        ``keep_imsi``: a line a live identity uses, whose UEs are not deregistered even
        when this subscription names it too."""
        raise NotImplementedError

    def release_line(self, imsi: str, *, operation_id: str) -> None:
        """No identity uses this SIM line any more: stop it attaching. The line's own
        record is the operator's and stays."""

    def get(self, msisdn: str) -> Subscription | None:
        raise NotImplementedError

    def list_all(self) -> Iterable[Subscription]:
        raise NotImplementedError

    def deregister(self, msisdn: str, *, imsi: str = "", contact: str = "") -> None:
        """Ask the network to deregister the subscription's UEs (or one contact)."""
        raise NotImplementedError

    def comparable(self, subscription: Subscription) -> dict:
        """The parts of a subscription this HSS holds, in a form that compares equal
        when the HSS would hold the same thing."""
        return {
            "imsi": subscription.imsi,
            "impi": subscription.impi,
            "impus": sorted(subscription.impus),
            "enabled": subscription.enabled,
            "services": sorted(subscription.services),
            "display_name": subscription.display_name,
            "shared": sorted(s.label for s in subscription.shared),
            "devices": sorted(d.label for d in subscription.devices),
        }

    def differences(self, desired: Subscription, actual: Subscription | None) -> dict:
        """``{field: [desired, actual]}`` over what this HSS holds; empty when in step."""
        if actual is None:
            return {"subscription": ["present", "missing"]}
        want, have = self.comparable(desired), self.comparable(actual)
        return {key: [want[key], have.get(key)] for key in want if want[key] != have.get(key)}
