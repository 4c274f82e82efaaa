"""The network notification backend: messages towards the clients on UEs (for
example "you are also signed in on another device"). ``builtin`` keeps the notice as the
record of what was sent; ``webhook`` posts it to the operator's notification service;
``sip`` asks the portal's SIP edge (Kamailio, over its JSON-RPC) to send it to the UE as
a SIP MESSAGE. Django never speaks SIP itself.

Each backend answers with what the other side said (an ``Answer``), which the notice
keeps (``send_notices``: each notice's attempt and answer its own, several notices to a
task), so the pages can tell "delivered to the phone" from "the phone did not answer"."""

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast

import requests
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from kernel import jsonrpc
from kernel.observability import logs_failed_calls
from telephony.models import NetworkNotice, Registration

log = logging.getLogger(__name__)
Channel = NetworkNotice.Channel
T = TypeVar("T")
REASON_MAX = cast(int, NetworkNotice._meta.get_field("delivery_reason").max_length)


@dataclass(frozen=True)
class Answer:
    """The answer to one attempt: the channel it went through, the status code and
    reason phrase the other side gave (none when nothing answered)."""

    channel: str = Channel.RECORD
    code: int | None = None
    reason: str = ""


class NoticeError(Exception):
    def __init__(self, message: str, *, transient: bool, answer: Answer | None = None):
        super().__init__(message)
        self.transient = transient
        self.answer = answer or Answer()


def _printable(text: str, limit: int = REASON_MAX) -> str:
    """A peer's reason phrase as one line of printable text: it is shown on pages."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:limit]


class BuiltinNotifier:
    """Sends nothing anywhere: the NetworkNotice row is the record of the notice."""

    def send(self, notice: NetworkNotice) -> Answer:
        return Answer()


class WebhookNotifier:
    """POSTs the notice as JSON, signed with HMAC-SHA256 over the body in the
    ``X-Portal-Signature: sha256=<hex>`` header so the receiver can trust it."""

    @logs_failed_calls("notice webhook")
    def send(self, notice: NetworkNotice) -> Answer:
        reg = notice.registration
        body = json.dumps(
            {
                "id": notice.pk,
                "kind": notice.kind,
                "message": notice.message,
                "to": {
                    "aor": reg.impus[0] if reg.impus else "",
                    "contact": reg.contact_uri,
                    "gruu": reg.pub_gruu,
                    "instance": reg.instance_id,
                },
                "enterprise": reg.enterprise.slug,
                "created_at": notice.created_at.isoformat(),
            },
            sort_keys=True,
        ).encode()
        secret = settings.NETWORK_NOTIFY_WEBHOOK_SECRET.encode()
        signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
        try:
            response = requests.post(
                settings.NETWORK_NOTIFY_WEBHOOK_URL,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Portal-Signature": f"sha256={signature}",
                },
                timeout=settings.HSS_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise NoticeError(
                f"webhook unreachable: {exc.__class__.__name__}",
                transient=True,
                answer=Answer(Channel.WEBHOOK),
            ) from exc
        answer = Answer(Channel.WEBHOOK, response.status_code, _printable(response.reason or ""))
        if response.status_code >= 500 or response.status_code == 429:
            raise NoticeError(
                f"webhook answered {response.status_code}", transient=True, answer=answer
            )
        if response.status_code >= 300:
            raise NoticeError(
                f"webhook refused the notice ({response.status_code})",
                transient=False,
                answer=answer,
            )
        return answer


# --- SIP MESSAGE through the edge ---------------------------------------------------------

# What may stand between the angle brackets of a header we write: a SIP, SIPS or TEL URI
# without whitespace, quotes or brackets. The URIs come from the network's reports, so
# a CR or LF here would let a report add headers to our request.
_URI = re.compile(r"(?:sips?|tel):[^\s<>\"]{1,500}", re.ASCII)


def next_hop(registration: Registration) -> str:
    """The SIP URI of the S-CSCF that serves ``registration``'s user, which a MESSAGE to
    the bare contact is routed through; "" sends straight to the contact.

    The one place the route's next hop comes from: today one setting for every user;
    per-AoR S-CSCF records (learned from third-party registration) replace it here."""
    return settings.SIP_EDGE_SCSCF_URI


def sip_route(registration: Registration) -> tuple[str, str]:
    """(request URI, next hop) of a MESSAGE to this one UE: its public GRUU when the
    network told us one (it reaches exactly this device, through the S-CSCF's own routing),
    else the contact URI through the user's S-CSCF."""
    if registration.pub_gruu:
        return registration.pub_gruu, ""
    return registration.contact_uri, next_hop(registration)


def _uri(value: str, what: str) -> str:
    if not _URI.fullmatch(value):
        raise NoticeError(f"no usable {what} for a SIP MESSAGE: {value[:80]!r}", transient=False)
    return value


class SipEdgeNotifier:
    """Asks the SIP edge to send the notice as a SIP MESSAGE (plain UTF-8 text) to the UE
    and waits for the final answer (Kamailio's ``tm.t_uac_wait_block``).

    2xx: delivered. 408 (no answer within the edge's ``fr_timer``) and 5xx: transient,
    tried again. Other 3xx–6xx: the UE or the network refused it, final. An error object
    from the edge: 5xx codes (it could not send, e.g. the host does not resolve) are
    transient, 4xx (it refused the command as given) final."""

    method = "tm.t_uac_wait_block"

    @logs_failed_calls("notice SIP edge")
    def send(self, notice: NetworkNotice) -> Answer:
        reg = notice.registration
        request_uri, hop = sip_route(reg)
        request_uri = _uri(request_uri, "request URI")
        to = _uri(reg.impus[0], "IMPU") if reg.impus else request_uri
        sender = _uri(settings.SIP_NOTICE_FROM, "SIP_NOTICE_FROM")
        if hop:
            hop = _uri(hop, "next hop")
        # No tag in From: the edge adds its own (two tags make a broken request).
        headers = f"From: <{sender}>\r\nTo: <{to}>\r\nContent-Type: text/plain;charset=utf-8\r\n"
        params = ["MESSAGE", request_uri, hop, "", headers, notice.message]
        try:
            # The edge answers when the SIP transaction ends: the timeout is above its own.
            status, raw = jsonrpc.post(
                settings.SIP_EDGE_RPC_URL,
                self.method,
                params,
                timeout=settings.SIP_EDGE_RPC_TIMEOUT_SECONDS,
                call_id=notice.pk,
            )
        except jsonrpc.RpcError as exc:
            raise NoticeError(
                f"SIP edge {exc}", transient=True, answer=Answer(Channel.SIP)
            ) from exc
        return self._answer(status, raw)

    def _answer(self, http_status: int, raw: bytes) -> Answer:
        """What the edge's answer says of the MESSAGE (it is network input)."""
        try:
            result = jsonrpc.parse_answer(http_status, raw)
        except jsonrpc.RpcError as exc:
            raise NoticeError(
                f"SIP edge {exc}",
                transient=isinstance(exc, jsonrpc.RpcUnavailable),
                answer=Answer(Channel.SIP),
            ) from exc
        result = result if isinstance(result, dict) else {}
        code = _of_type(result.get("code"), int, 0)
        if not 100 <= code <= 699:
            raise NoticeError(
                "SIP edge answered without a SIP status", transient=True, answer=Answer(Channel.SIP)
            )
        answer = Answer(Channel.SIP, code, _printable(_of_type(result.get("text"), str, "")))
        if 200 <= code < 300:
            return answer
        if code == 408 or 500 <= code < 600:
            raise NoticeError(
                f"not delivered ({code} {answer.reason})", transient=True, answer=answer
            )
        raise NoticeError(f"refused ({code} {answer.reason})", transient=False, answer=answer)


def _of_type(value: object, kind: type[T], default: T) -> T:
    """``value`` if it is a ``kind`` (not a bool posing as an int), else ``default``."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def notifier() -> BuiltinNotifier | WebhookNotifier | SipEdgeNotifier:
    backend = settings.NETWORK_NOTIFY_BACKEND
    if backend == "webhook":
        return WebhookNotifier()
    if backend == "sip":
        return SipEdgeNotifier()
    return BuiltinNotifier()


# --- Delivering notices ------------------------------------------------------------------

# Longer than any notification backend waits for its answer (the SIP edge: its
# transaction and a margin; a webhook: HSS_TIMEOUT_SECONDS).
NOTICE_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Attempt:
    """What became of one notice in a send: ``sent``; ``failed`` (final); ``retry`` (a
    transient fault, ``error``: to be tried again); ``skipped`` (not pending, or another
    task's send holds it); ``handed_back`` (not tried: its batch ran out of time)."""

    outcome: str
    error: NoticeError | None = None


def send_notice(notice_id: int, *, last_try: bool = False) -> str:
    """Deliver one notice (``send_notices``); a transient fault raises NoticeError for
    the task to try again."""
    attempt = send_notices([notice_id], last_try=last_try)[notice_id]
    if attempt.error is not None:
        raise attempt.error
    return attempt.outcome


def send_notices(notice_ids, *, last_try: bool = False) -> dict[int, Attempt]:
    """Deliver these notices through the network notification backend (a task runs
    this), one after the other, and keep the answer to each attempt on its notice. They
    are first claimed together, each with its own lease (one another task's send holds
    is skipped), and read at once. A transient fault leaves its notice pending, to be
    tried again up to SYNC_MAX_ATTEMPTS (outcome ``retry``); with ``last_try`` each
    attempt is final whatever it gets (a sign-out's notice: once the network dropped the
    device, no later try reaches it). When half the lease is gone (a slow backend) the
    notices not tried yet are handed back, as they are when a send raises anything but
    NoticeError (the exception goes on; that notice keeps its lease, for the sweep)."""
    ids = list(dict.fromkeys(notice_ids))
    results = {pk: Attempt("skipped") for pk in ids}
    if not ids:
        return results
    now = timezone.now()
    until = now + NOTICE_LEASE
    claimed = _claim(ids, now, until)
    if not claimed:
        return results
    notices = NetworkNotice.objects.select_related(
        "registration__identity", "registration__enterprise"
    ).in_bulk(claimed)
    backend = notifier()
    untried = [pk for pk in ids if pk in notices]
    started = time.monotonic()
    try:
        while untried:
            if len(untried) < len(notices) and time.monotonic() - started > _HALF_LEASE:
                break
            notice_id = untried.pop(0)  # in flight: should it raise, it keeps its lease
            results[notice_id] = _attempt(backend, notices[notice_id], last_try)
    finally:
        if untried:
            _hand_back(untried, until)
            results.update(dict.fromkeys(untried, Attempt("handed_back")))
    return results


_HALF_LEASE = NOTICE_LEASE.total_seconds() / 2


def _claim(ids: list[int], now, until) -> list[int]:
    """Take the lease on those of these notices that are pending and free, in one
    statement; their ids. Raw for RETURNING; the times adapted as the ORM writes them,
    so that SQLite compares them with the leases the ORM wrote."""
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE telephony_networknotice SET claimed_until = %s, attempted_at = %s "  # noqa: S608 - fixed fragments; the values are parameters
            f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND state = %s "
            "AND (claimed_until IS NULL OR claimed_until <= %s) RETURNING id",
            [adapt(until), adapt(now), *ids, NetworkNotice.State.PENDING, adapt(now)],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _hand_back(ids: list[int], until) -> None:
    """Give up the leases of notices not tried, so that their next send need not wait
    for them to expire; if the database does not answer, they expire."""
    try:
        NetworkNotice.objects.filter(pk__in=ids, claimed_until=until).update(claimed_until=None)
    except DatabaseError:
        log.warning("database away: the leases on notices %s will expire", ids)


def _attempt(backend, notice: NetworkNotice, last_try: bool) -> Attempt:
    """One attempt of a claimed notice, its answer recorded on it."""
    attempts = notice.attempts + 1
    try:
        answer = backend.send(notice)
    except NoticeError as exc:
        final = last_try or not exc.transient or attempts >= settings.SYNC_MAX_ATTEMPTS
        NetworkNotice.objects.filter(pk=notice.pk).update(
            attempts=attempts,
            last_error=str(exc)[:500],
            claimed_until=None,
            **_answered(exc.answer),
            **({"state": NetworkNotice.State.FAILED} if final else {}),
        )
        return Attempt("failed") if final else Attempt("retry", exc)
    NetworkNotice.objects.filter(pk=notice.pk).update(
        state=NetworkNotice.State.SENT,
        sent_at=timezone.now(),
        attempts=attempts,
        last_error="",
        claimed_until=None,
        **_answered(answer),
    )
    return Attempt("sent")


def _answered(answer: Answer) -> dict:
    """The notice's fields for the answer to its last attempt."""
    return {
        "channel": answer.channel,
        "delivery_code": answer.code,
        "delivery_reason": answer.reason,
        "answered_at": timezone.now() if answer.code is not None else None,
    }
