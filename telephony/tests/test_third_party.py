"""The SIP edge's side of the network API: third-party REGISTERs, NOTIFY bodies with
their subscription, and the listing a restarted edge subscribes from."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent
from accounts.tests.factories import UserFactory
from telephony.identities import services, sync
from telephony.models import ReginfoVersion, Registration, ThirdPartyRegistration
from telephony.registrations import third_party
from telephony.tests.factories import give_numbers, make_identity, network_http
from telephony.tests.sip_messages import (
    ROB_CONTACT,
    ROB_IMEI,
    ROB_SIP,
    SCSCF,
    third_party_register,
    with_ue,
)
from telephony.tests.test_network import reginfo

pytestmark = pytest.mark.django_db

REGISTER_URL = "/network/v1/sip/register"


@pytest.fixture
def network(enterprise):
    return network_http(enterprise, name="SIP edge")


def post_sip(http, body: bytes, content_type="message/sip"):
    return http.post(REGISTER_URL, data=body, content_type=content_type)


def notify(http, body: bytes, subscription="apb03a0s09dkjdfglkj49111@scscf1", path="reginfo"):
    return http.post(
        f"/network/v1/{path}?subscription={subscription}",
        data=body,
        content_type="application/reginfo+xml",
    )


def edge_events():
    return AuditEvent.objects.filter(action__startswith="registration.third_party").order_by("id")


def actions():
    return list(edge_events().values_list("action", flat=True))


# --- Third-party REGISTER ----------------------------------------------------------------


def test_a_third_party_register_is_kept_audited_and_answered_subscribe(network, identity):
    response = post_sip(network, third_party_register(expires=600))
    assert response.status_code == 200, response.content
    assert response.json() == {"aor": ROB_SIP, "expires": 600, "known": True, "subscribe": True}
    row = ThirdPartyRegistration.objects.get()
    assert (row.identity, row.enterprise_id, row.scscf) == (identity, identity.enterprise_id, SCSCF)
    assert timedelta(seconds=590) < row.expires_at - timezone.now() <= timedelta(seconds=600)
    event = edge_events().get()
    assert event.action == "registration.third_party_registered"
    assert event.changes == {"aor": [None, ROB_SIP], "scscf": [None, SCSCF], "expires": [None, 600]}
    assert event.actor_kind == "network_client" and event.enterprise_id == identity.enterprise_id
    # A refresh from another S-CSCF (after a re-assignment) moves the row, audited.
    moved = third_party_register(expires=1200, scscf="sip:scscf2.ims.example")
    assert post_sip(network, moved).json()["subscribe"] is True
    assert ThirdPartyRegistration.objects.get().scscf == "sip:scscf2.ims.example"
    assert edge_events().last().changes == {
        "scscf": [SCSCF, "sip:scscf2.ims.example"],
        "expires": [None, 1200],
    }


def test_a_de_registration_forgets_the_impu_and_says_do_not_subscribe(network, identity):
    post_sip(network, third_party_register())
    response = post_sip(network, third_party_register(expires=0))
    assert response.json() == {"aor": ROB_SIP, "expires": 0, "known": True, "subscribe": False}
    assert not ThirdPartyRegistration.objects.exists()
    assert actions() == [
        "registration.third_party_registered",
        "registration.third_party_deregistered",
    ]
    # Again: nothing left to forget, nothing audited.
    assert post_sip(network, third_party_register(expires=0)).status_code == 200
    assert len(actions()) == 2


def test_a_de_registration_ends_the_devices_bound_to_the_impu(network, identity):
    """The S-CSCF de-registered the IMPU: its devices are gone even if no NOTIFY says so
    (the edge was restarting, the subscription had ended)."""
    post_sip(network, third_party_register())
    assert notify(network, reginfo(version=2)).status_code == 200
    assert post_sip(network, third_party_register(expires=0)).status_code == 200
    record = Registration.objects.get()
    assert (record.state, record.end_reason) == ("ended", "deregistered")
    event = edge_events().last()
    assert event.action == "registration.third_party_deregistered"
    assert event.changes["ended_devices"] == [None, 1]


def test_an_impu_that_names_no_identity_is_answered_and_nothing_is_kept(network, identity):
    stranger = "sip:+4930999999@swift.example;user=phone"
    response = post_sip(network, third_party_register(stranger))
    assert response.status_code == 200
    assert response.json() == {
        "aor": stranger,
        "expires": 600000,
        "known": False,
        "subscribe": False,
    }
    assert not ThirdPartyRegistration.objects.exists() and not actions()


def test_an_impu_of_an_enterprise_the_client_does_not_serve_is_refused_and_never_listed(
    network, identity, other_enterprise
):
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise))
    impu = f"sip:{outsider.tn}@{other_enterprise.sip_domain};user=phone"
    response = post_sip(network, third_party_register(impu))
    assert response.status_code == 403
    assert "does not serve Other Co" in response.json()["detail"]
    assert not ThirdPartyRegistration.objects.exists() and not actions()
    # Registered there through another client, it is still not this client's to list.
    ThirdPartyRegistration.objects.create(
        enterprise=other_enterprise,
        identity=outsider,
        aor=impu,
        scscf=SCSCF,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert network.get(REGISTER_URL).json()["registrations"] == []


def test_the_ue_in_the_register_names_the_device_the_next_notify_binds(network, identity):
    post_sip(network, with_ue())
    assert ThirdPartyRegistration.objects.get().device(f"instance:{ROB_IMEI}") == {
        "key": f"instance:{ROB_IMEI}",
        "contact": ROB_CONTACT,
        "instance": ROB_IMEI,
        "user_agent": "Acme Dialer/5.2 (Android 14; SM-S918B)",
        "access_network": "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=262011234abcd1234",
    }
    assert notify(network, reginfo(version=2, instance=ROB_IMEI)).status_code == 200
    record = Registration.objects.get()
    assert record.label == "Android phone (IMEI …1481)"
    assert record.access_network.startswith("3GPP-E-UTRAN-FDD")


def test_a_contact_reported_without_its_instance_takes_the_one_its_register_named(
    network, identity
):
    """Kamailio's presence_reginfo never reports +sip.instance, and a UE's contact URI
    can change at every start: the device is still known by the instance its REGISTER
    named."""
    post_sip(network, with_ue())
    bare = (
        reginfo(version=2)
        .replace(b"sip:+4930123400@198.51.100.20:5060;transport=tcp", ROB_CONTACT.encode())
        .replace(
            f'<unknown-param name="+sip.instance">"&lt;{ROB_IMEI}&gt;"</unknown-param>'.encode(),
            b"",
        )
    )
    assert b"+sip.instance" not in bare
    assert notify(network, bare).status_code == 200
    record = Registration.objects.get()
    assert (record.device_key, record.instance_id) == (f"instance:{ROB_IMEI}", ROB_IMEI)
    assert record.label == "Android phone (IMEI …1481)"


def test_a_register_after_the_notify_describes_the_device_already_there(network, identity):
    notify(network, reginfo(version=2, instance=ROB_IMEI))
    assert Registration.objects.get().label == "Phone (IMEI …1481)"  # reginfo has no UA
    post_sip(network, with_ue())
    record = Registration.objects.get()
    assert record.label == "Android phone (IMEI …1481)"
    assert record.user_agent.startswith("Acme Dialer/5.2")


def test_only_the_last_few_ues_are_remembered(network, identity):
    for n in range(ThirdPartyRegistration.MAX_DEVICES + 3):
        post_sip(network, with_ue(instance=f"urn:uuid:00000000-0000-4000-8000-{n:012d}"))
    devices = ThirdPartyRegistration.objects.get().devices
    assert len(devices) == ThirdPartyRegistration.MAX_DEVICES
    assert devices[-1]["key"].endswith(f"{ThirdPartyRegistration.MAX_DEVICES + 2:012d}")


def test_a_ue_without_an_instance_is_known_by_its_contact(network, identity):
    post_sip(network, with_ue(instance=""))
    assert ThirdPartyRegistration.objects.get().device(f"contact:{ROB_CONTACT}") is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (third_party_register().replace(b"\r\n", b"\n"), "no empty line"),
        (third_party_register().replace(b"REGISTER sip", b"INVITE sip", 1), "not a REGISTER"),
        (third_party_register() + b"x", "Content-Length says 0 bytes"),
    ],
)
def test_a_malformed_register_is_a_400_with_the_reason(network, identity, body, reason):
    response = post_sip(network, body)
    assert response.status_code == 400
    assert "Not a valid third-party REGISTER" in response.json()["detail"]
    assert reason in response.json()["detail"]
    assert not ThirdPartyRegistration.objects.exists()


def test_an_empty_register_body_is_a_400(network, identity):
    assert post_sip(network, b"").status_code == 400


def test_a_register_over_the_size_limit_is_a_413(network, identity):
    huge = third_party_register(body=b"x" * (600 * 1024), content_type="application/octet-stream")
    response = post_sip(network, huge)
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert not ThirdPartyRegistration.objects.exists()


def test_the_register_must_come_as_message_sip_with_a_network_credential(network, identity):
    assert post_sip(network, third_party_register(), "text/plain").status_code == 415
    assert post_sip(Client(), third_party_register()).status_code == 401


# --- NOTIFY bodies with their subscription -------------------------------------------------


def test_a_notify_in_a_new_subscription_applies_though_its_version_is_lower(network, identity):
    assert notify(network, reginfo(version=3), "A@edge").json()["applied"] == 1
    # A second device; the S-CSCF starts the new subscription again at version 2.
    tablet = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    answer = notify(network, reginfo(version=2, instance=tablet, state="partial"), "B@edge").json()
    assert (answer["new_devices"], answer["stale_aors"]) == (1, [])
    # Within A, an older full document is stale.
    assert notify(network, reginfo(version=2), "A@edge").json()["stale_aors"] == [ROB_SIP]
    assert dict(ReginfoVersion.objects.values_list("subscription", "version")) == {
        "A@edge": 3,
        "B@edge": 2,
    }


@pytest.mark.parametrize("path", ["reginfo", "registrations"])
@pytest.mark.parametrize("subscription", ["", "a%20b", "x" * 256, "%C3%A9"])
def test_a_subscription_that_is_not_a_call_id_is_a_400(network, identity, path, subscription):
    response = network.post(
        f"/network/v1/{path}?subscription={subscription}",
        data=reginfo() if path == "reginfo" else {"version": 1, "registrations": []},
        content_type="application/reginfo+xml" if path == "reginfo" else "application/json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_subscription"
    assert not Registration.objects.exists()


def test_a_document_names_one_subscription(network, identity):
    response = network.post(
        "/network/v1/reginfo?subscription=A&subscription=B",
        data=reginfo(),
        content_type="application/reginfo+xml",
    )
    assert response.status_code == 400 and not Registration.objects.exists()


# --- The edge's restart ------------------------------------------------------------------


def test_a_restarted_edge_lists_the_live_registrations_of_its_enterprises(
    network, identity, other_enterprise
):
    post_sip(network, third_party_register(expires=600))
    post_sip(network, third_party_register(f"tel:{identity.tn}", expires=30))
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise))
    ThirdPartyRegistration.objects.create(
        enterprise=other_enterprise,
        identity=outsider,
        aor=f"tel:{outsider.tn}",
        scscf=SCSCF,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    ThirdPartyRegistration.objects.filter(aor=f"tel:{identity.tn}").update(
        expires_at=timezone.now() + timedelta(milliseconds=300)
    )
    response = network.get(REGISTER_URL)
    assert response.status_code == 200
    listed = response.json()
    assert listed["next_cursor"] is None
    assert [(r["aor"], r["scscf"]) for r in listed["registrations"]] == [
        (ROB_SIP, SCSCF),
        (f"tel:{identity.tn}", SCSCF),
    ]
    assert 590 < listed["registrations"][0]["expires"] <= 600
    assert listed["registrations"][1]["expires"] == 1  # under a second left: still 1
    ThirdPartyRegistration.objects.filter(aor=ROB_SIP).update(expires_at=timezone.now())
    assert [r["aor"] for r in network.get(REGISTER_URL).json()["registrations"]] == [
        f"tel:{identity.tn}"
    ]


def test_the_listing_pages_with_a_cursor(network, identity):
    aors = [ROB_SIP, f"tel:{identity.tn}", "sip:rob@swift.example"]
    identity.alias = "rob"
    identity.save()
    for aor in aors:
        post_sip(network, third_party_register(aor))
    first = network.get(REGISTER_URL, {"limit": 2}).json()
    assert [r["aor"] for r in first["registrations"]] == aors[:2]
    second = network.get(REGISTER_URL, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["aor"] for r in second["registrations"]] == aors[2:]
    assert second["next_cursor"] is None
    assert len(network.get(REGISTER_URL).json()["registrations"]) == 3  # all, by default


@pytest.mark.parametrize("limit", ["0", "10001", "x", "-5", "1" * 40])
def test_a_page_size_out_of_range_is_a_400(network, limit):
    response = network.get(REGISTER_URL, {"limit": limit})
    assert response.status_code == 400 and response.json()["code"] == "invalid_limit"


@pytest.mark.parametrize("cursor", ["x", "-1", "1" * 40, "\u0661"])
def test_a_cursor_the_listing_did_not_give_is_a_400(network, cursor):
    response = network.get(REGISTER_URL, {"cursor": cursor})
    assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"


def test_expired_registrations_are_pruned_a_bounded_number_at_a_time(network, identity):
    for aor in (ROB_SIP, f"tel:{identity.tn}"):
        post_sip(network, third_party_register(aor))
    ThirdPartyRegistration.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert third_party.prune_expired(limit=1) == 1
    assert third_party.prune_expired(limit=1) == 1
    assert third_party.prune_expired(limit=1) == 0


def test_a_removed_identity_leaves_no_registration_for_the_edge(network, identity, admin):
    post_sip(network, third_party_register())
    services.identity_remove(actor=Actor(user=admin), identity=identity)
    sync.push_identity(identity.pk)
    assert not ThirdPartyRegistration.objects.exists()
    assert network.get(REGISTER_URL).json()["registrations"] == []


def test_the_edges_endpoints_are_in_the_schema(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    register = paths["/network/v1/sip/register"]
    assert set(register) >= {"get", "post"}
    assert "message/sip" in register["post"]["requestBody"]["content"]
    parameters = {p["name"] for p in paths["/network/v1/reginfo"]["post"]["parameters"]}
    assert "subscription" in parameters
