from django import forms
from django.forms.renderers import TemplatesSetting

from kernel.errors import RuleViolation


class PortalFormRenderer(TemplatesSetting):
    """Every form, ours and Django's own, renders through templates/forms/portal.html."""

    form_template_name = "forms/portal.html"


class PortalForm(forms.Form):
    """Base for the portal's forms: able to show a service's RuleViolation next to the
    field it concerns."""

    def add_rule_violation(self, exc: RuleViolation) -> None:
        self.add_error(exc.field if exc.field in self.fields else None, exc.message)
