"""The credentials that sign calls and the anchors that verify them: signing keys
sealed at rest, the lab PKI, delegate certificates (RFC 9060), imports, the current
credential of each kind, and what the certificate repository serves for an x5u."""

from __future__ import annotations

import base64
import functools

from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from accounts import audit
from accounts.audit import Actor
from accounts.models import Enterprise
from kernel.errors import RuleViolation
from telephony.callauth.errors import CallAuthError
from telephony.callauth.stir import certificates, passport
from telephony.models import (
    NumberBlock,
    SigningCredential,
)

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


def unseal(credential: SigningCredential) -> ec.EllipticCurvePrivateKey:
    sealed = credential.private_key_encrypted
    if sealed is None:  # a trust anchor: callers sign with credentials that can_sign
        raise CallAuthError("SVC4003", f"{credential} holds no private key.", status=500)
    try:
        return _unsealed(bytes(sealed), settings.STIR_KEY_ENCRYPTION_KEY, settings.SECRET_KEY)
    except InvalidToken as exc:
        raise CallAuthError(
            "SVC4003",
            "The signing key cannot be decrypted (was the encryption key changed?)",
            status=500,
        ) from exc


@functools.lru_cache(maxsize=64)
def _unsealed(sealed: bytes, *encryption_keys: str) -> ec.EllipticCurvePrivateKey:
    """Decrypting and parsing a key is a pure function of the sealed bytes and the keys
    that seal them, so it is remembered per process: nothing can go stale."""
    return certificates.load_private_key(_fernet().decrypt(sealed))


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
    issuer = current_credential(SigningCredential.Kind.OPERATOR_CA)
    if issuer is None:
        raise RuleViolation("There is no current operator issuing CA to issue it from.")
    tn_auth_list = enterprise_tn_auth_list(enterprise)
    if not (tn_auth_list.ranges or tn_auth_list.numbers):
        raise RuleViolation(f"{enterprise.name} has no number blocks to delegate.")
    key = certificates.generate_key()
    cert = certificates.issue(
        issuer_key=unseal(issuer),
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


def active_credentials(kind: str, enterprise_id: int | None = None) -> list[SigningCredential]:
    """The active credentials of a kind, whatever their validity: whichever is current
    is chosen at the time of each call (``current_of``), so the list may be cached."""
    whose = Q(enterprise_id=enterprise_id) if enterprise_id else Q(enterprise__isnull=True)
    found = list(SigningCredential.objects.filter(whose, kind=kind, active=True))
    for credential in found:
        if credential.private_key_encrypted is not None:  # a memoryview cannot be pickled
            credential.private_key_encrypted = bytes(credential.private_key_encrypted)
    return found


def current_of(candidates, now=None) -> SigningCredential | None:
    """The credential valid now that is valid longest."""
    now = now or timezone.now()
    valid = [c for c in candidates if c.not_before <= now < c.not_after]
    return max(valid, key=lambda c: c.not_after, default=None)


def current_credential(kind: str, enterprise: Enterprise | None = None) -> SigningCredential | None:
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


@functools.lru_cache(maxsize=256)
def parsed_certificates(pem: str) -> tuple:
    """The certificates of a PEM text. Parsing is a pure function of the text, so it is
    remembered per process (keyed by the text itself: nothing can go stale); whether a
    credential may be used is read from the database on every call."""
    return tuple(certificates.load_certificates(pem.encode()))


@functools.lru_cache(maxsize=256)
def pem_tn_auth_list(pem: str) -> certificates.TnAuthList | None:
    return certificates.tn_auth_list_of(parsed_certificates(pem)[0])
