"""Applying what the IMS core reports to per-device registration records."""

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.models import AuditEvent, NetworkClient, Notification
from accounts.services import network_client_create
from accounts.tests.factories import UserFactory
from kernel.errors import NotAllowed, RuleViolation
from telephony.identities import sync
from telephony.models import (
    NetworkNotice,
    ReginfoVersion,
    Registration,
    RegistrationEvent,
    SimulatedSubscription,
)
from telephony.registrations import device_settings, ingest, records, signout
from telephony.registrations.reginfo import (
    ContactInfo,
    ReginfoDocument,
    RegistrationInfo,
    parse_reginfo_xml,
)
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

ROB_IMEI = "urn:gsma:imei:35209900-176148-1"
ROB_TABLET = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


@pytest.fixture
def identity(employee, enterprise):
    give_numbers(enterprise)
    return make_identity(employee, alias="rob")


@pytest.fixture
def client_of(enterprise):
    client, _ = network_client_create(
        actor=Actor.system(), name="S-CSCF 1", enterprises=[enterprise]
    )
    return client


def contact(
    instance=ROB_IMEI, *, state="active", event="registered", expires=3600, uri=None, **extra
):
    host = "198.51.100.20" if instance == ROB_IMEI else "198.51.100.30"
    return ContactInfo(
        element_id=instance or uri,
        uri=uri or f"sip:+4930123400@{host}:5060",
        state=state,
        event=event,
        expires=expires if state == "active" else None,
        duration_registered=None,
        retry_after=None,
        callid=extra.get("callid", "abc@198.51.100.20"),
        cseq=extra.get("cseq", 1),
        q="",
        display_name="",
        instance=instance,
        params=(),
        pub_gruu="",
        temp_gruu="",
        user_agent=extra.get("user_agent", ""),
        access_network=extra.get("access_network", ""),
        source_ip=extra.get("source_ip", ""),
    )


def doc(version, *registrations, state="partial"):
    return ReginfoDocument(version=version, state=state, registrations=tuple(registrations))


def reg(aor, *contacts, state="active"):
    return RegistrationInfo(element_id=aor, aor=aor, state=state, contacts=tuple(contacts))


def apply(client, document):
    return ingest.apply_report(actor=Actor(network_client=client), client=client, document=document)


def active_labels(user):
    return sorted(r.label for r in Registration.objects.active().filter(user=user))


SIP_AOR = "sip:+4930123400@swift.example;user=phone"
TEL_AOR = "tel:+4930123400"


def test_an_implicit_registration_set_makes_one_record_per_device(identity, client_of, employee):
    user_agent = "Acme Phone/2.1 (Android 14)"
    report = apply(
        client_of,
        doc(
            1,
            reg(SIP_AOR, contact(user_agent=user_agent, source_ip="198.51.100.20")),
            reg(TEL_AOR, contact(user_agent=user_agent)),
            reg("sip:rob@swift.example", contact(user_agent=user_agent)),
            state="full",
        ),
    )
    assert report.as_dict() == {
        "applied": 3,
        "new_devices": 1,
        "ended": 0,
        "stale_aors": [],
        "unknown_aors": [],
        "full_state_needed_aors": [],
    }
    record = Registration.objects.get()
    assert record.label == "Android phone (IMEI …1481)"
    assert sorted(record.impus) == sorted([SIP_AOR, TEL_AOR, "sip:rob@swift.example"])
    assert (record.user, record.identity, record.ip) == (employee, identity, "198.51.100.20")
    assert record.expires_at > timezone.now() + timedelta(minutes=59)
    assert AuditEvent.objects.get(action="registration.reported").actor_network_client == client_of


def test_a_second_device_does_not_override_the_first_and_the_user_is_told_once(
    identity, client_of, employee, django_capture_on_commit_callbacks
):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI))))
    with django_capture_on_commit_callbacks(execute=True):
        report = apply(
            client_of, doc(2, reg(SIP_AOR, contact(ROB_TABLET, user_agent="Linphone/5.2")))
        )
    assert report.new_devices == 1
    assert active_labels(employee) == ["Linphone (…6bf6)", "Phone (IMEI …1481)"]
    notice = Notification.objects.get(user=employee, kind="already_logged_on")
    assert "Phone (IMEI …1481)" in notice.body
    assert len(mail.outbox) == 1 and "Linphone" in mail.outbox[0].subject
    sent = NetworkNotice.objects.order_by("kind")
    assert [(n.kind, n.state) for n in sent] == [
        ("already_logged_on", "sent"),
        ("logged_on_elsewhere", "sent"),
    ]

    # Refreshing either device tells nobody again.
    apply(
        client_of,
        doc(
            3,
            reg(
                SIP_AOR,
                contact(ROB_IMEI, event="refreshed"),
                contact(ROB_TABLET, event="refreshed"),
            ),
        ),
    )
    assert Notification.objects.filter(user=employee).count() == 1


def test_an_older_document_never_overwrites_a_newer_one(identity, client_of):
    apply(client_of, doc(5, reg(SIP_AOR, contact())))
    report = apply(client_of, doc(4, reg(SIP_AOR, contact(state="terminated", event="expired"))))
    assert report.stale == [SIP_AOR] and report.applied == 0
    assert Registration.objects.active().count() == 1
    assert apply(client_of, doc(5, reg(SIP_AOR, contact()))).stale == [SIP_AOR]  # a replay
    assert ReginfoVersion.objects.get(aor=SIP_AOR).version == 5


def test_a_restarted_notifier_starts_again_at_version_zero_with_a_full_document(
    identity, client_of
):
    apply(client_of, doc(40, reg(SIP_AOR, contact())))
    report = apply(client_of, doc(0, reg(SIP_AOR, contact(ROB_TABLET)), state="full"))
    assert report.stale == [] and report.new_devices == 1
    # Full state: the device not listed any more is gone.
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_TABLET]


def test_partial_documents_change_only_what_they_list(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET))))
    apply(
        client_of,
        doc(2, reg(SIP_AOR, contact(ROB_TABLET, state="terminated", event="unregistered"))),
    )
    ended = Registration.objects.get(instance_id=ROB_TABLET)
    assert (ended.state, ended.end_reason) == ("ended", "deregistered")
    assert Registration.objects.get(instance_id=ROB_IMEI).state == "active"


def test_a_terminated_registration_ends_every_device_of_the_aor(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET))))
    report = apply(client_of, doc(2, reg(SIP_AOR, state="terminated")))
    assert report.ended == 2
    assert not Registration.objects.active().exists()


def test_a_device_still_bound_to_another_impu_stays(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact()), reg(TEL_AOR, contact())))
    apply(client_of, doc(2, reg(TEL_AOR, contact(state="terminated", event="expired"))))
    record = Registration.objects.get()
    assert record.state == "active" and record.impus == [SIP_AOR]


def test_devices_without_an_instance_are_keyed_by_contact_uri(identity, client_of):
    first = contact(instance="", uri="sip:rob@198.51.100.40:5060")
    second = contact(instance="", uri="sip:rob@198.51.100.41:5060")
    apply(client_of, doc(1, reg(SIP_AOR, first, second)))
    assert sorted(Registration.objects.values_list("device_key", flat=True)) == [
        "contact:sip:rob@198.51.100.40:5060",
        "contact:sip:rob@198.51.100.41:5060",
    ]
    assert Registration.objects.first().label.startswith("Device at 198.51.100.4")


def test_unknown_aors_are_reported_back_and_the_rest_applies(identity, client_of):
    report = apply(
        client_of,
        doc(
            1,
            reg(SIP_AOR, contact()),
            reg("sip:+4930999999@swift.example;user=phone", contact()),
            reg(
                "sip:+4930123400@elsewhere.example;user=phone", contact()
            ),  # wrong domain: no guess
        ),
    )
    assert report.unknown_aors == [
        "sip:+4930123400@elsewhere.example;user=phone",
        "sip:+4930999999@swift.example;user=phone",
    ]
    assert report.applied == 1


def test_another_enterprises_aor_refuses_the_whole_document(identity, client_of, other_enterprise):
    give_numbers(other_enterprise, "+4940123400", "+4940123409")
    outsider = make_identity(UserFactory(enterprise=other_enterprise))
    foreign = f"sip:{outsider.tn}@{other_enterprise.sip_domain};user=phone"
    with pytest.raises(NotAllowed, match="does not serve Other Co"):
        apply(client_of, doc(1, reg(SIP_AOR, contact()), reg(foreign, contact())))
    assert not Registration.objects.exists()
    assert not ReginfoVersion.objects.exists()


def test_records_expire_by_time_even_without_an_event(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact(expires=60))))
    Registration.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert not Registration.objects.active().exists()  # gone by time already
    assert records.expire_registrations() == 1
    record = Registration.objects.get()
    assert (record.state, record.end_reason) == ("ended", "expired")
    assert record.last_event.kind == RegistrationEvent.Kind.EXPIRED


def test_history_folds_refreshes_and_flapping(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact())))
    for version in range(2, 6):
        apply(client_of, doc(version, reg(SIP_AOR, contact(event="refreshed"))))
    record = Registration.objects.get()
    assert [(e.kind, e.count) for e in record.events.order_by("id")] == [
        ("registered", 1),
        ("refreshed", 4),
    ]
    version = 6
    for cseq in (2, 3, 4):  # drops and comes back at once (a new REGISTER), three times
        dropped = contact(state="terminated", event="expired", cseq=cseq - 1)
        apply(client_of, doc(version, reg(SIP_AOR, dropped)))
        apply(client_of, doc(version + 1, reg(SIP_AOR, contact(cseq=cseq))))
        version += 2
    kinds = [(e.kind, e.count) for e in record.events.order_by("id")]
    assert kinds == [("registered", 1), ("refreshed", 4), ("flapping", 3)]
    assert Registration.objects.get().state == "active"


def test_over_the_device_limit_the_admin_is_alerted_and_policy_may_sign_out_the_oldest(
    identity, client_of, employee, enterprise, admin, django_capture_on_commit_callbacks
):
    enterprise.contract.max_ues_per_user = 1
    enterprise.contract.save()
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI))))
    apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_TABLET))))
    alert = Notification.objects.get(user=admin, kind="device_limit")
    assert "the contract allows 1" in alert.title and "notify only" in alert.body
    assert Registration.objects.active().count() == 2

    enterprise.contract.ue_limit_policy = "sign_out_oldest"
    enterprise.contract.save()
    third = "urn:uuid:00000000-0000-0000-0000-00000000abcd"
    with django_capture_on_commit_callbacks(execute=True):
        apply(client_of, doc(3, reg(SIP_AOR, contact(third))))
    # The builtin network confirms sign-outs at once: the two oldest are gone.
    assert [r.instance_id for r in Registration.objects.active()] == [third]
    oldest = Registration.objects.get(instance_id=ROB_IMEI)
    assert oldest.end_reason == "signed_out"


def test_an_employee_signs_out_one_device_and_it_shows_requested_until_confirmed(
    identity, client_of, employee, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(
        "telephony.identities.hss.builtin.BuiltinHss.confirms_deregistration", False
    )
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET))))
    phone = Registration.objects.get(instance_id=ROB_IMEI)
    with django_capture_on_commit_callbacks(execute=True):
        signout.registration_sign_out(actor=Actor(user=employee), registration=phone)
    phone.refresh_from_db()
    assert phone.state == "sign_out_requested" and phone.sign_out_sent_at is not None
    assert phone.is_active  # until the network confirms
    apply(
        client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, state="terminated", event="deactivated")))
    )
    phone.refresh_from_db()
    assert (phone.state, phone.end_reason) == ("ended", "signed_out")
    with pytest.raises(RuleViolation, match="not registered now"):
        signout.registration_sign_out(actor=Actor(user=employee), registration=phone)


def test_employees_sign_out_only_their_own_devices(identity, client_of, enterprise):
    apply(client_of, doc(1, reg(SIP_AOR, contact())))
    colleague = UserFactory(enterprise=enterprise)
    with pytest.raises(NotAllowed):
        signout.registration_sign_out(
            actor=Actor(user=colleague), registration=Registration.objects.get()
        )


def test_sign_out_all_asks_for_every_active_device(identity, client_of, employee, admin):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET))))
    assert signout.registrations_sign_out_all(actor=Actor(user=admin), user=employee) == 2
    assert AuditEvent.objects.filter(action="registration.sign_out_requested").count() == 2


def test_device_settings_are_its_own_and_travel_to_the_hss(
    identity, client_of, employee, django_capture_on_commit_callbacks
):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET))))
    phone = Registration.objects.get(instance_id=ROB_IMEI)
    with django_capture_on_commit_callbacks(execute=True):
        device_settings.registration_update_settings(
            actor=Actor(user=employee),
            registration=phone,
            do_not_disturb=True,
            default_impu=TEL_AOR,
            ring_priority=1,
        )
    tablet = Registration.objects.get(instance_id=ROB_TABLET)
    assert (tablet.do_not_disturb, tablet.ring_priority) == (False, 3)  # untouched
    stored = SimulatedSubscription.objects.get(msisdn=identity.tn).devices
    assert stored == [
        {
            "device": f"instance:{ROB_IMEI}",
            "services": [],
            "default_impu": TEL_AOR,
            "do_not_disturb": True,
            "ring_priority": 1,
        }
    ]
    with pytest.raises(RuleViolation, match="identity's public identities"):
        device_settings.registration_update_settings(
            actor=Actor(user=employee), registration=phone, default_impu="sip:nobody@x.example"
        )


def test_removing_the_identity_ends_its_registrations(identity, client_of, admin):
    from telephony.identities import services

    apply(client_of, doc(1, reg(SIP_AOR, contact())))
    services.identity_remove(actor=Actor(user=admin), identity=identity)
    sync.push_identity(identity.pk)
    record = Registration.objects.get()
    assert (record.state, record.end_reason) == ("ended", "identity_removed")


def test_a_revoked_client_is_unknown(client_of):
    client_of.revoked_at = timezone.now()
    client_of.save()
    assert not NetworkClient.objects.filter(revoked_at=None).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sign_out_goes_end_to_end_through_a_real_worker(celery_worker, enterprise, employee):
    from portal.testing import wait_for

    give_numbers(enterprise)
    identity = make_identity(employee)
    client, _ = network_client_create(actor=Actor.system(), name="S-CSCF", enterprises=[enterprise])
    apply(client, doc(1, reg(f"tel:{identity.tn}", contact())))
    phone = Registration.objects.get()
    signout.registration_sign_out(actor=Actor(user=employee), registration=phone)
    ended = wait_for(lambda: Registration.objects.filter(pk=phone.pk, state="ended").first())
    assert ended.end_reason == "signed_out" and ended.sign_out_sent_at is not None


# --- RFC 3680 / RFC 5628 / TS 24.229 semantics ----------------------------------------------

ROB_PHONE_URI = "sip:+4930123400@198.51.100.20:5060"  # contact(ROB_IMEI)'s URI


def notify(version: int, state: str, *registrations: str) -> ReginfoDocument:
    """A NOTIFY body of the reg event package, parsed as the network API parses it."""
    body = (
        '<?xml version="1.0"?>\n'
        '<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" '
        'xmlns:gr="urn:ietf:params:xml:ns:gruuinfo" '
        f'version="{version}" state="{state}">{"".join(registrations)}</reginfo>'
    )
    return parse_reginfo_xml(body.encode())


def robs_phone(state="active", event="registered", extra=""):
    instance = (
        f'<unknown-param name="+sip.instance">"&lt;{ROB_IMEI}&gt;"</unknown-param>'
        if state == "active"
        else ""
    )
    expires = ' expires="3600"' if state == "active" else ""
    return (
        f'<contact id="c1" state="{state}" event="{event}"{expires}{extra}>'
        f"<uri>{ROB_PHONE_URI}</uri>{instance}</contact>"
    )


def registration_of(aor, state, *contacts):
    return (
        f'<registration aor="{aor}" id="r-{aor}" state="{state}">{"".join(contacts)}</registration>'
    )


def test_rfc3680_a_contact_that_expires_ends_its_device_as_expired(identity, client_of):
    # The life of one registration as RFC 3680's example call flow tells it: subscribed
    # before any REGISTER (init), registered, refreshed, then not refreshed in time.
    apply(client_of, notify(0, "full", registration_of(SIP_AOR, "init")))
    apply(client_of, notify(1, "partial", registration_of(SIP_AOR, "active", robs_phone())))
    apply(
        client_of,
        notify(2, "partial", registration_of(SIP_AOR, "active", robs_phone(event="refreshed"))),
    )
    report = apply(
        client_of,
        notify(
            3,
            "partial",
            registration_of(SIP_AOR, "terminated", robs_phone("terminated", "expired")),
        ),
    )
    assert report.ended == 1 and report.full_state_needed == []
    record = Registration.objects.get()
    assert (record.state, record.end_reason) == ("ended", "expired")
    assert record.last_event.kind == RegistrationEvent.Kind.EXPIRED


@pytest.mark.parametrize(
    ("event", "end_reason", "label"),
    [
        ("expired", "expired", "Expired"),
        ("deactivated", "deactivated", "Deactivated by the network"),
        (
            "probation",
            "probation",
            "Deactivated by the network until later: may register again in 600 s",
        ),
        ("unregistered", "deregistered", "Deregistered by the device"),
        ("rejected", "rejected", "Rejected by the network"),
    ],
)
def test_a_terminated_registration_keeps_each_contacts_own_event(
    identity, client_of, event, end_reason, label
):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET)), state="full"))
    extra = ' retry-after="600"' if event == "probation" else ""
    apply(
        client_of,
        notify(
            2,
            "partial",
            registration_of(SIP_AOR, "terminated", robs_phone("terminated", event, extra)),
        ),
    )
    phone = Registration.objects.get(instance_id=ROB_IMEI)
    assert (phone.state, phone.end_reason) == ("ended", end_reason)
    assert phone.last_event.detail == label
    # The tablet was not listed: the registration ended, but no event said how for it.
    tablet = Registration.objects.get(instance_id=ROB_TABLET)
    assert (tablet.state, tablet.end_reason) == ("ended", "not_reported")


def test_ts24229_network_deregistration_of_an_implicit_set_is_rejected_for_every_impu(
    identity, client_of, employee
):
    # TS 24.229 §5.4.1.5: the S-CSCF deregisters the whole implicit registration set,
    # each IMPU terminated with the contact's "rejected" (do not register again).
    aors = [SIP_AOR, TEL_AOR, "sip:rob@swift.example"]
    apply(client_of, notify(1, "full", *(registration_of(a, "active", robs_phone()) for a in aors)))
    report = apply(
        client_of,
        notify(
            2,
            "full",
            *(registration_of(a, "terminated", robs_phone("terminated", "rejected")) for a in aors),
        ),
    )
    assert report.ended == 1 and report.applied == 3
    record = Registration.objects.get()
    assert (record.state, record.end_reason, record.impus) == ("ended", "rejected", [])
    assert active_labels(employee) == []


def test_a_terminated_contact_without_its_instance_still_ends_its_device(identity, client_of):
    # Kamailio's S-CSCF puts +sip.instance on active contacts only.
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET)), state="full"))
    gone = contact(instance="", uri=ROB_PHONE_URI, state="terminated", event="unregistered")
    report = apply(client_of, doc(2, reg(SIP_AOR, gone, contact(ROB_TABLET, event="refreshed"))))
    assert report.ended == 1
    phone = Registration.objects.get(instance_id=ROB_IMEI)
    assert phone.device_key == f"instance:{ROB_IMEI}"
    assert (phone.state, phone.end_reason) == ("ended", "deregistered")
    assert Registration.objects.count() == 2  # no record made for the bare contact
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_TABLET]


def test_devices_left_out_of_full_state_end_without_a_made_up_reason(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI), contact(ROB_TABLET)), state="full"))
    report = apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI)), state="full"))
    assert report.ended == 1
    tablet = Registration.objects.get(instance_id=ROB_TABLET)
    assert (tablet.state, tablet.end_reason) == ("ended", "not_reported")
    assert tablet.get_end_reason_display() == "Ended (no reason given)"
    assert tablet.last_event.kind == RegistrationEvent.Kind.ENDED
    assert Registration.objects.get(instance_id=ROB_IMEI).state == "active"


def test_a_contact_that_gains_its_instance_upgrades_the_same_device(
    identity, client_of, employee, django_capture_on_commit_callbacks
):
    apply(client_of, doc(1, reg(SIP_AOR, contact(instance="", uri=ROB_PHONE_URI)), state="full"))
    before = Registration.objects.get()
    assert before.device_key == f"contact:{ROB_PHONE_URI}"
    with django_capture_on_commit_callbacks(execute=True):
        report = apply(
            client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, event="refreshed")), state="full")
        )
    assert (report.new_devices, report.ended) == (0, 0)
    record = Registration.objects.get()
    assert record.pk == before.pk and record.state == "active"
    assert (record.device_key, record.instance_id) == (f"instance:{ROB_IMEI}", ROB_IMEI)
    assert record.label == "Phone (IMEI …1481)"
    assert record.first_registered_at == before.first_registered_at
    assert [e.kind for e in record.events.order_by("id")] == ["registered", "refreshed"]
    assert not Notification.objects.filter(user=employee).exists()
    assert not NetworkNotice.objects.exists()


def test_a_version_gap_is_applied_and_asks_for_full_state_until_it_comes(identity, client_of):
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_IMEI)), state="full"))
    # Version 2 was lost; 3 says the tablet registered.
    report = apply(client_of, doc(3, reg(SIP_AOR, contact(ROB_TABLET))))
    assert report.full_state_needed == [SIP_AOR] and report.new_devices == 1
    assert report.as_dict()["full_state_needed_aors"] == [SIP_AOR]
    assert ReginfoVersion.objects.get(aor=SIP_AOR).full_state_needed
    # Every answer about the AoR says so until full state comes, the next in line too.
    assert apply(client_of, doc(4, reg(SIP_AOR, contact(ROB_TABLET)))).full_state_needed == [
        SIP_AOR
    ]
    # The lost document arriving late is older than what was applied: skipped.
    late = apply(
        client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, state="terminated", event="expired")))
    )
    assert late.stale == [SIP_AOR] and late.full_state_needed == [SIP_AOR]
    assert Registration.objects.active().count() == 2
    # The re-subscription's full state settles it: the phone had gone.
    report = apply(client_of, doc(0, reg(SIP_AOR, contact(ROB_TABLET)), state="full"))
    assert report.full_state_needed == [] and report.stale == []
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_TABLET]
    assert not ReginfoVersion.objects.get(aor=SIP_AOR).full_state_needed


def test_a_first_report_with_partial_state_asks_for_full_state(identity, client_of):
    report = apply(client_of, doc(7, reg(SIP_AOR, contact()), reg(TEL_AOR, contact())))
    assert report.applied == 2 and report.full_state_needed == sorted([SIP_AOR, TEL_AOR])


def test_a_replayed_first_notify_changes_nothing(identity, client_of):
    first = doc(0, reg(SIP_AOR, contact(ROB_IMEI)), state="full")
    apply(client_of, first)
    apply(client_of, doc(1, reg(SIP_AOR, contact(ROB_TABLET))))
    # The HTTP retry of the first NOTIFY (its answer was lost) arrives after the second.
    report = apply(client_of, first)
    assert (report.stale, report.applied, report.ended) == ([SIP_AOR], 0, 0)
    assert Registration.objects.active().count() == 2
    assert ReginfoVersion.objects.get(aor=SIP_AOR).version == 1


def test_every_full_notify_of_kamailio_presence_reginfo_applies_but_a_replay_does_not(
    identity, client_of
):
    # presence_reginfo sends every document as full, version 0.
    both = doc(
        0, reg(SIP_AOR, contact(ROB_IMEI, cseq=1), contact(ROB_TABLET, cseq=1)), state="full"
    )
    phone_only = doc(0, reg(SIP_AOR, contact(ROB_IMEI, cseq=2)), state="full")
    apply(client_of, both)
    assert apply(client_of, phone_only).ended == 1
    assert apply(client_of, both).stale == [SIP_AOR]  # a late retry of the first
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_IMEI]
    # Past the replay window the same document is news again.
    ReginfoVersion.objects.update(recent=[])
    assert apply(client_of, both).applied == 2
    assert Registration.objects.active().count() == 2


def test_each_new_kamailio_scscf_subscription_restarts_its_versions(identity, client_of):
    # The S-CSCF numbers each subscription from 2; an AS subscribes afresh per REGISTER.
    apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, cseq=1)), state="full"))
    apply(client_of, doc(3, reg(SIP_AOR, contact(ROB_IMEI, state="terminated", event="expired"))))
    report = apply(
        client_of,
        doc(2, reg(SIP_AOR, contact(ROB_IMEI, cseq=5), contact(ROB_TABLET, cseq=1)), state="full"),
    )
    # The phone came back (flapping, not a new device); the tablet is new.
    assert report.stale == [] and report.new_devices == 1
    assert Registration.objects.active().count() == 2
    assert ReginfoVersion.objects.get(aor=SIP_AOR).version == 2
    # Within the new subscription a partial document not newer is stale.
    assert apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_TABLET, cseq=2)))).stale == [SIP_AOR]


# --- Versions per reg-event subscription (the SIP edge names the NOTIFY's dialog) -----------


def apply_in(subscription, client, document):
    return ingest.apply_report(
        actor=Actor(network_client=client),
        client=client,
        document=document,
        subscription=subscription,
    )


def test_versions_are_kept_per_subscription_as_kamailio_numbers_them(identity, client_of):
    # The edge's subscription A: the S-CSCF's first NOTIFY is version 2, then 3.
    assert apply_in(
        "A@edge", client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI)), state="full")
    ).applied
    ended = apply_in(
        "A@edge",
        client_of,
        doc(3, reg(SIP_AOR, contact(ROB_IMEI, state="terminated", event="expired"))),
    )
    assert (ended.ended, ended.stale) == (1, [])
    # A new REGISTER, a new subscription B: it starts at 2 again, and applies.
    both = doc(2, reg(SIP_AOR, contact(ROB_IMEI, cseq=5), contact(ROB_TABLET)), state="full")
    report = apply_in("B@edge", client_of, both)
    assert (report.stale, report.new_devices) == ([], 1)
    assert Registration.objects.active().count() == 2
    # A late replay of A's version 3 is stale: it ends nothing.
    replay = apply_in(
        "A@edge",
        client_of,
        doc(3, reg(SIP_AOR, contact(ROB_IMEI, state="terminated", event="expired"))),
    )
    assert (replay.stale, replay.applied, replay.ended) == ([SIP_AOR], 0, 0)
    assert Registration.objects.active().count() == 2
    # B skips version 3: the partial version 4 applies and asks for full state.
    gap = apply_in("B@edge", client_of, doc(4, reg(SIP_AOR, contact(ROB_TABLET, cseq=2))))
    assert (gap.applied, gap.full_state_needed) == (1, [SIP_AOR])
    # B's lost version 3 arriving now is older than what was applied.
    late = apply_in("B@edge", client_of, doc(3, reg(SIP_AOR, contact(ROB_TABLET, cseq=9))))
    assert (late.stale, late.full_state_needed) == ([SIP_AOR], [SIP_AOR])
    streams = dict(ReginfoVersion.objects.values_list("subscription", "version"))
    assert streams == {"A@edge": 3, "B@edge": 4}


def test_within_a_subscription_an_older_full_document_is_stale(identity, client_of):
    apply_in("A@edge", client_of, doc(5, reg(SIP_AOR, contact(ROB_IMEI)), state="full"))
    # Without a subscription this would be taken for a new subscription's first report.
    older = doc(4, reg(SIP_AOR, contact(ROB_TABLET)), state="full")
    assert apply_in("A@edge", client_of, older).stale == [SIP_AOR]
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_IMEI]
    assert apply(client_of, older).stale == []  # the per-AoR stream is another stream


def test_within_a_subscription_a_notifier_that_does_not_count_is_still_heard(identity, client_of):
    # Kamailio's presence_reginfo numbers every document of a subscription 0.
    both = doc(
        0, reg(SIP_AOR, contact(ROB_IMEI, cseq=1), contact(ROB_TABLET, cseq=1)), state="full"
    )
    phone_only = doc(0, reg(SIP_AOR, contact(ROB_IMEI, cseq=2)), state="full")
    apply_in("A@edge", client_of, both)
    assert apply_in("A@edge", client_of, phone_only).ended == 1
    assert apply_in("A@edge", client_of, phone_only).stale == [SIP_AOR]  # a retransmission
    assert [r.instance_id for r in Registration.objects.active()] == [ROB_IMEI]


def test_a_subscription_that_starts_with_partial_state_asks_for_full_state(identity, client_of):
    report = apply_in("A@edge", client_of, doc(9, reg(SIP_AOR, contact())))
    assert (report.applied, report.full_state_needed) == (1, [SIP_AOR])
    full = apply_in("A@edge", client_of, doc(10, reg(SIP_AOR, contact()), state="full"))
    assert full.full_state_needed == []


@pytest.mark.parametrize("subscription", ["", "a b@edge", "x" * 256, "caf\u00e9@edge", "a\tb"])
def test_a_subscription_is_named_by_a_call_id(identity, client_of, subscription):
    with pytest.raises(RuleViolation) as refused:
        apply_in(subscription, client_of, doc(1, reg(SIP_AOR, contact()), state="full"))
    assert refused.value.code == "invalid_subscription"
    assert not Registration.objects.exists() and not ReginfoVersion.objects.exists()


def test_ended_subscriptions_are_forgotten_after_a_day_a_bounded_number_at_a_time(
    identity, client_of
):
    for name in ("A@edge", "B@edge", "C@edge", "fresh@edge"):
        apply_in(name, client_of, doc(2, reg(SIP_AOR, contact()), state="full"))
    apply(client_of, doc(1, reg(SIP_AOR, contact()), state="full"))
    day_ago = timezone.now() - ingest.SUBSCRIPTION_MEMORY - timedelta(minutes=1)
    ReginfoVersion.objects.exclude(subscription="fresh@edge").update(updated_at=day_ago)
    assert ingest.prune_subscription_versions(limit=2) == 2
    assert ingest.prune_subscription_versions(limit=2) == 1
    assert ingest.prune_subscription_versions(limit=2) == 0
    # The per-AoR stream of HTTP clients stays, as does the live subscription.
    assert sorted(ReginfoVersion.objects.values_list("subscription", flat=True)) == [
        "",
        "fresh@edge",
    ]
    # A pruned subscription heard from again starts over: its document applies.
    assert apply_in("A@edge", client_of, doc(2, reg(SIP_AOR, contact()), state="full")).stale == []


def blocked_connections() -> int:
    """Other connections to the test database waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_retry_racing_the_first_notify_waits_for_it_and_changes_nothing(
    transactional_db, identity, client_of, monkeypatch
):
    first = doc(0, reg(SIP_AOR, contact(ROB_IMEI)), state="full")
    written, release = threading.Event(), threading.Event()
    answers, errors = {}, []
    after_write = ingest.new_device_policy

    def hold_the_original(batch):
        after_write(batch)
        if threading.current_thread().name == "original":
            written.set()
            release.wait(timeout=30)

    monkeypatch.setattr(ingest, "new_device_policy", hold_the_original)

    def post(name):
        try:
            if name == "retry":
                written.wait(timeout=30)
            answers[name] = apply(client_of, first)
        except Exception as error:  # noqa: BLE001 - the test reports it below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(n,), name=n) for n in ("original", "retry")]
    for thread in threads:
        thread.start()
    try:
        assert written.wait(timeout=30)
        # The retry must really be waiting on the original's transaction.
        deadline = time.monotonic() + 30
        while not blocked_connections():
            assert time.monotonic() < deadline, "the retry never waited for the original"
            time.sleep(0.01)
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert answers["original"].new_devices == 1
    assert (answers["retry"].stale, answers["retry"].applied) == ([SIP_AOR], 0)
    assert Registration.objects.count() == 1


# --- Property: a replay never changes anything ------------------------------------------------

ENDING = ("expired", "deactivated", "probation", "unregistered", "rejected")
STARTING = ("registered", "created", "refreshed", "shortened")
DEVICES = (ROB_IMEI, ROB_TABLET, "")  # "" keyed by its contact URI


@st.composite
def reported_contacts(draw, device):
    active = draw(st.booleans())
    event = draw(st.sampled_from(STARTING if active else ENDING))
    uri = "sip:rob@198.51.100.40:5060" if not device else None
    return contact(
        device,
        uri=uri,
        state="active" if active else "terminated",
        event=event,
        cseq=draw(st.integers(1, 3)),
    )


@st.composite
def reported_registrations(draw, aor):
    devices_listed = draw(st.lists(st.sampled_from(DEVICES), unique=True, max_size=3))
    contacts = [draw(reported_contacts(device)) for device in devices_listed]
    any_active = any(c.state == "active" for c in contacts)
    state = "active" if any_active else draw(st.sampled_from(["active", "terminated"]))
    return reg(aor, *contacts, state=state)


@st.composite
def reported_documents(draw):
    aors = draw(st.lists(st.sampled_from([SIP_AOR, TEL_AOR]), unique=True, min_size=1))
    registrations = [draw(reported_registrations(aor)) for aor in aors]
    return doc(
        draw(st.integers(0, 6)),
        *registrations,
        state=draw(st.sampled_from(["full", "partial"])),
    )


def what_is_recorded():
    return (
        list(
            Registration.objects.order_by("device_key").values_list(
                "device_key", "state", "impus", "end_reason", "expires_at", "cseq"
            )
        ),
        list(RegistrationEvent.objects.order_by("id").values_list("kind", "count", "detail")),
        NetworkNotice.objects.count(),
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(reported_documents(), min_size=1, max_size=6), st.data())
def test_a_replay_of_any_report_seen_changes_nothing(identity, client_of, documents, data):
    with transaction.atomic():
        for document in documents:
            apply(client_of, document)
        before = what_is_recorded()
        replay = apply(client_of, data.draw(st.sampled_from(documents), label="replay"))
        assert (replay.applied, replay.new_devices, replay.ended) == (0, 0, 0)
        assert what_is_recorded() == before
        transaction.set_rollback(True)


def test_a_late_report_of_the_register_a_contact_event_ended_does_not_revive_it(
    identity, client_of
):
    # The S-CSCF's first NOTIFY of a subscription (the phone active) reaches the portal
    # after its second (the same registration expired): another worker of the SIP edge
    # delivered it late. A full document that is not newer looks like a new
    # subscription; the Call-ID and CSeq tell that it reports an older REGISTER.
    apply(client_of, doc(9, reg(SIP_AOR, contact(ROB_IMEI, cseq=1)), state="full"))
    expired = contact(ROB_IMEI, state="terminated", event="expired", cseq=1)
    apply(client_of, doc(3, reg(SIP_AOR, expired), state="full"))
    report = apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, cseq=1)), state="full"))
    assert (report.applied, report.new_devices) == (0, 0)
    phone = Registration.objects.get()
    assert (phone.state, phone.end_reason, phone.cseq) == ("ended", "expired", 1)
    # The phone registers again: a new REGISTER, a higher CSeq.
    report = apply(client_of, doc(2, reg(SIP_AOR, contact(ROB_IMEI, cseq=2)), state="full"))
    assert report.applied == 1
    assert Registration.objects.get().state == "active"


def test_ts24229_a_shortened_registration_stays_the_same_device_with_the_new_expiry(
    identity, client_of, employee
):
    # TS 24.229 network-initiated re-authentication: the S-CSCF shortens the expiry
    # ("shortened") so that the UE registers again soon.
    apply(client_of, notify(1, "full", registration_of(SIP_AOR, "active", robs_phone())))
    shortened = robs_phone(event="shortened").replace('expires="3600"', 'expires="600"')
    report = apply(client_of, notify(2, "partial", registration_of(SIP_AOR, "active", shortened)))
    assert (report.applied, report.new_devices, report.full_state_needed) == (1, 0, [])
    record = Registration.objects.get()
    assert record.state == "active"
    left = (record.expires_at - timezone.now()).total_seconds()
    assert 590 < left <= 600
    assert [e.kind for e in record.events.order_by("id")] == ["registered", "refreshed"]
