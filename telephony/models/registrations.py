"""Active UEs: what the IMS core reports about registrations, kept per device, with
each device's own settings, its history, and the notices sent towards clients."""

from datetime import datetime, timedelta
from typing import Self

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Enterprise
from kernel.tenancy import TenantQuerySet

from .identities import Identity

# The access types of P-Access-Network-Info (TS 24.229 §7.2A.4, RFC 7315), by prefix, in
# the words of the person holding the device.
ACCESS_NETWORKS = [
    ("3gpp-nr", "Mobile network (5G)"),
    ("3gpp-e-utran", "Mobile network (4G)"),
    ("3gpp-utran", "Mobile network (3G)"),
    ("3gpp-geran", "Mobile network (2G)"),
    ("3gpp2", "Mobile network (CDMA)"),
    ("3gpp-wlan", "Wi-Fi"),
    ("ieee-802.11", "Wi-Fi"),
    ("ieee-802.3", "Wired network"),
    ("ethernet", "Wired network"),
    ("docsis", "Cable internet"),
    ("gpon", "Fibre internet"),
    ("xgpon", "Fibre internet"),
    ("adsl", "DSL internet"),
    ("vdsl", "DSL internet"),
    ("sdsl", "DSL internet"),
    ("adsl2", "DSL internet"),
    ("g.shdsl", "DSL internet"),
    ("idsl", "DSL internet"),
    ("hdsl", "DSL internet"),
    ("dvb-rcs2", "Satellite"),
]


def access_network_label(access_network: str) -> str:
    """ "Mobile network (4G)" for ``3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=…``; "" for an
    access type nobody named here."""
    access_type = access_network.split(";", 1)[0].strip().lower()
    return next((label for prefix, label in ACCESS_NETWORKS if access_type.startswith(prefix)), "")


class RegistrationQuerySet(TenantQuerySet["Registration"]):
    def active(self, at: datetime | None = None) -> Self:
        """Registered now: not ended, and not past its expiry even if no event said so."""
        return self.filter(
            state__in=[Registration.State.ACTIVE, Registration.State.SIGN_OUT_REQUESTED],
            expires_at__gt=at or timezone.now(),
        )


class Registration(models.Model):
    """One UE registered for one identity: a device (keyed by its ``+sip.instance``,
    else its contact URI) bound to some or all of the identity's IMPUs. A new
    registration never overrides another device's; each keeps its own settings
    (MCPTT R-6.11-001 and the multi-UE registration change)."""

    class State(models.TextChoices):
        ACTIVE = "active", "Registered"
        SIGN_OUT_REQUESTED = "sign_out_requested", "Sign-out requested"
        ENDED = "ended", "Ended"

    class EndReason(models.TextChoices):
        # The RFC 3680 contact events that end a binding, each kept as the network said.
        EXPIRED = "expired", "Expired"
        DEREGISTERED = "deregistered", "Deregistered by the device"  # event "unregistered"
        DEACTIVATED = "deactivated", "Deactivated by the network"
        PROBATION = "probation", "Deactivated by the network until later"
        REJECTED = "rejected", "Rejected by the network"
        # Gone from the network's full state, or its registration terminated, without a
        # contact event saying why.
        NOT_REPORTED = "not_reported", "Ended (no reason given)"
        SIGNED_OUT = "signed_out", "Signed out"
        REPLACED = "replaced", "Signed out: over the device limit"
        IDENTITY_REMOVED = "identity_removed", "Identity removed"

    RING_PRIORITIES = [(1, "Highest"), (2, "High"), (3, "Normal"), (4, "Low"), (5, "Lowest")]

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="registrations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="registrations"
    )
    device_key = models.CharField(max_length=600)
    instance_id = models.CharField(max_length=255, blank=True)
    label = models.CharField(max_length=120)
    impus = models.JSONField(default=list, help_text="The AoRs this device is registered for now.")
    contact_uri = models.CharField(max_length=512)
    pub_gruu = models.CharField("public GRUU", max_length=512, blank=True)
    display_name = models.CharField(max_length=120, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    access_network = models.CharField(max_length=255, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    callid = models.CharField(max_length=255, blank=True)
    cseq = models.PositiveBigIntegerField(null=True, blank=True)
    q = models.CharField(max_length=8, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    first_registered_at = models.DateTimeField(default=timezone.now)
    last_refreshed_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    # This device's own settings; they travel to the network with the identity's state.
    enabled_services = models.JSONField(default=list)
    default_impu = models.CharField(max_length=255, blank=True)
    do_not_disturb = models.BooleanField(default=False)
    ring_priority = models.PositiveSmallIntegerField(choices=RING_PRIORITIES, default=3)
    # Sign-out is an outbox: requested here, sent to the network by a task.
    sign_out_requested_at = models.DateTimeField(null=True, blank=True)
    sign_out_sent_at = models.DateTimeField(null=True, blank=True)
    sign_out_error = models.CharField(max_length=500, blank=True)
    last_event = models.ForeignKey(
        "RegistrationEvent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = RegistrationQuerySet.as_manager()

    class Meta:
        ordering = ["-last_refreshed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["identity", "device_key"], name="registration_one_per_device"
            )
        ]
        indexes = [
            models.Index(fields=["enterprise", "state", "expires_at"]),
            # With the device key, counting each person's active devices (the device
            # list orders everyone by it) reads this index alone, not the table.
            models.Index(
                fields=["user", "state", "expires_at", "device_key"],
                name="registration_user_devices",
            ),
        ]

    def __str__(self):
        return f"{self.label} for {self.identity}"

    @property
    def is_active(self) -> bool:
        return self.state != self.State.ENDED and self.expires_at > timezone.now()

    @property
    def network(self) -> str:
        """The access network in plain words, else as the network reported it."""
        return access_network_label(self.access_network) or self.access_network


class RegistrationEvent(models.Model):
    """The history of one registration. Repeats fold into one row with a count (a UE
    refreshing every few minutes, or one dropping and coming back: "flapping")."""

    class Kind(models.TextChoices):
        REGISTERED = "registered", "Registered"
        REFRESHED = "refreshed", "Refreshed"
        EXPIRED = "expired", "Expired"
        DEREGISTERED = "deregistered", "Deregistered"
        ENDED = "ended", "Ended"
        SIGN_OUT_REQUESTED = "sign_out_requested", "Sign-out requested"
        SIGNED_OUT = "signed_out", "Signed out"
        FLAPPING = "flapping", "Flapping (dropped and came back)"

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    count = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now)
    detail = models.CharField(max_length=255, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-last_at", "-id"]

    def __str__(self):
        return f"{self.kind} ×{self.count}"


class ReginfoVersion(models.Model):
    """Where the reports of one stream stand: the last reginfo ``version`` applied, so
    that an older document never overwrites a newer one; the documents applied lately,
    so that a replay is recognised whatever its version; and whether the portal may
    have missed a report and needs the network's full state.

    A stream is an AoR's documents in one reg-event subscription (RFC 3680 numbers the
    documents of a subscription), named by the SIP edge after its SUBSCRIBE dialog's
    Call-ID; or, for reports that name none (HTTP clients), all documents of the AoR
    (``subscription`` empty)."""

    aor = models.CharField(max_length=512)
    subscription = models.CharField(max_length=255, blank=True, default="", db_default="")
    # None until the first report of the stream is applied (the row exists before, so
    # that concurrent first reports queue on it).
    version = models.PositiveBigIntegerField(null=True)
    updated_at = models.DateTimeField(auto_now=True)
    # [[digest, applied at (Unix seconds)], ...] of the documents applied within
    # ingest.REPLAY_WINDOW, newest last.
    recent = models.JSONField(default=list, db_default=[])
    full_state_needed = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["aor", "subscription"], name="reginfo_version_one_per_stream"
            )
        ]
        indexes = [
            # The periodic prune of ended subscriptions' rows reads this alone.
            models.Index(
                fields=["updated_at"],
                condition=~models.Q(subscription=""),
                name="reginfo_version_subscriptions",
            )
        ]

    def __str__(self):
        stream = f" ({self.subscription})" if self.subscription else ""
        return f"{self.aor}{stream} v{self.version}"


class RegistrationReport(models.Model):
    """A report the IMS core asked to be answered at once and applied later (HTTP's
    ``Prefer: respond-async``): kept, as parsed, until a worker applies it together
    with the others waiting, in the order received; then what became of it, for its
    sender to read (``GET /network/v1/reports/<id>``) until RETENTION has passed."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be applied"
        APPLIED = "applied", "Applied"
        REFUSED = "refused", "Refused, nothing applied"

    RETENTION = timedelta(days=1)

    client = models.ForeignKey("accounts.NetworkClient", on_delete=models.CASCADE, related_name="+")
    ip = models.GenericIPAddressField(null=True, blank=True)
    # The SIP edge's subscription it came in ("": none named).
    subscription = models.CharField(max_length=255, blank=True, default="")
    document = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # What the synchronous answer would have said; {"reason": ...} when refused.
    outcome = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The worker takes the oldest waiting; only they are in this index.
            models.Index(
                fields=["id"],
                condition=models.Q(state="pending"),
                name="registration_report_pending",
            ),
            models.Index(fields=["received_at"], name="registration_report_received"),
        ]

    def __str__(self):
        return f"report {self.pk} ({self.state})"


class ThirdPartyRegistration(models.Model):
    """An IMPU registered at the portal's SIP edge by the S-CSCF (third-party REGISTER,
    TS 24.229 §5.4.1.7): which S-CSCF serves it and until when, so that a restarted
    edge subscribes to its ``reg`` events again. Also the last few UEs the S-CSCF
    described in the REGISTER's ``message/sip`` bodies (their user agent and access
    network, which reginfo does not carry), for the NOTIFY that binds them."""

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    identity = models.ForeignKey(
        Identity, on_delete=models.CASCADE, related_name="third_party_registrations"
    )
    aor = models.CharField(max_length=512, unique=True)
    scscf = models.CharField("S-CSCF", max_length=512)
    expires_at = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)
    # [{"key": device key, "user_agent", "access_network"}, ...], newest last, at most
    # MAX_DEVICES.
    devices = models.JSONField(default=list, db_default=[])

    MAX_DEVICES = 5

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="third_party_reg_expiry")]

    def __str__(self):
        return f"{self.aor} at {self.scscf}"

    def device(self, key: str) -> dict | None:
        """What the S-CSCF last said about the UE with this device key."""
        return next((d for d in reversed(self.devices) if d.get("key") == key), None)

    def remember_device(self, facts: dict) -> None:
        """Keep ``facts`` (with its ``key``) as the newest, forgetting the oldest."""
        kept = [d for d in self.devices if d.get("key") != facts["key"]]
        self.devices = [*kept, facts][-self.MAX_DEVICES :]


class NetworkNotice(models.Model):
    """A message towards the client on a UE (e.g. "you are also signed in on another device"),
    sent through the network notification backend by a task: an outbox row. It keeps the
    answer to its last attempt, so the pages can say whether the phone got it."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    class Channel(models.TextChoices):
        # Which backend made the last attempt: the codes mean different things.
        RECORD = "", "Portal record only"
        SIP = "sip", "SIP MESSAGE through the edge"
        WEBHOOK = "webhook", "Operator's notification webhook"

    MESSAGE_MAX = 500  # characters: longer messages are shortened to fit

    enterprise = models.ForeignKey(Enterprise, on_delete=models.PROTECT, related_name="+")
    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=MESSAGE_MAX)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The last attempt's answer: a SIP status (from the UE, or the edge's own 408 when
    # nothing answered) or the webhook's HTTP status; none when nothing answered at all.
    channel = models.CharField(max_length=8, choices=Channel.choices, blank=True, db_default="")
    delivery_code = models.PositiveSmallIntegerField(null=True, blank=True)
    delivery_reason = models.CharField(max_length=120, blank=True, db_default="")
    answered_at = models.DateTimeField(null=True, blank=True)
    # When a task last took the notice, and until when it holds it (a send in flight): a
    # second task (the sweep's, or a redelivery) leaves it alone, so no phone hears twice.
    attempted_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self):
        return f"{self.kind} to {self.registration_id}"

    @property
    def outcome(self) -> str:
        """What became of the notice, in words a busy admin reads at a glance."""
        code = self.delivery_code
        said = f"{code} {self.delivery_reason}".strip() if code else ""
        pending = self.state == self.State.PENDING
        again = "; trying again" if pending else ""
        if pending and not self.attempts:
            return "Sending…"
        if self.channel == self.Channel.SIP:
            if self.state == self.State.SENT:
                return f"Delivered to the phone ({said})"
            if code == 408:
                return f"Phone did not answer (408){again}"
            if code and code >= 500 and code < 600:
                return f"The network could not deliver it ({said}){again}"
            if code:
                return f"Refused by the phone ({said})"
            return f"The SIP edge did not take it{again}"
        if self.channel == self.Channel.WEBHOOK:
            if self.state == self.State.SENT:
                return f"Handed to the operator's notification service ({said})"
            if code and not pending and code < 500 and code != 429:
                return f"Refused by the operator's notification service ({said})"
            if code:
                return f"The operator's notification service failed ({said}){again}"
            return f"The operator's notification service did not answer{again}"
        if self.state == self.State.SENT:
            return "Recorded in the portal (no delivery to phones configured)"
        return f"Not sent{again}"
