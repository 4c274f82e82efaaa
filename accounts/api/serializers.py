from rest_framework import serializers

from accounts import trail
from accounts.models import AuditEvent, Enterprise, Role, ServiceContract, User


class ServiceContractSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceContract
        fields = [
            "may_create_identities",
            "may_authenticate_users",
            "identity_quota",
            "allowed_services",
            "max_ues_per_user",
            "ue_limit_policy",
            "employee_2fa_required",
            "deactivation_grace_days",
        ]


class EnterpriseSerializer(serializers.ModelSerializer):
    contract = ServiceContractSerializer(read_only=True)

    class Meta:
        model = Enterprise
        fields = ["id", "name", "slug", "sip_domain", "status", "contract"]


class UserSerializer(serializers.ModelSerializer):
    has_authenticator = serializers.BooleanField(
        read_only=True, help_text="Whether the user has enrolled an authenticator app."
    )

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "role", "status", "date_joined", "has_authenticator"]
        read_only_fields = fields


class UserInviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    full_name = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.EMPLOYEE)


class UserUpdateSerializer(serializers.Serializer):
    full_name = serializers.CharField(max_length=150, required=False)
    role = serializers.ChoiceField(choices=Role.choices, required=False)


class AuditEventSerializer(serializers.ModelSerializer):
    summary = serializers.SerializerMethodField(help_text="The event as a sentence.")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "summary",
            "actor_kind",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "changes",
            "ip",
        ]
        read_only_fields = fields

    def get_summary(self, event: AuditEvent) -> str:
        return trail.sentence(event)


class AuditFilterSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, default="")
    actor_kind = serializers.ChoiceField(
        choices=AuditEvent.ActorKind.choices, required=False, default=""
    )
    since = serializers.DateField(required=False, default=None)
    until = serializers.DateField(required=False, default=None)
    person = serializers.CharField(required=False, default="", max_length=150)
    kind = serializers.ChoiceField(choices=list(trail.OBJECT_KINDS), required=False, default="")


class UserFilterSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, default="")
    role = serializers.ChoiceField(choices=Role.choices, required=False, default="")
    status = serializers.ChoiceField(choices=User.Status.choices, required=False, default="")
