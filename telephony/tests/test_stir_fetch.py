"""Other carriers' PASSporTs: their x5u fetched under the policy of docs/security.md,
their chain validated to a trust anchor imported through the portal's normal path."""

import datetime as dt
import socket
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from accounts.audit import Actor
from kernel import generations
from telephony.callauth import credentials, records
from telephony.callauth.stir import certificates, fetch, passport
from telephony.callauth.stir.certificates import TnAuthList
from telephony.models import CallRecord, SigningCredential

from .factories import tls_server_certificate

pytestmark = pytest.mark.django_db

CALLER = "12025550123"  # another carrier's customer
CALLEE = "4940123499"


class Repository:
    """Another carrier's certificate repository on a loopback port: path -> (status,
    headers, body, delay in seconds[, seconds between the body's bytes]). Counts the
    requests it serves."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.routes: dict[str, tuple[int, dict, bytes, float]] = {}
        self.hits: Counter = Counter()
        repository = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                repository.hits[self.path] += 1
                route = repository.routes.get(self.path, (404, {}, b"", 0))
                status, headers, body, delay, drip = (*route, 0)[:5]
                time.sleep(delay)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    if value is not None:  # None: the header is left out
                        self.send_header(name, value)
                self.end_headers()
                if not drip:
                    self.wfile.write(body)
                    return
                try:  # a byte at a time, until the fetch hangs up
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def repository():
    served = Repository()
    yield served
    served.stop()


@pytest.fixture
def lab(settings):
    """A lab's x5u policy: http to loopback allowed."""
    settings.STIR_X5U_ALLOW_HTTP = True
    settings.STIR_X5U_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return settings


class Carrier:
    """Another carrier's PKI: an STI-CA, its SHAKEN certificate (SPC), and a delegate
    for one range of its customers' numbers."""

    def __init__(self, tn_auth_list=None, *, policy=certificates.SHAKEN_CERTIFICATE_POLICY):
        self.root_key, self.root = certificates.make_root_ca("Other Carrier STI-CA")
        self.key = certificates.generate_key()
        self.cert = certificates.issue(
            issuer_key=self.root_key,
            issuer_cert=self.root,
            subject_cn="SHAKEN 999Z",
            public_key=self.key.public_key(),
            tn_auth_list=tn_auth_list or TnAuthList(ranges=(("12025550100", 100),)),
            days=30,
            ca=False,
            policy=policy,
        )

    @property
    def chain_pem(self) -> bytes:
        return certificates.pem(self.cert)

    def identity(self, x5u: str, orig: str = CALLER) -> str:
        token = passport.shaken_passport(
            orig_tn=orig, dest_tns=[CALLEE], attest="A", origid="o", iat=int(time.time()),
            x5u=x5u, private_key=self.key,
        )  # fmt: skip
        return passport.identity_header(token, x5u=x5u, ppt="shaken")

    def import_anchor(self):
        return credentials.credential_import(
            actor=Actor.system(),
            kind=SigningCredential.Kind.TRUST_ANCHOR,
            name="Other Carrier STI-CA",
            certificate_pem=certificates.pem(self.root).decode(),
        )


def verify(network, identity, orig=CALLER):
    body = {"verificationRequest": {"from": {"tn": orig}, "to": {"tn": [CALLEE]},
                                    "time": int(time.time()), "identity": identity}}  # fmt: skip
    response = network.post("/network/v1/stir/verification", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["verificationResponse"]


PEM = {"Content-Type": "application/pem-certificate-chain"}
# Room over a deadline for a loaded machine; without the deadline, the slow cases below
# take 3.5 s (one verification) to 10 s (a trickle).
MARGIN = 1.0


def test_another_carriers_passport_verifies_once_its_ca_is_a_trust_anchor(network, repository, lab):
    carrier = Carrier()
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    identity = carrier.identity(repository.url("/c.pem"))

    refused = verify(network, identity)
    assert (refused["verstat"], refused["reasonCode"]) == ("TN-Validation-Failed", 437)

    carrier.import_anchor()
    answer = verify(network, identity)
    assert (answer["verstat"], answer["attest"]) == ("TN-Validation-Passed", "A")
    assert CallRecord.objects.filter(verstat="TN-Validation-Passed").count() == 1


def test_the_call_path_fetches_a_certificate_once_for_many_calls(network, repository, lab):
    carrier = Carrier()
    carrier.import_anchor()
    repository.routes["/c.pem"] = (200, {**PEM, "Cache-Control": "max-age=5"}, carrier.chain_pem, 0)
    identity = carrier.identity(repository.url("/c.pem"))
    for _ in range(5):
        assert verify(network, identity)["verstat"] == "TN-Validation-Passed"
    # max-age=5 is raised to a minute: five calls, one fetch.
    assert repository.hits["/c.pem"] == 1


def test_a_verification_within_a_minute_of_a_fetch_waits_on_nothing(
    network, repository, lab, django_assert_num_queries
):
    """Neither the repository nor the database: the chain from the shared cache, the
    rest from the call path's, the record appended to its stream."""
    if not (generations.enabled() and lab.CELERY_BROKER_URL.startswith("redis")):
        pytest.skip("the call path's cache and record stream need Redis")
    lab.CALL_RECORD_STREAM_URL = lab.CELERY_BROKER_URL
    carrier = Carrier()
    carrier.import_anchor()
    repository.routes["/c.pem"] = (200, {**PEM, "Cache-Control": "no-cache"}, carrier.chain_pem, 0)
    identity = carrier.identity(repository.url("/c.pem"))
    assert verify(network, identity)["verstat"] == "TN-Validation-Passed"
    with django_assert_num_queries(0):
        assert verify(network, identity)["verstat"] == "TN-Validation-Passed"
    assert repository.hits["/c.pem"] == 1
    records._stream().delete(records.STREAM)


def test_a_failed_fetch_is_remembered_too(network, repository, lab):
    carrier = Carrier()
    carrier.import_anchor()
    identity = carrier.identity(repository.url("/missing.pem"))
    for _ in range(3):
        answer = verify(network, identity)
        assert answer["reasonCode"] == 436 and "HTTP 404" in answer["reasonString"]
    assert repository.hits["/missing.pem"] == 1


def test_a_number_outside_the_carriers_certificate_is_not_covered(network, repository, lab):
    carrier = Carrier()
    carrier.import_anchor()
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    answer = verify(network, carrier.identity(repository.url("/c.pem"), orig="12025559999"),
                    orig="12025559999")  # fmt: skip
    assert (
        answer["reasonCode"] == 437
        and "does not cover the calling number" in (answer["reasonString"])
    )


def test_a_leaf_without_the_shaken_policy_is_unsupported(network, repository, lab):
    carrier = Carrier(policy="")
    carrier.import_anchor()
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    answer = verify(network, carrier.identity(repository.url("/c.pem")))
    assert answer["reasonCode"] == 437
    assert "names no SHAKEN certificate policy" in answer["reasonString"]


def test_the_fetches_of_one_verification_share_one_deadline(network, repository, lab):
    # Every RCD header may name another slow repository: together they get one timeout.
    lab.STIR_X5U_TIMEOUT_SECONDS = 0.5
    carrier = Carrier()
    carrier.import_anchor()
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    headers = [carrier.identity(repository.url("/c.pem"))]
    for i in range(passport.MAX_IDENTITY_HEADERS - 1):
        x5u = repository.url(f"/slow-{i}.pem")
        repository.routes[f"/slow-{i}.pem"] = (200, PEM, carrier.chain_pem, 1.5)
        token = passport.rcd_passport(
            orig_tn=CALLER, dest_tns=[CALLEE], iat=int(time.time()), x5u=x5u,
            name="Slow Co", private_key=carrier.key,
        )  # fmt: skip
        headers.append(passport.identity_header(token, x5u=x5u, ppt="rcd"))
    started = time.monotonic()
    answer = verify(network, ",".join(headers))
    assert time.monotonic() - started < 0.5 + 2 * MARGIN  # a whole request around it
    assert answer["verstat"] == "TN-Validation-Passed"
    record = CallRecord.objects.get()
    assert [check[1:] for check in record.checks if check[0] == "Business name (RCD)"] == [
        [False, "Bad Identity Info: the repository did not answer in time"]
    ] * (passport.MAX_IDENTITY_HEADERS - 1)
    # Only the first slow repository was asked and is remembered as failing; the others
    # were never reached, and a later call tries them with a budget of its own.
    assert [repository.hits[f"/slow-{i}.pem"] for i in range(3)] == [1, 0, 0]
    repository.routes["/slow-1.pem"] = (200, PEM, carrier.chain_pem, 0)
    assert verify(network, ",".join(headers[:1] + headers[2:3]))["caller"]["name"] == "Slow Co"


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ((404, {}, b"", 0), "HTTP 404"),
        ((200, PEM, b"not a certificate", 0), "not a PEM certificate bundle"),
        ((200, PEM, b"-" * (fetch.MAX_BYTES + 1), 0), "over 64 KiB"),
        ((200, {**PEM, "Content-Encoding": "gzip"}, b"\x1f\x8b", 0), "encoded"),
        ((200, {**PEM, "Content-Length": "9" * 30}, b"", 0), "over 64 KiB"),
        ((302, {"Location": "http://localhost:1/c.pem"}, b"", 0), "another host"),
        ((302, {"Location": "https://127.0.0.1/c.pem"}, b"", 0), "another host"),
        ((302, {"Location": "/c.pem"}, b"", 0), "redirects too often"),
        ((200, PEM, b"", 1.5), "in time"),
        # Trickles: each read gets its byte well within the timeout, the whole never does.
        ((200, PEM, b"-" * 40, 0, 0.25), "in time"),
        ((200, {**PEM, "Content-Length": None}, b"-" * 40, 0, 0.25), "in time"),
    ],
)
def test_the_fetch_refuses_what_a_hostile_repository_answers(repository, lab, route, reason):
    lab.STIR_X5U_TIMEOUT_SECONDS = 0.5
    repository.routes["/c.pem"] = route
    started = time.monotonic()
    with pytest.raises(fetch.FetchError, match=reason):
        fetch.fetch(repository.url("/c.pem"))
    assert time.monotonic() - started < 0.5 + MARGIN


def test_a_slow_dns_answer_counts_against_the_deadline(lab, carrier_dns, monkeypatch):
    lab.STIR_X5U_TIMEOUT_SECONDS = 0.5
    resolve = fetch.socket.getaddrinfo
    slow = threading.Event()

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "slow-dns.test":
            slow.wait(5)  # a DNS server that does not answer
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", getaddrinfo)
    started = time.monotonic()
    try:
        with pytest.raises(fetch.FetchError, match="in time"):
            fetch.fetch("https://slow-dns.test/c.pem")
        assert time.monotonic() - started < 0.5 + MARGIN
    finally:
        slow.set()  # let the resolver thread go


def test_a_redirect_on_the_same_host_is_followed(repository, lab):
    carrier = Carrier()
    repository.routes["/old.pem"] = (301, {"Location": "/c.pem"}, b"", 0)
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    pem, _ = fetch.fetch(repository.url("/old.pem"))
    assert certificates.load_certificates(pem.encode()) == [carrier.cert]


def test_an_endless_body_is_cut_at_the_cap(repository, lab):
    # No Content-Length: the body is counted as it arrives.
    repository.routes["/c.pem"] = (200, {"Content-Length": None}, b"A" * (fetch.MAX_BYTES * 2), 0)
    with pytest.raises(fetch.FetchError, match="over 64 KiB"):
        fetch.fetch(repository.url("/c.pem"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/c.pem", "must be an https URL"),
        ("https://127.0.0.1:9/c.pem", "private or reserved"),
        ("https://[::1]:9/c.pem", "private or reserved"),
        ("https://10.1.2.3/c.pem", "private or reserved"),
        ("https://169.254.169.254/latest", "private or reserved"),
        ("https://[::ffff:127.0.0.1]/c.pem", "private or reserved"),
        ("https://localhost/c.pem", "private or reserved"),
        ("https://0.0.0.0/c.pem", "private or reserved"),
        ("https://user:secret@carrier.invalid/c.pem", "no credentials"),
        ("https://carrier.invalid/c.pem", "does not resolve"),
        ("https://carrier.example:99999/c.pem", "not a usable URL"),
        ("ftp://carrier.example/c.pem", "must be an https URL"),
        ("file:///etc/passwd", "must be an https URL"),
        ("https:///c.pem", "must name a host"),
    ],
)
def test_the_production_policy_refuses_these_x5us(settings, url, reason):
    with pytest.raises(fetch.FetchError, match=reason):
        fetch.fetch(url)


def test_http_is_for_loopback_only_even_in_a_lab(lab):
    lab.STIR_X5U_ALLOWED_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8"]
    with pytest.raises(fetch.FetchError, match="loopback address only"):
        fetch.fetch("http://10.1.2.3/c.pem")


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        ("", 3600),  # the configured TTL
        ("public, max-age=7200", 7200),
        ("max-age=5", 60),  # never more than once a minute
        ("no-store", 60),
        ('max-age="86400000"', 86400),  # never over a day
        ("s-maxage=10", 3600),
    ],
)
def test_cache_lifetime_follows_cache_control_within_bounds(settings, cache_control, seconds):
    assert fetch._cache_seconds(cache_control) == seconds


# --- HTTPS, as in production ------------------------------------------------------------------


@pytest.fixture
def carrier_dns(monkeypatch):
    """Names the tests resolve themselves: name -> addresses."""
    names: dict[str, list[str]] = {}
    resolve = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in names[host]]
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.fixture
def https_repository(tmp_path, settings, monkeypatch, carrier_dns):
    """carrier.test on a loopback port with a certificate from a CA the test trusts."""
    web_ca, context = tls_server_certificate(tmp_path, "carrier.test")
    monkeypatch.setenv("SSL_CERT_FILE", web_ca)
    settings.STIR_X5U_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the stand-in for a public host
    carrier_dns["carrier.test"] = ["127.0.0.1"]
    served = Repository(tls=context)
    yield served
    served.stop()


def test_an_https_x5u_is_fetched_from_the_checked_address_with_its_name(https_repository):
    carrier = Carrier()
    https_repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0)
    url = f"https://carrier.test:{https_repository.server.server_port}/c.pem"
    pem, _ = fetch.fetch(url)
    assert certificates.load_certificates(pem.encode()) == [carrier.cert]


def test_an_https_repository_that_trickles_is_cut_at_the_deadline(https_repository, settings):
    # Through TLS too: the watchdog shuts the socket under the TLS layer.
    settings.STIR_X5U_TIMEOUT_SECONDS = 0.5
    https_repository.routes["/c.pem"] = (200, PEM, b"-" * 40, 0, 0.25)
    started = time.monotonic()
    with pytest.raises(fetch.FetchError, match="in time"):
        fetch.fetch(f"https://carrier.test:{https_repository.server.server_port}/c.pem")
    assert time.monotonic() - started < 0.5 + MARGIN


def test_an_https_repository_with_another_name_is_refused(https_repository, carrier_dns):
    carrier_dns["impostor.test"] = ["127.0.0.1"]  # the same server, asked for another name
    https_repository.routes["/c.pem"] = (200, PEM, Carrier().chain_pem, 0)
    with pytest.raises(fetch.FetchError, match="cannot be reached"):
        fetch.fetch(f"https://impostor.test:{https_repository.server.server_port}/c.pem")
    assert https_repository.hits["/c.pem"] == 0


def test_a_name_with_one_private_address_among_public_ones_is_refused(settings, carrier_dns):
    carrier_dns["rebinding.test"] = ["93.184.215.14", "10.0.0.7"]
    with pytest.raises(fetch.FetchError, match="private or reserved"):
        fetch.fetch("https://rebinding.test/c.pem")


# --- Hostile certificates from a repository ---------------------------------------------------


def _odd_leaf(carrier: Carrier, *, key=None, extensions=(), issuer=None):
    """A leaf outside what issue() makes, signed by the carrier's STI-CA."""
    key = key or certificates.generate_key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd")]))
        .issuer_name(issuer or carrier.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(carrier.root_key, hashes.SHA256())


def _hostile_bundles(carrier: Carrier) -> dict[str, bytes]:
    tal = x509.UnrecognizedExtension(
        certificates.TN_AUTH_LIST_OID,
        certificates.encode_tn_auth_list(TnAuthList(ranges=(("12025550100", 100),))),
    )
    policy = x509.CertificatePolicies(
        [
            x509.PolicyInformation(
                x509.ObjectIdentifier(certificates.SHAKEN_CERTIFICATE_POLICY), None
            )
        ]
    )
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(carrier.root_key.public_key())
    profile = [(tal, False), (policy, False), (usage, True), (aki, False)]
    bad_tal = x509.UnrecognizedExtension(certificates.TN_AUTH_LIST_OID, b"\x30\x84\xff\xff\xff\xff")

    def pem(*certs):
        return b"".join(certificates.pem(c) for c in certs)

    return {
        "an RSA-1024 leaf": pem(_odd_leaf(carrier, key=rsa.generate_private_key(65537, 1024), extensions=profile)),  # noqa: S505
        "an Ed25519 leaf": pem(_odd_leaf(carrier, key=ed25519.Ed25519PrivateKey.generate(), extensions=profile)),
        "a P-384 leaf": pem(_odd_leaf(carrier, key=ec.generate_private_key(ec.SECP384R1()), extensions=profile)),
        "a malformed TNAuthList": pem(_odd_leaf(carrier, extensions=[(bad_tal, False), *profile[1:]])),
        "a critical TNAuthList": pem(_odd_leaf(carrier, extensions=[(tal, True), *profile[1:]])),
        "no key usage": pem(_odd_leaf(carrier, extensions=[profile[0], profile[1], profile[3]])),
        "the STI-CA itself as the leaf": pem(carrier.root),
        "eleven certificates": pem(*[carrier.cert] * 11),
        "a leaf naming another issuer": pem(
            _odd_leaf(carrier, extensions=profile, issuer=x509.Name.from_rfc4514_string("CN=Nobody"))
        ),
        "PEM armour around garbage": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "a private key": certificates.private_key_pem(carrier.key),
    }  # fmt: skip


def test_no_hostile_certificate_from_a_repository_gets_a_5xx_or_passes(network, repository, lab):
    carrier = Carrier()
    carrier.import_anchor()
    # The PASSporT is signed with the carrier's real key: only the certificate is odd.
    for name, bundle in _hostile_bundles(carrier).items():
        path = f"/{abs(hash(name))}.pem"
        repository.routes[path] = (200, PEM, bundle, 0)
        response = verify(network, carrier.identity(repository.url(path)))
        assert response["verstat"] == "TN-Validation-Failed", (name, response)
        assert response["reasonCode"] in (436, 437, 438), (name, response)


def test_concurrent_calls_naming_a_new_x5u_fetch_it_once(repository, lab):
    carrier = Carrier()
    repository.routes["/c.pem"] = (200, PEM, carrier.chain_pem, 0.3)  # a slow repository
    url = repository.url("/c.pem")
    results = []

    def call():
        results.append(fetch.certificate_chain(url))

    callers = [threading.Thread(target=call) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=10)
    assert results == [carrier.chain_pem.decode()] * 6
    assert repository.hits["/c.pem"] == 1
