"""Pages for the CSV import of employees with identities, the CSV export, and actions
on many employees, identities or devices at once."""

from django import forms
from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import Actor
from accounts.decorators import ADMIN, ADMIN_OR_HELPDESK, enterprise_role_required
from accounts.models import User
from kernel import csvfile
from kernel.errors import RuleViolation
from kernel.forms import PortalForm, choice_field, model_choice_field
from kernel.http import safe_next_url
from kernel.pages import call_service, flash_form_errors
from kernel.tenancy import get_for_enterprise_or_404
from telephony.bulk import actions
from telephony.bulk import services as bulk
from telephony.models import Identity, ImportJob, Registration
from telephony.registrations import export as device_export

RECENT_JOBS = 20


class EmployeeBulkForm(PortalForm):
    """The employees ticked on the list, and what to do with them (bulk.actions)."""

    action = forms.ChoiceField()
    people = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        error_messages={
            "required": "Tick the people first.",
            "invalid_choice": "One of the people ticked is not an employee here any more.",
        },
    )

    def __init__(self, *args, enterprise, actions: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        choice_field(self, "action").choices = [("export", "Export CSV"), *actions.items()]
        model_choice_field(self, "people").queryset = User.objects.for_enterprise(enterprise)

    def clean_people(self):
        people = self.cleaned_data["people"]
        if len(people) > actions.MAX_SELECTED:
            raise forms.ValidationError(
                f"Tick at most {actions.MAX_SELECTED} people at once; for more, use an import."
            )
        return people


class ImportForm(PortalForm):
    file = forms.FileField(
        label="CSV file",
        help_text=f"UTF-8 text, at most {bulk.MAX_BYTES // (1024 * 1024)} MB and "
        f"{bulk.MAX_ROWS:,} rows.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    send_invitations = forms.BooleanField(
        label="Email each new employee an invitation to set a password",
        required=False,
        initial=True,
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            self.csv_text = csvfile.read_upload(upload, max_bytes=bulk.MAX_BYTES)
        except RuleViolation as exc:
            raise ValidationError(exc.message) from exc
        return upload


def _jobs():
    # The file itself can be megabytes: pages that show a job never load it.
    return ImportJob.objects.defer("csv_text").select_related("created_by")


@enterprise_role_required(ADMIN)
def import_upload(request):
    form = ImportForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    if request.method == "POST" and form.is_valid():
        job = call_service(
            request,
            lambda: bulk.import_preview(
                actor=Actor.from_request(request),
                enterprise=request.enterprise,
                filename=form.cleaned_data["file"].name,
                csv_text=form.csv_text,
                send_invitations=form.cleaned_data["send_invitations"],
            ),
            form=form,
        )
        if job is not None:
            return redirect("telephony:import_preview", pk=job.pk)
    context = {
        "form": form,
        "columns": bulk.COLUMN_HELP,
        "ignored_columns": bulk.EXPORT_ONLY_COLUMNS,
        "allowed_services": request.enterprise.contract.allowed_services,
        "jobs": _jobs()
        .for_enterprise(request.enterprise)
        .defer("csv_text", "problems")[:RECENT_JOBS],
    }
    return render(request, "telephony/bulk/upload.html", context)


@enterprise_role_required(ADMIN)
def import_preview(request, pk):
    job = get_for_enterprise_or_404(
        ImportJob.objects.select_related("created_by"), request.enterprise, pk=pk
    )
    context = {
        "job": job,
        "problem_count": bulk.problem_count(job),
        "valid_count": job.total_rows - len(job.problem_rows),
        "plan": bulk.import_plan(job) if job.state == ImportJob.State.PREVIEWED else [],
        "plan_limit": bulk.PLAN_ROWS,
    }
    return render(request, "telephony/bulk/preview.html", context)


@enterprise_role_required(ADMIN)
@require_POST
def import_start(request, pk):
    job = get_for_enterprise_or_404(_jobs(), request.enterprise, pk=pk)
    leave_out = request.POST.get("leave_out_problems") == "yes"
    started = call_service(
        request,
        lambda: bulk.import_start(
            actor=Actor.from_request(request), job=job, leave_out_problems=leave_out
        ),
    )
    if started:
        return redirect("telephony:import_job", pk=job.pk)
    return redirect("telephony:import_preview", pk=job.pk)


@enterprise_role_required(ADMIN)
@require_GET
def import_problem_rows(request, pk):
    """The rows of an import's file that were not imported, to correct and upload again."""
    job = get_for_enterprise_or_404(ImportJob.objects.all(), request.enterprise, pk=pk)
    stem = job.filename.removesuffix(".csv")[:100] or "import"
    filename = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    return csvfile.download(bulk.problem_rows_csv(job), f"{filename}-to-correct.csv")


@enterprise_role_required(ADMIN)
def import_job(request, pk):
    job = get_for_enterprise_or_404(_jobs(), request.enterprise, pk=pk)
    if job.state == ImportJob.State.PREVIEWED:
        return redirect("telephony:import_preview", pk=job.pk)
    return render(request, "telephony/bulk/job.html", _progress_context(job))


@enterprise_role_required(ADMIN)
def import_progress(request, pk):
    """The progress panel alone, polled by htmx while the job is queued or running."""
    job = get_for_enterprise_or_404(_jobs(), request.enterprise, pk=pk)
    return render(request, "telephony/bulk/_progress.html", _progress_context(job))


def _progress_context(job: ImportJob) -> dict:
    # The bar moves a chunk at a time: each chunk is one transaction.
    return {"job": job, "chunk_size": bulk.CHUNK_SIZE}


@enterprise_role_required(ADMIN_OR_HELPDESK)
@require_GET
def export(request):
    return _export_response(request)


def _export_response(request, people=None) -> StreamingHttpResponse:
    """The employees (all, or the ``people`` ticked) as CSV; taking it is audited."""
    enterprise = request.enterprise
    bulk.export_recorded(
        actor=Actor.from_request(request),
        enterprise=enterprise,
        selected=None if people is None else len(people),
    )
    filename = f"{enterprise.slug}-employees-{timezone.localdate():%Y-%m-%d}.csv"
    return csvfile.download(bulk.export_rows(enterprise, people=people), filename)


@enterprise_role_required(ADMIN_OR_HELPDESK)
@require_POST
def employees_bulk(request):
    """The ticked employees: their CSV at once; any other action is confirmed first, then
    run for each, and every outcome shown."""
    available = actions.actions_for(actions.EMPLOYEE_ACTIONS, request.user.role)
    form = EmployeeBulkForm(
        request.POST,
        enterprise=request.enterprise,
        actions={name: action.label for name, action in available.items()},
    )
    if form.is_valid() and form.cleaned_data["action"] == "export":
        return _export_response(request, list(form.cleaned_data["people"]))
    return _bulk_page(
        request,
        form,
        available,
        ticked=lambda: form.cleaned_data["people"].order_by("full_name", "email"),
        back="telephony:employees",
        template="telephony/employee_bulk.html",
    )


def _bulk_page(request, form, available, *, ticked, back: str, template: str):
    """A bulk action's two steps: the confirmation naming each one ticked, then, once
    confirmed, each one's own service call and the page of outcomes. A form that is not
    valid goes back to the list, which says why."""
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect(safe_next_url(request, reverse(back)))
    name = form.cleaned_data["action"]
    subjects = list(ticked())
    context = {"action": available[name], "action_name": name, "subjects": subjects}
    if request.POST.get("confirmed") == "yes":
        context["outcomes"] = actions.bulk_act(
            actor=Actor.from_request(request), subjects=subjects, actions=available, action=name
        )
    return render(request, template, context)


class IdentityBulkForm(PortalForm):
    """The identities ticked on the list, and what to do with them (bulk.actions)."""

    action = forms.ChoiceField()
    identities = forms.ModelMultipleChoiceField(
        queryset=Identity.objects.none(),
        error_messages={
            "required": "Tick the identities first.",
            "invalid_choice": "One of the identities ticked is not one of yours any more.",
        },
    )

    def __init__(self, *args, enterprise, choices: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        choice_field(self, "action").choices = list(choices.items())
        model_choice_field(self, "identities").queryset = (
            Identity.objects.for_enterprise(enterprise).live().select_related("number", "owner")
        )

    def clean_identities(self):
        ticked = self.cleaned_data["identities"]
        if len(ticked) > actions.MAX_SELECTED:
            raise forms.ValidationError(f"Tick at most {actions.MAX_SELECTED} identities at once.")
        return ticked


@enterprise_role_required(ADMIN)
@require_POST
def identities_bulk(request):
    """The ticked identities: confirmed first, then the action for each, every outcome
    shown."""
    available = actions.IDENTITY_ACTIONS
    choices = {name: action.label for name, action in available.items()}
    form = IdentityBulkForm(request.POST, enterprise=request.enterprise, choices=choices)
    return _bulk_page(
        request,
        form,
        available,
        ticked=lambda: form.cleaned_data["identities"].order_by("number__e164", "pk"),
        back="telephony:identities",
        template="telephony/identity_bulk.html",
    )


class DeviceBulkForm(PortalForm):
    """The devices ticked on *Devices*, and what to do with them (bulk.actions)."""

    action = forms.ChoiceField()
    devices = forms.ModelMultipleChoiceField(
        queryset=Registration.objects.none(),
        error_messages={
            "required": "Tick the devices first.",
            "invalid_choice": "One of the devices ticked is not one of yours.",
        },
    )

    def __init__(self, *args, enterprise, actions: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        choice_field(self, "action").choices = [("export", "Export CSV"), *actions.items()]
        # Ended ones too: a device that ended since it was ticked is said so in its
        # outcome, and the others still go ahead.
        model_choice_field(self, "devices").queryset = Registration.objects.for_enterprise(
            enterprise
        ).select_related("user", "identity__number")

    def clean_devices(self):
        ticked = self.cleaned_data["devices"]
        if len(ticked) > actions.MAX_SELECTED:
            raise forms.ValidationError(f"Tick at most {actions.MAX_SELECTED} devices at once.")
        return ticked


@enterprise_role_required(ADMIN_OR_HELPDESK)
@require_POST
def devices_bulk(request):
    """The ticked devices: their CSV at once; a sign-out is confirmed first, naming each
    device and its owner, then asked for each, and every outcome shown."""
    available = actions.actions_for(actions.DEVICE_ACTIONS, request.user.role)
    form = DeviceBulkForm(
        request.POST,
        enterprise=request.enterprise,
        actions={name: action.label for name, action in available.items()},
    )

    def ticked():
        return form.cleaned_data["devices"].order_by("user__full_name", "label", "pk")

    if form.is_valid() and form.cleaned_data["action"] == "export":
        enterprise = request.enterprise
        lines = device_export.devices_export(
            actor=Actor.from_request(request), enterprise=enterprise, registrations=list(ticked())
        )
        return csvfile.download(
            lines, f"{enterprise.slug}-devices-{timezone.localdate():%Y-%m-%d}.csv"
        )
    return _bulk_page(
        request,
        form,
        available,
        ticked=ticked,
        back="telephony:devices",
        template="telephony/device_bulk.html",
    )


urlpatterns = [
    path("", import_upload, name="import"),
    path("export.csv", export, name="export"),
    path("<int:pk>/preview/", import_preview, name="import_preview"),
    path("<int:pk>/start/", import_start, name="import_start"),
    path("<int:pk>/to-correct.csv", import_problem_rows, name="import_problem_rows"),
    path("<int:pk>/", import_job, name="import_job"),
    path("<int:pk>/progress/", import_progress, name="import_progress"),
]
