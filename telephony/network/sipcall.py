"""INVITEs at the SIP edge: the edge posts each INVITE as it came (``message/sip``), the
portal's strict parser reads it (sipmessage.parse_invite), and the answer says what the
edge does before it relays the call:

- originating (the edge serves the caller): drop whatever Identity headers the INVITE
  carried and add the ones the STI-AS signed (SHAKEN, and RCD when the portal adds it);
- terminating (the edge serves the callee): the STI-VS verifies the Identity headers;
  ``verstat`` (TS 24.229, ATIS-1000074) goes on each P-Asserted-Identity URI, or on the
  From URI when there is none, with the verified caller name from RCD as the display
  name; a call that fails follows STIR_SIP_VERIFICATION_POLICY (mark it, or reject it
  with the RFC 8224 code).

Signing and verifying are the STI service's own (callauth.signing.sign_call,
callauth.verification.verify_call): the same rules and call records as the ATIS JSON
endpoints. A request they cannot serve leaves the call unsigned or unverified, never
stopped.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings

from accounts.models import NetworkClient
from kernel.generations import Reader
from telephony.callauth import signing, verification
from telephony.callauth.errors import CallAuthError
from telephony.callauth.stir import passport
from telephony.registrations.sipmessage import Invite

log = logging.getLogger(__name__)

# RFC 8224 §6.2.2 and RFC 8224 §13 (403 Stale Date): the reason phrase of each code.
REASONS = {
    403: "Stale Date",
    428: "Use Identity Header",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
}
POLICIES = ("mark", "reject", "reject-unsigned")
_VERSTAT_PARAM = re.compile(r";verstat=[^;?]*", re.IGNORECASE)
# What a display name may not carry onto the wire: line ends and other controls.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def answer_invite(
    *, client: NetworkClient, invite: Invite, request_id: str, reader: Reader | None = None
) -> dict[str, Any]:
    """What the edge does with ``invite`` before relaying it (the module says);
    ``reader`` holds what the request already read of the call path's cache."""
    reader = reader or Reader()
    if invite.originating:
        return _sign(client, invite, request_id, reader)
    return _verify(client, invite, request_id, reader)


def cache_keys(invite: Invite) -> list[str]:
    """What answering ``invite`` reads of the cache first (fetched with the credential's
    client by the view), or nothing for an INVITE that is neither signed nor verified."""
    if not invite.calling or not invite.called:
        return []
    if invite.originating:
        return signing.cache_keys(invite.calling, invite.served_user)
    return verification.cache_keys([invite.called], invite.identity)


def _sign(client: NetworkClient, invite: Invite, request_id: str, reader: Reader) -> dict[str, Any]:
    answer: dict[str, Any] = {"originating": True, "action": "relay", "identity": []}
    if not invite.calling or not invite.called:
        answer["note"] = "not signed: the INVITE names no calling or no called number"
        return answer
    try:
        signed = signing.sign_call(
            client=client,
            orig_tn=invite.calling,
            dest_tns=[invite.called],
            iat=int(time.time()),
            originator_impu=invite.served_user,
            request_id=request_id,
            reader=reader,
        )
    except CallAuthError as exc:
        log.warning("INVITE from %s not signed: %s", invite.calling, exc.text)
        answer["note"] = f"not signed: {exc.text}"
        return answer
    answer["identity"] = signed.identities
    answer["attest"] = signed.attestation
    return answer


def _verify(
    client: NetworkClient, invite: Invite, request_id: str, reader: Reader
) -> dict[str, Any]:
    try:
        verified = verification.verify_call(
            client=client,
            from_tn=invite.calling,
            to_tns=[invite.called] if invite.called else [],
            identity=invite.identity,
            request_id=request_id,
            reader=reader,
        )
    except CallAuthError as exc:
        # The STI-VS cannot take the request (no calling number, a callee this client
        # does not serve): the call is not validated, and says so.
        log.warning("INVITE to %s not verified: %s", invite.called, exc.text)
        verified = verification.Verified(verstat=passport.VERSTAT_NO_VALIDATION)
    answer: dict[str, Any] = {
        "originating": False,
        "action": "relay",
        "verstat": verified.verstat,
        "asserted_identity": [],
        "from_display": "",
        "from_uri": "",
    }
    if verified.attestation:
        answer["attest"] = verified.attestation
    if verified.reason_code:
        answer["note"] = verified.reason_text
    code = _rejection(verified)
    if code is not None:
        return {**answer, "action": "reject", "code": code, "reason": REASONS[code]}
    name = verified.caller_name
    if invite.asserted:
        answer["asserted_identity"] = [
            _name_addr(name or entry.display, _with_verstat(entry.uri, verified.verstat))
            for entry in invite.asserted
        ]
    else:
        answer["from_display"] = _display(name or invite.sender.display)
        answer["from_uri"] = _with_verstat(invite.sender.uri, verified.verstat)
    return answer


def _rejection(verified: verification.Verified) -> int | None:
    """The RFC 8224 code to refuse the call with under the operator's policy, or None."""
    policy = settings.STIR_SIP_VERIFICATION_POLICY
    code = verified.reason_code if verified.reason_code in REASONS else None
    if code is None or policy == "mark":
        return None
    if verified.verstat == passport.VERSTAT_FAILED:
        return code
    return code if policy == "reject-unsigned" else None


def _with_verstat(uri: str, verstat: str) -> str:
    """``uri`` with ``;verstat=`` (ATIS-1000074) set to ``verstat``, replacing any."""
    uri, question, headers = uri.partition("?")
    return f"{_VERSTAT_PARAM.sub('', uri)};verstat={verstat}{question}{headers}"


def _display(name: str) -> str:
    """A display name as a quoted string (RFC 3261 §25.1), "" for none."""
    name = _CONTROL.sub("", name)
    if not name:
        return ""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_addr(name: str, uri: str) -> str:
    display = _display(name)
    return f"{display} <{uri}>" if display else f"<{uri}>"
