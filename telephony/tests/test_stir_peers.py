"""STIR/SHAKEN against an independent implementation: secsipidx (Debian's package, as
the other carrier) verifies our PASSporTs, and we verify the ones it signs."""

import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from accounts.audit import Actor
from portal.testing import require_program
from telephony.callauth import credentials
from telephony.callauth.stir import certificates
from telephony.callauth.stir.certificates import TnAuthList
from telephony.identities import sync
from telephony.models import CallRecord, SigningCredential
from telephony.tests.factories import give_numbers, make_identity

pytestmark = [pytest.mark.peer, pytest.mark.django_db]

THEIR_CALLER = "12025550123"
OUR_CALLEE = "4940123499"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Secsipidx:
    """One secsipidx HTTP server on a loopback port, stopped by its pid."""

    def __init__(self, *options: str):
        self.binary = require_program("secsipidx")
        self.port = _free_port()
        self.process = subprocess.Popen(
            [self.binary, "-http-srv", f"127.0.0.1:{self.port}", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"secsipidx exited: {self.process.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("secsipidx did not listen within 10 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check(self, identity: str) -> bool:
        """secsipidx's verdict on an Identity header value (its /v1/check)."""
        answer = requests.post(self.url("/v1/check"), data=identity.encode(), timeout=15)
        assert answer.text.strip() in ("OK", "FAILED"), answer.text
        return answer.status_code == 200 and answer.text.strip() == "OK"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def secsipidx_servers():
    started: list[Secsipidx] = []

    def start(*options: str) -> Secsipidx:
        server = Secsipidx(*options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_secsipidx_verifies_our_shaken_passports(
    live_server, settings, enterprise, employee, network, secsipidx_servers, tmp_path
):
    # Our x5u names the portal's own certificate repository, served on a loopback port.
    settings.STIR_CERT_REPOSITORY_URL = f"{live_server.url}/certs"
    credentials.lab_pki_create(actor=Actor.system(), operator_name="iCA", spc="1234")
    give_numbers(enterprise)
    credentials.delegate_certificate_issue(actor=Actor.system(), enterprise=enterprise)
    rob = make_identity(employee)
    sync.push_identity(rob.pk)
    body = {"signingRequest": {"orig": {"tn": rob.tn[1:]}, "dest": {"tn": [OUR_CALLEE]},
                               "iat": int(time.time()), "origid": "a0b1c2d3"}}  # fmt: skip
    signed = network.post("/network/v1/stir/signing", body, content_type="application/json")
    identity = signed.json()["signingResponse"]["identity"]
    assert f"info=<{live_server.url}/certs/" in identity

    anchor = SigningCredential.objects.get(kind=SigningCredential.Kind.TRUST_ANCHOR)
    our_root = _write(tmp_path / "our-root.pem", anchor.certificate_pem.encode())
    # Verification mode 1|4: validity times, and a chain from the x5u's bundle to the
    # roots in -ca-file.
    trusting = secsipidx_servers(
        "-ca-file", our_root, "-cert-verify", "5", "-expire", "60", "-timeout", "5"
    )
    assert trusting.check(identity)
    tampered = identity.replace(".", ".eyJ", 1)
    assert not trusting.check(tampered)

    # The same PASSporT for a verifier that trusts another STI-CA: the chain is checked.
    _, stranger = certificates.make_root_ca("Unrelated STI-CA")
    other_root = _write(tmp_path / "other-root.pem", certificates.pem(stranger))
    distrusting = secsipidx_servers(
        "-ca-file", other_root, "-cert-verify", "5", "-expire", "60", "-timeout", "5"
    )
    assert not distrusting.check(identity)


def _verify(network, identity, orig=THEIR_CALLER):
    body = {"verificationRequest": {"from": {"tn": orig}, "to": {"tn": [OUR_CALLEE]},
                                    "time": int(time.time()), "identity": identity}}  # fmt: skip
    response = network.post("/network/v1/stir/verification", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["verificationResponse"]


def test_we_verify_passports_that_secsipidx_signs(settings, network, secsipidx_servers, tmp_path):
    settings.STIR_X5U_ALLOW_HTTP = True  # a lab: their repository is on loopback
    settings.STIR_X5U_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    # The other carrier's PKI, made by the test: its STI-CA and its SHAKEN certificate.
    root_key, root = certificates.make_root_ca("Other Carrier STI-CA")
    key = certificates.generate_key()
    cert = certificates.issue(
        issuer_key=root_key,
        issuer_cert=root,
        subject_cn="SHAKEN 999Z",
        public_key=key.public_key(),
        tn_auth_list=TnAuthList(ranges=(("12025550100", 100),)),
        days=30,
        ca=False,
    )
    published = tmp_path / "pub"
    published.mkdir()
    _write(published / "cert.pem", certificates.pem(cert))
    private_key = _write(
        tmp_path / "their.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    repository = secsipidx_servers("-http-dir", str(published))  # serves /v1/pub/
    x5u = repository.url("/v1/pub/cert.pem")

    def secsipidx_signs(orig: str) -> str:
        result = subprocess.run(
            [repository.binary, "-sign-full", "-orig-tn", orig, "-dest-tn", OUR_CALLEE,
             "-attest", "A", "-x5u", x5u, "-k", private_key],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    identity = secsipidx_signs(THEIR_CALLER)
    assert identity.endswith(f";info=<{x5u}>;alg=ES256;ppt=shaken")

    before = _verify(network, identity)
    assert (before["verstat"], before["reasonCode"]) == ("TN-Validation-Failed", 437)

    # Their STI-CA becomes a trust anchor the way an operator imports one.
    credentials.credential_import(
        actor=Actor.system(),
        kind=SigningCredential.Kind.TRUST_ANCHOR,
        name="Other Carrier STI-CA",
        certificate_pem=certificates.pem(root).decode(),
    )
    answer = _verify(network, identity)
    assert (answer["verstat"], answer["attest"]) == ("TN-Validation-Passed", "A")

    outside = _verify(network, secsipidx_signs("12025559999"), orig="12025559999")
    assert outside["reasonCode"] == 437 and "does not cover" in outside["reasonString"]
    assert CallRecord.objects.filter(verstat="TN-Validation-Passed").count() == 1
