from collections.abc import Callable, Iterable
from functools import reduce
from itertools import islice
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Model, Q, Value, When
from django.forms.models import ModelChoiceIterator
from django.forms.renderers import TemplatesSetting
from django.http import Http404, JsonResponse
from django.utils.cache import patch_cache_control

from kernel.errors import RuleViolation


class PortalFormRenderer(TemplatesSetting):
    """Every form, ours and Django's own, renders through templates/forms/portal.html."""

    form_template_name = "forms/portal.html"


class PortalForm(forms.Form):
    """Base for the portal's forms: able to show a service's RuleViolation next to the
    field it concerns."""

    def add_rule_violation(self, exc: RuleViolation) -> None:
        self.add_error(exc.field if exc.field in self.fields else None, exc.message)


# A picker carries its suggestions in the page while its candidates are few. Above this
# many, a page of a big enterprise would carry every person (a megabyte for 10,000): the
# input asks its field's address as one types instead (portal.js), for a few matches.
SUGGESTIONS_IN_PAGE = 200
SUGGESTIONS_ANSWERED = 20
TYPED_MIN, TYPED_MAX = 2, 100


class SuggestingInput(forms.TextInput):
    """A text input that offers values as one types (an HTML datalist, searchable by
    the browser): any other value may still be typed, and the service checks it. With
    more than SUGGESTIONS_IN_PAGE values and a ``source`` (suggest_from), the datalist
    starts empty and portal.js fills it from ``source`` with what matches the typing."""

    template_name = "forms/suggesting_input.html"

    def __init__(self, suggestions: Iterable[tuple[Any, str]] = (), attrs=None):
        super().__init__(attrs)
        # (value, label); named as a choice field names them, so that a choice field
        # sets its own (SuggestedModelField: queried when shown, not when posted)
        self.choices = suggestions
        self.source = ""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        widget = context["widget"]
        widget["list_id"] = widget["attrs"]["list"] = f"{widget['attrs'].get('id', name)}-choices"
        suggestions = list(islice(self.choices, SUGGESTIONS_IN_PAGE + 1))
        if len(suggestions) > SUGGESTIONS_IN_PAGE:
            suggestions = [] if self.source else suggestions[:SUGGESTIONS_IN_PAGE]
            if self.source:
                widget["attrs"]["data-suggestions"] = self.source
        widget["suggestions"] = suggestions
        return context


class CandidatesInPage(ModelChoiceIterator):
    """A suggested field's candidates as its input reads them: no more than it may carry
    in the page and one, which tells it that there are more (one query either way)."""

    def __iter__(self):
        for obj in self.queryset[: SUGGESTIONS_IN_PAGE + 1]:
            yield self.choice(obj)


class SuggestedModelField(forms.ModelChoiceField):
    """One of many (colleagues, identities) picked by typing a part of its name: the input
    suggests each one's ``key`` (a lookup such as "email" or "number__e164") with its
    label, and what comes back is looked up in the same queryset, so that anything outside
    it (unknown, another enterprise's, not the actor's to pick) is a form error. ``search``
    names the lookups of what the label shows, which the server's suggestions match
    (suggestions_for) besides the key."""

    widget = SuggestingInput
    iterator = CandidatesInPage

    def __init__(
        self,
        queryset,
        *,
        key: str,
        search: tuple[str, ...] = (),
        normalize: Callable[[str], str] = str.strip,
        **kwargs,
    ):
        super().__init__(queryset, to_field_name=key, empty_label=None, **kwargs)
        self.search = search
        self.normalize = normalize  # what was typed, written as the key is stored

    def prepare_value(self, value):
        if isinstance(value, Model):
            return reduce(getattr, (self.to_field_name or "pk").split("__"), value)
        return value

    def to_python(self, value):
        return super().to_python(self.normalize(value) if isinstance(value, str) else value)

    def suggestions_for(self, typed: str) -> list[tuple[Any, str]]:
        """(key, label) of up to SUGGESTIONS_ANSWERED candidates whose label or key holds
        ``typed``: those it starts (or a word of whose label it starts) first, then in
        the queryset's order. The queryset is the one the form validates against, so
        nothing is suggested that the form would refuse."""
        text = typed.strip()
        if not TYPED_MIN <= len(text) <= TYPED_MAX:
            raise ValidationError(f"Type {TYPED_MIN} to {TYPED_MAX} characters.")
        key, as_key = self.to_field_name or "pk", self.normalize(text)
        holds = Q(**{f"{key}__icontains": as_key}) if as_key else Q(pk__in=[])
        starts = Q(**{f"{key}__istartswith": as_key}) if as_key else Q(pk__in=[])
        for lookup in self.search:
            holds |= Q(**{f"{lookup}__icontains": text})
            starts |= Q(**{f"{lookup}__istartswith": text})
            starts |= Q(**{f"{lookup}__icontains": f" {text}"})
        queryset = self.queryset
        if queryset is None:
            return []
        order = queryset.query.order_by or queryset.model._meta.ordering or ["pk"]
        found = (
            queryset.filter(holds)
            .alias(
                rank=Case(
                    When(starts, then=Value(0)), default=Value(1), output_field=IntegerField()
                )
            )
            .order_by("rank", *order)[:SUGGESTIONS_ANSWERED]
        )
        return [(self.prepare_value(obj), self.label_from_instance(obj)) for obj in found]


def suggest_from(form: forms.BaseForm, address: Callable[[str], str]) -> None:
    """Where each suggested field of ``form`` asks for suggestions once its candidates are
    too many for the page: ``address(field name)``, a view that answers with
    suggestions_answer for the same form."""
    for name, field in form.fields.items():
        if isinstance(field, SuggestedModelField):
            cast(SuggestingInput, field.widget).source = address(name)


def suggestions_answer(form: forms.BaseForm, name: str, typed: str) -> JsonResponse:
    """What a suggested field of ``form`` offers for ``typed``, as portal.js reads it:
    each candidate's key and label, nothing more. A field that suggests nothing is not
    found; a query too short or too long is a 400 that says so."""
    field = form.fields.get(name)
    if not isinstance(field, SuggestedModelField):
        raise Http404
    try:
        found = field.suggestions_for(typed)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    answer = JsonResponse({"suggestions": [{"value": v, "label": label} for v, label in found]})
    patch_cache_control(answer, private=True, no_store=True)  # people's names and emails
    return answer


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
