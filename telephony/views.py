"""Pages for employees and their identities, numbers and lines, sharing grants,
offboarding, devices and call authentication. Each view parses input, calls one service
or selector, and renders."""

import hashlib
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.audit import Actor
from accounts.decorators import (
    ADMIN,
    ADMIN_OR_HELPDESK,
    ANY_MEMBER,
    enterprise_role_required,
)
from accounts.models import Role, User
from accounts.views import account_actions
from kernel import fragments
from kernel.errors import RuleViolation
from kernel.forms import filter_criteria, suggest_from, suggestions_answer
from kernel.http import is_htmx, safe_next_url
from kernel.pages import call_service, flash_form_errors
from kernel.pagination import paginate
from kernel.tenancy import get_for_enterprise_or_404
from telephony import selectors
from telephony.bulk import actions as bulk_actions
from telephony.callauth import credentials, signing
from telephony.identities import onboarding, services
from telephony.inventory import numbers
from telephony.registrations import signout
from telephony.registrations.device_settings import registration_update_settings

from .forms import (
    DeviceFilterForm,
    DeviceSettingsForm,
    EmployeeFilterForm,
    GrantForm,
    IdentityEditForm,
    IdentityFilterForm,
    IdentityForm,
    LineFilterForm,
    OnboardForm,
    RelocateForm,
)
from .models import (
    CallerName,
    Grant,
    Identity,
    OffboardingReceipt,
    Registration,
    SigningCredential,
)


def _run(request, form, service, *, success=None, **kwargs):
    """Call ``service`` with the request's actor; a RuleViolation lands on the form."""
    actor = Actor.from_request(request)
    return call_service(request, lambda: service(actor=actor, **kwargs), success=success, form=form)


# --- Employees ------------------------------------------------------------------------


@enterprise_role_required(ADMIN_OR_HELPDESK)
def employee_list(request):
    filters = EmployeeFilterForm(request.GET or None)

    def parts() -> fragments.Parts:
        people = selectors.employees(request.enterprise, **filter_criteria(filters))
        return fragments.render(
            request,
            {"filters": "includes/filters.html", "table": "telephony/includes/employee_table.html"},
            {"filters": filters, "page": paginate(request, people)},
        )

    context = {
        "shown": fragments.cached(request, "employees", parts),
        "bulk_actions": bulk_actions.actions_for(bulk_actions.EMPLOYEE_ACTIONS, request.user.role),
    }
    return render(request, "telephony/employee_list.html", context)


@enterprise_role_required(ADMIN)
def employee_onboard(request):
    """Onboard a joiner. An email that is already a member's asks first: onboarding would
    give that person another number and leave the typed name and role unused."""
    contract = request.enterprise.contract
    form = OnboardForm(request.POST or None, enterprise=request.enterprise)
    existing = None
    if request.method == "POST" and form.is_valid():
        try:
            existing = onboarding.existing_member(request.enterprise, form.cleaned_data["email"])
        except RuleViolation as exc:
            form.add_rule_violation(exc)
        else:
            if existing is None or request.POST.get("existing") == str(existing.pk):
                existing = None
                identity = _run(
                    request,
                    form,
                    services.employee_onboard,
                    success=_onboarded,
                    enterprise=request.enterprise,
                    **form.cleaned_data,
                )
                if identity is not None:
                    return redirect("telephony:identity_detail", pk=identity.pk)
    context = {
        "form": form,
        "contract": contract,
        "existing": existing,
        "existing_identities": (
            selectors.identities(request.enterprise, owner=existing) if existing else []
        ),
    }
    return render(request, "telephony/employee_onboard.html", context)


def _onboarded(identity: Identity) -> str:
    invited = " An invitation email is on its way." if identity.owner.status == "invited" else ""
    return f"{identity.owner} now has {identity.tn}.{invited}"


@enterprise_role_required(ADMIN_OR_HELPDESK)
def employee_detail(request, pk):
    member = get_for_enterprise_or_404(User, request.enterprise, pk=pk)
    context = {
        "member": member,
        "identities": selectors.identities(request.enterprise, owner=member, status="all"),
        "grants_given": selectors.grants_given(member),
        "grants_received": selectors.grants_received(member),
        "receipts": selectors.receipts(request.enterprise).filter(user=member),
        "registrations": selectors.registrations_of(member)[:20],
        "account_actions": account_actions(request.user, member),
        "reactivation_deadline": member.deactivated_at
        and account_services.reactivation_deadline(member),
        "events": account_selectors.audit_events(
            request.enterprise, target=("accounts.user", str(member.pk))
        )[:20],
    }
    return render(request, "telephony/employee_detail.html", context)


@enterprise_role_required(ADMIN)
def employee_offboard(request, pk):
    """Confirm, then run the kill-switch and show its receipt."""
    member = get_for_enterprise_or_404(User, request.enterprise, pk=pk)
    if request.method == "POST":
        receipt = call_service(
            request,
            lambda: services.employee_offboard(
                actor=Actor.from_request(request),
                user=member,
                revoke_api_tokens=request.POST.get("revoke_api_tokens") == "on",
            ),
        )
        if receipt is None:
            return redirect("telephony:employee_detail", pk=member.pk)
        return redirect("telephony:receipt", pk=receipt.pk)
    context = {
        "member": member,
        "identities": selectors.identities(request.enterprise, owner=member),
        "grants": selectors.grants(request.enterprise).filter(identity__owner=member).count()
        + selectors.grants(request.enterprise).filter(grantee=member).count(),
        "api_tokens": account_selectors.api_tokens_created_by(member),
    }
    return render(request, "telephony/employee_offboard.html", context)


# Reversible deactivation and its undoing: (service, what the message says).
LEAVER_ACTIONS = {
    "deactivate": (services.employee_deactivate, "Deactivated"),
    "reactivate": (services.employee_reactivate, "Reactivated"),
}


@enterprise_role_required(ADMIN)
@require_POST
def employee_leaver_action(request, pk, action):
    """Deactivate or reactivate, then show the receipt."""
    member = get_for_enterprise_or_404(User, request.enterprise, pk=pk)
    service, done = LEAVER_ACTIONS[action]
    receipt = call_service(
        request,
        lambda: service(actor=Actor.from_request(request), user=member),
        success=f"{done}: {member}.",
    )
    if receipt is None:
        return redirect("telephony:employee_detail", pk=member.pk)
    return redirect("telephony:receipt", pk=receipt.pk)


@enterprise_role_required(ADMIN_OR_HELPDESK)
def receipt_detail(request, pk):
    receipt = get_for_enterprise_or_404(OffboardingReceipt, request.enterprise, pk=pk)
    steps = selectors.receipt_steps(receipt)
    context = {
        "receipt": receipt,
        "steps": steps,
        "in_progress": any(s["outcome"] in ("requested", "in progress") for s in steps),
        "api_tokens": account_selectors.api_tokens_created_by(receipt.user),
    }
    template = (
        "telephony/includes/receipt_steps.html" if is_htmx(request) else "telephony/receipt.html"
    )
    return render(request, template, context)


@enterprise_role_required(ADMIN)
@require_POST
def receipt_revoke_api_tokens(request, pk):
    """ "Revoke these too": the API tokens the leaver created, which offboarding kept."""
    receipt = get_for_enterprise_or_404(OffboardingReceipt, request.enterprise, pk=pk)
    call_service(
        request,
        lambda: account_services.api_tokens_revoke_created_by(
            actor=Actor.from_request(request), user=receipt.user
        ),
        success=lambda revoked: f"Revoked {len(revoked)} API token{pluralize(len(revoked))}.",
    )
    return redirect("telephony:receipt", pk=receipt.pk)


# --- Identities -----------------------------------------------------------------------


@enterprise_role_required(ADMIN_OR_HELPDESK)
def identity_list(request):
    filters = IdentityFilterForm(request.GET or None)
    found = selectors.identities(request.enterprise, **filter_criteria(filters))
    context = {
        "filters": filters,
        "page": paginate(request, found),
        "counts": selectors.sync_counts(request.enterprise),
        "bulk_actions": bulk_actions.actions_for(bulk_actions.IDENTITY_ACTIONS, request.user.role),
    }
    return render(request, "telephony/identity_list.html", context)


@enterprise_role_required(ADMIN)
def identity_create(request, owner_pk):
    owner = get_for_enterprise_or_404(User, request.enterprise, pk=owner_pk)
    form = IdentityForm(request.POST or None, enterprise=request.enterprise)
    if request.method == "POST" and form.is_valid():
        identity = _run(
            request,
            form,
            services.identity_create,
            success=lambda made: f"{made.tn} created for {owner}.",
            owner=owner,
            **form.cleaned_data,
        )
        if identity is not None:
            return redirect("telephony:identity_detail", pk=identity.pk)
    return render(request, "telephony/identity_form.html", {"form": form, "owner": owner})


def _identity_for(request, pk) -> Identity:
    """An identity of the request's enterprise; employees reach only their own."""
    identity = get_for_enterprise_or_404(
        selectors.identities(request.enterprise, status="all"), request.enterprise, pk=pk
    )
    if request.user.role == Role.EMPLOYEE and identity.owner_id != request.user.pk:
        raise PermissionDenied
    return identity


@enterprise_role_required(ANY_MEMBER)
def identity_detail(request, pk):
    identity = _identity_for(request, pk)
    context = {
        "identity": identity,
        "sync": identity.sync,
        "call_panel": signing.call_panel(identity),
        "recent_calls": selectors.call_records(request.enterprise, identity=identity)[:10],
        "history": selectors.sync_history(identity)[:20],
        "grants": selectors.grants(request.enterprise, active="all").filter(identity=identity),
        "events": account_selectors.audit_events(
            request.enterprise, target=("telephony.identity", str(identity.pk))
        )[:20],
        "can_manage": request.user.role == Role.ADMIN,
        "softphone": _lab_softphone(identity),
    }
    if context["can_manage"] and identity.status == Identity.Status.ACTIVE:
        context["share_form"] = _share_form(identity)
    return render(request, "telephony/identity_detail.html", context)


def _share_form(identity: Identity, data=None) -> GrantForm:
    """The sharing form an admin fills in on the owner's behalf: this identity only."""
    form = GrantForm(
        data,
        identities=Identity.objects.filter(pk=identity.pk),
        colleagues=selectors.colleagues(identity.owner),
        initial={"identity": identity.pk},
    )
    form.fields["identity"].widget = forms.HiddenInput()
    suggest_from(
        form, lambda name: reverse("telephony:identity_share_suggestions", args=[identity.pk, name])
    )
    return form


@enterprise_role_required(ADMIN)
@require_GET
def identity_share_suggestions(request, pk, field):
    """What the identity page's sharing form suggests for what is typed (its colleague
    picker): the form's own candidates, while it offers the form."""
    identity = _identity_for(request, pk)
    if identity.status != Identity.Status.ACTIVE:
        raise Http404  # the page offers no sharing form
    return suggestions_answer(_share_form(identity), field, request.GET.get("q", ""))


@enterprise_role_required(ADMIN)
@require_POST
def identity_share(request, pk):
    """An admin shares an identity on its owner's behalf (the owner is told)."""
    identity = _identity_for(request, pk)
    form = _share_form(identity, request.POST)
    if form.is_valid():
        _run(
            request,
            form,
            services.grant_create,
            success=f"Shared on {identity.owner}'s behalf; they have been told.",
            **form.cleaned_data,
        )
    flash_form_errors(request, form)
    return redirect("telephony:identity_detail", pk=identity.pk)


def _lab_softphone(identity) -> dict | None:
    """What a softphone needs to register a SIM identity in the lab (make lab): its AoR,
    IMPI, the lab S-CSCF and the lab SIM's digest password. Only while the lab runs, in
    DEBUG (the settings refuse LAB_MODE otherwise): the password is the SIM's ki."""
    if not (settings.LAB_MODE and settings.DEBUG) or identity.line is None or not identity.tn:
        return None
    return {
        "aor": f"sip:{identity.tn}@{identity.domain}",
        "impi": identity.impi,
        "registrar": settings.LAB_REGISTRAR,
        "password": numbers.lab_ki(identity.line.imsi),
    }


@enterprise_role_required(ANY_MEMBER)
def identity_sync_panel(request, pk):
    """The sync state alone, polled by the identity page while a push is under way."""
    identity = _identity_for(request, pk)
    context = {
        "identity": identity,
        "sync": identity.sync,
        "can_manage": request.user.role == Role.ADMIN,
    }
    return render(request, "telephony/includes/sync_panel.html", context)


@enterprise_role_required(ADMIN)
def identity_edit(request, pk):
    identity = _identity_for(request, pk)
    initial = {
        "services": identity.services,
        "display_name": identity.display_name,
        "alias": identity.alias,
    }
    form = IdentityEditForm(
        request.POST or None, initial=initial, contract=request.enterprise.contract
    )
    if (
        request.method == "POST"
        and form.is_valid()
        and _run(
            request,
            form,
            services.identity_update,
            success="Saved; the HSS follows in a moment.",
            identity=identity,
            **form.cleaned_data,
        )
    ):
        return redirect("telephony:identity_detail", pk=identity.pk)
    return render(request, "telephony/identity_edit.html", {"form": form, "identity": identity})


@enterprise_role_required(ADMIN)
def identity_relocate(request, pk):
    identity = _identity_for(request, pk)
    form = RelocateForm(request.POST or None, enterprise=request.enterprise)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        moved = _run(
            request,
            form,
            services.identity_relocate,
            success=lambda moved: f"Moved to {moved.tn}; the old number is in quarantine.",
            identity=identity,
            country=data["country"],
            tn=data["tn"],
            imsi=data["imsi"] or None,
        )
        if moved is not None:
            return redirect("telephony:identity_detail", pk=identity.pk)
    return render(request, "telephony/identity_relocate.html", {"form": form, "identity": identity})


IDENTITY_ACTIONS = {
    "suspend": (services.identity_suspend, "Suspended"),
    "resume": (services.identity_resume, "Resumed"),
    "remove": (services.identity_remove, "Removed; the number is in quarantine"),
    "retry-sync": (services.sync_retry, "Sync queued again"),
}


@enterprise_role_required(ADMIN)
@require_POST
def identity_action(request, pk, action):
    if action not in IDENTITY_ACTIONS:
        raise PermissionDenied
    identity = _identity_for(request, pk)
    service, done = IDENTITY_ACTIONS[action]
    call_service(
        request,
        lambda: service(actor=Actor.from_request(request), identity=identity),
        success=f"{done}.",
    )
    return redirect("telephony:identity_detail", pk=identity.pk)


# --- Numbers and lines ----------------------------------------------------------------


@enterprise_role_required(ADMIN_OR_HELPDESK)
def inventory(request):
    filters = LineFilterForm(request.GET or None)
    context = {
        "blocks": selectors.number_blocks(request.enterprise),
        "filters": filters,
        "page": paginate(
            request, selectors.sim_lines(request.enterprise, **filter_criteria(filters))
        ),
    }
    return render(request, "telephony/inventory.html", context)


# --- Grants ---------------------------------------------------------------------------


def _grant_form(request, data=None) -> GrantForm:
    """The Sharing page's form: an admin shares anyone's identity, on the owner's behalf,
    with any active person; others share their own with a colleague."""
    user = request.user
    on_behalf = user.role == Role.ADMIN
    identities = selectors.shareable_identities(request.enterprise)
    if on_behalf:
        people = selectors.active_people(request.enterprise)
    else:
        identities, people = identities.filter(owner=user), selectors.colleagues(user)
    form = GrantForm(data, identities=identities, colleagues=people, on_behalf=on_behalf)
    suggest_from(form, lambda name: reverse("telephony:grant_suggestions", args=[name]))
    return form


def _can_share(form: GrantForm) -> bool:
    return form.identities.exists()


@enterprise_role_required(ANY_MEMBER)
def grant_list(request):
    """Admins and helpdesk see every grant; employees those they gave or received, and
    share their own identities here. An admin shares anyone's, on the owner's behalf."""
    user = request.user
    form = _grant_form(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        owner = form.cleaned_data["identity"].owner
        success = (
            "Shared. Their devices can use it in a moment."
            if owner == user
            else f"Shared on {owner}'s behalf; they have been told."
        )
        if _run(request, form, services.grant_create, success=success, **form.cleaned_data):
            return redirect("telephony:grants")
    context = {"form": form, "can_share": _can_share(form), "on_behalf": user.role == Role.ADMIN}
    if user.role in ADMIN_OR_HELPDESK:
        active = request.GET.get("active", "yes")
        context.update(
            active=active,
            page=paginate(request, selectors.grants(request.enterprise, active=active)),
        )
    context.update(given=selectors.grants_given(user), received=selectors.grants_received(user))
    return render(request, "telephony/grant_list.html", context)


@enterprise_role_required(ANY_MEMBER)
@require_GET
def grant_suggestions(request, field):
    """What a picker of the Sharing page suggests for what is typed: the form's own
    candidates for whoever asks, and only to whom the page offers the form."""
    form = _grant_form(request)
    if not _can_share(form):
        raise Http404
    return suggestions_answer(form, field, request.GET.get("q", ""))


@enterprise_role_required(ANY_MEMBER)
@require_POST
def grant_revoke(request, pk):
    grant = get_for_enterprise_or_404(
        Grant.objects.select_related("identity", "enterprise"), request.enterprise, pk=pk
    )
    user = request.user
    if user.role == Role.EMPLOYEE and user.pk not in (grant.identity.owner_id, grant.grantee_id):
        raise PermissionDenied
    call_service(
        request,
        lambda: services.grant_revoke(actor=Actor.from_request(request), grant=grant),
        success="Sharing stopped.",
    )
    return redirect(safe_next_url(request, reverse("telephony:grants")))


# --- Devices ----------------------------------------------------------------------------


@enterprise_role_required(ADMIN_OR_HELPDESK)
def device_dashboard(request):
    """Every employee's active UEs; the table refreshes itself every few seconds."""
    filters = DeviceFilterForm(request.GET or None)

    def parts() -> fragments.Parts:
        people = selectors.device_dashboard(request.enterprise, **filter_criteria(filters))
        return fragments.render(
            request,
            {"filters": "includes/filters.html", "table": "telephony/includes/device_table.html"},
            {"filters": filters, "page": paginate(request, people)},
        )

    shown = fragments.cached(request, "devices", parts, shows_devices=True)
    if is_htmx(request):
        return HttpResponse(shown["table"])
    context = {
        "shown": shown,
        "bulk_actions": bulk_actions.actions_for(bulk_actions.DEVICE_ACTIONS, request.user.role),
    }
    return render(request, "telephony/device_dashboard.html", context)


def _device_forms(request, registrations):
    return {
        reg.pk: DeviceSettingsForm(registration=reg)
        for reg in registrations
        if reg.is_active and reg.identity.status != Identity.Status.REMOVED
    }


def _devices_version(registrations) -> str:
    """A short digest of what the *My devices* page shows, so that its poll swaps the list
    only when something changed (and leaves a settings form being edited alone)."""
    shown = [
        (r.pk, r.state, r.end_reason, r.impus, r.last_refreshed_at.isoformat(),
         r.expires_at.isoformat(), r.enabled_services, r.default_impu, r.do_not_disturb,
         r.identity.status,
         [(n.pk, n.state, n.attempts, n.delivery_code) for n in r.recent_notices])
        for r in registrations
    ]  # fmt: skip
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


@enterprise_role_required(ANY_MEMBER)
def my_devices(request):
    """The employee's devices. The list polls every few seconds, as the admins' device
    dashboard does; an unchanged list answers 204, which htmx leaves in place."""
    registrations = list(selectors.registrations_of(request.user)[:30])
    version = _devices_version(registrations)
    if is_htmx(request) and request.GET.get("seen") == version:
        return HttpResponse(status=204)
    context = {
        "registrations": registrations,
        "forms": _device_forms(request, registrations),
        "active_count": sum(1 for r in registrations if r.is_active),
        "version": version,
    }
    if is_htmx(request):
        return render(request, "telephony/includes/my_device_list.html", context)
    return render(request, "telephony/my_devices.html", context)


@enterprise_role_required(ANY_MEMBER)
@require_POST
def device_settings(request, pk):
    registration = get_for_enterprise_or_404(
        Registration.objects.select_related("identity__enterprise", "identity__number"),
        request.enterprise,
        pk=pk,
        user=request.user,
    )
    form = DeviceSettingsForm(request.POST, registration=registration)
    if form.is_valid():
        call_service(
            request,
            lambda: registration_update_settings(
                actor=Actor.from_request(request), registration=registration, **form.cleaned_data
            ),
            success=f"Saved for {registration.label}.",
        )
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect("telephony:my_devices")


@enterprise_role_required(ANY_MEMBER)
@require_POST
def device_sign_out(request, pk):
    registration = get_for_enterprise_or_404(Registration, request.enterprise, pk=pk)
    call_service(
        request,
        lambda: signout.registration_sign_out(
            actor=Actor.from_request(request), registration=registration
        ),
        success=f"Sign-out of {registration.label} requested.",
    )
    return redirect(safe_next_url(request, reverse("telephony:my_devices")))


@enterprise_role_required(ANY_MEMBER)
@require_POST
def devices_sign_out_all(request, user_pk):
    person = get_for_enterprise_or_404(User, request.enterprise, pk=user_pk)
    if request.user.role == Role.EMPLOYEE and person.pk != request.user.pk:
        raise PermissionDenied
    count = signout.registrations_sign_out_all(actor=Actor.from_request(request), user=person)
    messages.success(request, f"Sign-out requested for {count} device{'s' if count != 1 else ''}.")
    return redirect(safe_next_url(request, reverse("telephony:my_devices")))


# --- Certificate repository ---------------------------------------------------------------


def certificate(request, slug):
    """The public certificate chain an x5u points at (no sign-in: callees' networks fetch it)."""
    credential = get_object_or_404(SigningCredential, slug=slug)
    response = HttpResponse(
        credentials.certificate_chain_pem(credential), content_type="application/x-pem-file"
    )
    response["Cache-Control"] = "public, max-age=3600"
    return response


# --- Call authentication --------------------------------------------------------------------


@enterprise_role_required(ADMIN_OR_HELPDESK)
def call_authentication(request):
    """The enterprise's call authentication: its business name, attestation levels over
    time, and every signed or verified call."""
    from django.utils import timezone

    direction = request.GET.get("direction", "")
    context = {
        "brand": CallerName.objects.filter(enterprise=request.enterprise).first(),
        "summary": selectors.call_summary(request.enterprise, timezone.now() - timedelta(hours=24)),
        "bars": chart_bars(selectors.attestation_series(request.enterprise)),
        "direction": direction,
        "page": paginate(request, selectors.call_records(request.enterprise, direction=direction)),
    }
    return render(request, "telephony/call_authentication.html", context)


CHART_HEIGHT = 160
CHART_BASE = 170


def chart_bars(series: list[dict]) -> list[dict]:
    """Stacked-bar geometry for the SVG chart (drawn server-side: no script, strict CSP)."""
    peak = max((p["total"] for p in series), default=0) or 1
    bars = []
    for index, point in enumerate(series):
        top, rects = CHART_BASE, []
        for level in ("C", "B", "A"):
            height = round(CHART_HEIGHT * point[level] / peak)
            top -= height
            if height:
                rects.append(
                    {"level": level.lower(), "y": top, "height": height, "count": point[level]}
                )
        bars.append(
            {
                "x": index * 50,
                "rects": rects,
                "day": point["day"],
                "counts": [point["A"], point["B"], point["C"]],
                "total": point["total"],
                "top": top,
            }
        )
    return bars
