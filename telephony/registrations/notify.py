"""The network notification backend: messages towards the clients on UEs (for
example "you are also logged on elsewhere"). ``builtin`` keeps the notice as the
record of what was sent; ``webhook`` posts it to the operator's notification service
(e.g. an application server that sends a SIP MESSAGE to the UE's GRUU)."""

import hashlib
import hmac
import json

import requests
from django.conf import settings

from kernel.observability import logs_failed_calls


class NoticeError(Exception):
    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class BuiltinNotifier:
    """Sends nothing anywhere: the NetworkNotice row is the record of the notice."""

    def send(self, notice) -> None:
        return None


class WebhookNotifier:
    """POSTs the notice as JSON, signed with HMAC-SHA256 over the body in the
    ``X-Portal-Signature: sha256=<hex>`` header so the receiver can trust it."""

    @logs_failed_calls("notice webhook")
    def send(self, notice) -> None:
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
                f"webhook unreachable: {exc.__class__.__name__}", transient=True
            ) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise NoticeError(f"webhook answered {response.status_code}", transient=True)
        if response.status_code >= 300:
            raise NoticeError(
                f"webhook refused the notice ({response.status_code})", transient=False
            )


def notifier():
    return WebhookNotifier() if settings.NETWORK_NOTIFY_BACKEND == "webhook" else BuiltinNotifier()
