from celery import shared_task
from django.core import mail

from . import services

# Emails retry while the mail server is unreachable.
EMAIL = {
    "autoretry_for": (OSError,),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 8,
    "ignore_result": True,
}


@shared_task(**EMAIL)
def deliver_invitation(invitation_id: int) -> None:
    """Email an invitation link; retried while the mail server is unreachable."""
    services.invitation_deliver(invitation_id=invitation_id)


@shared_task(ignore_result=True)
def deliver_invitations(invitation_ids: list[int]) -> None:
    """Email a batch of invitations over one session with the mail server (a session per
    email would cost a connection and a TLS handshake each). One the mail server does not
    take goes on in a retrying task of its own, so the rest of the batch is not held up
    or sent twice; if the server cannot be reached at all, each does."""
    session = mail.get_connection()
    try:
        session.open()
    except OSError:  # unreachable: each goes on in its retrying task
        for invitation_id in invitation_ids:
            deliver_invitation.delay(invitation_id)
        return
    try:
        refused = services.invitations_deliver(invitation_ids=invitation_ids, connection=session)
    finally:
        session.close()
    for invitation_id in refused:
        deliver_invitation.delay(invitation_id)


@shared_task(ignore_result=True)
def sweep_invitations() -> int:
    return services.invitations_sweep()


@shared_task(**EMAIL)
def email_notification(notification_id: int) -> None:
    services.notification_email(notification_id=notification_id)
