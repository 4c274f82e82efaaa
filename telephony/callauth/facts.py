"""What the portal knows about a call from a number: who holds it, who calls, grants,
sync state. The attestation decision (stir.attestation) is taken on these facts."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Enterprise
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


@dataclass
class CallContext:
    facts: CallFacts
    enterprise: Enterprise | None
    number_identity: Identity | None
    caller: Identity | None


def call_context(orig_tn: str, originator_impu: str = "") -> CallContext:
    """Read what the portal knows about a call from ``orig_tn`` (and the authenticated
    originator, when the network says who it is)."""
    # The number's live identity with everything the decision reads (the enterprise's
    # business name too) in one query; the number alone only when nobody holds it.
    owner_identity = (
        Identity.objects.live()
        # Each join costs planning time on every call: only what the decision reads.
        .select_related("enterprise__caller_name", "sync", "number")
        .filter(number__e164=orig_tn)
        .order_by("pk")
        .first()
    )
    number: TelephoneNumber | None
    if owner_identity is not None and owner_identity.number is not None:
        number = owner_identity.number
        number.enterprise = owner_identity.enterprise
    else:
        number = TelephoneNumber.objects.select_related("enterprise").filter(e164=orig_tn).first()
    if originator_impu:
        caller = resolve_aors([originator_impu]).get(originator_impu)
        caller_known = caller is not None and caller.status == Identity.Status.ACTIVE
        if caller is None:
            detail = f"{originator_impu} is unknown"
        elif number is not None and caller.enterprise_id != number.enterprise_id:
            # The call record is the number's enterprise's: no name of another's people.
            detail = f"{originator_impu} belongs to another enterprise"
        else:
            detail = f"{originator_impu} is {caller.tn} of {caller.owner}"
    else:
        caller = owner_identity
        caller_known = caller is not None and caller.status == Identity.Status.ACTIVE
        detail = (
            "the network vouches for the number's own subscriber"
            if caller
            else "nobody holds the number"
        )
    owns = bool(caller and owner_identity and caller.owner_id == owner_identity.owner_id)
    granted = bool(
        caller
        and owner_identity
        and not owns
        and Grant.objects.active()
        .filter(identity=owner_identity, grantee_id=caller.owner_id, can_make_calls=True)
        .exists()
    )
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
    enterprise = number.enterprise if number else (caller.enterprise if caller else None)
    return CallContext(facts, enterprise, owner_identity, caller)
