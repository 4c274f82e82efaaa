"""The attestation decision (SHAKEN, RFC 8588): one pure function of the facts about a
call, which records why it decided as it did.

- **A** (full): the caller's identity is active and in step with the HSS, the calling
  number belongs to the enterprise's blocks and is assigned to an identity, and the
  caller is that identity's owner or holds an active grant to make calls with it.
- **B** (partial): the caller is authenticated, but the number is not verified for them.
- **C** (gateway): anything else.

A level asked for in a signing request is a ceiling: it can lower the decision, never
raise it.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("A", "B", "C")


@dataclass(frozen=True)
class CallFacts:
    """What the portal knows about the caller and the calling number."""

    # The originator is authenticated: the IMPU given resolves to a live, active identity,
    # or, without an IMPU, the calling number belongs to a live identity.
    caller_known: bool
    caller_detail: str
    number_in_blocks: bool
    number_identity_active: bool
    number_identity_synced: bool
    caller_owns_number: bool
    caller_has_grant: bool


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    failure: str  # what is wrong when the check does not pass
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    level: str
    reason: str
    checks: tuple[Check, ...]


def attestation_for_call(facts: CallFacts) -> Decision:
    granted = facts.caller_owns_number or facts.caller_has_grant
    checks = (
        Check(
            "Caller authenticated",
            facts.caller_known,
            "the caller is not authenticated as an identity of the portal",
            facts.caller_detail,
        ),
        Check(
            "Calling number in the enterprise's number blocks",
            facts.number_in_blocks,
            "the calling number is not in any enterprise's number blocks",
        ),
        Check(
            "Number assigned to an active identity",
            facts.number_identity_active,
            "the calling number is not assigned to an active identity",
        ),
        Check(
            "Identity in step with the HSS",
            facts.number_identity_synced,
            "the identity's latest change has not reached the HSS",
        ),
        Check(
            "Caller owns the number or holds a grant to call with it",
            granted,
            "the caller neither owns the number nor holds a grant to call with it",
            "owner" if facts.caller_owns_number else ("grant" if facts.caller_has_grant else ""),
        ),
    )
    failed = [c for c in checks if not c.passed]
    if not failed:
        return Decision("A", "the caller is verified for the calling number", checks)
    return Decision("B" if facts.caller_known else "C", failed[0].failure, checks)


def apply_ceiling(level: str, ceiling: str | None) -> str:
    """The lower of the decided level and the one asked for (A > B > C)."""
    if not ceiling:
        return level
    return max(level, ceiling, key=LEVELS.index)
