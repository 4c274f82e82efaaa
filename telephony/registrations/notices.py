"""Device policy on new devices: the "already logged on" notices (to the person and to
both UEs' clients), the contract's device limit, queueing network notices (``notify``
delivers them) and the sweep of lost tasks."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import ServiceContract, User
from kernel import enqueue
from telephony.models import (
    NetworkNotice,
    Registration,
    RegistrationEvent,
)
from telephony.registrations import notify
from telephony.registrations.records import Batch
from telephony.registrations.signout import SIGN_OUT_NOTICE, request_sign_out

Kind = RegistrationEvent.Kind
State = Registration.State
# A UE that drops and is back within this long is flapping, not a new registration.

# --- New devices: the notice and the device limit ------------------------------------------


def after_new_devices(batch: Batch) -> None:
    """For each new UE of a user who is active elsewhere: tell the user (portal and
    email) and both UEs' clients; over the contract's limit, apply its policy."""
    by_user = defaultdict(list)
    for reg in batch.new_devices:
        by_user[reg.user_id].append(reg)
    if not by_user:
        return
    active = defaultdict(list)
    for reg in (
        Registration.objects.active(batch.now)
        .filter(user_id__in=by_user)
        .select_related("identity__number")
    ):
        active[reg.user_id].append(reg)
    users = User.objects.select_related("enterprise__contract").in_bulk(list(by_user))
    notices: list[NetworkNotice] = []
    for user_id, new_regs in by_user.items():
        user = users[user_id]
        # Devices new in the same report join one after the other: the first finds only
        # those active before, so two phones reported together make one notice each.
        waiting = {r.device_key for r in new_regs}
        for new in new_regs:
            waiting.discard(new.device_key)
            others = [
                r
                for r in active[user_id]
                if r.device_key != new.device_key and r.device_key not in waiting
            ]
            if others:
                notices += _notify_already_logged_on(user, new, others)
        _enforce_device_limit(user, active[user_id], batch.now)
    # The batch's notices go out together: a few tasks, not one per notice.
    NetworkNotice.objects.bulk_create(notices)
    queue_notices([notice.pk for notice in notices])


def _notify_already_logged_on(
    user: User, new: Registration, others: list[Registration]
) -> list[NetworkNotice]:
    """Tell the person, and return the notices to both UEs' clients (unsaved)."""
    elsewhere = ", ".join(sorted({o.label for o in others}))
    account_services.notify(
        user=user,
        kind="already_logged_on",
        title=f"Your {new.label} is now also signed in",
        body=f"You are also signed in on: {elsewhere}. Each device keeps its own settings. "
        f"If you did not sign in on {new.label}, sign it out on the My devices page and tell "
        "your administrator.",
        link="/my/devices/",
        email=True,
    )
    return [
        NetworkNotice(
            enterprise_id=new.enterprise_id,
            registration=new,
            kind="already_logged_on",
            message=_fit(f"You are also signed in on: {elsewhere}.", NOTICE_MESSAGE_MAX),
        )
    ] + [
        NetworkNotice(
            enterprise_id=other.enterprise_id,
            registration=other,
            kind="logged_on_elsewhere",
            message=_fit(f"Your {new.label} is now also signed in.", NOTICE_MESSAGE_MAX),
        )
        for other in others
    ]


NOTICE_MESSAGE_MAX = NetworkNotice.MESSAGE_MAX


def _fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: a person on many devices gets the list
    shortened, not a report refused for a notice too long for its column."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _enforce_device_limit(user: User, active: list[Registration], now) -> None:
    enterprise = user.enterprise
    if enterprise is None:  # operator staff: no identity, so never a device
        return
    contract: ServiceContract = enterprise.contract
    devices: dict[str, list[Registration]] = {}
    for reg in sorted(active, key=lambda r: r.first_registered_at):
        devices.setdefault(reg.device_key, []).append(reg)
    excess = len(devices) - contract.max_ues_per_user
    if excess <= 0:
        return
    policy = contract.ue_limit_policy
    signed_out = []
    if policy == ServiceContract.UeLimitPolicy.SIGN_OUT_OLDEST:
        for key in list(devices)[:excess]:
            for reg in devices[key]:
                request_sign_out(Actor.system(), reg, reason="over the device limit")
            signed_out.append(devices[key][0].label)
    account_services.notify_admins(
        enterprise=enterprise,
        kind="device_limit",
        title=f"{user.full_name} is on {len(devices)} devices; the contract allows {contract.max_ues_per_user}",
        body=(
            f"Signed out the oldest: {', '.join(signed_out)}."
            if signed_out
            else "The contract's policy is to notify only."
        ),
        link=f"/devices/?q={user.email}",
    )


# --- Network notices ----------------------------------------------------------------------


# Notices per task when one transaction queues many (a registration storm's batch): a
# task's dispatch, claim and read cost the notify worker more CPU than the send of one
# notice through the builtin or webhook backend, and a batch shares them. Small enough
# that a storm's notices still spread over the notify workers, and that a batch through
# a slow backend mostly ends within its lease (the rest is handed back and goes again).
NOTICE_BATCH = 50


def queue_notices(notice_ids: list[int]) -> None:
    """Queue the sending of these notices once the caller's transaction commits."""
    ids = list(notice_ids)
    if ids:
        # A function, not a partial: Django names a robust hook that failed by its __qualname__.
        transaction.on_commit(lambda: send_in_batches(ids), robust=True)


def send_in_batches(notice_ids: list[int]) -> None:
    """Hand these notices to the notify workers now: one alone as a task of its own,
    several in batches of NOTICE_BATCH."""
    ids = list(dict.fromkeys(notice_ids))
    if len(ids) == 1:
        enqueue.task("telephony.tasks.send_network_notice").delay(ids[0])
        return
    send_network_notices = enqueue.task("telephony.tasks.send_network_notices")
    for start in range(0, len(ids), NOTICE_BATCH):
        send_network_notices.delay(ids[start : start + NOTICE_BATCH])


def follow_up(results: dict[int, notify.Attempt]) -> None:
    """Queue what follows a batch's attempts: a notice to try again goes on as a
    ``send_network_notice`` chain of its own, from its first retry (the backoff and the
    cap on retries that task applies, as if the notice had had a task of its own); those
    the batch left no time for go out again in batches."""
    send_network_notice = enqueue.task("telephony.tasks.send_network_notice")
    handed_back = []
    for notice_id, attempt in results.items():
        if attempt.outcome == "retry":
            countdown = get_exponential_backoff_interval(
                factor=send_network_notice.retry_backoff,
                retries=0,
                maximum=send_network_notice.retry_backoff_max,
                full_jitter=send_network_notice.retry_jitter,
            )
            send_network_notice.apply_async((notice_id,), countdown=countdown, retries=1)
        elif attempt.outcome == "handed_back":
            handed_back.append(notice_id)
    send_in_batches(handed_back)


def sweep(grace: timedelta | None = None) -> int:
    """Queue again sign-outs and notices whose task was lost. Periodic."""
    cutoff = timezone.now() - (grace or timedelta(seconds=settings.SYNC_SWEEP_AFTER_SECONDS))
    sign_outs = list(
        Registration.objects.filter(
            state=State.SIGN_OUT_REQUESTED, sign_out_sent_at=None, sign_out_requested_at__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    # A notice tried and failed waits for its task's retry, due within the backoff's cap:
    # only one untouched for longer than that (or never tried) has lost its task. A
    # sign-out's notice goes with its sign-out, before it (signout.deregister).
    retry_due = cutoff - timedelta(seconds=settings.SYNC_BACKOFF_CAP_SECONDS)
    notices = list(
        NetworkNotice.objects.filter(
            Q(attempted_at__isnull=True) | Q(attempted_at__lt=retry_due),
            Q(claimed_until__isnull=True) | Q(claimed_until__lte=timezone.now()),
            state=NetworkNotice.State.PENDING,
            created_at__lt=cutoff,
        )
        .exclude(kind=SIGN_OUT_NOTICE)
        .values_list("pk", flat=True)[:1000]
    )
    deregister_ue = enqueue.task("telephony.tasks.deregister_ue")

    for pk in sign_outs:
        deregister_ue.delay(pk)
    send_in_batches(notices)
    return len(sign_outs) + len(notices)
