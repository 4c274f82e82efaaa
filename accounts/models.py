"""Enterprises (tenants), their service contracts, users and roles, invitations,
API tokens and the append-only audit log."""

import functools
import secrets
import zoneinfo
from datetime import datetime
from typing import Self

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.functional import cached_property

from kernel.errors import NotAllowed
from kernel.tenancy import TenantQuerySet

sip_domain_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Enter a lower-case DNS domain such as swift-delivery.example.",
)


class Service(models.TextChoices):
    """MMTEL services an operator can allow and an identity can be entitled to."""

    VOICE = "voice", "Voice"
    VIDEO = "video", "Video"
    MESSAGING = "messaging", "Messaging"
    CONFERENCE = "conference", "Conference"
    XR = "xr", "XR (AR/VR calls)"


class Enterprise(models.Model):
    """A business customer of the operator: the tenant everything else belongs to."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    sip_domain = models.CharField(
        "SIP domain", max_length=253, unique=True, validators=[sip_domain_validator]
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ServiceContract(models.Model):
    """The operator's policy for one enterprise (TR 22.873 "subject to operator policy")."""

    class UeLimitPolicy(models.TextChoices):
        NOTIFY = "notify", "Notify only"
        SIGN_OUT_OLDEST = "sign_out_oldest", "Sign out the oldest device"

    enterprise = models.OneToOneField(Enterprise, on_delete=models.CASCADE, related_name="contract")
    may_create_identities = models.BooleanField(
        default=True, help_text="The enterprise may create and change its users' identities."
    )
    may_authenticate_users = models.BooleanField(
        default=False, help_text="The enterprise authenticates its users for MMTEL access (OIDC)."
    )
    identity_quota = models.PositiveIntegerField(
        default=100, help_text="Most identities the enterprise may hold at once."
    )
    allowed_services = models.JSONField(
        default=list, help_text="MMTEL services the enterprise may give its identities."
    )
    max_ues_per_user = models.PositiveSmallIntegerField("max simultaneous UEs per user", default=3)
    ue_limit_policy = models.CharField(
        "when the UE limit is exceeded",
        max_length=20,
        choices=UeLimitPolicy.choices,
        default=UeLimitPolicy.NOTIFY,
    )
    employee_2fa_required = models.BooleanField(
        "2FA mandatory for employees",
        default=False,
        help_text="Admins, helpdesk and operator staff always need a second factor.",
    )
    deactivation_grace_days = models.PositiveSmallIntegerField(
        "days a deactivated user can be reactivated",
        default=30,
        db_default=30,  # rows written by a release that predates it, or by COPY
        help_text="After these days a deactivated user is offboarded for good.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Contract of {self.enterprise}"

    def clean(self):
        from django.core.exceptions import ValidationError

        unknown = set(self.allowed_services or []) - set(Service.values)
        if unknown:
            raise ValidationError({"allowed_services": f"Unknown services: {sorted(unknown)}"})

    def allows(self, service: str) -> bool:
        return service in (self.allowed_services or [])


class Role(models.TextChoices):
    ADMIN = "admin", "Enterprise admin"
    HELPDESK = "helpdesk", "Helpdesk"
    EMPLOYEE = "employee", "Employee"


class UserQuerySet(TenantQuerySet["User"]):
    def active(self) -> Self:
        return self.filter(status=User.Status.ACTIVE)


# The stubs' plugin cannot type a manager built by from_queryset() as a base class:
# User.objects is Any to mypy; selectors name the type of what they return from it.
class UserManager(BaseUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    use_in_migrations = True

    def get_by_natural_key(self, email):
        return self.get(email__iexact=email)

    def create_user(self, email, password=None, **fields):
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True, enterprise=None, role="")
        fields.setdefault("status", User.Status.ACTIVE)
        return self.create_user(email, password, **fields)


@functools.cache
def time_zone_names() -> frozenset[str]:
    """The IANA zone names a person may choose for the times they see."""
    return frozenset(zoneinfo.available_timezones())


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in: an employee, helpdesk or admin of one enterprise, or
    operator staff (``is_staff``, no enterprise)."""

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        # Reversibly, for the contract's grace period; then offboarded.
        DEACTIVATED = "deactivated", "Deactivated"
        OFFBOARDED = "offboarded", "Offboarded"

    email = models.EmailField(max_length=254, unique=True, help_text="Stored in lower case.")
    full_name = models.CharField(max_length=150)
    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INVITED)
    is_staff = models.BooleanField(
        "operator staff", default=False, help_text="Operator staff: signs in to Django admin."
    )
    date_joined = models.DateTimeField(default=timezone.now)
    # While deactivated: since when, and the status that reactivation gives back.
    deactivated_at = models.DateTimeField(null=True, blank=True)
    # db_default: rows written by a release that predates it, or by COPY, need none.
    status_before_deactivation = models.CharField(
        max_length=16, choices=Status.choices, blank=True, db_default=""
    )
    # When every session of the user was last ended (deactivation, suspension): part of
    # the session hash, so that a reactivation does not bring the old sessions back.
    sessions_ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Every time the portal shows this person is in this zone (an IANA name); blank:
    # the browser's own (accounts.middleware.TimeZoneMiddleware).
    time_zone = models.CharField(max_length=64, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    def _get_session_auth_hash(self, secret=None):
        # Django binds a session to the password hash; add the time sessions were last
        # ended. Unset (most users) it is Django's hash, so no one is signed out by it.
        if self.sessions_ended_at is None:
            # A private method of Django's user: the stubs do not list it.
            return super()._get_session_auth_hash(secret)  # type: ignore[misc]
        return salted_hmac(
            "accounts.User.session_auth_hash",
            f"{self.password}|{self.sessions_ended_at.isoformat()}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    def set_unusable_password(self) -> None:
        # Django's form ("!" and 40 random characters) drawn with one urandom call instead
        # of one a character: about 0.1 ms less for each account an import invites.
        self.password = UNUSABLE_PASSWORD_PREFIX + secrets.token_hex(20)

    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        ordering = ["full_name", "email"]
        constraints = [
            # Operator staff belong to no enterprise; everyone else to exactly one, with a role.
            models.CheckConstraint(
                condition=(
                    models.Q(is_staff=True, enterprise__isnull=True, role="")
                    | (models.Q(is_staff=False, enterprise__isnull=False) & ~models.Q(role=""))
                ),
                name="user_staff_xor_enterprise_member",
            ),
        ]
        indexes = [
            models.Index(fields=["enterprise", "status"]),
            # Sign-in, invitations and onboarding match emails case-insensitively
            # (email__iexact is UPPER(email) = UPPER(%s)): without this, a scan of all users.
            models.Index(Upper("email"), name="user_email_upper"),
        ]

    def __str__(self):
        return self.full_name or self.email

    @property
    def is_active(self) -> bool:  # type: ignore[override]  # derived from status
        # Django refuses sign-in and drops sessions of users for whom this is False.
        return self.status == self.Status.ACTIVE

    @property
    def member_of(self) -> Enterprise:
        """The enterprise of one of its people: what their invitations, notifications and
        receipts belong to. Operator staff belong to none, so nothing of that is theirs."""
        if self.enterprise is None:
            raise NotAllowed(f"{self} is operator staff, a member of no enterprise.")
        return self.enterprise

    @property
    def is_enterprise_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_enterprise_staff(self) -> bool:
        """Admins and helpdesk: may see everything of their enterprise."""
        return self.role in (Role.ADMIN, Role.HELPDESK)

    @property
    def two_factor_required(self) -> bool:
        """Whether policy demands a verified second factor for this user."""
        if self.is_staff or self.is_enterprise_staff:
            return True
        return bool(self.enterprise and self.enterprise.contract.employee_2fa_required)


class Invitation(models.Model):
    """A one-time, expiring link by which an invited user sets a password.

    The link's secret is minted when the email is sent and only its hash is kept.
    """

    enterprise = models.ForeignKey(Enterprise, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invitations")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Invitation for {self.user.email}"

    @classmethod
    def default_expiry(cls) -> datetime:
        return timezone.now() + settings.INVITATION_VALIDITY

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class ApiToken(models.Model):
    """A bearer token of one enterprise, acting with one role, for one purpose: the REST
    API, or SCIM provisioning by the enterprise's identity provider."""

    class Purpose(models.TextChoices):
        API = "api", "REST API"
        SCIM = "scim", "SCIM provisioning"

    # The token's visible prefix says what it is for (labels, not secrets).
    PREFIXES = {Purpose.API: "ptk", Purpose.SCIM: "stk"}
    TOKEN_PREFIX = PREFIXES[Purpose.API]
    ROLE_CHOICES = [(Role.ADMIN.value, "Read and write"), (Role.HELPDESK.value, "Read only")]

    enterprise = models.ForeignKey(Enterprise, on_delete=models.CASCADE, related_name="api_tokens")
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.API)
    name = models.CharField(max_length=100, help_text="What uses it, e.g. “HR system”.")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=Role.ADMIN)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(
        max_length=12, help_text="The token's last characters, to recognise it."
    )
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} (…{self.hint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class NetworkClient(models.Model):
    """A system of the operator's IMS core (an S-CSCF, an SBC, an STI-AS/VS) that calls
    the network API, with a revocable bearer credential, scoped to the enterprises whose
    users it may report on or act for. Made by operator staff in Django admin."""

    TOKEN_PREFIX = "ntk"  # noqa: S105 - a label, not a secret

    name = models.CharField(max_length=100, unique=True)
    enterprises = models.ManyToManyField(Enterprise, related_name="network_clients", blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="The credential's last characters.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # The request's principal when a network client calls (see Actor.from_request).
    is_network_client = True

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @cached_property
    def served_enterprise_ids(self) -> frozenset[int]:
        return frozenset(self.enterprises.values_list("pk", flat=True))

    def serves(self, enterprise) -> bool:
        return enterprise.pk in self.served_enterprise_ids


class DirectoryRecord(models.Model):
    """What the enterprise's identity provider says about a user through SCIM, kept as it
    sent it (name parts, title, the enterprise extension…) so that SCIM reads return it."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.CASCADE, related_name="+")
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="directory")
    external_id = models.CharField(max_length=255, blank=True)
    attributes = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["enterprise", "external_id"])]

    def __str__(self):
        return f"Directory record of {self.user}"


class DirectoryGroup(models.Model):
    """A group the identity provider pushes through SCIM, with its members."""

    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.CASCADE, related_name="directory_groups"
    )
    display_name = models.CharField(max_length=255)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(User, related_name="directory_groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["enterprise", "display_name"], name="directory_group_name_unique"
            )
        ]

    def __str__(self):
        return self.display_name


class ClientRegistration(models.Model):
    """An MMTEL client application its users sign in to with OpenID Connect: one of an
    enterprise's (registered by its admins) or, without an enterprise, a network-wide one
    (registered by operator staff). First-party clients skip the consent screen."""

    application = models.OneToOneField(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="registration",
    )
    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.CASCADE, null=True, blank=True, related_name="oidc_clients"
    )
    first_party = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["application__name"]

    def __str__(self):
        return self.application.name


class Notification(models.Model):
    """A message to one person, shown in the portal (and, for some kinds, emailed)."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self):
        return self.title


class AuditQuerySet(TenantQuerySet["AuditEvent"]):
    def update(self, **kwargs):
        raise TypeError("The audit log is append-only.")

    def delete(self):
        raise TypeError("The audit log is append-only.")


class AuditEvent(models.Model):
    """One change: who, what (before and after of each changed field), when, from where,
    in which enterprise. Written by services in the change's own transaction; never
    updated or deleted (on PostgreSQL a trigger enforces that too)."""

    class ActorKind(models.TextChoices):
        USER = "user", "User"
        API_TOKEN = "api_token", "API token"
        NETWORK_CLIENT = "network_client", "Network client"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    enterprise = models.ForeignKey(
        Enterprise, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_token = models.ForeignKey(
        ApiToken, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_network_client = models.ForeignKey(
        NetworkClient, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The actor as it read at the time, so that the trail stays legible.
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["enterprise", "-created_at"]),
            models.Index(fields=["target_type", "target_id"]),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("The audit log is append-only.")
