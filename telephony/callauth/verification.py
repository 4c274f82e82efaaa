"""Verifying incoming calls (STI-VS): the Identity headers' PASSporTs, their x5u chains
(ours from the database, other carriers' fetched under the x5u policy) and the record
of every answer."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import NetworkClient
from kernel.generations import Reader, Scope
from telephony.callauth import records
from telephony.callauth.credentials import certificate_chain_pem, parsed_certificates
from telephony.callauth.errors import CallAuthError, e164
from telephony.callauth.stir import certificates, fetch, passport
from telephony.models import (
    CallRecord,
    Identity,
    SigningCredential,
    TelephoneNumber,
)

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


def _certificate_for(url: str, reader: Reader, deadline: float | None = None):
    """The chain an x5u names: ours from the database, another carrier's fetched under
    the x5u policy (stir.fetch) by `deadline`. Whether it can be trusted is the chain
    validation's."""
    prefix = f"{settings.STIR_CERT_REPOSITORY_URL}/"
    if not url.startswith(prefix):
        try:
            return list(parsed_certificates(fetch.certificate_chain(url, deadline)))
        except (fetch.FetchError, certificates.CertificateError) as exc:
            raise _Fail(436, f"Bad Identity Info: {exc}") from exc
    if not url.endswith(".pem"):
        raise _Fail(436, "Bad Identity Info: no such certificate")
    slug = url[len(prefix) : -len(".pem")]
    pem = reader.value(f"chain:{slug}", lambda: _our_chain(slug))
    if pem is None:
        raise _Fail(436, "Bad Identity Info: no such certificate")
    return list(parsed_certificates(pem))


def _our_chain(slug: str) -> tuple[str | None, set[Scope] | None]:
    """The chain our repository serves for a slug (certificates never change; who may
    sign is the signer's question), kept under the generation of its enterprise."""
    # A delegate, its operator certificate and the anchor above it: one query.
    credential = (
        SigningCredential.objects.select_related("issuer__issuer").filter(slug=slug).first()
    )
    if credential is None or credential.kind == SigningCredential.Kind.TRUST_ANCHOR:
        # A trust anchor is not served as an x5u: its chain is empty. Unknown slugs are
        # the sender's choice: not kept.
        return None, None
    scopes: set[Scope] = {credential.enterprise_id} if credential.enterprise_id else set()
    return certificate_chain_pem(credential), scopes


def _anchors(reader: Reader):
    pems = reader.value(
        "anchors",
        lambda: (
            tuple(
                SigningCredential.objects.filter(
                    kind=SigningCredential.Kind.TRUST_ANCHOR, active=True
                ).values_list("certificate_pem", flat=True)
            ),
            set(),
        ),
    )
    return [parsed_certificates(pem)[0] for pem in pems]


def _callee(reader: Reader, dests: list[str]) -> tuple[int, int] | None:
    """(identity id, enterprise id) of the first live identity holding a called number."""

    def load():
        callee = Identity.objects.live().filter(number__e164__in=dests).order_by("pk").first()
        if callee is not None:
            return (callee.pk, callee.enterprise_id), {callee.enterprise_id}
        # Nobody holds them: that changes with the enterprises whose blocks hold them,
        # or, outside every block, with the operator's blocks.
        held_by = (
            TelephoneNumber.objects.filter(e164__in=dests)
            .order_by()
            .values_list("enterprise_id", flat=True)
        )
        return None, set(held_by)

    return reader.value(_callee_key(dests), load)


def _callee_key(dests: list[str]) -> str:
    return "callee:" + ",".join(dests)


def cache_keys(to_tns: list[str], identity: str) -> list[str]:
    """What a verification reads of the cache first: the callee, the anchors and our
    chains the headers name (fetched with the credential's client by the view)."""
    try:
        keys = [_callee_key([e164(t) for t in to_tns]), "anchors"]
    except CallAuthError:
        return []
    prefix = f"{settings.STIR_CERT_REPOSITORY_URL}/"
    try:
        headers = _identity_headers(identity) if identity else ()
    except passport.PassportError:
        headers = ()  # refused later, with the reason
    for header in headers:
        if header.info.startswith(prefix) and header.info.endswith(".pem"):
            keys.append(f"chain:{header.info[len(prefix) : -len('.pem')]}")
    return keys


@functools.lru_cache(maxsize=8)
def _identity_headers(identity: str) -> tuple[passport.IdentityHeader, ...]:
    """The request's Identity headers, parsed once although three steps read them (the
    view's first cache read, the prefetch, the verification): a pure function of the
    text, remembered for the last few requests of the process."""
    return tuple(passport.parse_identity_headers(identity))


def _prefetch(reader: Reader, dests: list[str], identity: str) -> None:
    """What a verification reads of the cache in two round trips (none for what the
    reader has): the first entries, then the generations of their enterprises."""
    keys = cache_keys(dests, identity)
    reader.fetch(keys)
    scopes = set().union(*(reader.scopes_of(key) for key in keys))
    reader.fetch((), scopes)


class _Repository:
    """What one verification reads of the certificate repository, read once: an SHAKEN
    and an RCD PASSporT usually name the same x5u. Every header may name another one, so
    all foreign fetches of one verification share one STIR_X5U_TIMEOUT_SECONDS."""

    def __init__(self, reader: Reader | None = None):
        self.reader = reader or Reader()
        self.chains: dict[str, list] = {}
        self._anchors: list | None = None
        self.deadline: float | None = None  # set by the first fetch

    def chain(self, url: str) -> list:
        if url not in self.chains:
            if self.deadline is None:
                self.deadline = time.monotonic() + settings.STIR_X5U_TIMEOUT_SECONDS
            self.chains[url] = _certificate_for(url, self.reader, self.deadline)
        return self.chains[url]

    def anchors(self) -> list:
        if self._anchors is None:
            self._anchors = _anchors(self.reader)
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
        anchors = tuple(repository.anchors())
        policies = tuple(settings.STIR_ACCEPTED_CERTIFICATE_POLICIES)
        window = _valid_between(tuple(chain), anchors, policies)
        if window is None or not window[0] <= now <= window[1]:
            # Verified at the call's time, for the refusal's reason.
            certificates.verify_chain(
                leaf, intermediates=chain[1:], anchors=anchors, at=now, policies=policies
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
    tal = _tn_auth_list(leaf)  # well-formed: the chain validation read it
    if tal is None or not (tal.has_spc or tal.covers(passport.tn(orig))):
        raise _Fail(
            437, "Unsupported Credential: the certificate does not cover the calling number"
        )
    return decoded, leaf


@functools.lru_cache(maxsize=256)
def _valid_between(chain: tuple, anchors: tuple, policies: tuple) -> tuple | None:
    """When a chain validates to these anchors under these policies: time enters the
    validation only through the certificates' validity, so a chain that validates at
    one time within all their validity periods validates throughout them. A pure
    function of the certificates (immutable), remembered per process; None when it
    does not validate (or the periods do not overlap)."""
    start = max(c.not_valid_before_utc for c in (*chain, *anchors))
    end = min(c.not_valid_after_utc for c in (*chain, *anchors))
    if start >= end:
        return None
    try:
        certificates.verify_chain(
            chain[0], intermediates=chain[1:], anchors=anchors, at=start + (end - start) / 2,
            policies=policies,
        )  # fmt: skip
    except certificates.CertificateError:
        return None
    return start, end


@functools.lru_cache(maxsize=256)
def _tn_auth_list(leaf) -> certificates.TnAuthList | None:
    """A certificate's TNAuthList: a pure function of the certificate (immutable),
    decoded once per process."""
    return certificates.tn_auth_list_of(leaf)


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
    reader: Reader | None = None,
) -> Verified:
    """Verify a call; ``reader`` holds what the request already read of the cache."""
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
    reader = reader or Reader()
    _prefetch(reader, dests, identity)
    callee = _callee(reader, dests)
    if callee is not None and callee[1] not in client.served_enterprise_ids:
        raise CallAuthError(
            "POL4050", "This network client does not serve the enterprise of %1", dests, status=403
        )
    result = Verified(verstat=passport.VERSTAT_NO_VALIDATION)
    try:
        if not identity:
            raise _Fail(428, "Use Identity Header", passport.VERSTAT_NO_VALIDATION)
        try:
            headers = _identity_headers(identity)
        except passport.PassportError as exc:
            raise _Fail(438, f"Invalid Identity Header: {exc}") from exc
        shaken = [h for h in headers if h.ppt == "shaken"]
        if not shaken:
            raise _Fail(
                438, "Invalid Identity Header: no SHAKEN PASSporT", passport.VERSTAT_NO_VALIDATION
            )
        repository = _Repository(reader)
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
    result.record = records.keep(
        CallRecord(
            enterprise_id=callee[1] if callee else None,
            identity_id=callee[0] if callee else None,
            network_client_id=client.pk,
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
    )
    return result
