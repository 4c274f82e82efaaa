"""Signing outgoing calls (STI-AS) with SHAKEN and RCD PASSporTs: the credential that
covers the number, the verified business name, the record of every signing, and the
"why was my call not verified?" panel.

The attestation comes from the portal's own facts (facts.py, stir.attestation); a level
asked for in the request only caps it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from accounts.models import Enterprise, NetworkClient
from telephony.callauth.credentials import (
    current_credential,
    parsed_certificates,
    pem_tn_auth_list,
    unseal,
    x5u,
)
from telephony.callauth.errors import CallAuthError, e164
from telephony.callauth.facts import call_context
from telephony.callauth.stir import certificates, passport
from telephony.callauth.stir.attestation import (
    Check,
    Decision,
    apply_ceiling,
    attestation_for_call,
)
from telephony.models import (
    CallerName,
    CallRecord,
    Identity,
    SigningCredential,
)

# --- Signing (STI-AS) --------------------------------------------------------------------


@dataclass
class Signed:
    identities: list[str]
    attestation: str
    decision: Decision
    record: CallRecord


def signing_credential_for(
    enterprise: Enterprise | None, tn: str
) -> tuple[SigningCredential | None, Check]:
    """The enterprise's delegate certificate when it covers the number, else the
    operator's; and the check that says which and why."""
    delegate = (
        current_credential(SigningCredential.Kind.DELEGATE, enterprise) if enterprise else None
    )
    if delegate is not None:
        tal = pem_tn_auth_list(delegate.certificate_pem)
        if tal is not None and tal.covers(passport.tn(tn)):
            return delegate, Check(
                "Signing certificate covers the number", True, "", f"delegate {delegate.name}"
            )
    operator = current_credential(SigningCredential.Kind.OPERATOR)
    if operator is None:
        return None, Check(
            "Signing certificate covers the number",
            False,
            "there is no current signing certificate",
        )
    if certificates.is_ca(parsed_certificates(operator.certificate_pem)[0]):
        # A credential from before the operator had an issuing CA: every verifier would
        # refuse what it signs, so the call is better left unsigned, saying why.
        return None, Check(
            "Signing certificate covers the number",
            False,
            "the operator's signing certificate is a CA, which verifiers refuse: create the"
            " lab PKI again or import an end-entity signing certificate",
        )
    detail = "the operator's certificate (no delegate certificate covers it)"
    return operator, Check("Signing certificate covers the number", True, "", detail)


def _caller_name(enterprise: Enterprise | None) -> CallerName | None:
    """The enterprise's business name (read with the enterprise when it was selected
    with ``caller_name``)."""
    if enterprise is None:
        return None
    try:
        return enterprise.caller_name
    except CallerName.DoesNotExist:
        return None


def _rcd_check(enterprise: Enterprise | None, level: str) -> tuple[CallerName | None, Check]:
    brand = _caller_name(enterprise)
    if brand is None:
        return None, Check(
            "Verified business name (RCD)", False, "the enterprise has no business caller name"
        )
    if not brand.is_vetted:
        return None, Check(
            "Verified business name (RCD)",
            False,
            f"the name “{brand.name}” is {brand.get_vetting_display().lower()}",
        )
    if level != "A":
        return None, Check(
            "Verified business name (RCD)", False, "the name is shown only on fully attested calls"
        )
    return brand, Check("Verified business name (RCD)", True, "", brand.name)


def sign_call(
    *,
    client: NetworkClient,
    orig_tn: str,
    dest_tns: list[str],
    iat: int,
    origid: str = "",
    attest: str = "",
    originator_impu: str = "",
    request_id: str = "",
) -> Signed:
    orig = e164(orig_tn)
    dests = [e164(t) for t in dest_tns]
    context = call_context(orig, originator_impu)
    if context.enterprise is not None and not client.serves(context.enterprise):
        raise CallAuthError(
            "POL4050", "This network client does not serve the enterprise of %1", [orig], status=403
        )
    decision = attestation_for_call(context.facts)
    level = apply_ceiling(decision.level, attest or None)
    credential, coverage = signing_credential_for(context.enterprise, orig)
    if credential is None:
        raise CallAuthError(
            "SVC4003", f"No signing certificate is available: {coverage.failure}", status=500
        )
    brand, rcd = _rcd_check(context.enterprise, level)
    origid = origid or str(uuid.uuid4())
    key = unseal(credential)
    url = x5u(credential)
    shaken = passport.shaken_passport(
        orig_tn=passport.tn(orig),
        dest_tns=[passport.tn(d) for d in dests],
        attest=level,
        origid=origid,
        iat=iat,
        x5u=url,
        private_key=key,
    )
    identities = [passport.identity_header(shaken, x5u=url, ppt="shaken")]
    if brand is not None:
        rcd_token = passport.rcd_passport(
            orig_tn=passport.tn(orig),
            dest_tns=[passport.tn(d) for d in dests],
            iat=iat,
            x5u=url,
            name=brand.name,
            logo_url=brand.logo_url,
            call_reason=brand.call_reason,
            private_key=key,
        )
        identities.append(passport.identity_header(rcd_token, x5u=url, ppt="rcd"))
    reason = (
        decision.reason
        if level == decision.level
        else f"{decision.reason}; capped at {level} by the request"
    )
    record = CallRecord.objects.create(
        enterprise=context.enterprise,
        identity=context.number_identity,
        network_client=client,
        direction=CallRecord.Direction.OUTGOING,
        orig_tn=orig,
        dest_tns=dests,
        attestation=level,
        reason=reason[:255],
        checks=_checks_json([*decision.checks, coverage, rcd]),
        origid=origid,
        caller_name=brand.name if brand else "",
        request_id=request_id[:64],
    )
    return Signed(identities, level, decision, record)


def _checks_json(checks) -> list:
    return [[c.name, c.passed, c.detail if c.passed else c.failure] for c in checks]


def call_panel(identity: Identity) -> dict | None:
    """ "Why was my call not shown as verified?": how a call from this identity's number
    would be decided now, step by step, with the certificate and the business name."""
    if not identity.tn:
        return None
    context = call_context(identity.tn)
    decision = attestation_for_call(context.facts)
    _, coverage = signing_credential_for(context.enterprise, identity.tn)
    _, rcd = _rcd_check(context.enterprise, decision.level)
    return {
        "level": decision.level,
        "reason": decision.reason,
        "checks": [*decision.checks, coverage, rcd],
    }
