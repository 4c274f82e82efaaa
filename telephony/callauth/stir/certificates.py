"""STI certificates: the TNAuthList extension (RFC 8226), delegate certificates
(RFC 9060), chain validation, and a small lab STI-CA.

No Django and no network: certificates arrive as PEM or objects, and the caller says
which certificates it trusts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

TN_AUTH_LIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")  # id-pe-TNAuthList

# Bounds on what we parse: a delegate certificate lists an enterprise's blocks, a few
# hundred entries at most; a SHAKEN chain is two to four certificates.
MAX_TN_AUTH_LIST_BYTES = 64 * 1024
MAX_TN_AUTH_ENTRIES = 4096
MAX_BUNDLE_BYTES = 64 * 1024
MAX_BUNDLE_CERTIFICATES = 10
MAX_CHAIN_LENGTH = 8

_TN_CHARS = frozenset("0123456789#*")
_MAX_TN_LENGTH = 15
_BACKDATE = dt.timedelta(minutes=1)  # tolerate clocks slightly behind the issuer's

# The SHAKEN certificate policy (ATIS-1000080 §6.4.1: STI intermediate and end-entity
# certificates name exactly one, non-critical). 2.16.840.1.114569.1.1.1 is the policy the
# ATIS documents and most deployed certificates name; later versions of the STI-PA's
# certificate policy have their own OIDs under the same arc (…1.1.3, …1.1.4), so a
# verifier accepts the arc.
SHAKEN_CERTIFICATE_POLICY = "2.16.840.1.114569.1.1.1"
SHAKEN_POLICY_ARCS = ("2.16.840.1.114569.1.1",)
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


class CertificateError(ValueError):
    """A certificate, chain, key or TNAuthList that is malformed or not acceptable."""


# --- TNAuthList -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TnAuthList:
    """The numbers a certificate speaks for (RFC 8226 §9): service provider codes,
    ranges (first number, count) and single numbers, numbers as digit strings."""

    spcs: tuple[str, ...] = ()
    ranges: tuple[tuple[str, int], ...] = ()
    numbers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.spcs or self.ranges or self.numbers):
            raise CertificateError("a TNAuthList needs at least one entry")
        for spc in self.spcs:
            _check_spc(spc)
        for entry in self.ranges:
            _check_range(entry)
        for number in self.numbers:
            _check_telephone_number(number, "number")

    @property
    def has_spc(self) -> bool:
        return bool(self.spcs)

    def covers(self, tn: str) -> bool:
        """Whether the list names this number, alone or in a range. Numbers in a range
        have the length of its first number; an SPC alone names no particular number."""
        if tn in self.numbers:
            return True
        if not (tn.isascii() and tn.isdigit()):
            return False
        return any(
            len(start) == len(tn) and int(start) <= int(tn) < int(start) + count
            for start, count in self.ranges
        )

    def within(self, issuer: TnAuthList) -> bool:
        """RFC 9060: a delegate certificate's list must lie within its issuer's. The
        certificate does not say which numbers an SPC holds, so an issuer with an SPC
        covers any ranges and numbers; an SPC itself passes only to the same SPC."""
        if not set(self.spcs) <= set(issuer.spcs):
            return False
        if issuer.spcs:
            return True
        return all(issuer.covers(n) for n in self.numbers) and all(
            issuer._covers_span(start, count) for start, count in self.ranges
        )

    def _covers_span(self, start: str, count: int) -> bool:
        # Adjacent or overlapping ranges and numbers may together cover one wide range.
        spans = sorted(
            [(int(s), int(s) + c) for s, c in self.ranges if len(s) == len(start)]
            + [(int(n), int(n) + 1) for n in self.numbers if len(n) == len(start) and n.isdigit()]
        )
        covered_to, end = int(start), int(start) + count
        for low, high in spans:
            if low > covered_to:
                return False
            covered_to = max(covered_to, high)
            if covered_to >= end:
                return True
        return False


def _check_spc(spc: object) -> None:
    # ServiceProviderCode ::= IA5String; control characters are refused as well.
    if not isinstance(spc, str) or not spc or not (spc.isascii() and spc.isprintable()):
        raise CertificateError(f"an SPC must be printable ASCII, not {_shown(spc)}")


def _check_telephone_number(number: object, what: str) -> None:
    # TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))
    if (
        not isinstance(number, str)
        or not 1 <= len(number) <= _MAX_TN_LENGTH
        or not set(number) <= _TN_CHARS
    ):
        raise CertificateError(f"a {what} must be 1–15 of 0–9, # and *, not {_shown(number)}")


def _check_range(entry: object) -> None:
    if not (isinstance(entry, tuple) and len(entry) == 2):
        raise CertificateError(f"a range is (first number, count), not {_shown(entry)}")
    start, count = entry
    _check_telephone_number(start, "range's first number")
    # Counting needs digits; '#' and '*' make sense only in single numbers.
    if not start.isdigit():
        raise CertificateError(f"a range's first number must be digits, not {_shown(start)}")
    if type(count) is not int or count < 2:
        raise CertificateError(
            f"a range's count must be an integer of at least 2, not {_shown(count)}"
        )
    if int(start) + count > 10 ** len(start):
        raise CertificateError(
            f"the range from {start} runs past the last {len(start)}-digit number"
        )


# DER for exactly the RFC 8226 ASN.1 module. Its header reads "DEFINITIONS EXPLICIT TAGS",
# so each TNEntry alternative is a constructed context tag wrapping the whole TLV of its
# type, not a retagged one:
#   spc   [0] -> A0 len (16 len IA5String)
#   range [1] -> A1 len (30 len (16 len start) (02 len count))
#   one   [2] -> A2 len (16 len IA5String)
_SEQUENCE, _INTEGER, _IA5STRING = 0x30, 0x02, 0x16
_SPC, _RANGE, _ONE = 0xA0, 0xA1, 0xA2


def encode_tn_auth_list(tal: TnAuthList) -> bytes:
    """The DER of a TNAuthorizationList: SPCs, then ranges, then single numbers."""
    entries = [_tlv(_SPC, _tlv(_IA5STRING, spc.encode("ascii"))) for spc in tal.spcs]
    entries += [
        _tlv(_RANGE, _tlv(_SEQUENCE, _tlv(_IA5STRING, start.encode("ascii")) + _der_integer(count)))
        for start, count in tal.ranges
    ]
    entries += [_tlv(_ONE, _tlv(_IA5STRING, number.encode("ascii"))) for number in tal.numbers]
    return _tlv(_SEQUENCE, b"".join(entries))


def decode_tn_auth_list(der: bytes) -> TnAuthList:
    """Parse a DER TNAuthorizationList strictly: definite minimal lengths inside the
    buffer, no trailing bytes, only the three known entries, bounded in size."""
    if not isinstance(der, bytes):
        raise CertificateError("a TNAuthList is given as bytes")
    if len(der) > MAX_TN_AUTH_LIST_BYTES:
        raise CertificateError(f"a TNAuthList over {MAX_TN_AUTH_LIST_BYTES // 1024} KiB")
    outer = _DerReader(der)
    entries = _DerReader(outer.read(_SEQUENCE, "the TNAuthorizationList SEQUENCE"))
    outer.expect_end("the list")
    spcs: list[str] = []
    ranges: list[tuple[str, int]] = []
    numbers: list[str] = []
    while not entries.done:
        if len(spcs) + len(ranges) + len(numbers) == MAX_TN_AUTH_ENTRIES:
            raise CertificateError(f"TNAuthList: more than {MAX_TN_AUTH_ENTRIES} entries")
        tag, content = entries.read_any()
        entry = _DerReader(content)
        if tag == _SPC:
            spcs.append(_ia5(entry.read(_IA5STRING, "an SPC IA5String")))
        elif tag == _RANGE:
            ranges.append(_decode_range(entry.read(_SEQUENCE, "a TelephoneNumberRange SEQUENCE")))
        elif tag == _ONE:
            numbers.append(_ia5(entry.read(_IA5STRING, "a TelephoneNumber IA5String")))
        else:
            raise CertificateError(f"TNAuthList: unknown entry tag 0x{tag:02x}")
        entry.expect_end("an entry")
    return TnAuthList(tuple(spcs), tuple(ranges), tuple(numbers))


def _decode_range(content: bytes) -> tuple[str, int]:
    reader = _DerReader(content)
    start = _ia5(reader.read(_IA5STRING, "the range's start"))
    count = _integer(reader.read(_INTEGER, "the range's count"))
    # TelephoneNumberRange is extensible ("..."): later additions are skipped, but they
    # must still be well-formed TLVs inside the range.
    while not reader.done:
        reader.read_any()
    return start, count


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_integer(value: int) -> bytes:
    # Non-negative, minimal two's complement: a leading 0x00 when the top bit is set.
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


class _DerReader:
    """Reads TLVs from one bounded buffer, refusing what DER does not allow."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)

    def expect_end(self, what: str) -> None:
        if not self.done:
            raise CertificateError(f"TNAuthList: trailing bytes after {what}")

    def read(self, tag: int, what: str) -> bytes:
        if self.done:
            raise CertificateError(f"TNAuthList: {what} is missing")
        found, content = self.read_any()
        if found != tag:
            raise CertificateError(f"TNAuthList: expected {what}, found tag 0x{found:02x}")
        return content

    def read_any(self) -> tuple[int, bytes]:
        data, pos = self.data, self.pos
        if len(data) - pos < 2:
            raise CertificateError("TNAuthList: truncated")
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first == 0x80:
            raise CertificateError("TNAuthList: indefinite length is not DER")
        if first < 0x80:
            length = first
        else:
            size = first & 0x7F
            # The input is capped at 64 KiB, so two length bytes always suffice.
            if size > 2:
                raise CertificateError("TNAuthList: a length beyond any TNAuthList")
            if len(data) - pos < size:
                raise CertificateError("TNAuthList: truncated")
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
            if length < 0x80 or length.bit_length() <= 8 * (size - 1):
                raise CertificateError("TNAuthList: a length not in its shortest form")
        if length > len(data) - pos:
            raise CertificateError("TNAuthList: a length runs past the end of the data")
        self.pos = pos + length
        return tag, data[pos : pos + length]


def _ia5(content: bytes) -> str:
    try:
        return content.decode("ascii")
    except UnicodeDecodeError as exc:
        raise CertificateError("TNAuthList: an IA5String with non-ASCII bytes") from exc


def _integer(content: bytes) -> int:
    if not content:
        raise CertificateError("TNAuthList: an empty INTEGER")
    if len(content) > 8:
        raise CertificateError("TNAuthList: a count beyond any numbering plan")
    if len(content) > 1 and (
        (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise CertificateError("TNAuthList: an INTEGER not in its shortest form")
    return int.from_bytes(content, "big", signed=True)


# --- Keys -----------------------------------------------------------------------------------


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key, the curve ES256 and SHAKEN certificates use."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the caller encrypts it at rest with its own key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateError("a signing key must be an EC P-256 key")
    return key


# --- Issuing (lab STI-CA) -------------------------------------------------------------------


def make_root_ca(
    common_name: str, *, days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed lab STI-CA root: a trust anchor for tests and demonstrations."""
    key = generate_key()
    name = _name(common_name)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=False, ca=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate,
    subject_cn: str,
    subject_o: str = "",
    public_key: ec.EllipticCurvePublicKey,
    tn_auth_list: TnAuthList | None,
    days: int,
    ca: bool,
    path_length: int | None = None,
    policy: str = SHAKEN_CERTIFICATE_POLICY,
    crl_url: str = "",
    crl_issuer: x509.Name | None = None,
) -> x509.Certificate:
    """A certificate for an operator (SPC) or a delegate (RFC 9060: ranges, numbers),
    signed ECDSA-SHA256 by the issuer, in the ATIS-1000080 profile: the TNAuthList and
    the SHAKEN certificate policy, non-critical, and, when a CRL is named, a CRL
    distribution point (its URL and the DN of the CRL's issuer)."""
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the issuer signs with an EC key (ECDSA-SHA256)")
    if _spki(issuer_key.public_key()) != _spki(issuer_cert.public_key()):
        raise CertificateError("the issuer key does not belong to the issuer certificate")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CertificateError("STI certificates hold EC P-256 keys")
    if days < 1:
        raise CertificateError("a certificate must be valid for at least a day")
    if path_length is not None and not ca:
        raise CertificateError("only a CA certificate has a path length")
    issuer_ski = _extension(issuer_cert, x509.SubjectKeyIdentifier)
    authority_key_id = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
        if issuer_ski is not None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn, subject_o))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(digital_signature=True, ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )
    if tn_auth_list is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(TN_AUTH_LIST_OID, encode_tn_auth_list(tn_auth_list)),
            critical=False,
        )
    if policy:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]),
            critical=False,
        )
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=[x509.DirectoryName(crl_issuer)] if crl_issuer else None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str, organization: str = "") -> x509.Name:
    if not common_name:
        raise CertificateError("a certificate needs a common name")
    attributes = (
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    )
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, digital_signature: bool, ca: bool, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def key_belongs_to(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` certifies ``key``'s public half (any algorithm the certificate
    may carry compares; a certificate for another kind of key never matches)."""
    return _spki(key.public_key()) == _spki(cert.public_key())


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- Reading and validating -----------------------------------------------------------------


def tn_auth_list_of(cert: x509.Certificate) -> TnAuthList | None:
    """The certificate's TNAuthList, or None when it carries none."""
    try:
        extension = _extensions(cert).get_extension_for_oid(TN_AUTH_LIST_OID)
    except x509.ExtensionNotFound:
        return None
    if not isinstance(extension.value, x509.UnrecognizedExtension):
        raise CertificateError("the TNAuthList extension is not in its raw DER form")
    return decode_tn_auth_list(extension.value.value)


def is_ca(cert: x509.Certificate) -> bool:
    """Whether the certificate asserts basicConstraints cA (it may issue, and verifiers
    refuse it as a PASSporT signer)."""
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


def verify_chain(
    cert: x509.Certificate,
    *,
    intermediates: Iterable[x509.Certificate] = (),
    anchors: Iterable[x509.Certificate],
    at: dt.datetime,
    policies: Iterable[str] = SHAKEN_POLICY_ARCS,
) -> list[x509.Certificate]:
    """The chain from cert through intermediates to one of the anchors, leaf first and
    anchor last. Path building, signatures, validity at `at`, CA flags, key usages, path
    lengths and critical extensions are cryptography's X.509 verifier's (RFC 5280 with the
    Web PKI's defaults); on top, the SHAKEN profile: the leaf signs (digitalSignature),
    names a SHAKEN certificate policy (one of `policies`, or an OID under one; no
    `policies`, no such rule) and carries a well-formed TNAuthList; and every delegated
    TNAuthList lies within its issuer's (RFC 9060)."""
    if at.tzinfo is None:
        raise CertificateError("the validation time must be timezone-aware")
    anchors, intermediates = list(anchors), list(intermediates)
    if not anchors:
        raise CertificateError(f"not issued by a trust anchor: {_subject(cert)}")
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(at.astimezone(dt.UTC))
        .max_chain_depth(MAX_CHAIN_LENGTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_ee_policy(tuple(policies)))
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(cert, intermediates).chain
    except VerificationError as exc:
        raise CertificateError(_refusal(exc, [cert, *intermediates], at)) from exc
    for subject, issuer in pairwise(chain):
        _check_delegation(subject, issuer)
    return chain


# CA certificates as the Web PKI wants them (critical basicConstraints with cA, keyCertSign,
# key identifiers), SHAKEN's policies and CRL distribution points allowed.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def _ee_policy(policies: tuple[str, ...]) -> ExtensionPolicy:
    """The SHAKEN leaf: it signs, carries a well-formed TNAuthList (checked with the key
    usage, an extension the verifier knows; TNAuthList is not one) and, unless no
    policies are asked for, names one of them."""

    def signs(_policy, cert, usage: x509.KeyUsage) -> None:
        if not usage.digital_signature:
            raise ValueError("the leaf lacks the digitalSignature key usage")
        try:
            tal = tn_auth_list_of(cert)
        except CertificateError as exc:
            raise ValueError(str(exc)) from exc
        if tal is None:
            raise ValueError("the leaf carries no TNAuthList")

    def shaken(_policy, _cert, value: x509.CertificatePolicies) -> None:
        named = [p.policy_identifier.dotted_string for p in value]
        if not any(_under(oid, policies) for oid in named):
            raise ValueError(f"the leaf names no SHAKEN certificate policy ({', '.join(named)})")

    leaf = (
        ExtensionPolicy.webpki_defaults_ee()
        # SHAKEN certificates name numbers (TNAuthList), not hosts.
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, signs)
    )
    if policies:
        leaf = leaf.require_present(x509.CertificatePolicies, Criticality.AGNOSTIC, shaken)
    return leaf


def _under(oid: str, arcs: Iterable[str]) -> bool:
    return any(oid == arc or oid.startswith(f"{arc}.") for arc in arcs)


def _refusal(exc: VerificationError, certs: list[x509.Certificate], at: dt.datetime) -> str:
    """The verifier's reason in the words of a call record, naming the certificate."""
    text = str(exc).removeprefix("validation failed: ")
    text = text.split(" (encountered processing", 1)[0]
    if "not valid at validation time" in text:
        for member in certs:
            try:
                _check_validity(member, at)
            except CertificateError as reason:
                return str(reason)
    if "candidates exhausted" in text and "no interior errors" in text:
        return f"not issued by a trust anchor: {_subject(certs[0])}"
    text = text.removeprefix("Python extension validator failed: ValueError: ")
    if text.startswith("invalid extension: 2.5.29.32: Certificate is missing"):
        text = "the leaf names no SHAKEN certificate policy (it has no certificate policies)"
    return f"{text[:200]}: {_subject(certs[0])}"


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateError(
            f"not yet valid (from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC): {_subject(cert)}"
        )
    if at > cert.not_valid_after_utc:
        raise CertificateError(
            f"expired (on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC): {_subject(cert)}"
        )


def _check_delegation(subject: x509.Certificate, issuer: x509.Certificate) -> None:
    issuer_list = tn_auth_list_of(issuer)
    if issuer_list is None:
        return  # an STI-CA root holds no numbers of its own and may certify any
    subject_list = tn_auth_list_of(subject)
    if subject_list is None or not subject_list.within(issuer_list):
        raise CertificateError(
            f"TNAuthList not within its issuer's TNAuthList: {_subject(subject)} "
            f"under {_subject(issuer)}"
        )


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CertificateError(f"malformed extensions: {exc}") from exc


def _extension(cert: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return _extensions(cert).get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:120]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


# --- PEM ------------------------------------------------------------------------------------


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificates(pem_bytes: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle (an x5u resource: leaf first, then issuers)."""
    if not isinstance(pem_bytes, bytes):
        raise CertificateError("a PEM bundle is given as bytes")
    if len(pem_bytes) > MAX_BUNDLE_BYTES:
        raise CertificateError(f"a certificate bundle over {MAX_BUNDLE_BYTES // 1024} KiB")
    try:
        certs = x509.load_pem_x509_certificates(pem_bytes)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate bundle: {exc}") from exc
    if len(certs) > MAX_BUNDLE_CERTIFICATES:
        raise CertificateError(f"more than {MAX_BUNDLE_CERTIFICATES} certificates in a bundle")
    return certs
