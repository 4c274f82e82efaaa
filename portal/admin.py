from django.contrib import admin, messages
from django.shortcuts import redirect

from accounts import audit
from accounts.audit import Actor
from portal.errors import RuleViolation

from .models import WorkerHeartbeat


def _enterprise_of(obj):
    from accounts.models import Enterprise

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


class _Refused(Exception):
    """A service refused an admin save; the message is already shown."""


class AddedByServiceMixin:
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


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "last_seen"]
    ordering = ["-last_seen"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
