"""PASSporT (RFC 8225) with the SHAKEN (RFC 8588) and Rich Call Data (RFC 9795)
extensions, and the SIP Identity header that carries them (RFC 8224).

Pure functions over strings and bytes: no Django, no network. Whatever arrives from the
network and is wrong in any way ends in PassportError with a readable message.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

# verstat values the terminating side reports (3GPP TS 24.229).
VERSTAT_PASSED = "TN-Validation-Passed"
VERSTAT_FAILED = "TN-Validation-Failed"
VERSTAT_NO_VALIDATION = "No-TN-Validation"

ALG = "ES256"
ATTESTATION_LEVELS = ("A", "B", "C")
# A SHAKEN or RCD PASSporT is well under 2 KiB; the caps make hostile input cheap to refuse.
MAX_TOKEN_BYTES = 8 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_IDENTITY_HEADERS = 8

_COORDINATE_BYTES = 32  # P-256: r and s are 32 bytes each in a JWS signature
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_JWS_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")  # RFC 3261 §25.1 token
_ANGLE_URI = re.compile(r"<([^<>\s]+)>")
_QUOTED = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_LWS = re.compile(r"[ \t\r\n]*")  # matches everywhere, if only the empty string
_VISUAL_SEPARATORS = str.maketrans("", "", " -.()")


class PassportError(ValueError):
    """A PASSporT or Identity header that is malformed, hostile, or not one we accept."""


# --- Encodings -----------------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """RFC 8225 §9: keys sorted at every level, no insignificant whitespace, UTF-8."""
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise PassportError(f"not representable as canonical JSON: {exc}") from exc


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url: the URL-safe alphabet only, no padding, no stray trailing bits,
    so that every value has exactly one accepted encoding."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise PassportError("not base64url (only A–Z, a–z, 0–9, '-' and '_', without padding)")
    if len(text) % 4 == 1:
        raise PassportError("base64url of an impossible length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise PassportError("base64url with non-zero trailing bits")
    return data


def tn(e164: str) -> str:
    """The PASSporT form of an E.164 number (RFC 8224 §8.3 as SHAKEN uses it): visual
    separators and the leading '+' removed, digits only."""
    if not isinstance(e164, str):
        raise PassportError("a telephone number must be a string")
    digits = e164.strip().translate(_VISUAL_SEPARATORS).removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 15):
        raise PassportError(f"not an E.164 telephone number: {_shown(e164)}")
    return digits


# --- Signing (authentication service) ------------------------------------------------------


def sign(
    header: dict[str, Any], payload: dict[str, Any], private_key: ec.EllipticCurvePrivateKey
) -> str:
    """A compact JWS (RFC 7515) over the canonical JSON of header and payload, ES256."""
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise PassportError("header and payload must be JSON objects")
    if header.get("alg") != ALG:
        raise PassportError("PASSporTs are signed with ES256 only")
    return _sign_encoded(b64url_encode(canonical_json(header)), payload, private_key)


def _sign_encoded(
    header_b64: str, payload: dict[str, Any], private_key: ec.EllipticCurvePrivateKey
) -> str:
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise PassportError("ES256 needs an EC P-256 private key")
    signing_input = f"{header_b64}.{b64url_encode(canonical_json(payload))}"
    der = private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    # JWS carries the fixed-size r||s pair, not the DER that OpenSSL produces (RFC 7518 §3.4).
    signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
    return f"{signing_input}.{b64url_encode(signature)}"


def shaken_passport(
    *,
    orig_tn: str,
    dest_tns: Sequence[str],
    attest: str,
    origid: str,
    iat: int,
    x5u: str,
    private_key: ec.EllipticCurvePrivateKey,
) -> str:
    """A SHAKEN PASSporT (RFC 8588): who calls whom, how well the caller is attested."""
    if attest not in ATTESTATION_LEVELS:
        raise PassportError(f"attest must be A, B or C, not {_shown(attest)}")
    if not isinstance(origid, str) or not origid:
        raise PassportError("origid must be a non-empty string")
    payload = {**_call_claims(orig_tn, dest_tns, iat), "attest": attest, "origid": origid}
    return _sign_encoded(_encoded_header("shaken", x5u), payload, private_key)


def rcd_passport(
    *,
    orig_tn: str,
    dest_tns: Sequence[str],
    iat: int,
    x5u: str,
    name: str,
    logo_url: str = "",
    call_reason: str = "",
    private_key: ec.EllipticCurvePrivateKey,
) -> str:
    """An "rcd" PASSporT (RFC 9795): the caller's verified name and logo live in the
    "rcd" claim object ("nam", "icn"); the call reason is the separate top-level "crn"
    claim. The optional "rcdi" is left out: it would pin the logo by a digest of the
    image's bytes, which this core does not fetch."""
    if not isinstance(name, str) or not name.strip():
        raise PassportError("an RCD PASSporT needs the caller's name")
    if not isinstance(logo_url, str) or not isinstance(call_reason, str):
        raise PassportError("logo URL and call reason must be strings")
    rcd = {"nam": name}
    if logo_url:
        rcd["icn"] = logo_url
    payload: dict[str, Any] = {**_call_claims(orig_tn, dest_tns, iat), "rcd": rcd}
    if call_reason:
        payload["crn"] = call_reason
    return _sign_encoded(_encoded_header("rcd", x5u), payload, private_key)


def _encoded_header(ppt: str, x5u: str) -> str:
    _check_url(x5u, "x5u")
    return _header_b64(ppt, x5u)


@functools.lru_cache(maxsize=256)
def _header_b64(ppt: str, x5u: str) -> str:
    """The base64url of a PASSporT's header: the same for every call a certificate
    signs, so encoded once per process."""
    return b64url_encode(canonical_json({"alg": ALG, "ppt": ppt, "typ": "passport", "x5u": x5u}))


def _call_claims(orig_tn: str, dest_tns: Sequence[str], iat: int) -> dict[str, Any]:
    if isinstance(dest_tns, str) or not dest_tns:
        raise PassportError("dest_tns must be a non-empty list of numbers")
    _check_iat(iat)
    return {"dest": {"tn": [tn(d) for d in dest_tns]}, "iat": iat, "orig": {"tn": tn(orig_tn)}}


# --- The SIP Identity header ---------------------------------------------------------------


@dataclass(frozen=True)
class IdentityHeader:
    """One Identity header field value: the PASSporT and its parameters."""

    jws: str
    info: str  # the certificate's URL, without the angle brackets
    alg: str | None = None
    ppt: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # any other parameters


def identity_header(jws: str, *, x5u: str, ppt: str) -> str:
    """The Identity header field value for a full-form PASSporT (RFC 8224, RFC 8588):
    `<jws>;info=<x5u>;alg=ES256;ppt=<ppt>`, the ppt as a bare token."""
    _check_jws_shape(jws)
    _check_url(x5u, "x5u")
    if not isinstance(ppt, str) or not _TOKEN.fullmatch(ppt):
        raise PassportError(f"ppt must be a SIP token, not {_shown(ppt)}")
    return f"{jws};info=<{x5u}>;alg={ALG};ppt={ppt}"


def parse_identity_header(value: str) -> IdentityHeader:
    """One Identity header field value, parsed leniently where RFC 8224 allows
    (whitespace, parameter-name case, quoted values) and strictly elsewhere."""
    _check_size(value, MAX_HEADER_BYTES, "an Identity header")
    headers = parse_identity_headers(value)
    if len(headers) != 1:
        raise PassportError(f"expected one Identity header value, found {len(headers)}")
    return headers[0]


def parse_identity_headers(value: str) -> list[IdentityHeader]:
    """Several Identity header values joined with commas, as SIP allows one header per
    value or a comma-separated list. JWS segments hold no commas; a comma inside <…> or
    a quoted string belongs to that parameter."""
    _check_size(value, MAX_HEADER_BYTES * MAX_IDENTITY_HEADERS, "the Identity headers")
    scanner = _Scanner(value)
    headers: list[IdentityHeader] = []
    while True:
        start = scanner.pos
        headers.append(_parse_one(scanner))
        _check_size(value[start : scanner.pos], MAX_HEADER_BYTES, "an Identity header")
        if len(headers) > MAX_IDENTITY_HEADERS:
            raise PassportError(f"more than {MAX_IDENTITY_HEADERS} Identity headers")
        if scanner.done:
            return headers
        scanner.pos += 1  # _parse_one stops only at the end or at a comma


class _Scanner:
    """A cursor over Identity header text."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.text)

    def at(self, chars: str) -> bool:
        return self.pos < len(self.text) and self.text[self.pos] in chars

    def skip_space(self) -> None:
        # One match, not a step per character: every verification parses its headers.
        self.pos = _LWS.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = pattern.match(self.text, self.pos)
        if found is not None:
            self.pos = found.end()
        return found

    def parameter_value(self) -> str:
        if self.at("<"):
            found = self.match(_ANGLE_URI)
            if found is None:
                raise PassportError(
                    "a <URI> in the Identity header is unterminated or holds spaces"
                )
            return found.group(1)
        if self.at('"'):
            found = self.match(_QUOTED)
            if found is None:
                raise PassportError("an unterminated quoted string in the Identity header")
            return _QUOTED_PAIR.sub(r"\1", found.group(1))
        found = self.match(_TOKEN)
        if found is None:
            raise PassportError("an Identity header parameter with an empty value")
        return found.group()


def _parse_one(scanner: _Scanner) -> IdentityHeader:
    scanner.skip_space()
    found = scanner.match(_JWS_CHARS)
    jws = found.group() if found else ""
    _check_jws_shape(jws)
    params: dict[str, str] = {}
    while True:
        scanner.skip_space()
        if scanner.done or scanner.at(","):
            break
        if not scanner.at(";"):
            raise PassportError(
                f"unexpected {_shown(scanner.text[scanner.pos])} in the Identity header"
            )
        scanner.pos += 1
        scanner.skip_space()
        name = scanner.match(_TOKEN)
        if name is None:
            raise PassportError("an Identity header parameter without a name")
        scanner.skip_space()
        value = ""
        if scanner.at("="):
            scanner.pos += 1
            scanner.skip_space()
            value = scanner.parameter_value()
        key = name.group().lower()
        if key in params:
            raise PassportError(f"the Identity header repeats its {key!r} parameter")
        params[key] = value
    info = params.pop("info", "")
    if not info:
        raise PassportError("the Identity header has no info parameter (the certificate's URL)")
    return IdentityHeader(jws, info, params.pop("alg", None), params.pop("ppt", None), params)


# --- Verification (verification service) ---------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """A structurally valid PASSporT whose signature is not checked yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes  # the received "b64header.b64payload", exactly as signed
    signature: bytes  # r||s


def decode(jws: str) -> Decoded:
    """Parse a full-form PASSporT strictly, without verifying it. Key material in the
    header ("jwk", "x5c") is never used: the certificate comes from x5u and a trust
    decision the caller makes."""
    _check_size(jws, MAX_TOKEN_BYTES, "a PASSporT")
    _check_jws_shape(jws)
    header_b64, payload_b64, signature_b64 = jws.split(".")
    header = _json_object(header_b64, "header")
    payload = _json_object(payload_b64, "payload")
    signature = b64url_decode(signature_b64)
    _check_header(header)
    _check_payload(header["ppt"], payload)
    if len(signature) != 2 * _COORDINATE_BYTES:
        raise PassportError("an ES256 signature is 64 bytes (r||s)")
    return Decoded(header, payload, f"{header_b64}.{payload_b64}".encode("ascii"), signature)


def verify_signature(decoded: Decoded, public_key: object) -> bool:
    """Whether the signature is public_key's ES256 signature over the bytes as received,
    so that a token whose JSON another signer formatted differently still verifies."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return False
    if len(decoded.signature) != 2 * _COORDINATE_BYTES:
        return False
    r = int.from_bytes(decoded.signature[:_COORDINATE_BYTES], "big")
    s = int.from_bytes(decoded.signature[_COORDINATE_BYTES:], "big")
    try:
        public_key.verify(
            encode_dss_signature(r, s), decoded.signing_input, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        return False
    return True


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = b64url_decode(segment)
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except PassportError:
        raise
    except (ValueError, RecursionError) as exc:
        raise PassportError(f"the {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise PassportError(f"the {what} is not a JSON object")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one claim would let signer and verifier read different calls.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise PassportError(f"duplicate JSON key {_shown(key)}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    raise PassportError(f"{name} is not JSON")


def _check_header(header: dict[str, Any]) -> None:
    if header.get("alg") != ALG:
        raise PassportError(f"alg {_shown(header.get('alg'))} is not accepted; only ES256 is")
    if "typ" in header and header["typ"] != "passport":
        raise PassportError(f"typ {_shown(header['typ'])} is not passport")
    if not isinstance(header.get("ppt"), str) or not header["ppt"]:
        raise PassportError("the header has no ppt (PASSporT extension)")
    if not isinstance(header.get("x5u"), str) or not header["x5u"]:
        raise PassportError("the header has no x5u (the certificate's URL)")
    if "crit" in header:
        raise PassportError("critical header parameters (crit) are not supported")


def _check_payload(ppt: str, payload: dict[str, Any]) -> None:
    _check_iat(payload.get("iat"))
    _check_orig(payload.get("orig"))
    _check_dest(payload.get("dest"))
    if ppt == "shaken":
        if payload.get("attest") not in ATTESTATION_LEVELS:
            raise PassportError(f"attest {_shown(payload.get('attest'))} is not A, B or C")
        if not isinstance(payload.get("origid"), str) or not payload["origid"]:
            raise PassportError("a SHAKEN PASSporT needs an origid string")
    elif ppt == "rcd":
        rcd = payload.get("rcd")
        if not isinstance(rcd, dict) or not isinstance(rcd.get("nam"), str):
            raise PassportError("an RCD PASSporT needs an rcd claim with a nam string")
        if not isinstance(rcd.get("icn", ""), str) or not isinstance(payload.get("crn", ""), str):
            raise PassportError("icn and crn must be strings")


def _check_iat(iat: object) -> None:
    if type(iat) is not int or not 0 <= iat < 2**63:
        raise PassportError("iat must be an integer number of seconds since 1970")


def _check_orig(orig: object) -> None:
    # RFC 8225 §5.2.1: exactly one of "tn" or "uri".
    values = [orig[k] for k in ("tn", "uri") if k in orig] if isinstance(orig, dict) else []
    if len(values) != 1 or not _is_identity(values[0]):
        raise PassportError('orig must be {"tn": "<number>"} or {"uri": "<URI>"}')


def _check_dest(dest: object) -> None:
    # RFC 8225 §5.2.1: arrays under "tn" and/or "uri".
    values = [dest[k] for k in ("tn", "uri") if k in dest] if isinstance(dest, dict) else []
    if not values or not all(_is_identity_list(v) for v in values):
        raise PassportError('dest must be {"tn": ["<number>", …]} and/or {"uri": ["<URI>", …]}')


def _is_identity(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _is_identity_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_identity(v) for v in value)


# --- Shared checks -------------------------------------------------------------------------


def _check_jws_shape(jws: object) -> None:
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3 or not all(p and _B64URL.fullmatch(p) for p in parts):
        raise PassportError("not a JWS of three base64url segments")


def _check_size(value: object, limit: int, what: str) -> None:
    if not isinstance(value, str):
        raise PassportError(f"{what} must be a string")
    # Characters never outnumber UTF-8 bytes, so the cheap test settles most cases.
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit:
        raise PassportError(f"{what} is over {limit // 1024} KiB")


def _check_url(url: object, what: str) -> None:
    # It goes into a SIP header between angle brackets: no way out of them, no line breaks.
    if not isinstance(url, str) or not url.isprintable() or any(c in url for c in '<>" '):
        raise PassportError(f"{what} must be a URL without spaces, quotes or angle brackets")


def _shown(value: object) -> str:
    """A value for an error message, cut short: it may be an attacker's megabyte."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"
