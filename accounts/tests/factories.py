import factory
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken, Enterprise, Role, Service, ServiceContract, User
from kernel.credentials import new_secret

PASSWORD = "a-Long-test-password-42"


class EnterpriseFactory(factory.django.DjangoModelFactory[Enterprise]):
    class Meta:
        model = Enterprise
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Enterprise {n}")
    slug = factory.Sequence(lambda n: f"enterprise-{n}")
    sip_domain = factory.Sequence(lambda n: f"enterprise-{n}.example")
    contract = factory.RelatedFactory(
        "accounts.tests.factories.ServiceContractFactory", factory_related_name="enterprise"
    )


class ServiceContractFactory(factory.django.DjangoModelFactory[ServiceContract]):
    class Meta:
        model = ServiceContract

    enterprise = factory.SubFactory(EnterpriseFactory, contract=None)
    allowed_services = [Service.VOICE, Service.VIDEO, Service.MESSAGING]
    identity_quota = 100


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    # Typed wide enough for StaffFactory, whose users belong to no enterprise and have no role.
    enterprise: factory.SubFactory | None = factory.SubFactory(EnterpriseFactory)
    role: str = Role.EMPLOYEE
    status = User.Status.ACTIVE

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])


class AdminFactory(UserFactory):
    role = Role.ADMIN


class HelpdeskFactory(UserFactory):
    role = Role.HELPDESK


class StaffFactory(UserFactory):
    enterprise = None
    role = ""
    is_staff = True
    is_superuser = True


class TOTPDeviceFactory(factory.django.DjangoModelFactory[TOTPDevice]):
    class Meta:
        model = TOTPDevice

    user = factory.SubFactory(UserFactory)
    name = "Authenticator app"
    confirmed = True


def api_token(enterprise, role=Role.ADMIN, name="Test token") -> tuple[ApiToken, str]:
    raw, key_hash = new_secret(ApiToken.TOKEN_PREFIX)
    token = ApiToken.objects.create(
        enterprise=enterprise, name=name, role=role, key_hash=key_hash, hint=raw[-4:]
    )
    return token, raw


def people(enterprise, count: int, *, first: int = 0) -> list[User]:
    """``count`` active people of ``enterprise``, made in one statement."""
    return User.objects.bulk_create(
        User(
            enterprise=enterprise,
            email=f"person{n:05d}@{enterprise.slug}.example",
            full_name=f"Person {n:05d}",
            role=Role.EMPLOYEE,
            status=User.Status.ACTIVE,
        )
        for n in range(first, first + count)
    )
