"""Signing a device out: who may, the request (shown until the network confirms), and
sending it to the network: first a notice to the device itself, then the de-registration.

A client learns of its sign-out from the notice. TS 24.229 (5.4.1.5) has the S-CSCF
NOTIFY the UE's own subscription to its `reg` event; a client that has none (baresip,
most softphones) would never know. The notice goes before the network drops the binding,
while the network still routes to the device; once it is dropped no later try reaches it,
so it gets one try, and what the device answered stays on the notice."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.audit import Actor
from accounts.models import Role, User
from kernel import enqueue, jsonrpc
from kernel.errors import NotAllowed, RuleViolation
from telephony.identities.hss import HssPermanentError, HssTransientError
from telephony.identities.hss import backend as hss_backend
from telephony.models import (
    NetworkNotice,
    Registration,
    RegistrationEvent,
)
from telephony.registrations import notify, sipmessage
from telephony.registrations.records import add_event, end_now

Kind = RegistrationEvent.Kind
State = Registration.State
SIGN_OUT_NOTICE = "signed_out"  # the notice's kind

# --- Sign-out ---------------------------------------------------------------------------


def request_sign_out(actor: Actor, reg: Registration, reason: str = "") -> None:
    reg.state = State.SIGN_OUT_REQUESTED
    reg.sign_out_requested_at = timezone.now()
    reg.sign_out_sent_at = None
    reg.sign_out_error = ""
    reg.save(update_fields=["state", "sign_out_requested_at", "sign_out_sent_at", "sign_out_error"])
    add_event(reg, Kind.SIGN_OUT_REQUESTED, f"by {actor.label}" + (f": {reason}" if reason else ""))
    audit.record(
        actor=actor,
        action="registration.sign_out_requested",
        enterprise=reg.enterprise,
        target=reg,
        changes=audit.changed(state=(State.ACTIVE, State.SIGN_OUT_REQUESTED)),
    )
    NetworkNotice.objects.create(
        enterprise_id=reg.enterprise_id,
        registration=reg,
        kind=SIGN_OUT_NOTICE,
        message=_signed_out_message(actor, reg, reason),
    )
    transaction.on_commit(lambda: queue_deregistration(reg.pk), robust=True)


def _signed_out_message(actor: Actor, reg: Registration, reason: str) -> str:
    """What the device is told: by whom, as its owner sees it, or why the portal did. Nobody
    is named: whoever found a lost phone reads it too."""
    user = actor.user
    if user is not None and user.pk == reg.user_id:
        return "You signed this device out in the portal."
    if user is not None:
        return "This device was signed out in the portal by your administrator."
    return "This device was signed out in the portal" + (f": {reason}." if reason else ".")


# Who may sign out someone else's device: the enterprise's admins, and its helpdesk too,
# on purpose: signing out a lost or stolen phone is a classic helpdesk task, and it is the
# one change helpdesk makes besides resending invitations (README, Roles).
SIGN_OUT_OTHERS = (Role.ADMIN, Role.HELPDESK)


def _ensure_may_sign_out(actor: Actor, reg: Registration) -> None:
    actor.ensure_acts_for(reg.enterprise)
    user = actor.user
    if user is not None and user.pk != reg.user_id and user.role not in SIGN_OUT_OTHERS:
        raise NotAllowed("Employees sign out their own devices only.")


@transaction.atomic
def registration_sign_out(*, actor: Actor, registration: Registration) -> Registration:
    """Ask the network to deregister one UE; it shows "sign-out requested" until the
    network confirms."""
    reg = (
        Registration.objects.select_for_update()
        .select_related("enterprise")
        .get(pk=registration.pk)
    )
    _ensure_may_sign_out(actor, reg)
    if not reg.is_active or reg.state != State.ACTIVE:
        raise RuleViolation(
            f"{reg.label} is not registered now ({reg.get_state_display().lower()})."
        )
    request_sign_out(actor, reg)
    return reg


@transaction.atomic
def registrations_sign_out_all(*, actor: Actor, user: User) -> int:
    """Sign out every active UE of a person."""
    actor.ensure_acts_for(user.enterprise)
    regs = list(
        Registration.objects.active()
        .filter(user=user, state=State.ACTIVE)
        .select_for_update(of=("self",))
        .select_related("enterprise")
    )
    for reg in regs:
        _ensure_may_sign_out(actor, reg)
        request_sign_out(actor, reg)
    return len(regs)


def deregister(registration_id: int) -> str:
    """Send a requested sign-out to the network (what the task runs). Idempotent: sent
    once; transient faults raise for the task to retry."""
    reg = (
        Registration.objects.select_related("identity__number", "identity__line", "enterprise")
        .filter(pk=registration_id)
        .first()
    )
    if reg is None or reg.sign_out_sent_at:
        return "skipped"
    untold = NetworkNotice.objects.filter(
        registration=reg, kind=SIGN_OUT_NOTICE, state=NetworkNotice.State.PENDING
    )
    if reg.state != State.SIGN_OUT_REQUESTED:
        # It ended before its sign-out went out (its own de-REGISTER, its expiry).
        untold.update(state=NetworkNotice.State.FAILED, last_error="The device had already left.")
        return "skipped"
    for notice_id in untold.values_list("pk", flat=True):
        notify.send_notice(notice_id, last_try=True)
    try:
        confirmed = _send_deregistration(reg)
    except (HssPermanentError, jsonrpc.RpcRefused) as exc:
        Registration.objects.filter(pk=reg.pk).update(sign_out_error=str(exc)[:500])
        return "failed"
    except (HssTransientError, jsonrpc.RpcUnavailable) as exc:
        Registration.objects.filter(pk=reg.pk).update(sign_out_error=f"retrying: {exc}"[:500])
        raise
    with transaction.atomic():
        reg = Registration.objects.select_for_update().get(pk=reg.pk)
        reg.sign_out_sent_at = timezone.now()
        reg.sign_out_error = ""
        reg.save(update_fields=["sign_out_sent_at", "sign_out_error"])
        if confirmed:
            end_now(reg, Registration.EndReason.SIGNED_OUT)
    return "sent"


def _send_deregistration(reg: Registration) -> bool:
    """Have the network end ``reg``'s binding, the way SIGN_OUT_VIA names; whether that
    is the confirmation (else the report that follows confirms it): the S-CSCF's answer
    to the de-REGISTER is, the HSS backend says whether its answer is."""
    if settings.SIGN_OUT_VIA == "scscf":
        _deregister_contact_at_scscf(reg)
        return True
    identity = reg.identity
    line = identity.line  # None without a query when the identity has no line
    hss = hss_backend()
    hss.deregister(
        identity.tn or identity.former_tn,
        imsi=line.imsi if line is not None else "",
        contact=reg.contact_uri,
    )
    return hss.confirms_deregistration


def deregister_identity_at_scscf(identity, reason: str) -> int:
    """The HSS no longer holds the identity (suspended, removed): with SIGN_OUT_VIA=scscf
    the S-CSCF drops its UEs too, as its administrative de-registration. An HSS's RTR
    would do it, but cannot be relied on (PyHSS 2.0's never reaches the S-CSCF:
    docs/architecture.md, "The lab IMS core"). Plugged into the sync engine before the
    registrations end, whose IMPUs it reads; how many IMPUs it queued."""
    if settings.SIGN_OUT_VIA != "scscf":
        return 0
    impus = sorted(
        {
            impu
            for impus in Registration.objects.filter(identity=identity)
            .exclude(state=State.ENDED)
            .values_list("impus", flat=True)
            for impu in impus
        }
    )
    if impus:
        task = enqueue.task("telephony.tasks.deregister_at_scscf")
        transaction.on_commit(lambda: task.delay(impus), robust=True)
    return len(impus)


def deregister_impus_at_scscf(impus: list[str]) -> None:
    """Kamailio's S-CSCF de-registers each IMPU (``regscscf.dereg_impu``: its contacts are
    deleted and its watchers, the SIP edge among them, notified). An IMPU it does not hold
    is no error. A task runs it; an unreachable S-CSCF raises RpcUnavailable."""
    for impu in impus:
        jsonrpc.call(
            settings.SIP_SCSCF_RPC_URL,
            "regscscf.dereg_impu",
            [impu],
            timeout=settings.HSS_TIMEOUT_SECONDS,
        )


def _deregister_contact_at_scscf(reg: Registration) -> None:
    """The S-CSCF de-registers ``reg``'s one contact: over its JSON-RPC (Kamailio's
    ``tm.t_uac_wait_block``) it sends itself, at SIP_SCSCF_URI, the de-REGISTER the UE
    would send, and the portal waits for its answer. Kamailio 5.6's IMS registrar has no
    command that drops one contact (``regscscf.dereg_impu`` drops them all); the S-CSCF
    takes such a REGISTER from itself only (lab/scscf.cfg, route[SIGN_OUT]). A 2xx: the
    binding is gone (or was already). 408 and 5xx are tried again; another answer is final."""
    impu = _sip_impu(reg)
    contact, scscf = reg.contact_uri, settings.SIP_SCSCF_URI
    if not (sipmessage.is_plain_sip_uri(contact) and sipmessage.is_plain_sip_uri(scscf)):
        raise jsonrpc.RpcRefused(f"{reg.label}: no usable contact or SIP_SCSCF_URI", 400)
    # No tag in From: the S-CSCF's tm adds one; it also makes the Call-ID and CSeq.
    headers = f"From: <{impu}>\r\nTo: <{impu}>\r\nContact: <{contact}>;expires=0\r\nExpires: 0\r\n"
    domain = impu.split("@", 1)[1]
    result = jsonrpc.call(
        settings.SIP_SCSCF_RPC_URL,
        "tm.t_uac_wait_block",
        ["REGISTER", f"sip:{domain}", scscf, "", headers, ""],
        timeout=settings.HSS_TIMEOUT_SECONDS,
    )
    answer = result if isinstance(result, dict) else {}
    code = answer.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    text = answer.get("text")
    reason = " ".join(text.split())[:100] if isinstance(text, str) else ""
    said = f"{code} {reason}".strip() if code else "no SIP status"
    if 200 <= code < 300:
        return
    if code == 408 or not 300 <= code < 500:
        raise jsonrpc.RpcUnavailable(f"the S-CSCF's de-REGISTER got {said}")
    raise jsonrpc.RpcRefused(f"the S-CSCF refused the de-REGISTER ({said})", code)


def _sip_impu(reg: Registration) -> str:
    """The registration's first SIP IMPU without its parameters: sip:user@domain, the
    address of record the S-CSCF holds the contact under."""
    sip = next((impu for impu in reg.impus if impu.lower().startswith("sip:")), "")
    bare = sip.split(";", 1)[0]
    if "@" not in bare or not sipmessage.is_plain_sip_uri(bare):
        raise jsonrpc.RpcRefused(f"{reg.label} has no SIP IMPU to sign out at the S-CSCF", 400)
    return bare


def queue_deregistration(registration_id: int) -> None:
    deregister_ue = enqueue.task("telephony.tasks.deregister_ue")

    deregister_ue.delay(registration_id)
