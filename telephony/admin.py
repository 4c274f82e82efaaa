"""Django admin for operator staff: the inventory they give enterprises (with CSV
upload), identities, grants, and the HSS sync queue with its failures."""

from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone

from accounts.admin import (
    AddedByServiceMixin,
    AuditedModelAdmin,
    EnterpriseAdmin,
    ReadOnlyAdmin,
    run_action,
)
from accounts.audit import Actor
from accounts.models import Enterprise
from kernel import csvfile
from kernel.errors import RuleViolation
from telephony.callauth import credentials
from telephony.callauth.errors import CallAuthError
from telephony.identities import services
from telephony.inventory import services as inventory

from .models import (
    CallerName,
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    ImportJob,
    NetworkNotice,
    NumberBlock,
    OffboardingReceipt,
    Registration,
    SigningCredential,
    SimLine,
    SimulatedHssOutage,
    SimulatedSubscription,
    SyncAttempt,
)


class InventoryUploadForm(forms.Form):
    enterprise = forms.ModelChoiceField(queryset=Enterprise.objects.all())
    file = forms.FileField(label="CSV file")


if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker only
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class InventoryUploadMixin(_AdminBase):
    """A "Load from CSV" page on the changelist; all rows load or none do."""

    upload_kind = ""  # "blocks" or "lines"
    upload_columns = ""
    change_list_template = "admin/telephony/inventory_changelist.html"

    def get_urls(self):
        name = f"{self.model._meta.app_label}_{self.model._meta.model_name}_upload"
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name=name),
            *super().get_urls(),
        ]

    def upload_view(self, request):
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = InventoryUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                count = inventory.inventory_import(
                    actor=Actor.from_request(request),
                    enterprise=form.cleaned_data["enterprise"],
                    kind=self.upload_kind,
                    csv_text=csvfile.read_upload(upload, max_bytes=inventory.INVENTORY_MAX_BYTES),
                )
            except RuleViolation as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Loaded {count} row(s).", messages.SUCCESS)
                return redirect(
                    reverse(
                        f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_changelist"
                    )
                )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "title": f"Load {self.model._meta.verbose_name_plural} from CSV",
            "columns": self.upload_columns,
        }
        return render(request, "admin/telephony/inventory_upload.html", context)


class NumberBlockForm(forms.ModelForm):
    class Meta:
        model = NumberBlock
        fields = ["enterprise", "first_number", "last_number", "note"]


@admin.action(description="Issue a delegate certificate for their number blocks (RFC 9060)")
def issue_delegate_certificate(modeladmin, request, queryset):
    run_action(modeladmin, request, queryset, credentials.delegate_certificate_issue, "enterprise")


def _per_enterprise(rows) -> Coalesce:
    """How many of ``rows`` (filtered to OuterRef("pk")) the enterprise has: a subquery,
    so that the list's query count stays fixed."""
    counted = rows.order_by().values("enterprise").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("sync", "Identities failed to sync"), ("quota", "Identity quota 90 % used")]

    def queryset(self, request, queryset):
        if self.value() == "sync":
            return queryset.filter(sync_failed__gt=0)
        if self.value() == "quota":
            return queryset.filter(identities_live__gte=F("contract__identity_quota") * 0.9)
        return queryset


class EnterpriseTelephonyAdmin(EnterpriseAdmin):
    """The enterprises as operator staff watch them: beside accounts' columns, each one's
    identities against its quota, failed syncs and devices online now (what the
    enterprise's own admins see first on their home), and the delegate certificate
    action. accounts sits below telephony and does not know these, so they are added here."""

    list_display = [
        *EnterpriseAdmin.list_display[:-1],
        "identities",
        "sync_failed",
        "devices_online",
        "created_at",
    ]
    list_filter = [*EnterpriseAdmin.list_filter, NeedsAttentionFilter]
    actions = [*EnterpriseAdmin.actions, issue_delegate_certificate]

    def get_queryset(self, request):
        mine = {"enterprise": OuterRef("pk")}
        return (
            super()
            .get_queryset(request)
            .select_related("contract")
            .annotate(
                identities_live=_per_enterprise(Identity.objects.live().filter(**mine)),
                sync_failed=_per_enterprise(
                    IdentitySync.objects.filter(state=IdentitySync.State.FAILED, **mine)
                ),
                devices_online=_per_enterprise(Registration.objects.active().filter(**mine)),
            )
        )

    @admin.display(description="identities (of quota)", ordering="identities_live")
    def identities(self, obj):
        contract = getattr(obj, "contract", None)
        return (
            f"{obj.identities_live} of {contract.identity_quota}"
            if contract
            else obj.identities_live
        )

    @admin.display(description="failed syncs", ordering="sync_failed")
    def sync_failed(self, obj):
        return obj.sync_failed

    @admin.display(description="devices online", ordering="devices_online")
    def devices_online(self, obj):
        return obj.devices_online


admin.site.unregister(Enterprise)
admin.site.register(Enterprise, EnterpriseTelephonyAdmin)


@admin.register(NumberBlock)
class NumberBlockAdmin(AddedByServiceMixin, InventoryUploadMixin, AuditedModelAdmin):
    upload_kind = "blocks"
    upload_columns = "first_number,last_number,note (note optional), numbers in E.164"
    form = NumberBlockForm
    list_display = ["__str__", "enterprise", "country", "size", "note", "created_at"]
    list_filter = ["country", "enterprise"]
    search_fields = ["first_number", "last_number", "note", "enterprise__name"]
    list_select_related = ["enterprise"]

    def get_readonly_fields(self, request, obj=None):
        return ["enterprise", "first_number", "last_number", "country"] if obj else []

    def create(self, request, form):  # once created, only the note can change
        return inventory.number_block_create(
            actor=Actor.from_request(request),
            enterprise=form.cleaned_data["enterprise"],
            first_number=form.cleaned_data["first_number"],
            last_number=form.cleaned_data["last_number"],
            note=form.cleaned_data["note"],
        )


@admin.register(SimLine)
class SimLineAdmin(AddedByServiceMixin, InventoryUploadMixin, AuditedModelAdmin):
    upload_kind = "lines"
    upload_columns = "imsi,iccid"
    list_display = ["imsi", "iccid", "enterprise", "identity"]
    list_filter = ["enterprise"]
    search_fields = ["imsi", "iccid"]
    list_select_related = ["enterprise", "identity__number"]
    fields = ["enterprise", "imsi", "iccid"]

    def get_readonly_fields(self, request, obj=None):
        return ["enterprise", "imsi", "iccid"] if obj else []

    def create(self, request, form):  # once created, every field is read-only
        return inventory.sim_line_create(
            actor=Actor.from_request(request),
            enterprise=form.cleaned_data["enterprise"],
            imsi=form.cleaned_data["imsi"],
            iccid=form.cleaned_data["iccid"],
        )


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "owner", "enterprise", "status", "sync_state", "updated_at"]
    list_filter = ["status", "sync__state", "enterprise"]
    search_fields = ["number__e164", "former_tn", "display_name", "owner__email", "alias"]
    list_select_related = ["owner", "enterprise", "number", "sync"]
    readonly_fields = ["impus", "impi"]

    @admin.display(description="HSS sync", ordering="sync__state")
    def sync_state(self, obj):
        return obj.sync.get_state_display()


@admin.register(IdentitySync)
class IdentitySyncAdmin(ReadOnlyAdmin):
    """The whole sync queue across enterprises: what is pending, what failed and why."""

    list_display = [
        "identity",
        "enterprise",
        "state",
        "attempts",
        "last_error",
        "requested_at",
        "next_attempt_at",
        "synced_at",
    ]
    list_filter = ["state", "enterprise"]
    search_fields = ["identity__number__e164", "identity__former_tn", "last_error"]
    list_select_related = ["identity__number", "enterprise"]
    ordering = ["-requested_at"]
    actions = ["retry"]

    @admin.action(description="Retry the selected failed syncs")
    def retry(self, request, queryset):
        done = 0
        for row in queryset.filter(state=IdentitySync.State.FAILED).select_related("identity"):
            services.sync_retry(actor=Actor.from_request(request), identity=row.identity)
            done += 1
        self.message_user(request, f"{done} sync(s) queued again.")


@admin.register(SyncAttempt)
class SyncAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "identity",
        "enterprise",
        "version",
        "outcome",
        "detail",
        "duration_ms",
    ]
    list_filter = ["outcome", "enterprise"]
    search_fields = ["identity__number__e164", "detail", "operation_id"]
    list_select_related = ["identity__number", "enterprise"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = [
        "identity",
        "grantee",
        "enterprise",
        "rights",
        "valid_until",
        "revoked_at",
        "end_reason",
    ]
    list_filter = ["end_reason", "enterprise"]
    search_fields = ["identity__number__e164", "grantee__email"]
    list_select_related = ["identity__number", "grantee", "enterprise"]


@admin.register(OffboardingReceipt)
class OffboardingReceiptAdmin(ReadOnlyAdmin):
    list_display = ["user", "enterprise", "actor_label", "created_at"]
    list_filter = ["enterprise"]
    search_fields = ["user__email"]
    list_select_related = ["user", "enterprise"]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = [
        "filename",
        "enterprise",
        "state",
        "total_rows",
        "created_count",
        "failed_count",
        "created_at",
    ]
    list_filter = ["state", "enterprise"]
    exclude = ["csv_text"]
    list_select_related = ["enterprise"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("csv_text")


@admin.register(SimulatedSubscription)
class SimulatedSubscriptionAdmin(admin.ModelAdmin):
    """The builtin HSS's own store. Editing a row here is how a demo makes drift that
    the periodic reconcile finds and repairs."""

    list_display = ["msisdn", "imsi", "display_name", "enabled", "operation_id", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["msisdn", "imsi", "display_name"]


@admin.register(SimulatedHssOutage)
class SimulatedHssOutageAdmin(AuditedModelAdmin):
    """The builtin HSS's outage switch: tick *HSS down* (optionally until a time) and
    every worker's pushes fail and retry until it is back — a demo of the outbox."""

    fields = ["down", "until", "reason"]

    def changelist_view(self, request, extra_context=None):
        """One switch: the list opens it."""
        switch, _ = SimulatedHssOutage.objects.get_or_create(pk=1)
        return redirect(reverse("admin:telephony_simulatedhssoutage_change", args=[switch.pk]))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Registration)
class RegistrationAdmin(ReadOnlyAdmin):
    """Every enterprise's active UEs in one place, for operator staff."""

    list_display = [
        "label",
        "user",
        "identity",
        "enterprise",
        "state",
        "last_refreshed_at",
        "expires_at",
    ]
    list_filter = ["state", "end_reason", "enterprise"]
    search_fields = ["label", "user__email", "identity__number__e164", "contact_uri", "instance_id"]
    list_select_related = ["user", "identity__number", "enterprise"]
    date_hierarchy = "last_refreshed_at"
    show_full_result_count = False


@admin.register(NetworkNotice)
class NetworkNoticeAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "kind",
        "registration",
        "enterprise",
        "state",
        "outcome",
        "attempts",
        "last_error",
    ]
    list_filter = ["state", "channel", "kind", "enterprise"]
    list_select_related = ["registration", "enterprise"]


class LabPkiForm(forms.Form):
    operator_name = forms.CharField(initial="iCA", max_length=80)
    spc = forms.CharField(
        label="Service provider code (SPC)", max_length=15, help_text="e.g. the operator's OCN"
    )


class CredentialImportForm(forms.Form):
    kind = forms.ChoiceField(choices=SigningCredential.Kind.choices)
    name = forms.CharField(max_length=120)
    enterprise = forms.ModelChoiceField(
        queryset=Enterprise.objects.all(), required=False, help_text="For a delegate certificate."
    )
    certificate_pem = forms.CharField(widget=forms.Textarea, label="Certificate (PEM)")
    private_key_pem = forms.CharField(
        widget=forms.Textarea, required=False, label="Private key (PEM)",
        help_text="Encrypted at rest and never shown again. Not needed for a trust anchor.",
    )  # fmt: skip


@admin.register(SigningCredential)
class SigningCredentialAdmin(AuditedModelAdmin):
    """Trust anchors, the operator's signing certificate and issuing CA, and enterprises'
    delegate certificates.
    Private keys are stored encrypted and never shown."""

    list_display = ["name", "kind", "enterprise", "not_after", "active", "public_url"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "enterprise__name"]
    list_select_related = ["enterprise"]
    fields = [
        "name",
        "kind",
        "enterprise",
        "issuer",
        "slug",
        "not_before",
        "not_after",
        "active",
        "certificate_pem",
    ]
    readonly_fields = [
        "kind",
        "enterprise",
        "issuer",
        "slug",
        "not_before",
        "not_after",
        "certificate_pem",
    ]
    change_list_template = "admin/telephony/credential_changelist.html"

    @admin.display(description="x5u")
    def public_url(self, obj):
        return credentials.x5u(obj)

    def has_add_permission(self, request):
        return False  # made by the lab-PKI, import and delegate actions, through the services

    def get_urls(self):
        extra = [
            path(
                "lab-pki/",
                self.admin_site.admin_view(self.lab_pki_view),
                name="telephony_signingcredential_lab_pki",
            ),
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="telephony_signingcredential_import",
            ),
        ]
        return extra + super().get_urls()

    def _form_page(self, request, form, title, run):
        if not request.user.has_perm("telephony.change_signingcredential"):
            return redirect("admin:index")
        if request.method == "POST" and form.is_valid():
            try:
                run(form.cleaned_data)
            except (RuleViolation, CallAuthError) as exc:
                form.add_error(None, getattr(exc, "message", None) or str(exc))
            else:
                self.message_user(request, f"{title}: done.", messages.SUCCESS)
                return redirect("admin:telephony_signingcredential_changelist")
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "title": title,
        }
        return render(request, "admin/telephony/form_page.html", context)

    def lab_pki_view(self, request):
        form = LabPkiForm(request.POST or None)
        return self._form_page(
            request,
            form,
            "Create a lab STI-CA with the operator's issuing CA and signing certificate",
            lambda d: credentials.lab_pki_create(actor=Actor.from_request(request), **d),
        )

    def import_view(self, request):
        form = CredentialImportForm(request.POST or None)
        return self._form_page(
            request,
            form,
            "Import a certificate",
            lambda d: credentials.credential_import(actor=Actor.from_request(request), **d),
        )


@admin.register(CallerName)
class CallerNameAdmin(AuditedModelAdmin):
    """The business name each enterprise's calls carry; shown only once vetted."""

    list_display = ["enterprise", "name", "vetting", "vetted_at", "updated_at"]
    list_filter = ["vetting"]
    search_fields = ["name", "enterprise__name"]
    list_select_related = ["enterprise"]
    fields = [
        "enterprise",
        "name",
        "logo_url",
        "call_reason",
        "vetting",
        "vetting_note",
        "vetted_at",
    ]
    readonly_fields = ["vetted_at"]
    # The logo travels in the PASSporT's icn: a URL typed without a scheme is HTTPS.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def save_model(self, request, obj, form, change):
        if "vetting" in form.changed_data:
            obj.vetted_at = timezone.now() if obj.vetting == CallerName.Vetting.VETTED else None
        super().save_model(request, obj, form, change)


@admin.register(CallRecord)
class CallRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "direction",
        "orig_tn",
        "enterprise",
        "attestation",
        "verstat",
        "reason",
    ]
    list_filter = ["direction", "attestation", "verstat", "enterprise"]
    search_fields = ["orig_tn", "origid", "request_id"]
    list_select_related = ["enterprise"]
    date_hierarchy = "created_at"
    show_full_result_count = False
