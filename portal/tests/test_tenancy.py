"""An admin of one enterprise can neither read nor change anything of another, by page
or API: checked for every URL the portal has.

Each URL that addresses an object is listed in OBJECT_URLS with a way to make such an
object in another enterprise; a new URL missing from the table fails
``test_every_object_url_is_covered``. URLs without an object are fetched with another
enterprise's data full of a canary string, which must never show.
"""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import audit
from accounts.models import AuditEvent, Role, User
from accounts.tests.factories import UserFactory, api_token
from portal.testing import assert_other_enterprise_gets_404, response_text, url_patterns
from telephony.identities import services as telephony_services
from telephony.models import ImportJob, NumberBlock, SimLine
from telephony.tests.factories import give_line, give_numbers, make_identity

pytestmark = pytest.mark.django_db

CANARY = "CANARY-OTHER-ENTERPRISE"


def _member(enterprise, **extra):
    return {"pk": UserFactory(enterprise=enterprise, full_name=f"{CANARY} user", **extra).pk}


def _audit_event(enterprise):
    user = UserFactory(enterprise=enterprise)
    event = audit.record(
        actor=audit.Actor(user=user), action="test.event", enterprise=enterprise, target=user
    )
    return {"pk": event.pk}


def _identity(enterprise):
    if not NumberBlock.objects.filter(enterprise=enterprise).exists():
        give_numbers(enterprise, "+4940123400", "+4940123449")
    owner = UserFactory(enterprise=enterprise, full_name=f"{CANARY} owner")
    return make_identity(owner, display_name="CANARY")


def _grant(enterprise):
    identity = _identity(enterprise)
    grantee = UserFactory(enterprise=enterprise, full_name=f"{CANARY} grantee")
    return telephony_services.grant_create(
        actor=audit.Actor(user=identity.owner), identity=identity, grantee=grantee
    )


def _receipt(enterprise):
    identity = _identity(enterprise)
    return telephony_services.employee_offboard(actor=audit.Actor.system(), user=identity.owner)


def _line(enterprise):
    return give_line(enterprise, SimLine.objects.count() + 1)


def _import_job(enterprise):
    return ImportJob.objects.create(
        enterprise=enterprise, filename=f"{CANARY}.csv", csv_text="email,full_name\n", total_rows=1
    )


def _registration(enterprise):
    from accounts.services import network_client_create
    from telephony.registrations import ingest
    from telephony.registrations.reginfo import parse_registration_events

    identity = _identity(enterprise)
    client, _ = network_client_create(
        actor=audit.Actor.system(),
        name=f"S-CSCF {enterprise.pk}-{identity.pk}",
        enterprises=[enterprise],
    )
    document = parse_registration_events(
        {
            "registrations": [
                {
                    "aor": f"tel:{identity.tn}",
                    "contacts": [
                        {
                            "uri": f"sip:{identity.tn}@198.51.100.9",
                            "state": "active",
                            "event": "registered",
                            "expires": 600,
                            "user_agent": f"{CANARY} phone",
                        }
                    ],
                }
            ]
        }
    )
    ingest.apply_report(actor=audit.Actor(network_client=client), client=client, document=document)
    return identity.registrations.get()


def _call_record(enterprise):
    from telephony.models import CallRecord

    return CallRecord.objects.create(
        enterprise=enterprise,
        direction="outgoing",
        orig_tn="+4940123400",
        attestation="A",
        reason=CANARY,
    )


def _oidc_client(enterprise):
    from accounts.oidc import client_register

    return client_register(
        actor=audit.Actor.system(),
        enterprise=enterprise,
        name=f"{CANARY} app",
        redirect_uris=["https://app.example/cb"],
        first_party=True,
    )


def _by_pk(make):
    return lambda e: {"pk": make(e).pk}


# URL name -> kwargs of an object that belongs to the given enterprise.
OBJECT_URLS = {
    "accounts:user_edit": _member,
    "accounts:user_action": lambda e: {**_member(e), "action": "suspend"},
    "accounts:api_token_revoke": lambda e: {"pk": api_token(e)[0].pk},
    "user-detail": _member,
    "user-suspend": _member,
    "user-resume": lambda e: _member(e, status=User.Status.SUSPENDED),
    "user-resend-invitation": lambda e: _member(e, status=User.Status.INVITED),
    "user-reset-2fa": _member,
    "audit-detail": _audit_event,
    "telephony:employee_detail": _member,
    "telephony:employee_offboard": _member,
    "telephony:employee_deactivate": _member,
    "telephony:employee_reactivate": _member,
    "telephony:identity_create": lambda e: {"owner_pk": _member(e)["pk"]},
    "telephony:receipt": _by_pk(_receipt),
    "telephony:receipt_revoke_api_tokens": _by_pk(_receipt),
    "telephony:identity_detail": _by_pk(_identity),
    "telephony:identity_sync": _by_pk(_identity),
    "telephony:identity_edit": _by_pk(_identity),
    "telephony:identity_relocate": _by_pk(_identity),
    "telephony:identity_share": _by_pk(_identity),
    "telephony:identity_share_suggestions": lambda e: {"pk": _identity(e).pk, "field": "grantee"},
    "telephony:identity_action": lambda e: {"pk": _identity(e).pk, "action": "suspend"},
    "telephony:grant_revoke": _by_pk(_grant),
    "identity-detail": _by_pk(_identity),
    "identity-suspend": _by_pk(_identity),
    "identity-resume": _by_pk(_identity),
    "identity-relocate": _by_pk(_identity),
    "identity-retry-sync": _by_pk(_identity),
    "offboarding-detail": _by_pk(_receipt),
    "number-block-detail": lambda e: {"pk": _identity(e).number.block_id},
    "line-detail": _by_pk(_line),
    "grant-detail": _by_pk(_grant),
    "grant-revoke": _by_pk(_grant),
    "telephony:device_sign_out": _by_pk(_registration),
    "telephony:device_settings": _by_pk(_registration),
    "telephony:devices_sign_out_all": lambda e: {"user_pk": _member(e)["pk"]},
    "registration-detail": _by_pk(_registration),
    "registration-sign-out": _by_pk(_registration),
    "registration-device-settings": _by_pk(_registration),
    "call-record-detail": _by_pk(_call_record),
    "accounts:oidc_client_remove": _by_pk(_oidc_client),
    "telephony:import_preview": _by_pk(_import_job),
    "telephony:import_start": _by_pk(_import_job),
    "telephony:import_job": _by_pk(_import_job),
    "telephony:import_progress": _by_pk(_import_job),
    "telephony:import_problem_rows": _by_pk(_import_job),
}

# Parameterised URLs that address no enterprise's object, and why.
NOT_TENANT_OBJECTS = {
    "accounts:invitation_open": "the secret in the link is the credential",
    "accounts:password_reset_confirm": "a signed token for one user",
    "telephony:certificate": "public certificates, fetched by any network as a PASSporT's x5u",
    "telephony:grant_suggestions": "a field of the caller's own Sharing form; what it suggests is tested in telephony/tests/test_sharing_pickers.py",
    "scim:user": "SCIM: authenticated by the enterprise's SCIM token; tenant isolation tested in scim/tests/test_scim.py",
    "scim:group": "SCIM: authenticated by the enterprise's SCIM token; tenant isolation tested in scim/tests/test_scim.py",
    "scim:resource_type": "SCIM discovery: the same resource types for every enterprise",
    "scim:schema": "SCIM discovery: the same schemas for every enterprise",
    "network-report": "a network client's own report; another client's is a 404 (telephony/tests/test_registration_reports.py)",
}


def populate(enterprise):
    """Give ``enterprise`` data of every kind, each carrying the canary string."""
    admin = UserFactory(enterprise=enterprise, role=Role.ADMIN, full_name=f"{CANARY} admin")
    UserFactory(enterprise=enterprise, status=User.Status.INVITED, full_name=f"{CANARY} invited")
    api_token(enterprise, name=f"{CANARY} token")
    audit.record(
        actor=audit.Actor(user=admin), action="canary.event", enterprise=enterprise, target=admin
    )
    _third_party_registration(enterprise)


def _third_party_registration(enterprise):
    """An IMPU registered at the SIP edge: only a network client serving ``enterprise``
    lists it (telephony/tests/test_third_party.py)."""
    from datetime import timedelta

    from django.utils import timezone

    from telephony.models import ThirdPartyRegistration

    identity = _identity(enterprise)
    return ThirdPartyRegistration.objects.create(
        enterprise=enterprise,
        identity=identity,
        aor=f"tel:{identity.tn}",
        scscf=f"sip:{CANARY}.ims.example",
        expires_at=timezone.now() + timedelta(hours=1),
    )


def routes():
    return [
        (name, route, params)
        for name, route, params in url_patterns()
        if not name.startswith("admin:")
    ]


def test_every_object_url_is_covered():
    parameterised = {name for name, _, params in routes() if params}
    missing = parameterised - set(OBJECT_URLS) - set(NOT_TENANT_OBJECTS)
    assert not missing, f"add these URLs to OBJECT_URLS in {__name__}: {sorted(missing)}"
    assert not set(OBJECT_URLS) - parameterised, "OBJECT_URLS names a URL that no longer exists"


@pytest.mark.parametrize("url_name", sorted(OBJECT_URLS))
def test_another_enterprises_object_is_not_found_by_page_or_api(
    url_name, admin_client, enterprise, other_enterprise
):
    url = reverse(url_name, kwargs=OBJECT_URLS[url_name](other_enterprise))
    events_before = AuditEvent.objects.for_enterprise(other_enterprise).count()
    methods = ("get", "post", "patch", "delete") if url.startswith("/api/") else ("get", "post")
    assert_other_enterprise_gets_404(admin_client, url, methods)
    if url.startswith("/api/"):
        _, raw = api_token(enterprise)
        token_client = APIClient()
        token_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert_other_enterprise_gets_404(token_client, url, methods)
    assert AuditEvent.objects.for_enterprise(other_enterprise).count() == events_before


def test_no_page_or_api_list_shows_another_enterprises_data(
    admin_client, enterprise, other_enterprise
):
    from accounts.services import network_client_create

    populate(other_enterprise)
    _, raw = api_token(enterprise)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    # The network API answers the IMS core's elements, each scoped to the enterprises it
    # serves: one that serves ours reads it.
    _, network_raw = network_client_create(
        actor=audit.Actor.system(), name="S-CSCF of ours", enterprises=[enterprise]
    )
    network_client = APIClient()
    network_client.credentials(HTTP_AUTHORIZATION=f"Bearer {network_raw}")
    checked = 0
    for name, _, params in routes():
        if params or name in {"accounts:logout", "api-schema", "api-docs"}:
            continue
        url = reverse(name)
        if url.startswith("/api/"):
            clients = [admin_client, token_client]
        elif url.startswith("/network/"):
            clients = [network_client]
        else:
            clients = [admin_client]
        for client in clients:
            response = client.get(url, follow=True)
            assert response.status_code < 500, f"GET {url} answered {response.status_code}"
            assert CANARY not in response_text(response), (
                f"GET {url} shows another enterprise's data"
            )
            checked += 1
    assert checked >= 10
