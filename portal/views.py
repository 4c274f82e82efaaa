import hmac
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from accounts import selectors as account_selectors
from accounts.models import Role
from kernel import fragments
from telephony import selectors as telephony_selectors

from . import attention
from . import metrics as portal_metrics
from .celery import app as celery_app
from .models import HssCheck, WorkerHeartbeat

# A worker that has not run the 30-second heartbeat for this long is reported stale.
HEARTBEAT_STALE_AFTER = timedelta(minutes=2)


@login_required
def home(request):
    """The landing page for each role: operator staff go to Django admin."""
    if request.user.is_staff:
        return redirect("admin:index")
    enterprise = request.enterprise
    if request.user.role in (Role.ADMIN, Role.HELPDESK):

        def parts() -> fragments.Parts:
            sync_counts = telephony_selectors.sync_counts(enterprise)
            figures = attention.figures(enterprise)
            context = {
                "attention": attention.needs_attention(enterprise, sync_counts, figures["calls"]),
                "figures": figures,
                "user_counts": account_selectors.user_counts(enterprise),
                "pending_invitations": account_selectors.pending_invitations(enterprise).count(),
                "sync_counts": sync_counts,
                "recent_events": account_selectors.audit_events(enterprise)[:8],
                "enterprise": enterprise,
                "operator_name": settings.OPERATOR_NAME,
                "role": request.user.role,
            }
            return fragments.render(
                request, {"body": "portal/includes/home_admin_body.html"}, context
            )

        context = {"shown": fragments.cached(request, "home", parts, shows_devices=True)}
        return render(request, "portal/home_admin.html", context)
    own = {
        "identities": telephony_selectors.identities(enterprise, owner=request.user),
        "grants_given": telephony_selectors.grants_given(request.user).active(),
        "grants_received": telephony_selectors.grants_received(request.user).active(),
    }
    return render(request, "portal/home_employee.html", own)


@never_cache
def healthz(request):
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _check_broker() -> dict:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": conn.transport_cls}


def _check_workers() -> dict:
    last = (
        WorkerHeartbeat.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
    )
    fresh = last is not None and timezone.now() - last < HEARTBEAT_STALE_AFTER
    return {"ok": fresh, "last_heartbeat": last.isoformat() if last else None}


def _check_hss() -> dict:
    """Whether the HSS would take our writes (PyHSS: the Provisioning-Key), so that a
    wrong key shows before the first change instead of failing it. Only what a worker
    last found (at its start and every minute, portal.celery.check_hss): the probe is
    unauthenticated and must answer at once, so it never calls the HSS."""
    check = HssCheck.objects.filter(backend=settings.HSS_BACKEND).first()
    if check is None:
        return {
            "ok": False,
            "backend": settings.HSS_BACKEND,
            "error": "Not checked yet: a worker checks the HSS at start and every minute.",
        }
    return {
        "ok": not check.problem,
        "backend": settings.HSS_BACKEND,
        "checked_at": check.checked_at.isoformat(),
        **({"error": check.problem} if check.problem else {}),
    }


@never_cache
def readyz(request):
    """Readiness: the database and the broker answer. Worker liveness and whether the
    HSS takes our key are reported but do not fail readiness: web processes can serve
    while workers restart, and changes wait in the outbox until the HSS takes them."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - a readiness probe reports, never raises
            checks[name] = {"ok": False, "error": exc.__class__.__name__}
    try:
        checks["workers"] = _check_workers()
    except Exception as exc:  # noqa: BLE001
        checks["workers"] = {"ok": False, "error": exc.__class__.__name__}
    try:
        checks["hss"] = _check_hss()
    except Exception as exc:  # noqa: BLE001
        checks["hss"] = {"ok": False, "error": exc.__class__.__name__}
    # Neither workers nor the HSS fail readiness: changes wait in the outbox meanwhile.
    ready = checks["database"]["ok"] and checks["broker"]["ok"]
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def error_403(request, exception=None):
    return render(request, "errors/403.html", status=403)


def error_404(request, exception=None):
    return render(request, "errors/404.html", status=404)


def error_500(request):
    return render(request, "errors/500.html", status=500)


@never_cache
def metrics(request):
    """Prometheus metrics. With METRICS_TOKEN set, only for ``Authorization: Bearer
    <METRICS_TOKEN>``; without one, only in development."""
    if settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode()):
            return HttpResponse("authorization required\n", status=401, content_type="text/plain")
    elif not settings.DEBUG:
        raise Http404
    return HttpResponse(portal_metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
