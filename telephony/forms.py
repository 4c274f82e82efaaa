import re
from typing import Any

from django import forms

from accounts.models import Role, Service, User
from kernel.forms import (
    PortalForm,
    SuggestedModelField,
    SuggestingInput,
    choice_field,
    model_choice_field,
)

from . import selectors
from .inventory.numbers import country_name
from .models import Identity, IdentitySync, Registration


def service_choices(contract):
    return [(s.value, s.label) for s in Service if contract.allows(s.value)]


class IdentityFieldsMixin(forms.Form):
    """The fields an identity is made of; services limited to the contract's."""

    services = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    display_name = forms.CharField(
        label="Caller name",
        max_length=Identity.DISPLAY_NAME_MAX,
        required=False,
        help_text="What the people they call see (at most 15 characters). Defaults to the name.",
    )
    tn = forms.CharField(
        label="Number",
        required=False,
        help_text="Leave empty for the next free number of your blocks, or pick or type one, e.g. +49 30 1234 56.",
    )
    imsi = forms.CharField(
        label="SIM line (IMSI)",
        required=False,
        help_text="For a mobile phone: pick or type a free IMSI of your line pool. Soft clients need none.",
    )
    alias = forms.CharField(
        label="SIP alias",
        required=False,
        help_text="Optional user name for sip:alias@your-domain.",
    )

    def __init__(self, *args, enterprise, **kwargs):
        super().__init__(*args, **kwargs)
        choices = service_choices(enterprise.contract)
        choice_field(self, "services").choices = choices
        self.fields["services"].initial = [c for c, _ in choices][:1]
        offer_free_inventory(self, enterprise)


def offer_free_inventory(form: forms.Form, enterprise) -> None:
    """The number and SIM line fields offer the enterprise's free ones as one types."""
    form.fields["tn"].widget = SuggestingInput(selectors.free_number_choices(enterprise))
    form.fields["imsi"].widget = SuggestingInput(selectors.free_line_choices(enterprise))


class OnboardForm(IdentityFieldsMixin, PortalForm):
    full_name = forms.CharField(max_length=150)
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EMPLOYEE)

    field_order = ["full_name", "email", "role", "services", "display_name", "tn", "imsi", "alias"]


class IdentityForm(IdentityFieldsMixin, PortalForm):
    pass


class IdentityEditForm(PortalForm):
    services = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    display_name = forms.CharField(label="Caller name", max_length=Identity.DISPLAY_NAME_MAX)
    alias = forms.CharField(label="SIP alias", required=False)

    def __init__(self, *args, contract, **kwargs):
        super().__init__(*args, **kwargs)
        choice_field(self, "services").choices = service_choices(contract)


class RelocateForm(PortalForm):
    country = forms.ChoiceField(required=False, help_text="The next free number there.")
    tn = forms.CharField(label="Or this number", required=False)
    imsi = forms.CharField(
        label="New SIM line (IMSI)",
        required=False,
        help_text="Leave empty to keep the current line.",
    )

    def __init__(self, *args, enterprise, **kwargs):
        super().__init__(*args, **kwargs)
        named = sorted((country_name(c), c) for c in selectors.block_countries(enterprise))
        choice_field(self, "country").choices = [("", "—"), *((c, f"{n} ({c})") for n, c in named)]
        offer_free_inventory(self, enterprise)


# The HSS sync states as the pages name them: "in step with the HSS", as the cards and
# the sync panel say.
SYNC_CHOICES = [
    ("", "Any"),
    (IdentitySync.State.SYNCED, "In step with the HSS"),
    (IdentitySync.State.PENDING, "Pending"),
    (IdentitySync.State.DRIFT, "Drift found"),
    (IdentitySync.State.FAILED, "Sync failed"),
]


class EmployeeFilterForm(PortalForm):
    q = forms.CharField(label="Search", required=False, help_text="Name, email or number")
    # Leavers are history: the list shows them when asked.
    status = forms.ChoiceField(
        choices=[("", "All but offboarded"), *User.Status.choices, ("any", "Any status")],
        required=False,
    )
    role = forms.ChoiceField(choices=[("", "Any role"), *Role.choices], required=False)
    sync = forms.ChoiceField(label="HSS sync", choices=SYNC_CHOICES, required=False)
    identity = forms.ChoiceField(
        label="Identities",
        choices=[("", "Any"), ("some", "Has one"), ("none", "Has none")],
        required=False,
    )


class IdentityFilterForm(PortalForm):
    q = forms.CharField(label="Search", required=False, help_text="Number, name or alias")
    status = forms.ChoiceField(
        choices=[("", "Active and suspended"), *Identity.Status.choices], required=False
    )
    sync = forms.ChoiceField(label="HSS sync", choices=SYNC_CHOICES, required=False)


class LineFilterForm(PortalForm):
    q = forms.CharField(label="Search", required=False, help_text="IMSI or ICCID")
    free = forms.ChoiceField(
        label="In use", choices=[("", "Any"), ("yes", "Free"), ("no", "In use")], required=False
    )


class IdentityByOwnerField(SuggestedModelField):
    """Everyone's identities, as an admin finds them: by typing a part of their owner's
    name or of the number; the number (E.164) is what is sent."""

    def __init__(self, queryset, **kwargs):
        super().__init__(
            queryset,
            key="number__e164",
            search=("owner__full_name",),
            normalize=lambda typed: re.sub(r"[\s()-]", "", typed),
            error_messages={
                "invalid_choice": "No identity you may share has that number: type a part of "
                "the owner's name or of the number, and pick it from the list."
            },
            **kwargs,
        )

    def label_from_instance(self, obj: Identity) -> str:
        return f"{obj.owner.full_name} · {obj.tn}"


class ColleagueField(SuggestedModelField):
    """A colleague, found by typing a part of their name; their email is what is sent."""

    def __init__(self, **kwargs):
        super().__init__(
            User.objects.none(),
            key="email",
            search=("full_name",),
            normalize=lambda typed: typed.strip().lower(),  # emails are stored in lower case
            error_messages={
                "invalid_choice": "No colleague you may share with has that email: type a "
                "part of their name, and pick them from the list."
            },
            **kwargs,
        )

    def label_from_instance(self, obj: User) -> str:
        return obj.full_name


class GrantForm(PortalForm):
    identity = forms.ModelChoiceField(queryset=Identity.objects.none(), label="Identity to share")
    grantee = ColleagueField(
        label="Share with", help_text="Type a part of their name and pick them from the list."
    )
    can_make_calls = forms.BooleanField(
        label="May make calls with it", required=False, initial=True
    )
    can_receive_calls = forms.BooleanField(
        label="May receive its calls", required=False, initial=True
    )
    valid_until = forms.DateTimeField(
        label="Until",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty for no end; you can revoke at any time.",
    )

    def __init__(self, *args, identities, colleagues, on_behalf=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.identities = identities  # what it offers to share
        if on_behalf:  # an admin shares anyone's, on the owner's behalf
            self.fields["identity"] = IdentityByOwnerField(
                identities,
                label="Identity to share",
                help_text="Type a part of the owner's name or of the number, and pick it.",
            )
        identity = model_choice_field(self, "identity")
        if not on_behalf:
            identity.queryset, identity.empty_label = identities, "Choose one of your identities"
        # Two at most: an admin's are the enterprise's, thousands of them.
        first = list(identities[:2])
        if len(first) == 1:
            identity.initial = first[0]  # nothing to choose
        model_choice_field(self, "grantee").queryset = colleagues


class DeviceFilterForm(PortalForm):
    q = forms.CharField(label="Search", required=False, help_text="Name, email or number")
    devices = forms.ChoiceField(
        label="Devices",
        choices=[
            ("", "Anyone"),
            ("many", "On more than one device"),
            ("some", "On at least one device"),
            ("none", "No active device"),
        ],
        required=False,
    )


class DeviceSettingsForm(PortalForm):
    """One UE's own settings; choices come from the identity it is registered for."""

    enabled_services = forms.MultipleChoiceField(
        label="Services on this device", widget=forms.CheckboxSelectMultiple, required=False
    )
    default_impu = forms.ChoiceField(label="Present as", required=False)
    do_not_disturb = forms.BooleanField(label="Do not disturb", required=False)
    ring_priority = forms.TypedChoiceField(
        label="Ring priority", coerce=int, choices=Registration.RING_PRIORITIES
    )

    def __init__(self, data: Any = None, *, registration: Registration) -> None:
        identity = registration.identity
        initial = {
            "enabled_services": registration.enabled_services or identity.services,
            "default_impu": registration.default_impu,
            "do_not_disturb": registration.do_not_disturb,
            "ring_priority": registration.ring_priority,
        }
        super().__init__(data, initial=initial, prefix=f"device-{registration.pk}")
        choice_field(self, "enabled_services").choices = [
            (s, Service(s).label) for s in identity.services if s in Service.values
        ]
        choice_field(self, "default_impu").choices = [
            ("", "The identity's default"),
            *((u, u) for u in identity.impus),
        ]

    def clean_enabled_services(self):
        services = self.cleaned_data["enabled_services"]
        if not services:
            raise forms.ValidationError("Keep at least one service on the device.")
        return services
