"""Inventory and identities for tests, made through the services as in production; and
devices, as the network's reports leave them."""

from django.test import Client

from accounts.audit import Actor
from accounts.models import Service
from accounts.services import network_client_create
from telephony.identities import services
from telephony.inventory import services as inventory
from telephony.inventory.numbers import with_luhn_digit
from telephony.models import Registration

SYSTEM = Actor.system()


def give_numbers(enterprise, first="+4930123400", last="+4930123499"):
    return inventory.number_block_create(
        actor=SYSTEM, enterprise=enterprise, first_number=first, last_number=last
    )


def iccid_for(n: int) -> str:
    return with_luhn_digit(f"894900{n:012d}")


def give_line(enterprise, n: int = 1):
    return inventory.sim_line_create(
        actor=SYSTEM, enterprise=enterprise, imsi=f"26201{n:010d}", iccid=iccid_for(n)
    )


def make_identity(owner, *, actor=SYSTEM, services_=(Service.VOICE,), **kwargs):
    return services.identity_create(actor=actor, owner=owner, services=list(services_), **kwargs)


def make_device(identity, *, contact="sip:rob@198.51.100.9", key="1", **fields):
    """A registered device of ``identity``'s owner (a laptop with instance
    ``urn:uuid:<key>``, bound for the identity's tel: IMPU until 2099), as the ingest
    keeps one; ``fields`` override."""
    return Registration.objects.create(
        **{
            "enterprise": identity.enterprise,
            "identity": identity,
            "user": identity.owner,
            "device_key": f"instance:urn:uuid:{key}",
            "instance_id": f"urn:uuid:{key}",
            "label": "Laptop",
            "impus": [f"tel:{identity.tn}"],
            "contact_uri": contact,
            "expires_at": "2099-01-01T00:00:00Z",
            **fields,
        }
    )


def network_http(*enterprises, name="S-CSCF 1"):
    """A test client holding a network element's credential for the enterprises; the
    element itself is ``.network_client``."""
    client, raw = network_client_create(actor=SYSTEM, name=name, enterprises=list(enterprises))
    http = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    http.network_client = client
    return http
