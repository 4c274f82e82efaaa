"""Call authentication: signing outgoing calls (STI-AS) and verifying incoming ones
(STI-VS) with SHAKEN PASSporTs, the credentials that sign them, and the record of
every answer.

The attestation comes from the portal's own facts (stir.attestation); a level asked for
in the request only caps it. Every signing and verification is recorded with the
decision's checks, which the pages walk through ("why was my call not verified?").
"""

from __future__ import annotations

import base64
import functools
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import audit
from accounts.audit import Actor
from accounts.models import Enterprise, NetworkClient
from kernel.errors import RuleViolation
from telephony.callauth.stir import certificates, fetch, passport
from telephony.callauth.stir.attestation import (
    CallFacts,
    Check,
    Decision,
    apply_ceiling,
    attestation_for_call,
)
from telephony.models import (
    CallerName,
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    NumberBlock,
    SigningCredential,
    TelephoneNumber,
)
from telephony.registrations.devices import resolve_aors

TN_DIGITS = re.compile(r"^\+?(\d{6,15})$")


class CallAuthError(Exception):
    """A request the STI-AS or STI-VS cannot serve (answered as an ATIS request error)."""

    def __init__(self, message_id: str, text: str, variables=(), *, status: int = 400):
        super().__init__(text)
        self.message_id = message_id
        self.text = text
        self.variables = list(variables)
        self.status = status


def e164(tn: str) -> str:
    """``+digits`` from a PASSporT-style or E.164 number."""
    match = TN_DIGITS.match((tn or "").strip())
    if not match:
        raise CallAuthError("SVC4002", "Invalid value for %1", ["tn"])
    return f"+{match.group(1)}"


# --- Private keys at rest -----------------------------------------------------------------


def _fernet() -> Fernet:
    """The key that encrypts signing keys at rest: STIR_KEY_ENCRYPTION_KEY, or one
    derived from SECRET_KEY (rotating that then means re-importing the keys)."""
    if settings.STIR_KEY_ENCRYPTION_KEY:
        return Fernet(settings.STIR_KEY_ENCRYPTION_KEY.encode())
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"stir signing keys at rest"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _seal(key) -> bytes:
    return _fernet().encrypt(certificates.private_key_pem(key))


def _unseal(credential: SigningCredential) -> ec.EllipticCurvePrivateKey:
    sealed = credential.private_key_encrypted
    if sealed is None:  # a trust anchor: callers sign with credentials that can_sign
        raise CallAuthError("SVC4003", f"{credential} holds no private key.", status=500)
    try:
        return certificates.load_private_key(_fernet().decrypt(bytes(sealed)))
    except InvalidToken as exc:
        raise CallAuthError(
            "SVC4003",
            "The signing key cannot be decrypted (was the encryption key changed?)",
            status=500,
        ) from exc


# --- Credentials (operator staff) ---------------------------------------------------------


def _store(*, kind, name, cert, key=None, enterprise=None, issuer=None) -> SigningCredential:
    base = slugify(name)[:60] or kind
    slug, n = base, 1
    while SigningCredential.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return SigningCredential.objects.create(
        kind=kind,
        name=name,
        enterprise=enterprise,
        issuer=issuer,
        slug=slug,
        certificate_pem=certificates.pem(cert).decode(),
        private_key_encrypted=_seal(key) if key is not None else None,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _audit_credential(actor: Actor, credential: SigningCredential, action: str) -> None:
    audit.record(
        actor=actor,
        action=action,
        enterprise=credential.enterprise,
        target=credential,
        changes=audit.created(kind=credential.kind, valid_until=credential.not_after.isoformat()),
    )


@transaction.atomic
def lab_pki_create(*, actor: Actor, operator_name: str, spc: str) -> SigningCredential:
    """For labs and demos: a root STI-CA (a trust anchor) and under it, as SHAKEN PKIs
    are built, the operator's issuing CA for delegate certificates and its end-entity
    signing certificate, both with its SPC. They replace the operator's current
    credentials. Returns the signing certificate."""
    root_key, root = certificates.make_root_ca(f"{operator_name} lab STI-CA")
    anchor = _store(
        kind=SigningCredential.Kind.TRUST_ANCHOR, name=f"{operator_name} lab STI-CA", cert=root
    )
    operator_kinds = (SigningCredential.Kind.OPERATOR, SigningCredential.Kind.OPERATOR_CA)
    for replaced in SigningCredential.objects.filter(kind__in=operator_kinds, active=True):
        replaced.active = False
        replaced.save(update_fields=["active"])
        audit.record(
            actor=actor,
            action="signing_credential.replaced",
            enterprise=None,
            target=replaced,
            changes={"active": [True, False]},
        )
    tn_auth_list = certificates.TnAuthList(spcs=(spc,))
    made = [anchor]
    for kind, cn, ca in (
        (SigningCredential.Kind.OPERATOR_CA, f"{operator_name} SHAKEN CA {spc}", True),
        (SigningCredential.Kind.OPERATOR, f"{operator_name} SHAKEN {spc}", False),
    ):
        key = certificates.generate_key()
        cert = certificates.issue(
            issuer_key=root_key,
            issuer_cert=root,
            subject_cn=cn,
            subject_o=operator_name,
            public_key=key.public_key(),
            tn_auth_list=tn_auth_list,
            days=365,
            ca=ca,
            path_length=0 if ca else None,
            **_profile(),
        )
        suffix = " issuing CA" if ca else ""
        made.append(
            _store(
                kind=kind,
                name=f"{operator_name} ({spc}){suffix}",
                cert=cert,
                key=key,
                issuer=anchor,
            )
        )
    for credential in made:
        _audit_credential(actor, credential, "signing_credential.created")
    return made[-1]


def _profile() -> dict:
    """What ATIS-1000080 asks of our certificates beyond the numbers: the SHAKEN
    certificate policy and, when the operator has one, the CRL distribution point."""
    return {
        "policy": settings.STIR_CERTIFICATE_POLICY,
        "crl_url": settings.STIR_CRL_URL,
        "crl_issuer": (
            x509.Name.from_rfc4514_string(settings.STIR_CRL_ISSUER)
            if settings.STIR_CRL_ISSUER
            else None
        ),
    }


def enterprise_tn_auth_list(enterprise: Enterprise) -> certificates.TnAuthList:
    """Exactly the enterprise's number blocks (a block of one number is a single TN:
    TNAuthList ranges hold at least two)."""
    blocks = list(NumberBlock.objects.for_enterprise(enterprise).order_by("first_number"))
    return certificates.TnAuthList(
        ranges=tuple((passport.tn(b.first_number), b.size) for b in blocks if b.size > 1),
        numbers=tuple(passport.tn(b.first_number) for b in blocks if b.size == 1),
    )


@transaction.atomic
def delegate_certificate_issue(*, actor: Actor, enterprise: Enterprise) -> SigningCredential:
    """A delegate certificate (RFC 9060) whose TNAuthList covers exactly the
    enterprise's number blocks, issued under the operator's issuing CA (the operator's
    signing certificate is an end entity and cannot issue); it replaces the
    enterprise's previous one."""
    actor.ensure_acts_for(enterprise)
    issuer = _current(SigningCredential.Kind.OPERATOR_CA)
    if issuer is None:
        raise RuleViolation("There is no current operator issuing CA to issue it from.")
    tn_auth_list = enterprise_tn_auth_list(enterprise)
    if not (tn_auth_list.ranges or tn_auth_list.numbers):
        raise RuleViolation(f"{enterprise.name} has no number blocks to delegate.")
    key = certificates.generate_key()
    cert = certificates.issue(
        issuer_key=_unseal(issuer),
        issuer_cert=certificates.load_certificates(issuer.certificate_pem.encode())[0],
        subject_cn=f"{enterprise.name} SHAKEN delegate",
        subject_o=enterprise.name,
        public_key=key.public_key(),
        tn_auth_list=tn_auth_list,
        days=90,
        ca=False,
        **_profile(),
    )
    SigningCredential.objects.filter(enterprise=enterprise, active=True).update(active=False)
    credential = _store(
        kind=SigningCredential.Kind.DELEGATE,
        name=f"{enterprise.name} delegate {timezone.now():%Y-%m-%d}",
        cert=cert,
        key=key,
        enterprise=enterprise,
        issuer=issuer,
    )
    _audit_credential(actor, credential, "signing_credential.delegated")
    return credential


@transaction.atomic
def credential_import(
    *,
    actor: Actor,
    kind: str,
    name: str,
    certificate_pem: str,
    private_key_pem: str = "",
    enterprise: Enterprise | None = None,
) -> SigningCredential:
    """Import a trust anchor, or with its key the operator's signing certificate (an end
    entity), the operator's issuing CA or a delegate certificate."""
    try:
        cert = certificates.load_certificates(certificate_pem.encode())[0]
        key = certificates.load_private_key(private_key_pem.encode()) if private_key_pem else None
        is_ca = certificates.is_ca(cert)
        tn_auth_list = certificates.tn_auth_list_of(cert)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    except (certificates.CertificateError, ValueError, IndexError) as exc:
        raise RuleViolation(f"Not a PEM certificate and key: {exc}") from exc
    Kind = SigningCredential.Kind
    if kind in (Kind.OPERATOR, Kind.DELEGATE):
        # What the STI-VS (ours and others') asks of a PASSporT's signer, said at import
        # rather than as a failed verification of every call.
        if is_ca:
            raise RuleViolation(
                "This certificate is a CA (basicConstraints cA): STIR/SHAKEN verifiers refuse"
                " a CA as the signer of a call, so it cannot be a signing certificate. Import"
                " it as the operator's issuing CA, and the end-entity signing certificate apart."
            )
        if usage is None or not usage.digital_signature:
            raise RuleViolation(
                "A signing certificate needs the digitalSignature key usage; this one lacks it."
            )
        if tn_auth_list is None:
            raise RuleViolation(
                "A signing certificate carries a TNAuthList (RFC 8226) naming the SPC or the"
                " numbers it signs for; this one has none."
            )
    if kind == Kind.OPERATOR_CA and not is_ca:
        raise RuleViolation(
            "This certificate is not a CA (no basicConstraints cA), so it cannot issue"
            " delegate certificates. Import it as the operator's signing certificate."
        )
    if kind != Kind.TRUST_ANCHOR and key is None:
        raise RuleViolation(
            "An issuing CA needs its private key."
            if kind == Kind.OPERATOR_CA
            else "A signing certificate needs its private key."
        )
    if key is not None and not certificates.key_belongs_to(key, cert):
        raise RuleViolation("The private key does not belong to the certificate.")
    credential = _store(kind=kind, name=name, cert=cert, key=key, enterprise=enterprise)
    _audit_credential(actor, credential, "signing_credential.imported")
    return credential


def _current(kind: str, enterprise: Enterprise | None = None) -> SigningCredential | None:
    now = timezone.now()
    return (
        SigningCredential.objects.filter(kind=kind, enterprise=enterprise, active=True)
        .filter(not_before__lte=now, not_after__gt=now)
        .order_by("-not_after")
        .first()
    )


def x5u(credential: SigningCredential) -> str:
    return f"{settings.STIR_CERT_REPOSITORY_URL}/{credential.slug}.pem"


def certificate_chain_pem(credential: SigningCredential) -> str:
    """What the repository serves for an x5u: the certificate, then its issuers up to,
    not including, the trust anchor."""
    chain: list[str] = []
    current: SigningCredential | None = credential
    while current is not None and current.kind != SigningCredential.Kind.TRUST_ANCHOR:
        chain.append(current.certificate_pem.strip())
        current = current.issuer
    return "\n".join(chain) + "\n"


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
    delegate = _current(SigningCredential.Kind.DELEGATE, enterprise) if enterprise else None
    if delegate is not None:
        tal = _tn_auth_list(delegate.certificate_pem)
        if tal is not None and tal.covers(passport.tn(tn)):
            return delegate, Check(
                "Signing certificate covers the number", True, "", f"delegate {delegate.name}"
            )
    operator = _current(SigningCredential.Kind.OPERATOR)
    if operator is None:
        return None, Check(
            "Signing certificate covers the number",
            False,
            "there is no current signing certificate",
        )
    if certificates.is_ca(_parsed(operator.certificate_pem)[0]):
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
    key = _unseal(credential)
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


# --- Verification (STI-VS) ---------------------------------------------------------------


@dataclass
class Verified:
    verstat: str
    reason_code: int | None = None
    reason_text: str = ""
    attestation: str = ""
    caller_name: str = ""
    logo_url: str = ""
    call_reason: str = ""
    record: CallRecord | None = None
    checks: list = field(default_factory=list)


class _Fail(Exception):
    def __init__(self, code: int, text: str, verstat: str = passport.VERSTAT_FAILED):
        super().__init__(text)
        self.code, self.text, self.verstat = code, text, verstat


@functools.lru_cache(maxsize=256)
def _parsed(pem: str) -> tuple:
    """The certificates of a PEM text. Parsing is a pure function of the text, so it is
    remembered per process (keyed by the text itself: nothing can go stale); whether a
    credential may be used is read from the database on every call."""
    return tuple(certificates.load_certificates(pem.encode()))


@functools.lru_cache(maxsize=256)
def _tn_auth_list(pem: str) -> certificates.TnAuthList | None:
    return certificates.tn_auth_list_of(_parsed(pem)[0])


def _certificate_for(url: str, deadline: float | None = None):
    """The chain an x5u names: ours from the database, another carrier's fetched under
    the x5u policy (stir.fetch) by `deadline`. Whether it can be trusted is the chain
    validation's."""
    prefix = f"{settings.STIR_CERT_REPOSITORY_URL}/"
    if not url.startswith(prefix):
        try:
            return list(_parsed(fetch.certificate_chain(url, deadline)))
        except (fetch.FetchError, certificates.CertificateError) as exc:
            raise _Fail(436, f"Bad Identity Info: {exc}") from exc
    if not url.endswith(".pem"):
        raise _Fail(436, "Bad Identity Info: no such certificate")
    slug = url[len(prefix) : -len(".pem")]
    # A delegate, its operator certificate and the anchor above it: one query.
    credential = (
        SigningCredential.objects.select_related("issuer__issuer").filter(slug=slug).first()
    )
    if credential is None or credential.kind == SigningCredential.Kind.TRUST_ANCHOR:
        # A trust anchor is not served as an x5u: its chain is empty.
        raise _Fail(436, "Bad Identity Info: no such certificate")
    return list(_parsed(certificate_chain_pem(credential)))


def _anchors():
    return [
        _parsed(pem)[0]
        for pem in SigningCredential.objects.filter(
            kind=SigningCredential.Kind.TRUST_ANCHOR, active=True
        ).values_list("certificate_pem", flat=True)
    ]


class _Repository:
    """What one verification reads of the certificate repository, read once: an SHAKEN
    and an RCD PASSporT usually name the same x5u. Every header may name another one, so
    all foreign fetches of one verification share one STIR_X5U_TIMEOUT_SECONDS."""

    def __init__(self):
        self.chains: dict[str, list] = {}
        self._anchors = None
        self.deadline: float | None = None  # set by the first fetch

    def chain(self, url: str) -> list:
        if url not in self.chains:
            if self.deadline is None:
                self.deadline = time.monotonic() + settings.STIR_X5U_TIMEOUT_SECONDS
            self.chains[url] = _certificate_for(url, self.deadline)
        return self.chains[url]

    def anchors(self) -> list:
        if self._anchors is None:
            self._anchors = _anchors()
        return self._anchors


def _verify_one(header, *, orig: str, dests: list[str], now: datetime, repository=None):
    """(decoded passport, leaf certificate) of one Identity header, or _Fail."""
    repository = repository or _Repository()
    try:
        decoded = passport.decode(header.jws)
    except passport.PassportError as exc:
        raise _Fail(438, f"Invalid Identity Header: {exc}") from exc
    url = decoded.header.get("x5u", "")
    if header.info and header.info != url:
        raise _Fail(436, "Bad Identity Info: info and x5u differ")
    chain = repository.chain(url)
    leaf = chain[0]
    try:
        certificates.verify_chain(
            leaf,
            intermediates=chain[1:],
            anchors=repository.anchors(),
            at=now,
            policies=settings.STIR_ACCEPTED_CERTIFICATE_POLICIES,
        )
    except certificates.CertificateError as exc:
        raise _Fail(437, f"Unsupported Credential: {exc}") from exc
    if not passport.verify_signature(decoded, leaf.public_key()):
        raise _Fail(438, "Invalid Identity Header: the signature does not verify")
    iat = decoded.payload["iat"]
    if abs(now.timestamp() - iat) > settings.STIR_MAX_AGE_SECONDS:
        raise _Fail(403, "Stale Date")
    claimed_orig = decoded.payload.get("orig", {}).get("tn", "")
    claimed_dests = set(decoded.payload.get("dest", {}).get("tn", []))
    if claimed_orig != passport.tn(orig):
        raise _Fail(438, "Invalid Identity Header: the calling number differs")
    if dests and not claimed_dests & {passport.tn(d) for d in dests}:
        raise _Fail(438, "Invalid Identity Header: the called number differs")
    tal = certificates.tn_auth_list_of(leaf)  # well-formed: the chain validation read it
    if tal is None or not (tal.has_spc or tal.covers(passport.tn(orig))):
        raise _Fail(
            437, "Unsupported Credential: the certificate does not cover the calling number"
        )
    return decoded, leaf


# The clock verification judges freshness and validity by (tests set it to a later day).
clock: Callable[[], datetime] = timezone.now


def verify_call(
    *,
    client: NetworkClient,
    from_tn: str,
    to_tns: list[str],
    identity: str,
    time: int | None = None,
    request_id: str = "",
) -> Verified:
    orig = e164(from_tn)
    dests = [e164(t) for t in to_tns]
    # Freshness is judged against when the call arrived (the request's time), and that
    # must itself be recent.
    now = clock()
    if time is not None:
        if abs(now.timestamp() - time) > settings.STIR_MAX_AGE_SECONDS:
            raise CallAuthError(
                "SVC4002", "Invalid value for %1: not the time of a current call", ["time"]
            )
        now = datetime.fromtimestamp(time, tz=now.tzinfo)
    callee = (
        Identity.objects.live().select_related("enterprise").filter(number__e164__in=dests).first()
    )
    if callee is not None and not client.serves(callee.enterprise):
        raise CallAuthError(
            "POL4050", "This network client does not serve the enterprise of %1", dests, status=403
        )
    result = Verified(verstat=passport.VERSTAT_NO_VALIDATION)
    try:
        if not identity:
            raise _Fail(428, "Use Identity Header", passport.VERSTAT_NO_VALIDATION)
        try:
            headers = passport.parse_identity_headers(identity)
        except passport.PassportError as exc:
            raise _Fail(438, f"Invalid Identity Header: {exc}") from exc
        shaken = [h for h in headers if h.ppt == "shaken"]
        if not shaken:
            raise _Fail(
                438, "Invalid Identity Header: no SHAKEN PASSporT", passport.VERSTAT_NO_VALIDATION
            )
        repository = _Repository()
        decoded, _ = _verify_one(shaken[0], orig=orig, dests=dests, now=now, repository=repository)
        result = Verified(
            verstat=passport.VERSTAT_PASSED, attestation=decoded.payload.get("attest", "")
        )
        for header in (h for h in headers if h.ppt == "rcd"):
            try:
                rcd, _ = _verify_one(header, orig=orig, dests=dests, now=now, repository=repository)
            except _Fail as exc:
                result.checks.append(["Business name (RCD)", False, exc.text])
                continue
            claims = rcd.payload.get("rcd", {})
            result.caller_name = str(claims.get("nam", ""))[:64]
            result.logo_url = str(claims.get("icn", ""))[:500]
            result.call_reason = str(rcd.payload.get("crn", ""))[:64]
    except _Fail as exc:
        result = Verified(verstat=exc.verstat, reason_code=exc.code, reason_text=exc.text)
    result.record = CallRecord.objects.create(
        enterprise=callee.enterprise if callee else None,
        identity=callee,
        network_client=client,
        direction=CallRecord.Direction.INCOMING,
        orig_tn=orig,
        dest_tns=dests,
        attestation=result.attestation,
        verstat=result.verstat,
        reason=(result.reason_text or "verified")[:255],
        checks=result.checks,
        caller_name=result.caller_name,
        request_id=request_id[:64],
    )
    return result


# --- Retention ----------------------------------------------------------------------------


def purge_call_records() -> int:
    """Delete call records older than CALL_RECORD_RETENTION_DAYS. Periodic."""
    cutoff = timezone.now() - timedelta(days=settings.CALL_RECORD_RETENTION_DAYS)
    deleted, _ = CallRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
