"""A suspended enterprise changes nothing (docs/security.md): checked for every URL.

Every URL the portal has is in exactly one of three tables: CHANGES (each unsafe
method it serves, with a request that would change something in an active
enterprise), READS (pages that serve POST only as another way to read) or EXEMPT
(with the reason). A new URL missing from them fails ``test_every_url_is_classified``.
The walk sends each change as the suspended enterprise's admin — by page, API or SCIM
— and each must be refused with the suspension's message and leave every table of the
database as it was.
"""

import hashlib
import itertools
import json
import re

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from accounts import oidc
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Enterprise, Invitation, Role, ServiceContract, User
from accounts.tests.factories import AdminFactory, UserFactory
from accounts.views import SESSION_INVITATION
from kernel.credentials import new_secret
from portal.testing import sign_in_verified, url_patterns
from telephony.bulk import services as bulk
from telephony.identities import services as telephony_services
from telephony.registrations import ingest
from telephony.registrations.reginfo import parse_registration_events
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

SUSPENDED = "is suspended by the operator; changes are blocked"
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
UNSAFE = ("post", "put", "patch", "delete")

# What changes while nothing does: sessions (sign-in, messages), sign-in attempts, and
# when a token was last used (a hint for admins, written at most once a minute).
NOT_COMPARED = {"sessions.session", "axes.accessattempt", "axes.accesslog", "axes.accessfailurelog"}
NOT_COMPARED_COLUMNS = {"accounts.apitoken": {"last_used_at"}}


def database_fingerprint() -> str:
    """A digest of every row of every table (but NOT_COMPARED): equal means unchanged."""
    digest = hashlib.sha256()
    for model in apps.get_models(include_auto_created=True):
        label = model._meta.label_lower
        if label in NOT_COMPARED or not model._meta.managed:
            continue
        skipped = NOT_COMPARED_COLUMNS.get(label, set())
        columns = [f.attname for f in model._meta.concrete_fields if f.attname not in skipped]
        digest.update(label.encode())
        for row in model._base_manager.order_by("pk").values_list(*columns):
            digest.update(repr(row).encode())
    return digest.hexdigest()


class World:
    """One enterprise with something of every kind to change, built while it is
    active; ``suspend`` then lets the operator suspend it."""

    def __init__(self, enterprise, admin):
        self.enterprise, self.admin = enterprise, admin
        ServiceContract.objects.filter(enterprise=enterprise).update(may_authenticate_users=True)
        give_numbers(enterprise)
        system = Actor.system()
        self.member = UserFactory(enterprise=enterprise, full_name="Rob Smith")
        self.leaver = UserFactory(enterprise=enterprise, full_name="Lea Leaver")
        self.invited = UserFactory(enterprise=enterprise, status=User.Status.INVITED)
        self.suspended_user = UserFactory(enterprise=enterprise, status=User.Status.SUSPENDED)
        joiner = account_services.user_invite(
            actor=system,
            enterprise=enterprise,
            email="joy@swift.example",
            full_name="Joy",
            role="employee",
        )
        self.invitation_secret, token_hash = new_secret("inv")  # as the emailed link has it
        Invitation.objects.filter(user=joiner).update(token_hash=token_hash)
        self.identity = make_identity(self.admin)  # the admin's own: devices and grants
        self.member_identity = make_identity(self.member)
        self.suspended_identity = make_identity(self.member)
        telephony_services.identity_suspend(actor=system, identity=self.suspended_identity)
        self.grant = telephony_services.grant_create(
            actor=Actor(user=self.admin), identity=self.identity, grantee=self.member
        )
        self.registration = self._register(self.identity)
        # An admin who left, whose API token the offboarding kept ("Revoke these too").
        gone = AdminFactory(enterprise=enterprise, full_name="Gil Gone")
        account_services.api_token_create(
            actor=Actor(user=gone), enterprise=enterprise, name="Gil's script", role=Role.HELPDESK
        )
        self.receipt = telephony_services.employee_offboard(actor=system, user=gone)
        self.deactivated = UserFactory(enterprise=enterprise, full_name="Dee Deactivated")
        telephony_services.employee_deactivate(actor=system, user=self.deactivated)
        self.token, _ = account_services.api_token_create(
            actor=system, enterprise=enterprise, name="HR system", role=Role.ADMIN
        )
        _, self.scim_raw = account_services.api_token_create(
            actor=system, enterprise=enterprise, name="IdP", role=Role.ADMIN, purpose="scim"
        )
        self.app = oidc.client_register(
            actor=system,
            enterprise=enterprise,
            name="Softphone",
            redirect_uris=["https://app.example/cb"],
            first_party=True,
        )
        AccessToken.objects.create(
            user=self.admin,
            application=self.app.application,
            token="at-swift-admin",
            expires="2099-01-01T00:00:00Z",
            scope="openid",
        )
        self.job = bulk.import_preview(
            actor=Actor(user=self.admin),
            enterprise=enterprise,
            filename="joiners.csv",
            csv_text="email,full_name,services\njo@swift.example,Jo Joiner,voice\n",
            send_invitations=False,
        )
        scim = self.scim_client()
        self.scim_user = scim.post(
            "/scim/v2/Users",
            json.dumps({"schemas": [SCIM_USER], "userName": "sam@swift.example"}),
            content_type="application/scim+json",
        ).json()["id"]
        self.scim_group = scim.post(
            "/scim/v2/Groups",
            json.dumps({"schemas": [SCIM_GROUP], "displayName": "Sales"}),
            content_type="application/scim+json",
        ).json()["id"]

    def _register(self, identity):
        client, _ = account_services.network_client_create(
            actor=Actor.system(), name="S-CSCF", enterprises=[self.enterprise]
        )
        contact = {
            "uri": f"sip:{identity.tn}@198.51.100.9",
            "state": "active",
            "event": "registered",
            "expires": 600,
            "instance": "urn:gsma:imei:35209900-176148-1",
        }
        document = parse_registration_events(
            {"registrations": [{"aor": f"tel:{identity.tn}", "contacts": [contact]}]}
        )
        ingest.apply_report(actor=Actor(network_client=client), client=client, document=document)
        return identity.registrations.get()

    def scim_client(self):
        return Client(HTTP_AUTHORIZATION=f"Bearer {self.scim_raw}")

    def suspend(self, staff):
        account_services.enterprise_set_status(
            actor=Actor(user=staff), enterprise=self.enterprise, status=Enterprise.Status.SUSPENDED
        )


def page(data=None, **kwargs):
    """A form POST to a page: URL kwargs and form data, each value made from the World."""
    return {"post": from_world(kwargs, data)}


def kwargs_of(kwargs, world):
    return {key: value(world) if callable(value) else value for key, value in kwargs.items()}


def of(attribute):
    return lambda w: getattr(w, attribute).pk


def from_world(kwargs, body=None):
    """World -> (URL kwargs, body) of one request."""
    return lambda w: (kwargs_of(kwargs, w), body(w) if body else {})


IDENTITY_FORM = {"services": ["voice"], "display_name": "Rob at work"}

# URL name -> {method: World -> (URL kwargs, body)}: a request that changes something.
CHANGES = {
    # Pages
    "accounts:user_invite": page(
        lambda w: {"full_name": "Nia New", "email": "nia@swift.example", "role": "employee"}
    ),
    "accounts:invitation_accept": page(
        lambda w: {"password": "Tr0ub4dor&3-horse", "password_confirm": "Tr0ub4dor&3-horse"}
    ),
    "accounts:user_edit": page(
        lambda w: {"full_name": "Robert", "role": "helpdesk"}, pk=of("member")
    ),
    "accounts:user_action": page(pk=of("member"), action="suspend"),
    "accounts:api_tokens": page(lambda w: {"name": "Payroll", "role": "helpdesk"}),
    "accounts:api_token_revoke": page(pk=of("token")),
    "accounts:identity_provider": page(
        lambda w: {
            "client-name": "Evil app",
            "client-redirect_uris": "https://evil.example/cb",
            "client-first_party": "on",
        },
    ),
    "accounts:oidc_client_remove": page(pk=of("app")),
    "accounts:connected_apps": page(lambda w: {"application": w.app.application.pk}),
    "telephony:employee_onboard": page(
        lambda w: {
            "full_name": "Jo Joiner",
            "email": "jo@swift.example",
            "role": "employee",
            **IDENTITY_FORM,
        },
    ),
    "telephony:employee_offboard": page(pk=of("leaver")),
    "telephony:receipt_revoke_api_tokens": page(pk=of("receipt")),
    "telephony:employee_deactivate": page(pk=of("member")),
    "telephony:identities_bulk": page(
        lambda w: {"action": "suspend", "identities": [w.member_identity.pk], "confirmed": "yes"}
    ),
    "telephony:employees_bulk": page(
        lambda w: {"action": "suspend", "people": [w.member.pk], "confirmed": "yes"}
    ),
    "telephony:employee_reactivate": page(pk=of("deactivated")),
    "telephony:identity_create": page(lambda w: IDENTITY_FORM, owner_pk=of("member")),
    "telephony:identity_edit": page(lambda w: IDENTITY_FORM, pk=of("member_identity")),
    "telephony:identity_relocate": page(lambda w: {"country": "DE"}, pk=of("member_identity")),
    "telephony:identity_action": page(pk=of("member_identity"), action="suspend"),
    "telephony:identity_share": page(
        lambda w: {
            "identity": w.member_identity.pk,
            "grantee": w.leaver.email,
            "can_make_calls": "on",
        },
        pk=of("member_identity"),
    ),
    "telephony:grants": page(
        lambda w: {
            "identity": w.identity.tn,
            "grantee": w.leaver.email,
            "can_make_calls": "on",
        },
    ),
    "telephony:grant_revoke": page(pk=of("grant")),
    "telephony:device_sign_out": page(pk=of("registration")),
    "telephony:devices_bulk": page(
        lambda w: {"action": "sign_out", "devices": [w.registration.pk], "confirmed": "yes"}
    ),
    "telephony:devices_sign_out_all": page(user_pk=of("admin")),
    "telephony:device_settings": page(
        lambda w: {
            f"device-{w.registration.pk}-{field}": value
            for field, value in [
                ("enabled_services", "voice"),
                ("do_not_disturb", "on"),
                ("ring_priority", "1"),
            ]
        },
        pk=of("registration"),
    ),
    "telephony:import": page(
        lambda w: {
            "file": SimpleUploadedFile(
                "more.csv", b"email,full_name,services\nkim@swift.example,Kim,voice\n"
            )
        },
    ),
    "telephony:import_start": page(pk=of("job")),
    # API
    "user-list": {
        "post": from_world({}, lambda w: {"email": "nia@swift.example", "full_name": "Nia"})
    },
    "user-detail": {"patch": from_world({"pk": of("member")}, lambda w: {"full_name": "Robert"})},
    "user-suspend": {"post": from_world({"pk": of("member")})},
    "user-resume": {"post": from_world({"pk": of("suspended_user")})},
    "user-resend-invitation": {"post": from_world({"pk": of("invited")})},
    "user-reset-2fa": {"post": from_world({"pk": of("member")})},
    "identity-list": {
        "post": from_world({}, lambda w: {"owner": w.member.pk, "services": ["voice"]}),
    },
    "identity-detail": {
        "patch": from_world({"pk": of("member_identity")}, lambda w: {"display_name": "Rob"}),
        "delete": from_world({"pk": of("member_identity")}),
    },
    "identity-relocate": {
        "post": from_world({"pk": of("member_identity")}, lambda w: {"country": "DE"})
    },
    "identity-suspend": {"post": from_world({"pk": of("member_identity")})},
    "identity-resume": {"post": from_world({"pk": of("suspended_identity")})},
    "identity-retry-sync": {"post": from_world({"pk": of("member_identity")})},
    "onboarding-list": {
        "post": from_world(
            {}, lambda w: {"email": "jo@swift.example", "full_name": "Jo", "services": ["voice"]}
        )
    },
    "offboarding-list": {"post": from_world({}, lambda w: {"user": w.leaver.pk})},
    "deactivation-list": {"post": from_world({}, lambda w: {"user": w.member.pk})},
    "reactivation-list": {"post": from_world({}, lambda w: {"user": w.deactivated.pk})},
    "grant-list": {
        "post": from_world(
            {},
            lambda w: {"identity": w.identity.pk, "grantee": w.leaver.pk, "can_make_calls": True},
        )
    },
    "grant-revoke": {"post": from_world({"pk": of("grant")})},
    "registration-sign-out-all": {"post": from_world({}, lambda w: {"user": w.admin.pk})},
    "registration-sign-out": {"post": from_world({"pk": of("registration")})},
    "registration-device-settings": {
        "patch": from_world({"pk": of("registration")}, lambda w: {"do_not_disturb": True})
    },
    # SCIM
    "scim:users": {
        "post": from_world({}, lambda w: {"schemas": [SCIM_USER], "userName": "kim@swift.example"})
    },
    "scim:user": {
        "put": from_world(
            {"resource_id": lambda w: w.scim_user},
            lambda w: {"schemas": [SCIM_USER], "userName": "sam@swift.example", "active": False},
        ),
        "patch": from_world(
            {"resource_id": lambda w: w.scim_user},
            lambda w: {
                "schemas": [SCIM_PATCH],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Sam"}],
            },
        ),
        "delete": from_world({"resource_id": lambda w: w.scim_user}),
    },
    "scim:groups": {
        "post": from_world({}, lambda w: {"schemas": [SCIM_GROUP], "displayName": "Ops"})
    },
    "scim:group": {
        "put": from_world(
            {"resource_id": lambda w: w.scim_group},
            lambda w: {"schemas": [SCIM_GROUP], "displayName": "Sales and more"},
        ),
        "patch": from_world(
            {"resource_id": lambda w: w.scim_group},
            lambda w: {
                "schemas": [SCIM_PATCH],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Marketing"}],
            },
        ),
        "delete": from_world({"resource_id": lambda w: w.scim_group}),
    },
}

# Pages and APIs that only read: what they serve besides GET (if anything) reads too.
READS = {
    "home",
    "accounts:audit",
    "accounts:audit_export",
    "accounts:enterprise",
    "accounts:notifications",
    "accounts:notification_badge",
    "accounts:profile",
    "accounts:backup_codes",
    "telephony:employees",
    "telephony:employee_detail",
    "telephony:identities",
    "telephony:identity_detail",
    "telephony:identity_sync",
    "telephony:identity_share_suggestions",
    "telephony:inventory",
    "telephony:grant_suggestions",
    "telephony:devices",
    "telephony:my_devices",
    "telephony:calls",
    "telephony:receipt",
    "telephony:import_preview",
    "telephony:import_job",
    "telephony:import_progress",
    "telephony:import_problem_rows",
    "telephony:export",
    "api-enterprise",
    "audit-list",
    "audit-detail",
    "call-record-list",
    "call-record-summary",
    "call-record-detail",
    "grant-detail",
    "line-list",
    "line-detail",
    "number-list",
    "number-block-list",
    "number-block-detail",
    "offboarding-detail",
    "registration-list",
    "registration-detail",
    "scim:search",
    "scim:users_search",
    "scim:groups_search",
    "scim:service_provider_config",
    "scim:resource_types",
    "scim:resource_type",
    "scim:schemas",
    "scim:schema",
}

SIGN_IN = "a person's own sign-in, password or second factor: not the enterprise's data"
NETWORK = "the IMS core reports what the network did (operator-issued network clients)"
APPS = "OpenID Connect: apps sign people in and hand back their own tokens"
EXEMPT = {
    "accounts:login": SIGN_IN,
    "accounts:logout": SIGN_IN,
    "accounts:password_change": SIGN_IN,
    "accounts:password_reset": SIGN_IN,
    "accounts:password_reset_done": SIGN_IN,
    "accounts:password_reset_link": SIGN_IN,
    "accounts:password_reset_confirm": SIGN_IN,
    "accounts:password_reset_complete": SIGN_IN,
    "accounts:two_factor": SIGN_IN,
    "accounts:two_factor_setup": SIGN_IN,
    "accounts:backup_codes_new": SIGN_IN,
    "accounts:invitation": "only keeps the link's secret in the session",
    "accounts:invitation_open": "only keeps the link's secret in the session",
    "accounts:notifications_read": "a person's own reading state, like signing in",
    "accounts:time_zone": "a person's own time zone, like their reading state",
    "network-ping": NETWORK,
    "network-reginfo": NETWORK,
    "network-registrations": NETWORK,
    "network-report": NETWORK,
    "network-sip-register": NETWORK,
    "network-sip-invite": NETWORK,
    "network-stir-signing": NETWORK,
    "network-stir-verification": NETWORK,
    "oauth2_provider:authorize": APPS,
    "oauth2_provider:token": APPS,
    "oauth2_provider:revoke-token": APPS,
    "oauth2_provider:introspect": APPS,
    "oauth2_provider:user-info": APPS,
    "oauth2_provider:jwks-info": APPS,
    "oidc-discovery": APPS,
    "healthz": "the operator's monitoring",
    "readyz": "the operator's monitoring",
    "metrics": "the operator's monitoring",
    "api-schema": "the API's description",
    "api-docs": "the API's description",
    "telephony:certificate": "public certificates for any network",
}


def served_methods() -> dict[str, set[str]]:
    """URL name -> the unsafe methods its view serves. A plain function view may serve
    any: pages take POST at most. Django admin is left out: only operator staff reach
    it, and a suspension does not confine them."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace]))
                yield from walk(pattern.url_patterns, inner)
            elif pattern.name:
                yield ":".join(filter(None, [namespace, pattern.name])), pattern.callback

    served: dict[str, set[str]] = {}
    for name, view in walk(get_resolver().url_patterns):
        if name.startswith("admin:"):
            continue
        if getattr(view, "actions", None):  # a DRF viewset route
            methods = set(view.actions)
        elif hasattr(view, "cls") or hasattr(view, "view_class"):
            cls = getattr(view, "cls", None) or view.view_class
            methods = {m for m in cls.http_method_names if hasattr(cls, m)}
        else:
            methods = {"post"}
        served.setdefault(name, set()).update(methods & set(UNSAFE))
    return served


def test_every_url_is_classified():
    served = served_methods()
    tables = [set(CHANGES), set(READS), set(EXEMPT)]
    assert not (tables[0] & tables[1] | tables[0] & tables[2] | tables[1] & tables[2])
    missing = set(served) - set().union(*tables)
    assert not missing, f"add these URLs to CHANGES, READS or EXEMPT in {__name__}: {missing}"
    assert not set().union(*tables) - set(served), "a table names a URL that no longer exists"
    for name, requests in CHANGES.items():
        assert set(requests) == served[name], f"{name} serves {served[name]}"


# API changes a token cannot make in any enterprise, and why.
SESSION_ONLY = {"registration-device-settings": "a device's settings belong to its user"}


def senders(name: str) -> list[str]:
    """Who sends the change: the admin's page session; at the REST API the admin's
    session and an API token; at SCIM the IdP's token; the invitee accepts."""
    if name.startswith("scim:"):
        return ["scim"]
    if name == "accounts:invitation_accept":
        return ["invitee"]
    if ":" in name:
        return ["page"]
    return ["api"] if name in SESSION_ONLY else ["api", "api_token"]


def send(clients, who, name, method, kwargs, body):
    url = reverse(name, kwargs=kwargs)
    if who == "scim":
        return getattr(clients[who], method)(
            url, json.dumps(body), content_type="application/scim+json"
        )
    if who.startswith("api"):
        return getattr(clients[who], method)(url, json.dumps(body), content_type="application/json")
    return clients[who].post(url, body, follow=True)


@pytest.fixture
def suspended(client, enterprise, admin, staff):
    world = World(enterprise, admin)
    api_client = sign_in_verified(APIClient(), admin)
    clients = {"page": sign_in_verified(client, admin), "api": api_client}
    clients["invitee"] = Client()  # who opened the emailed link
    session = clients["invitee"].session
    session[SESSION_INVITATION] = world.invitation_secret
    session.save()
    clients["scim"] = world.scim_client()
    _, raw = account_services.api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="Payroll", role=Role.ADMIN
    )
    clients["api_token"] = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    world.suspend(staff)
    return world, clients


def test_a_suspended_enterprise_refuses_every_change_by_page_api_and_scim(suspended):
    """Pen test F-01: registering an app, removing one, revoking tokens and signing out
    devices passed; now every change is refused with the reason and changes nothing."""
    world, clients = suspended
    wrong = []
    for name, requests in sorted(CHANGES.items()):
        for (method, make), who in itertools.product(requests.items(), senders(name)):
            kwargs, body = make(world)
            before = database_fingerprint()
            response = send(clients, who, name, method, kwargs, body)
            text = response.content.decode()
            said = f"{method.upper()} {name} by {who} answered {response.status_code}"
            refused = response.status_code >= 400 or who in ("page", "invitee")
            if SUSPENDED not in text or not refused:
                shown = re.findall(
                    r'(?:errorlist|role="alert"|class="message )[^>]*>(.*?)</', text, re.S
                )
                wrong.append(f"{said}: {shown or text[:200]}")
            if database_fingerprint() != before:
                wrong.append(f"{said} and changed the database")
    assert not wrong, "\n".join(wrong)


def test_a_suspended_enterprise_may_still_look(suspended):
    """What the pages and APIs that only read serve besides GET (a search, a filter
    form, or a 405) changes nothing either, and fails no server."""
    world, clients = suspended
    served, wrong = served_methods(), []
    kwargs = {
        "pk": world.member.pk,
        "field": "grantee",
        "resource_type_id": "User",
        "schema_id": SCIM_USER,
    }
    before = database_fingerprint()
    for name in sorted(READS):
        pattern_kwargs = {}
        for route_name, _, params in url_patterns():
            if route_name == name:
                pattern_kwargs = {p: kwargs[p] for p in params}
        for method, who in itertools.product(served[name], senders(name)):
            response = send(clients, who, name, method, pattern_kwargs, {})
            if response.status_code >= 500:
                wrong.append(f"{method.upper()} {name} by {who} answered {response.status_code}")
    assert not wrong, "\n".join(wrong)
    assert database_fingerprint() == before


def test_the_audit_record_refuses_a_change_that_forgot_to_ask(enterprise, admin, staff):
    """The one place: a service that writes and records without checking first is
    refused at its audit row, so its transaction (and its writes) roll back."""
    from django.db import transaction

    from accounts import audit
    from kernel.errors import RuleViolation

    def careless_rename(actor):
        with transaction.atomic():
            User.objects.filter(pk=admin.pk).update(full_name="Renamed")
            audit.record(actor=actor, action="user.updated", enterprise=enterprise, target=admin)

    token, _ = account_services.api_token_create(
        actor=Actor(user=staff), enterprise=enterprise, name="HR system", role=Role.ADMIN
    )
    account_services.enterprise_set_status(
        actor=Actor(user=staff), enterprise=enterprise, status=Enterprise.Status.SUSPENDED
    )
    for actor in (Actor(user=admin), Actor(api_token=token)):
        with pytest.raises(RuleViolation, match=SUSPENDED) as refused:
            careless_rename(actor)
        assert refused.value.code == "enterprise_suspended"
        assert User.objects.get(pk=admin.pk).full_name == "Ada Admin"
    careless_rename(Actor(user=staff))  # operator staff still may
    assert User.objects.get(pk=admin.pk).full_name == "Renamed"
    # A person's own act that is no change of the enterprise's is still recorded.
    account_services.user_signed_in(actor=Actor(user=admin))
    assert audit.AuditEvent.objects.filter(action="user.signed_in", actor_user=admin).exists()
