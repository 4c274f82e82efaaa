from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any, cast

from django import forms
from django.db.models import Model
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


class SuggestingInput(forms.TextInput):
    """A text input that offers values as one types (an HTML datalist, searchable by
    the browser): any other value may still be typed, and the service checks it."""

    template_name = "forms/suggesting_input.html"

    def __init__(self, suggestions: Iterable[tuple[Any, str]] = (), attrs=None):
        super().__init__(attrs)
        # (value, label); named as a choice field names them, so that a choice field
        # sets its own (SuggestedModelField: queried when shown, not when posted)
        self.choices = suggestions

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        widget = context["widget"]
        widget["list_id"] = widget["attrs"]["list"] = f"{widget['attrs'].get('id', name)}-choices"
        widget["suggestions"] = self.choices
        return context


class SuggestedModelField(forms.ModelChoiceField):
    """One of many (colleagues, identities) picked by typing a part of its name: the input
    suggests each one's ``key`` (a lookup such as "email" or "number__e164") with its
    label, and what comes back is looked up in the same queryset, so that anything outside
    it (unknown, another enterprise's, not the actor's to pick) is a form error."""

    widget = SuggestingInput

    def __init__(
        self, queryset, *, key: str, normalize: Callable[[str], str] = str.strip, **kwargs
    ):
        super().__init__(queryset, to_field_name=key, empty_label=None, **kwargs)
        self.normalize = normalize  # what was typed, written as the key is stored

    def prepare_value(self, value):
        if isinstance(value, Model):
            return reduce(getattr, (self.to_field_name or "pk").split("__"), value)
        return value

    def to_python(self, value):
        return super().to_python(self.normalize(value) if isinstance(value, str) else value)


# A form's fields are typed as plain Field: these name the kind a form declared, so that
# setting its choices or queryset per request is checked.
def choice_field(form: forms.BaseForm, name: str) -> forms.ChoiceField:
    return cast(forms.ChoiceField, form.fields[name])


def model_choice_field(form: forms.BaseForm, name: str) -> "forms.ModelChoiceField[Any]":
    return cast("forms.ModelChoiceField[Any]", form.fields[name])


def filter_criteria(form: forms.BaseForm) -> dict[str, Any]:
    """The values of a list's filter form that are valid. The others stay on the form as
    errors, which the page says (includes/filters.html): a filter is never silently
    dropped."""
    form.is_valid()
    return dict(getattr(form, "cleaned_data", {}))
