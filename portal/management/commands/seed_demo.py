"""Demo data for a development portal: ``manage.py seed_demo [--json]``.

Idempotent: running it again changes nothing and prints the same credentials, because
the demo secrets (passwords, TOTP keys, the API token) are fixed. It refuses to run
when DEBUG is off, so these well-known secrets never reach a production database.
"""

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import oidc, services
from accounts.audit import Actor
from accounts.models import (
    ApiToken,
    ClientRegistration,
    Enterprise,
    NetworkClient,
    Role,
    Service,
    User,
)
from kernel import generations
from kernel.credentials import hash_secret
from telephony.callauth import credentials
from telephony.callauth.stir import certificates
from telephony.identities import services as telephony_services
from telephony.inventory import services as inventory
from telephony.inventory.numbers import with_luhn_digit
from telephony.models import CallerName, Grant, Identity, NumberBlock, SigningCredential, SimLine

DEMO_PASSWORD = "demo-Portal-2026"  # noqa: S105 - fixed on purpose, DEBUG only
DEMO_API_TOKEN = (
    f"{ApiToken.TOKEN_PREFIX}_demo_{hashlib.sha256(b'demo api token').hexdigest()[:32]}"
)
DEMO_SCIM_TOKEN = f"{ApiToken.PREFIXES[ApiToken.Purpose.SCIM]}_demo_{hashlib.sha256(b'demo scim token').hexdigest()[:32]}"
DEMO_OIDC_CLIENT_ID = "demo-softphone"
DEMO_OIDC_REDIRECT = "http://127.0.0.1:8765/callback"
DEMO_NETWORK_TOKEN = (
    f"{NetworkClient.TOKEN_PREFIX}_demo_{hashlib.sha256(b'demo network token').hexdigest()[:32]}"
)

ENTERPRISES: list[dict[str, Any]] = [
    {
        "name": "Swift Delivery",
        "slug": "swift-delivery",
        "sip_domain": "swift-delivery.example",
        "contract": {
            "may_create_identities": True,
            "may_authenticate_users": True,
            "identity_quota": 50,
            "allowed_services": [
                Service.VOICE,
                Service.VIDEO,
                Service.MESSAGING,
                Service.CONFERENCE,
            ],
            "max_ues_per_user": 3,
            "employee_2fa_required": True,
        },
        "users": [
            ("admin@swift-delivery.example", "Ada Admin", Role.ADMIN),
            ("helpdesk@swift-delivery.example", "Hugo Helpdesk", Role.HELPDESK),
            ("rob.smith@swift-delivery.example", "Rob Smith", Role.EMPLOYEE),
            ("maria.garcia@swift-delivery.example", "Maria Garcia", Role.EMPLOYEE),
            ("chen.wei@swift-delivery.example", "Chen Wei", Role.EMPLOYEE),
        ],
        # Berlin numbers, and a US block for relocations.
        "blocks": [
            ("+4930555000", "+4930555099", "Berlin office"),
            ("+14155550100", "+14155550199", "US"),
        ],
        "lines": 10,
        # email: (SIM line number or None for a soft client, services, alias)
        "identities": {
            "rob.smith@swift-delivery.example": (1, ["voice", "video", "messaging"], "rob.smith"),
            "maria.garcia@swift-delivery.example": (None, ["voice", "conference"], ""),
            "chen.wei@swift-delivery.example": (2, ["voice"], ""),
        },
    },
    {
        "name": "Bluebird Couriers",
        "slug": "bluebird-couriers",
        "sip_domain": "bluebird-couriers.example",
        "contract": {"allowed_services": [Service.VOICE], "identity_quota": 10},
        "users": [("admin@bluebird-couriers.example", "Bea Bluebird", Role.ADMIN)],
        "blocks": [("+4940123400", "+4940123449", "Hamburg")],
        "lines": 0,
        "identities": {},
    },
]
STAFF = ("staff@ica.example", "Olga Operator")


def demo_totp_key(email: str) -> str:
    """A fixed TOTP key per demo user, so the otpauth URI survives re-seeding."""
    return hashlib.sha256(f"demo totp {email}".encode()).hexdigest()[:40]


class Command(BaseCommand):
    help = "Create demo enterprises, users with TOTP devices and an API token (DEBUG only)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print credentials as JSON.")
        parser.add_argument(
            "--lab-domain",
            default="",
            help="Seed for the lab IMS core (make lab) of this home domain: Swift Delivery's "
            "SIP domain, and identities PyHSS can hold (each on a SIM line, no alias: PyHSS "
            "derives IMPI and IMPUs from IMSI and MSISDN).",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo only runs with DJANGO_DEBUG on: its secrets are public.")
        with transaction.atomic():
            self.lab_domain = options["lab_domain"]
            report = self.seed()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.print_report(report)

    lab_domain = ""

    def seed(self) -> dict:
        actor = Actor.system()
        users = [self.user(*STAFF, role="operator", enterprise=None)]
        for spec in ENTERPRISES:
            enterprise = Enterprise.objects.filter(slug=spec["slug"]).first()
            if enterprise is None:
                enterprise = services.enterprise_create(
                    actor=actor,
                    name=spec["name"],
                    slug=spec["slug"],
                    sip_domain=(spec["slug"] == "swift-delivery" and self.lab_domain)
                    or spec["sip_domain"],
                    **spec["contract"],
                )
            users += [self.user(e, n, role=r, enterprise=enterprise) for e, n, r in spec["users"]]
            self.telephony(enterprise, spec)
        swift = Enterprise.objects.get(slug="swift-delivery")
        ApiToken.objects.get_or_create(
            key_hash=hash_secret(DEMO_API_TOKEN),
            defaults={
                "enterprise": swift,
                "name": "Demo HR system",
                "role": Role.ADMIN,
                "hint": DEMO_API_TOKEN[-4:],
            },
        )
        client, _ = NetworkClient.objects.get_or_create(
            key_hash=hash_secret(DEMO_NETWORK_TOKEN),
            defaults={"name": "Demo S-CSCF", "hint": DEMO_NETWORK_TOKEN[-4:]},
        )
        client.enterprises.add(swift)
        self.call_authentication(swift)
        ApiToken.objects.get_or_create(
            key_hash=hash_secret(DEMO_SCIM_TOKEN),
            defaults={
                "enterprise": swift,
                "purpose": ApiToken.Purpose.SCIM,
                "name": "Demo identity provider",
                "role": Role.ADMIN,
                "hint": DEMO_SCIM_TOKEN[-4:],
            },
        )
        self.oidc_client(swift)
        return {
            "users": users,
            "api_token": DEMO_API_TOKEN,
            "network_token": DEMO_NETWORK_TOKEN,
            "scim_token": DEMO_SCIM_TOKEN,
            "oidc_client": {"client_id": DEMO_OIDC_CLIENT_ID, "redirect_uri": DEMO_OIDC_REDIRECT},
        }

    def oidc_client(self, swift) -> None:
        """A first-party MMTEL softphone registered for Swift Delivery, with a fixed client id."""
        if ClientRegistration.objects.filter(application__client_id=DEMO_OIDC_CLIENT_ID).exists():
            return
        registration = oidc.client_register(
            actor=Actor.system(),
            enterprise=swift,
            name="Demo softphone",
            redirect_uris=[DEMO_OIDC_REDIRECT],
            first_party=True,
        )
        registration.application.client_id = DEMO_OIDC_CLIENT_ID
        registration.application.save(update_fields=["client_id"])

    def telephony(self, enterprise, spec) -> None:
        """Number blocks, a SIM line pool, identities and one sharing grant."""
        actor = Actor.system()
        for first, last, note in spec["blocks"]:
            if not NumberBlock.objects.filter(first_number=first).exists():
                inventory.number_block_create(
                    actor=actor,
                    enterprise=enterprise,
                    first_number=first,
                    last_number=last,
                    note=note,
                )
        for n in range(1, spec["lines"] + 1):
            imsi = f"26201{n:010d}"
            if not SimLine.objects.filter(imsi=imsi).exists():
                inventory.sim_line_create(
                    actor=actor,
                    enterprise=enterprise,
                    imsi=imsi,
                    iccid=with_luhn_digit(f"894901{n:012d}"),
                )
        for n, (email, (line, services_, alias)) in enumerate(spec["identities"].items(), 1):
            if self.lab_domain:  # what PyHSS can hold: a SIM line each, no alias
                line, alias = line or spec["lines"] + 1 - n, ""
            owner = User.objects.get(email=email)
            if not Identity.objects.live().filter(owner=owner).exists():
                telephony_services.identity_create(
                    actor=actor,
                    owner=owner,
                    services=services_,
                    imsi=f"26201{line:010d}" if line else "",
                    alias=alias,
                )
        if spec["identities"] and not Grant.objects.filter(enterprise=enterprise).exists():
            maria = User.objects.get(email="maria.garcia@swift-delivery.example")
            telephony_services.grant_create(
                actor=Actor(user=maria),
                identity=Identity.objects.live().get(owner=maria),
                grantee=User.objects.get(email="rob.smith@swift-delivery.example"),
            )

    def call_authentication(self, swift) -> None:
        """A lab STI-CA with the operator's issuing CA and end-entity signing certificate,
        Swift Delivery's delegate certificate for its blocks, and its vetted business name.
        A database seeded before the operator had an issuing CA (its signing certificate
        was a CA, which verifiers refuse) gets a new lab PKI and delegate certificate."""
        actor = Actor.system()
        Kind = SigningCredential.Kind
        signing = SigningCredential.objects.filter(kind=Kind.OPERATOR, active=True).first()
        if (
            signing is None
            or certificates.is_ca(
                certificates.load_certificates(signing.certificate_pem.encode())[0]
            )
            or not SigningCredential.objects.filter(kind=Kind.OPERATOR_CA, active=True).exists()
        ):
            credentials.lab_pki_create(
                actor=actor, operator_name=settings.OPERATOR_NAME, spc="1234"
            )
        if not SigningCredential.objects.filter(
            enterprise=swift, active=True, issuer__kind=Kind.OPERATOR_CA, issuer__active=True
        ).exists():
            credentials.delegate_certificate_issue(actor=actor, enterprise=swift)
        CallerName.objects.get_or_create(
            enterprise=swift,
            defaults={
                "name": "Swift Delivery",
                "call_reason": "About your delivery",
                "vetting": CallerName.Vetting.VETTED,
                "vetted_at": timezone.now(),
            },
        )
        # Written without a service: the call path's cache learns of it here.
        generations.bump_after_commit(enterprise_id=swift.pk)

    def user(self, email, full_name, *, role, enterprise) -> dict:
        user = User.objects.filter(email=email).first()
        if user is None:
            if enterprise is None:
                user = User.objects.create_superuser(email, DEMO_PASSWORD, full_name=full_name)
            else:
                user = User.objects.create_user(
                    email,
                    DEMO_PASSWORD,
                    full_name=full_name,
                    enterprise=enterprise,
                    role=role,
                    status=User.Status.ACTIVE,
                )
        device, _ = TOTPDevice.objects.get_or_create(
            user=user,
            name="Demo authenticator",
            defaults={"key": demo_totp_key(email), "confirmed": True},
        )
        return {
            "email": email,
            "password": DEMO_PASSWORD,
            "role": role,
            "enterprise": enterprise.name if enterprise else None,
            "otpauth": device.config_url,
        }

    def print_report(self, report):
        out = self.stdout
        out.write(
            self.style.SUCCESS("Demo data ready. Sign in at " + settings.PORTAL_BASE_URL + "/")
        )
        out.write(f"Every demo user's password: {DEMO_PASSWORD}")
        out.write("Each has an authenticator; add its otpauth URI to an app, or print the")
        out.write("current code with: python manage.py demo_code <email>\n")
        for user in report["users"]:
            where = user["enterprise"] or "operator staff (Django admin at /admin/)"
            out.write(f"  {user['email']:<40} {user['role']:<9} {where}")
            out.write(f"    {user['otpauth']}")
        out.write(f"\nAPI token for Swift Delivery: {report['api_token']}")
        auth = f"Authorization: Bearer {report['api_token']}"
        out.write(f"  curl -H '{auth}' {settings.PORTAL_BASE_URL}/api/v1/users/")
        out.write(
            f"\nNetwork client (IMS core) credential for Swift Delivery: {report['network_token']}"
        )
        out.write(f"  POST reginfo documents to {settings.PORTAL_BASE_URL}/network/v1/reginfo")
        out.write(
            f"\nSCIM token for Swift Delivery: {report['scim_token']}  ({settings.PORTAL_BASE_URL}/scim/v2/)"
        )
        client = report["oidc_client"]
        out.write(
            f"OpenID Connect client: {client['client_id']} (redirect {client['redirect_uri']}); "
            f"discovery at {settings.PORTAL_BASE_URL}/.well-known/openid-configuration"
        )
