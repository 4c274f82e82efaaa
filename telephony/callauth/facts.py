"""What the portal knows about a call from a number: who holds it, who calls, grants,
sync state. The attestation decision (stir.attestation) is taken on these facts.

The facts come from the shared cache when it holds them under current generations
(kernel.generations): a change to any of them bumps its enterprise's generation when it
commits, so the next call reads them afresh."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from kernel.generations import ADDRESSES, Reader, Scope
from telephony.callauth.stir.attestation import (
    CallFacts,
)
from telephony.models import (
    Grant,
    Identity,
    IdentitySync,
    TelephoneNumber,
)
from telephony.registrations.ingest import resolve_aors

# --- The facts about a call ----------------------------------------------------------------


@dataclass(frozen=True)
class CallContext:
    facts: CallFacts
    enterprise_id: int | None  # whose call record it is
    number_identity_id: int | None
    # When the grant the caller calls by ends (None: it does not): a grant expires with
    # no change to any row, so the cached facts carry the time.
    grant_until: datetime | None = None

    def at(self, now: datetime) -> CallContext:
        """The facts at ``now``: without the grant once it has expired."""
        if self.facts.caller_has_grant and self.grant_until and self.grant_until <= now:
            facts = dataclasses.replace(self.facts, caller_has_grant=False)
            return dataclasses.replace(self, facts=facts, grant_until=None)
        return self


def context_key(orig_tn: str, originator_impu: str = "") -> str:
    """The cache key of a call's facts (the IMPU is the network's text: hashed)."""
    impu = hashlib.sha256(originator_impu.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"facts:{orig_tn}:{impu if originator_impu else ''}"


def call_context(
    orig_tn: str, originator_impu: str = "", reader: Reader | None = None
) -> CallContext:
    """What the portal knows about a call from ``orig_tn`` (and the authenticated
    originator, when the network says who it is): from the cache when it is current."""
    reader = reader or Reader()
    context = reader.value(
        context_key(orig_tn, originator_impu), lambda: _read_context(orig_tn, originator_impu)
    )
    return context.at(timezone.now())


def _read_context(orig_tn: str, originator_impu: str) -> tuple[CallContext, set[Scope]]:
    """The facts from the database, and the scopes they were read from: the
    enterprises, and for an originator that names nobody, the addresses' scope (it may
    become a new identity's, in any enterprise)."""
    # The number's live identity with everything the decision reads in one query; the
    # number alone only when nobody holds it.
    owner_identity = (
        Identity.objects.live()
        # Each join costs planning time on every call: only what the decision reads.
        .select_related("sync", "number")
        .filter(number__e164=orig_tn)
        .order_by("pk")
        .first()
    )
    number: TelephoneNumber | None
    if owner_identity is not None and owner_identity.number is not None:
        number = owner_identity.number
    else:
        number = TelephoneNumber.objects.filter(e164=orig_tn).first()
    scopes: set[Scope] = {number.enterprise_id} if number is not None else set()
    if originator_impu:
        caller = resolve_aors([originator_impu]).get(originator_impu)
        caller_known = caller is not None and caller.status == Identity.Status.ACTIVE
        if caller is None:
            detail = f"{originator_impu} is unknown"
            scopes.add(ADDRESSES)
        elif number is not None and caller.enterprise_id != number.enterprise_id:
            # The call record is the number's enterprise's: no name of another's people.
            detail = f"{originator_impu} belongs to another enterprise"
        else:
            detail = f"{originator_impu} is {caller.tn} of {caller.owner}"
        if caller is not None:
            scopes.add(caller.enterprise_id)
    else:
        caller = owner_identity
        caller_known = caller is not None and caller.status == Identity.Status.ACTIVE
        detail = (
            "the network vouches for the number's own subscriber"
            if caller
            else "nobody holds the number"
        )
    owns = bool(caller and owner_identity and caller.owner_id == owner_identity.owner_id)
    grant_until = None
    granted = False
    if caller and owner_identity and not owns:
        ends = list(
            Grant.objects.active()
            .filter(identity=owner_identity, grantee_id=caller.owner_id, can_make_calls=True)
            .values_list("valid_until", flat=True)
        )
        granted = bool(ends)
        if granted and None not in ends:
            grant_until = max(e for e in ends if e is not None)
    facts = CallFacts(
        caller_known=caller_known,
        caller_detail=detail,
        number_in_blocks=number is not None,
        number_identity_active=bool(
            owner_identity and owner_identity.status == Identity.Status.ACTIVE
        ),
        number_identity_synced=bool(
            owner_identity and owner_identity.sync.state == IdentitySync.State.SYNCED
        ),
        caller_owns_number=owns,
        caller_has_grant=granted,
    )
    enterprise_id = number.enterprise_id if number else (caller.enterprise_id if caller else None)
    identity_id = owner_identity.pk if owner_identity else None
    return CallContext(facts, enterprise_id, identity_id, grant_until), scopes
