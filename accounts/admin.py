from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.shortcuts import redirect
from oauth2_provider.models import Application

from kernel.errors import RuleViolation
from kernel.forms import choice_field

from . import audit, oidc, services
from .audit import Actor
from .models import (
    ApiToken,
    AuditEvent,
    ClientRegistration,
    Enterprise,
    Invitation,
    NetworkClient,
    Role,
    Service,
    ServiceContract,
    User,
)


def _enterprise_of(obj):
    return obj if isinstance(obj, Enterprise) else getattr(obj, "enterprise", None)


class AuditedModelAdmin(admin.ModelAdmin):
    """Operator staff's edits in Django admin leave audit rows like every other change:
    the fields a form changed, before and after, and deletions."""

    def _record(self, request, obj, action, changes=None):
        audit.record(
            actor=Actor.from_request(request),
            action=f"{obj._meta.model_name}.{action}",
            enterprise=_enterprise_of(obj),
            target=obj,
            changes=changes,
        )

    @staticmethod
    def _before(obj, fields):
        """(was it an existing row, its stored values of ``fields``)"""
        if obj.pk is None:
            return False, {}
        return True, audit.snapshot(type(obj)._default_manager.get(pk=obj.pk), fields)

    def _after(self, request, obj, fields, before):
        existed, values = before
        changes = audit.diff(values, audit.snapshot(obj, fields))
        if changes or not existed:
            self._record(request, obj, "changed" if existed else "created", changes)

    def save_model(self, request, obj, form, change):
        before = self._before(obj, form.changed_data)
        super().save_model(request, obj, form, change)
        self._after(request, obj, form.changed_data, before)

    def save_formset(self, request, form, formset, change):
        changed = [f for f in formset.forms if f.has_changed() and f not in formset.deleted_forms]
        befores = [self._before(f.instance, f.changed_data) for f in changed]
        super().save_formset(request, form, formset, change)
        for inline_form, before in zip(changed, befores, strict=True):
            self._after(request, inline_form.instance, inline_form.changed_data, before)

    def delete_model(self, request, obj):
        self._record(request, obj, "deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ServiceContractForm(forms.ModelForm):
    allowed_services = forms.MultipleChoiceField(
        choices=Service.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ServiceContract
        fields = services.CONTRACT_FIELDS


class ServiceContractInline(admin.StackedInline):
    model = ServiceContract
    form = ServiceContractForm
    min_num = 1
    max_num = 1
    can_delete = False
    verbose_name = "service contract (operator policy)"


class _Refused(Exception):
    """A service refused an admin save; the message is already shown."""


if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker only
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class AddedByServiceMixin(_AdminBase):
    """Django admin's add form creates the object through a service (``create``), so
    that the service's rules and audit apply; a refusal is shown over the form again."""

    def create(self, request, form):
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        try:
            created = self.create(request, form)
        except RuleViolation as exc:
            self.message_user(request, exc.message, messages.ERROR)
            raise _Refused from exc
        # The admin goes on with ``obj`` (its log entry, the redirect): make it the row.
        obj.__dict__.update(created.__dict__)

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except _Refused:
            return redirect(request.get_full_path())


def run_action(modeladmin, request, queryset, service, param: str):
    """Apply a service to each selected object (passed as ``param``), reporting refusals."""
    done = 0
    for obj in queryset:
        try:
            service(actor=Actor.from_request(request), **{param: obj})
        except RuleViolation as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
        else:
            done += 1
    if done:
        modeladmin.message_user(
            request, f"Done for {done} of {queryset.count()}.", messages.SUCCESS
        )


@admin.register(Enterprise)
class EnterpriseAdmin(AuditedModelAdmin):
    inlines = [ServiceContractInline]
    list_display = ["name", "slug", "sip_domain", "status", "member_count", "created_at"]
    list_filter = ["status", "contract__may_create_identities", "contract__may_authenticate_users"]
    search_fields = ["name", "slug", "sip_domain"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["status", "created_at"]
    actions = ["suspend", "resume"]  # and telephony.admin's delegate certificate

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(member_count=Count("users", filter=~Q(users__status=User.Status.OFFBOARDED)))
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    def _set_status(self, request, queryset, status):
        for enterprise in queryset:
            services.enterprise_set_status(
                actor=Actor.from_request(request), enterprise=enterprise, status=status
            )
        self.message_user(request, f"{queryset.count()} enterprise(s) now {status}.")

    @admin.action(description="Suspend: block the enterprise's changes")
    def suspend(self, request, queryset):
        self._set_status(request, queryset, Enterprise.Status.SUSPENDED)

    @admin.action(description="Resume: allow the enterprise's changes again")
    def resume(self, request, queryset):
        self._set_status(request, queryset, Enterprise.Status.ACTIVE)


class InviteMemberForm(forms.ModelForm):
    """Adding an enterprise member from Django admin sends them an invitation; operator
    staff accounts are made with ``manage.py createsuperuser``."""

    class Meta:
        model = User
        fields = ["email", "full_name", "enterprise", "role"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["enterprise"].required = True
        choice_field(self, "role").choices = Role.choices

    def _post_clean(self):
        # The invitation service validates and creates the user.
        pass


@admin.register(User)
class UserAdmin(AuditedModelAdmin):
    list_display = ["email", "full_name", "enterprise", "role", "status", "is_staff", "last_login"]
    list_filter = ["status", "role", "is_staff", "enterprise"]
    search_fields = ["email", "full_name", "enterprise__name"]
    list_select_related = ["enterprise"]
    ordering = ["email"]
    readonly_fields = ["email", "enterprise", "status", "is_staff", "date_joined", "last_login"]
    actions = ["suspend", "resume", "reset_two_factor"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["email", "full_name", "enterprise", "role"]})]
        if obj.is_staff:
            return [
                (None, {"fields": ["email", "full_name", "status", "is_staff"]}),
                ("Permissions", {"fields": ["is_superuser", "groups", "user_permissions"]}),
                ("Dates", {"fields": ["date_joined", "last_login"]}),
            ]
        return [
            (None, {"fields": ["email", "full_name", "enterprise", "role", "status"]}),
            ("Dates", {"fields": ["date_joined", "last_login"]}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = InviteMemberForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        actor = Actor.from_request(request)
        if not change:
            data = form.cleaned_data
            invited = services.user_invite(
                actor=actor,
                enterprise=data["enterprise"],
                email=data["email"],
                full_name=data["full_name"],
                role=data["role"],
            )
            obj.pk = invited.pk
            obj._state.adding = False
        elif not obj.is_staff:
            services.user_update(
                actor=actor,
                user=User.objects.get(pk=obj.pk),
                full_name=obj.full_name,
                role=obj.role,
            )
        else:
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        if form.instance.is_staff:
            super().save_related(request, form, formsets, change)

    @admin.action(description="Suspend the selected users")
    def suspend(self, request, queryset):
        run_action(self, request, queryset.filter(is_staff=False), services.user_suspend, "user")

    @admin.action(description="Resume the selected users")
    def resume(self, request, queryset):
        run_action(self, request, queryset.filter(is_staff=False), services.user_resume, "user")

    @admin.action(description="Reset the second factor (lost phone)")
    def reset_two_factor(self, request, queryset):
        run_action(
            self, request, queryset.filter(is_staff=False), services.two_factor_reset, "user"
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "enterprise", "actor_label", "action", "target_label", "ip"]
    list_filter = ["actor_kind", "enterprise", "action"]
    search_fields = ["actor_label", "action", "target_label", "target_id", "ip"]
    date_hierarchy = "created_at"
    list_select_related = ["enterprise"]
    show_full_result_count = False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "enterprise",
        "role",
        "hint",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["enterprise", "role"]
    search_fields = ["name", "enterprise__name", "hint"]
    list_select_related = ["enterprise"]
    exclude = ["key_hash"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        run_action(self, request, queryset, services.api_token_revoke, "token")


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["user", "enterprise", "state", "created_at", "sent_at", "expires_at"]
    list_filter = ["enterprise"]
    search_fields = ["user__email"]
    list_select_related = ["user", "enterprise"]
    exclude = ["token_hash"]


class NetworkClientForm(forms.ModelForm):
    class Meta:
        model = NetworkClient
        fields = ["name", "enterprises"]


@admin.register(NetworkClient)
class NetworkClientAdmin(AuditedModelAdmin):
    """Systems of the IMS core that call the network API. The credential is shown once,
    when the client is added; revoke and add a new client to rotate it."""

    form = NetworkClientForm
    list_display = ["name", "hint", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "hint"]
    list_filter = ["enterprises"]
    filter_horizontal = ["enterprises"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        client, raw = services.network_client_create(
            actor=Actor.from_request(request),
            name=form.cleaned_data["name"],
            enterprises=list(form.cleaned_data["enterprises"]),
        )
        obj.pk = client.pk
        obj._state.adding = False
        self.message_user(
            request,
            f"Credential for {client.name} — copy it now, it is not shown again: {raw}",
            messages.WARNING,
        )

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    @admin.action(description="Revoke the selected clients' credentials")
    def revoke(self, request, queryset):
        run_action(self, request, queryset, services.network_client_revoke, "client")


class NetworkWideClientForm(forms.ModelForm):
    name = forms.CharField(max_length=255, help_text="Shown to people on the consent screen.")
    redirect_uris = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line; an app's redirect must match one exactly.",
    )

    class Meta:
        model = ClientRegistration
        fields = ["first_party"]
        help_texts = {"first_party": "The operator's own app: its users see no consent screen."}


# The one way to register an app is below; one made in django-oauth-toolkit's own admin
# would have no registration, and every sign-in to it would be refused.
admin.site.unregister(Application)


@admin.register(ClientRegistration)
class ClientRegistrationAdmin(AddedByServiceMixin, admin.ModelAdmin):
    """OpenID Connect apps. Operator staff register network-wide ones here, through the
    same service as the enterprises' settings page, so the app is public with PKCE, its
    users may sign in to it, and the registration is audited."""

    form = NetworkWideClientForm
    list_display = ["__str__", "client_id", "owner", "first_party", "redirect_uris", "created_at"]
    list_filter = [("enterprise", admin.EmptyFieldListFilter), "first_party"]
    search_fields = ["application__name", "application__client_id", "enterprise__name"]
    list_select_related = ["application", "enterprise"]
    actions = ["remove"]

    def create(self, request, form):
        return oidc.client_register(
            actor=Actor.from_request(request),
            enterprise=None,
            name=form.cleaned_data["name"],
            redirect_uris=form.cleaned_data["redirect_uris"].splitlines(),
            first_party=form.cleaned_data["first_party"],
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "redirect_uris", "first_party"]
        # Shown read-only: there is no change permission.
        return ["client_id", "owner", "first_party", "redirect_uris", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False  # re-register to change: the app's tokens were issued for the old one

    def has_delete_permission(self, request, obj=None):
        return False  # the action below removes through the service, audited

    @admin.display(description="client ID")
    def client_id(self, obj):
        return obj.application.client_id

    @admin.display(description="redirect URIs")
    def redirect_uris(self, obj):
        return obj.application.redirect_uris

    @admin.display(description="whose", ordering="enterprise__name")
    def owner(self, obj):
        return obj.enterprise or "network-wide"

    @admin.action(description="Remove the selected apps (their tokens stop working)")
    def remove(self, request, queryset):
        run_action(self, request, queryset, oidc.client_remove, "registration")
