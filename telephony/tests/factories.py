"""Inventory and identities for tests, made through the services as in production; and
devices, as the network's reports leave them."""

import datetime as dt
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.test import Client

from accounts.audit import Actor
from accounts.models import Service
from accounts.services import network_client_create
from telephony.callauth.stir import certificates
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


def tls_server_certificate(tmp_path, name: str):
    """A web CA (for the client to trust) and a TLS server context with a certificate for
    `name` that it issued."""
    ca_key, ca = certificates.make_root_ca("Web CA for tests")
    key = certificates.generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "web-ca.pem").write_bytes(certificates.pem(ca))
    (tmp_path / "server.pem").write_bytes(certificates.pem(cert))
    (tmp_path / "server.key").write_bytes(certificates.private_key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return str(tmp_path / "web-ca.pem"), context
