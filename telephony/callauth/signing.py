"""Signing outgoing calls (STI-AS) with SHAKEN and RCD PASSporTs: the credential that
covers the number, the verified business name, the record of every signing, and the
"why was my call not verified?" panel.

The attestation comes from the portal's own facts (facts.py, stir.attestation); a level
asked for in the request only caps it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import NetworkClient
from kernel.generations import Reader, scopes_seen
from telephony.callauth import records
from telephony.callauth.credentials import (
    active_credentials,
    current_of,
    parsed_certificates,
    pem_tn_auth_list,
    unseal,
    x5u,
)
from telephony.callauth.errors import CallAuthError, e164
from telephony.callauth.facts import call_context, context_key
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


@dataclass(frozen=True)
class Signers:
    """What signs an enterprise's calls (or, for no enterprise, the operator's): its
    active credentials, the current one chosen per call, and its business name."""

    credentials: tuple[SigningCredential, ...]
    caller_name: CallerName | None = None


def _signers_key(enterprise_id: int | None) -> str:
    return f"signers:{enterprise_id if enterprise_id is not None else 'operator'}"


def _signers(reader: Reader, enterprise_id: int | None) -> Signers:
    def load():
        if enterprise_id is None:
            return Signers(tuple(active_credentials(SigningCredential.Kind.OPERATOR))), set()
        brand = CallerName.objects.filter(enterprise_id=enterprise_id).first()
        delegates = active_credentials(SigningCredential.Kind.DELEGATE, enterprise_id)
        return Signers(tuple(delegates), brand), {enterprise_id}

    return reader.value(_signers_key(enterprise_id), load)


def signing_credential_for(
    enterprise_id: int | None, tn: str, reader: Reader | None = None
) -> tuple[SigningCredential | None, Check]:
    """The enterprise's delegate certificate when it covers the number, else the
    operator's; and the check that says which and why."""
    reader = reader or Reader()
    now = timezone.now()
    delegate = (
        current_of(_signers(reader, enterprise_id).credentials, now)
        if enterprise_id is not None
        else None
    )
    if delegate is not None:
        tal = pem_tn_auth_list(delegate.certificate_pem)
        if tal is not None and tal.covers(passport.tn(tn)):
            return delegate, Check(
                "Signing certificate covers the number", True, "", f"delegate {delegate.name}"
            )
    operator = current_of(_signers(reader, None).credentials, now)
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


def _rcd_check(
    enterprise_id: int | None, level: str, reader: Reader
) -> tuple[CallerName | None, Check]:
    brand = _signers(reader, enterprise_id).caller_name if enterprise_id is not None else None
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


def cache_keys(orig_tn: str, originator_impu: str = "") -> list[str]:
    """What a signing reads of the cache first (fetched with the credential's client by
    the view): the call's facts, the operator's signers, and the signers of the
    enterprises the facts were last read under (a hint: ``generations.scopes_seen``), or
    nothing for a number that is refused anyway."""
    try:
        key = context_key(e164(orig_tn), originator_impu)
    except CallAuthError:
        return []
    seen = [_signers_key(s) for s in scopes_seen(key) if isinstance(s, int)]
    return [key, _signers_key(None), *seen]


def _prefetch(reader: Reader, orig: str, originator_impu: str) -> None:
    """The call's facts and signers in one round trip (none for what the reader has),
    or two when this process has not seen the facts' enterprises yet: the facts and the
    operator's signers first, then the generations and signers of the enterprises they
    name."""
    key = context_key(orig, originator_impu)
    if key not in reader.entries:  # else fetched by the view, with the hint of its time
        reader.fetch(cache_keys(orig, originator_impu))
    scopes = reader.scopes_of(key)
    reader.fetch([_signers_key(s) for s in scopes if isinstance(s, int)], scopes)


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
    reader: Reader | None = None,
) -> Signed:
    """Sign a call; ``reader`` holds what the request already read of the cache."""
    orig = e164(orig_tn)
    dests = [e164(t) for t in dest_tns]
    reader = reader or Reader()
    _prefetch(reader, orig, originator_impu)
    context = call_context(orig, originator_impu, reader)
    enterprise_id = context.enterprise_id
    if enterprise_id is not None and enterprise_id not in client.served_enterprise_ids:
        raise CallAuthError(
            "POL4050", "This network client does not serve the enterprise of %1", [orig], status=403
        )
    decision = attestation_for_call(context.facts)
    level = apply_ceiling(decision.level, attest or None)
    credential, coverage = signing_credential_for(enterprise_id, orig, reader)
    if credential is None:
        raise CallAuthError(
            "SVC4003", f"No signing certificate is available: {coverage.failure}", status=500
        )
    brand, rcd = _rcd_check(enterprise_id, level, reader)
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
    record = records.keep(
        CallRecord(
            enterprise_id=enterprise_id,
            identity_id=context.number_identity_id,
            network_client_id=client.pk,
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
    )
    return Signed(identities, level, decision, record)


def _checks_json(checks) -> list:
    return [[c.name, c.passed, c.detail if c.passed else c.failure] for c in checks]


def call_panel(identity: Identity) -> dict | None:
    """ "Why was my call not shown as verified?": how a call from this identity's number
    would be decided now, step by step, with the certificate and the business name."""
    if not identity.tn:
        return None
    reader = Reader()
    context = call_context(identity.tn, reader=reader)
    decision = attestation_for_call(context.facts)
    _, coverage = signing_credential_for(context.enterprise_id, identity.tn, reader)
    _, rcd = _rcd_check(context.enterprise_id, decision.level, reader)
    return {
        "level": decision.level,
        "reason": decision.reason,
        "checks": [*decision.checks, coverage, rcd],
    }
