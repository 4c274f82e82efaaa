from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Role, Service
from telephony.models import (
    CallRecord,
    Grant,
    Identity,
    IdentitySync,
    NumberBlock,
    OffboardingReceipt,
    Registration,
    SimLine,
    TelephoneNumber,
)


class SyncSerializer(serializers.ModelSerializer):
    class Meta:
        model = IdentitySync
        fields = [
            "state",
            "synced_at",
            "last_error",
            "attempts",
            "next_attempt_at",
            "desired_version",
            "synced_version",
            "remote_operation_id",
            "drift",
            "drift_found_at",
        ]
        read_only_fields = fields


class IdentitySerializer(serializers.ModelSerializer):
    owner_email = serializers.EmailField(source="owner.email", read_only=True)
    tn = serializers.CharField(read_only=True)
    imsi = serializers.SerializerMethodField()
    impus = serializers.ListField(child=serializers.CharField(), read_only=True)
    impi = serializers.CharField(read_only=True)
    sync = SyncSerializer(read_only=True)

    class Meta:
        model = Identity
        fields = [
            "id",
            "owner",
            "owner_email",
            "tn",
            "former_tn",
            "imsi",
            "impus",
            "impi",
            "alias",
            "display_name",
            "services",
            "status",
            "sync",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_blank=True))
    def get_imsi(self, identity) -> str:
        return identity.line.imsi if identity.line_id else ""


class IdentityCreateSerializer(serializers.Serializer):
    owner = serializers.IntegerField(help_text="The employee's user id.")
    services = serializers.ListField(child=serializers.ChoiceField(choices=Service.choices))
    display_name = serializers.CharField(required=False, default="", allow_blank=True)
    tn = serializers.CharField(
        required=False, default="", allow_blank=True, help_text="E.164; empty for the next free."
    )
    imsi = serializers.CharField(required=False, default="", allow_blank=True)
    alias = serializers.CharField(required=False, default="", allow_blank=True)


class IdentityUpdateSerializer(serializers.Serializer):
    services = serializers.ListField(
        child=serializers.ChoiceField(choices=Service.choices), required=False
    )
    display_name = serializers.CharField(required=False)
    alias = serializers.CharField(required=False, allow_blank=True)


class RelocateSerializer(serializers.Serializer):
    country = serializers.CharField(required=False, default="", allow_blank=True, max_length=2)
    tn = serializers.CharField(required=False, default="", allow_blank=True)
    imsi = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text='New SIM line; "" removes it; omit to keep.',
    )


class OnboardSerializer(serializers.Serializer):
    email = serializers.EmailField()
    full_name = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.EMPLOYEE)
    services = serializers.ListField(child=serializers.ChoiceField(choices=Service.choices))
    display_name = serializers.CharField(required=False, default="", allow_blank=True)
    tn = serializers.CharField(required=False, default="", allow_blank=True)
    imsi = serializers.CharField(required=False, default="", allow_blank=True)
    alias = serializers.CharField(required=False, default="", allow_blank=True)
    send_invitation = serializers.BooleanField(default=True)


class IdentityFilterSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, default="")
    status = serializers.ChoiceField(
        choices=[*Identity.Status.choices, ("all", "All")],
        required=False,
        default="",
        help_text="Default: active and suspended.",
    )
    sync = serializers.ChoiceField(choices=IdentitySync.State.choices, required=False, default="")


class NumberBlockSerializer(serializers.ModelSerializer):
    size = serializers.IntegerField(read_only=True)
    assigned = serializers.IntegerField(read_only=True)
    quarantined = serializers.IntegerField(read_only=True)
    free = serializers.IntegerField(read_only=True)

    class Meta:
        model = NumberBlock
        fields = [
            "id",
            "first_number",
            "last_number",
            "country",
            "note",
            "size",
            "assigned",
            "quarantined",
            "free",
        ]
        read_only_fields = fields


class TelephoneNumberSerializer(serializers.ModelSerializer):
    class Meta:
        model = TelephoneNumber
        fields = ["e164", "status", "quarantined_until", "block"]
        read_only_fields = fields


class NumberFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=TelephoneNumber.Status.choices, required=False, default=""
    )
    country = serializers.CharField(required=False, default="", max_length=2)


class SimLineSerializer(serializers.ModelSerializer):
    identity: "serializers.PrimaryKeyRelatedField[Identity]" = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The identity using the line; null if free."
    )

    class Meta:
        model = SimLine
        fields = ["id", "imsi", "iccid", "identity"]
        read_only_fields = fields


class GrantSerializer(serializers.ModelSerializer):
    identity_tn = serializers.SerializerMethodField()
    is_active = serializers.BooleanField(read_only=True)
    # Blank while the grant lasts; declared so that the schema allows "".
    end_reason = serializers.ChoiceField(
        choices=Grant.EndReason.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Grant
        fields = [
            "id",
            "identity",
            "identity_tn",
            "grantee",
            "can_make_calls",
            "can_receive_calls",
            "valid_until",
            "is_active",
            "created_at",
            "revoked_at",
            "end_reason",
        ]
        read_only_fields = fields

    def get_identity_tn(self, grant) -> str:
        return grant.identity.tn or grant.identity.former_tn


class GrantCreateSerializer(serializers.Serializer):
    identity = serializers.IntegerField()
    grantee = serializers.IntegerField(help_text="The colleague's user id.")
    can_make_calls = serializers.BooleanField(default=True)
    can_receive_calls = serializers.BooleanField(default=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True, default=None)


class OffboardSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="The leaver's user id.")
    revoke_api_tokens = serializers.BooleanField(
        default=False,
        help_text="Also revoke the API and SCIM tokens the leaver created; they are the "
        "enterprise's, so they stay active otherwise.",
    )


class DeactivateSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="The user's id.")


class ReceiptStepSerializer(serializers.Serializer):
    step = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["done", "requested", "in progress", "failed"])
    identity_id = serializers.IntegerField(required=False)
    detail = serializers.CharField(required=False)
    at = serializers.DateTimeField(required=False)


class ReceiptSerializer(serializers.ModelSerializer):
    steps = serializers.SerializerMethodField()

    class Meta:
        model = OffboardingReceipt
        fields = ["id", "kind", "user", "actor_label", "created_at", "steps"]
        read_only_fields = fields

    @extend_schema_field(ReceiptStepSerializer(many=True))
    def get_steps(self, receipt):
        from telephony.selectors import receipt_steps

        steps = receipt_steps(receipt, self.context.get("receipt_syncs"))
        return ReceiptStepSerializer(steps, many=True).data


class RegistrationSerializer(serializers.ModelSerializer):
    identity_tn = serializers.SerializerMethodField()
    user_email = serializers.EmailField(source="user.email", read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    # Blank while the device is registered; declared so that the schema allows "".
    end_reason = serializers.ChoiceField(
        choices=Registration.EndReason.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Registration
        fields = [
            "id",
            "identity",
            "identity_tn",
            "user",
            "user_email",
            "label",
            "instance_id",
            "impus",
            "contact_uri",
            "pub_gruu",
            "user_agent",
            "access_network",
            "ip",
            "state",
            "is_active",
            "first_registered_at",
            "last_refreshed_at",
            "expires_at",
            "ended_at",
            "end_reason",
            "enabled_services",
            "default_impu",
            "do_not_disturb",
            "ring_priority",
            "sign_out_requested_at",
            "sign_out_sent_at",
        ]
        read_only_fields = fields

    def get_identity_tn(self, registration) -> str:
        return registration.identity.tn or registration.identity.former_tn


class RegistrationSettingsSerializer(serializers.Serializer):
    enabled_services = serializers.ListField(
        child=serializers.ChoiceField(choices=Service.choices), required=False
    )
    default_impu = serializers.CharField(required=False, allow_blank=True)
    do_not_disturb = serializers.BooleanField(required=False)
    ring_priority = serializers.IntegerField(required=False, min_value=1, max_value=5)


class RegistrationFilterSerializer(serializers.Serializer):
    active = serializers.ChoiceField(choices=["yes", "no", "all"], required=False, default="yes")
    user = serializers.IntegerField(required=False, default=None)
    q = serializers.CharField(required=False, default="")


class SignOutAllSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="The person whose devices to sign out.")


class SignOutAllResultSerializer(serializers.Serializer):
    requested = serializers.IntegerField()


class CallRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = CallRecord
        fields = [
            "id",
            "created_at",
            "direction",
            "identity",
            "orig_tn",
            "dest_tns",
            "attestation",
            "verstat",
            "reason",
            "checks",
            "origid",
            "caller_name",
        ]
        read_only_fields = fields


class CallRecordFilterSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=CallRecord.Direction.choices, required=False, default=""
    )
    identity = serializers.IntegerField(required=False, default=None)


class AttestationDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    A = serializers.IntegerField()
    B = serializers.IntegerField()
    C = serializers.IntegerField()
    total = serializers.IntegerField()


class CallSummarySerializer(serializers.Serializer):
    signed = serializers.IntegerField(help_text="Outgoing calls signed in the last 24 hours.")
    a = serializers.IntegerField()
    b = serializers.IntegerField()
    c = serializers.IntegerField()
    a_share = serializers.IntegerField(
        allow_null=True, help_text="Percent of signed calls attested A."
    )
    verified = serializers.IntegerField(help_text="Incoming calls verified in the last 24 hours.")
    failed = serializers.IntegerField()
    days = AttestationDaySerializer(many=True, help_text="The last 14 days.")
