from operator import itemgetter

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.utils.text import capfirst
from django_otp.plugins.otp_totp.models import TOTPDevice

from kernel.errors import RuleViolation
from kernel.forms import PortalForm, choice_field

from . import services, trail
from .models import ApiToken, AuditEvent, Role, User, time_zone_names


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )


class ActiveUserPasswordResetForm(PasswordResetForm):
    """Django's reset form, for our status field: only active users get a reset link."""

    def get_users(self, email):
        return (
            u
            for u in User.objects.filter(email__iexact=email, status=User.Status.ACTIVE)
            if u.has_usable_password()
        )


class TokenForm(PortalForm):
    """A six-digit code from the authenticator app, or one backup code."""

    METHODS = [("totp", "Authenticator app"), ("backup", "Backup code")]

    method = forms.ChoiceField(
        label="Use", choices=METHODS, initial="totp", widget=forms.RadioSelect
    )
    token = forms.CharField(
        label="Code",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.device = None

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        token = (cleaned.get("token") or "").replace(" ", "").lower()
        if not token:
            return cleaned
        try:
            self.device = services.two_factor_verify(
                user=self.user, method=cleaned.get("method") or "", token=token
            )
        except RuleViolation as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return cleaned


class EnrolForm(PortalForm):
    token = forms.CharField(
        label="Code from the app",
        max_length=6,
        min_length=6,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def __init__(self, device: TOTPDevice, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = device

    def clean_token(self):
        token = self.cleaned_data["token"].strip()
        if not self.device.verify_token(token):
            raise forms.ValidationError("That code does not match. Check the time on your phone.")
        return token


class AcceptInvitationForm(PortalForm):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 12 characters; not a common password.",
    )
    password_confirm = forms.CharField(
        label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("password") != cleaned.get("password_confirm"):
            self.add_error("password_confirm", "The two passwords differ.")
        return cleaned


class InviteForm(PortalForm):
    full_name = forms.CharField(max_length=150)
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EMPLOYEE)


class UserEditForm(PortalForm):
    full_name = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


class ApiTokenForm(PortalForm):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “HR system”.")
    role = forms.ChoiceField(label="Access", choices=ApiToken.ROLE_CHOICES)


class TimeZoneForm(PortalForm):
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Every time the portal shows you is in this zone.",
    )

    def __init__(self, *args, browser_zone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        browser = f"My browser's ({browser_zone})" if browser_zone else "My browser's"
        choice_field(self, "time_zone").choices = [
            ("", browser),
            *((name, name.replace("_", " ")) for name in sorted(time_zone_names())),
        ]


class AuditFilterForm(PortalForm):
    q = forms.CharField(label="Search", required=False, help_text="Actor, object or action")
    person = forms.CharField(
        required=False, max_length=150, help_text="What they did, and what was done to them"
    )
    kind = forms.ChoiceField(
        label="Object",
        choices=[
            ("", "Anything"),
            *sorted(((k, capfirst(v)) for k, v in trail.OBJECT_KINDS.items()), key=itemgetter(1)),
        ],
        required=False,
    )
    actor_kind = forms.ChoiceField(
        label="Actor", choices=[("", "Anyone"), *AuditEvent.ActorKind.choices], required=False
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "is before the first day.")
        return data


class OidcClientForm(PortalForm):
    name = forms.CharField(
        max_length=100, help_text="The app your employees sign in to, e.g. “Softphone”."
    )
    redirect_uris = forms.CharField(
        label="Redirect URIs",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Where the app receives the sign-in result; one per line.",
    )
    first_party = forms.BooleanField(
        label="Our own app (skip the consent screen)", required=False, initial=True
    )
