"""Real SIP peers for tests, on loopback: Kamailio (Debian's package) as the portal's SIP
edge (sipedge/kamailio.cfg, configured by `manage.py sipedge_config` as an operator does)
and as a registrar that plays the S-CSCF (sip/registrar.cfg), and sipp as UEs, as a
scripted S-CSCF (sip/*.xml) or as a UAS the test describes, whose message trace the test
then reads.

Both are context managers: every process is started in its own process group, bounded
in time, and stopped by its pid when the block ends, also when a test or the start fails.
They bind 127.0.0.1, except sipp's control socket, which sipp 3.6 always binds on every
address (on a free port, for the test's seconds only).

A user's clone without ``kamailio`` or ``sipp`` skips these tests; CI (``make peers``
installs both) fails instead. Reused by every test of the SIP edge:

    with running_edge(tmp_path / "edge", portal_url=..., token=...) as edge, \\
         running_sipp(uas_scenario(200, "OK"), tmp_path / "ue") as ue:
        edge.rpc("tm.t_uac_wait_block", "MESSAGE", ue.uri("phone"), "", "", headers, "Hi")
        ue.received("MESSAGE")[0].body
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from portal.lab import (
    DBTEXT_SCHEMA,
    Edge,
    RunningKamailio,
    free_port,
    free_sip_port,
    new_edge,
    running_kamailio,
)
from portal.lab import stop as _stop
from portal.testing import require_program

__all__ = [
    "DBTEXT_SCHEMA",
    "Edge",
    "RunningKamailio",
    "free_port",
    "free_sip_port",
    "new_edge",
    "running_kamailio",
]

START_TIMEOUT = 20  # seconds for a peer to start answering
PEER_LIFETIME = 60  # a sipp quits by itself after this long, whatever the test does


def _udp_port_taken(port: int) -> bool:
    """Whether a socket is bound to UDP ``port``, read from the kernel's table: a bind to
    find out would hold the port for a moment and could make a starting peer fail."""
    table = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in table)


def _free_port_pair() -> int:
    """A free UDP port whose port + 2 is free too (sipp's media echo takes both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        if port < 65533 and not _udp_port_taken(port + 2):
            return port
    raise RuntimeError("no free pair of UDP ports on 127.0.0.1")


# --- sipp ------------------------------------------------------------------------------


def uas_scenario(code: int | None, reason: str = "", method: str = "MESSAGE") -> str:
    """A sipp UAS that takes one ``method`` request and answers ``code reason`` (None: it
    never answers, and the sender's transaction times out)."""
    answer = (
        f"""  <send>
    <![CDATA[
SIP/2.0 {code} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
  </send>
"""
        if code is not None
        else '  <pause milliseconds="5000"/>\n'
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<scenario name="UAS answering {method} with {code}">
  <recv request="{method}" crlf="true"/>
{answer}</scenario>
"""


@dataclass
class SipMessage:
    """One message of sipp's trace: received by sipp, or sent by it."""

    direction: str  # "received" or "sent"
    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    @property
    def method(self) -> str:
        return "" if self.start_line.startswith("SIP/2.0") else self.start_line.split(" ")[0]

    @property
    def request_uri(self) -> str:
        return self.start_line.split(" ")[1] if self.method else ""

    def header(self, name: str) -> str:
        """The first value of header ``name`` (case-insensitive), "" if absent."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), "")


_TRACE_SEPARATOR = re.compile(r"^-{20,} .*$", re.MULTILINE)
_TRACE_HEAD = re.compile(r"^\w+ message (received|sent)")


def parse_trace(text: str) -> list[SipMessage]:
    """sipp's ``-trace_msg`` file: a dashed line with a timestamp, then "UDP message
    received [n] bytes :" (or "sent"), a blank line, and the message as it went."""
    messages = []
    for entry in _TRACE_SEPARATOR.split(text.replace("\r\n", "\n")):
        head, _, message = entry.strip("\n").partition("\n\n")
        found = _TRACE_HEAD.match(head)
        if found and message.strip():
            messages.append(parse_message(message, found.group(1)))
    return messages


def parse_message(text: str, direction: str = "received") -> SipMessage:
    """One SIP message as text (CRLF or LF line ends)."""
    header_block, _, body = text.replace("\r\n", "\n").partition("\n\n")
    start_line, *lines = header_block.split("\n")
    headers = [
        (name.strip(), value.strip())
        for name, sep, value in (line.partition(":") for line in lines)
        if sep
    ]
    return SipMessage(direction, start_line, headers, body.rstrip("\n"))


@dataclass
class RunningSipp:
    process: subprocess.Popen
    folder: Path
    port: int

    def uri(self, user: str) -> str:
        """A SIP URI that reaches this sipp."""
        return f"sip:{user}@127.0.0.1:{self.port}"

    def messages(self) -> list[SipMessage]:
        trace = self.folder / "messages.log"
        return parse_trace(trace.read_text(errors="replace")) if trace.exists() else []

    def received(self, method: str) -> list[SipMessage]:
        return [m for m in self.messages() if m.direction == "received" and m.method == method]

    def output(self) -> str:
        return (self.folder / "sipp.out").read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def running_sipp(
    scenario: str, folder: Path, calls: int = 1, lifetime: float = PEER_LIFETIME
) -> Iterator[RunningSipp]:
    """sipp on a free UDP port of 127.0.0.1 running ``scenario`` for up to ``calls``
    calls; it quits by itself after ``lifetime`` seconds."""
    binary = require_program("sipp")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.xml").write_text(scenario)
    port = free_port(socket.SOCK_DGRAM)
    with (folder / "sipp.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-sf", str(folder / "scenario.xml"), "-i", "127.0.0.1", "-bind_local",
             "-p", str(port), "-cp", str(free_port(socket.SOCK_DGRAM)),
             "-mi", "127.0.0.1", "-mp", str(_free_port_pair()),
             "-m", str(calls), "-nostdin", "-timeout", f"{lifetime:.0f}s",
             "-trace_msg", "-message_file", str(folder / "messages.log")],
            cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    peer = RunningSipp(process, folder, port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _udp_port_taken(port):
            if process.poll() is not None:
                raise RuntimeError(f"sipp exited:\n{peer.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sipp did not bind its port:\n{peer.output()}")
            time.sleep(0.05)
        yield peer
    finally:
        _stop(process)


def run_scenario(
    scenario: str,
    remote: str,
    folder: Path,
    *,
    local_ip: str = "127.0.0.1",
    calls: int = 1,
    inf: Path | None = None,
    keys: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: int = 20,
    local_port: int = 0,
) -> subprocess.CompletedProcess:
    """Run a client scenario of sip/ against ``remote`` to its end: sipp exits 0 when
    every call passed. Its trace is ``trace(folder, scenario)``. ``auth`` (user name,
    password) answers the scenario's ``[authentication]`` (sipp reads no field there).
    ``local_port``: where sipp sends from (its contact's port), a free one if 0."""
    binary = require_program("sipp")
    port = local_port or free_port(socket.SOCK_DGRAM)
    argv = [
        binary, "-sf", str(SIP_DIR / scenario), remote,
        "-i", local_ip, "-p", str(port), "-cp", str(free_port(socket.SOCK_DGRAM)),
        "-m", str(calls), "-r", "50", "-timeout", f"{timeout}s", "-timeout_error",
        "-nostdin", "-nd", "-trace_msg", "-message_file", str(folder / f"{scenario}.messages"),
    ]  # fmt: skip
    if inf is not None:
        argv += ["-inf", str(inf)]
    for name, value in (keys or {}).items():
        argv += ["-key", name, value]
    if auth is not None:
        argv += ["-au", auth[0], "-ap", auth[1]]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout + 10, cwd=folder,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def trace(folder: Path, scenario: str) -> str:
    """What sipp sent and received in a run of ``scenario``, as text."""
    path = folder / f"{scenario}.messages"
    return path.read_text(errors="replace") if path.exists() else ""


# --- The edge and its S-CSCF --------------------------------------------------------------

SIP_DIR = Path(__file__).resolve().parent / "sip"
# The presence and pua tables the registrar's modules open (db_text; nothing is kept).
DBTEXT_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "pua")


@contextlib.contextmanager
def running_registrar(folder: Path, *, domain: str, as_uri: str) -> Iterator[RunningKamailio]:
    """A Kamailio registrar playing the S-CSCF of ``domain``: third-party REGISTERs to
    ``as_uri``, and the `reg` event package. ``.sip_port`` is where UEs register."""
    dbtext = folder / "dbtext"
    dbtext.mkdir(parents=True, exist_ok=True)
    for table in DBTEXT_TABLES:
        (dbtext / table).write_bytes((DBTEXT_SCHEMA / table).read_bytes())
    sip_port, rpc_port = free_port(socket.SOCK_DGRAM), free_port()
    cfg = (SIP_DIR / "registrar.cfg").read_text()
    for name, value in {
        "REG_ADDRESS": "127.0.0.1",
        "REG_RPC_PORT": str(rpc_port),
        "REG_PORT": str(sip_port),
        "REG_DOMAIN": domain,
        "REG_DBTEXT": str(dbtext),
        "REG_AS_URI": as_uri,
    }.items():
        cfg = cfg.replace(name, value)
    with running_kamailio(cfg, folder, rpc_port) as registrar:
        registrar.sip_port = sip_port
        yield registrar


# --- A scripted S-CSCF ----------------------------------------------------------------------


@dataclass
class Subscription:
    """A SUBSCRIBE the edge sent, as the scripted S-CSCF received it."""

    request: SipMessage
    to_tag: str

    @property
    def call_id(self) -> str:
        return self.request.header("Call-ID")


class ScriptedScscf:
    """An S-CSCF scripted by the test, over UDP on 127.0.0.1, for what no real one can be
    made to do on cue: a third-party REGISTER with the UE's REGISTER and 200 OK as
    message/sip bodies, a 481 to a SUBSCRIBE, hostile or oversized NOTIFY bodies. sipp
    cannot play it: a client scenario only receives requests of its own Call-ID, and the
    edge's SUBSCRIBE opens a dialog of its own."""

    def __init__(self, edge_address: str):
        host, port = edge_address.rsplit(":", 1)
        self.edge = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:scscf@127.0.0.1:{self.port}"
        self._counter = 0
        self._waiting: list[SipMessage] = []

    def close(self) -> None:
        self.sock.close()

    def _id(self) -> str:
        self._counter += 1
        return f"{os.getpid()}-{self._counter}-{time.monotonic_ns()}"

    def _request(self, method: str, uri: str, headers: list[str], body: bytes = b"") -> int:
        """Send a request and return the final status code of its answer (5 s at most)."""
        branch = f"z9hG4bK{self._id()}"
        head = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch}",
            "Max-Forwards: 70",
            *headers,
            f"Content-Length: {len(body)}",
        ]
        self.sock.sendto("\r\n".join(head).encode() + b"\r\n\r\n" + body, self.edge)
        while True:
            answer = self._receive(lambda m: not m.method and branch in m.header("Via"))
            code = int(answer.start_line.split(" ")[1])
            if code >= 200:
                return code

    def _receive(self, wanted, timeout: float = 5) -> SipMessage:
        for message in self._waiting:
            if wanted(message):
                self._waiting.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65_535)
            except TimeoutError:
                break
            message = parse_message(data.decode(errors="replace"))
            if wanted(message):
                return message
            self._waiting.append(message)
        raise AssertionError("the edge sent nothing the scripted S-CSCF waited for")

    def register(self, impu: str, *, expires: int = 600, parts: tuple[str, ...] = ()) -> int:
        """A third-party REGISTER of ``impu``; ``parts`` are message/sip bodies."""
        headers = [
            f"From: <{self.uri}>;tag={self._id()}",
            f"To: <{impu}>",
            f"Call-ID: {self._id()}@127.0.0.1",
            "CSeq: 1 REGISTER",
            f"Contact: <{self.uri}>",
            f"Expires: {expires}",
        ]
        body = b""
        if parts:
            boundary = "scscf-boundary"
            headers.append(f"Content-Type: multipart/mixed;boundary={boundary}")
            body = (
                "".join(
                    f"--{boundary}\r\nContent-Type: message/sip\r\n\r\n{part}\r\n" for part in parts
                ).encode()
                + f"--{boundary}--\r\n".encode()
            )
        return self._request(
            "REGISTER", f"sip:portal-as@{self.edge[0]}:{self.edge[1]}", headers, body
        )

    def subscription(self, *, answer: int = 200, timeout: float = 5) -> Subscription:
        """The edge's next SUBSCRIBE, answered with ``answer``."""
        request = self._receive(lambda m: m.method == "SUBSCRIBE", timeout)
        subscription = Subscription(request, to_tag=self._id())
        reason = {200: "OK", 481: "Subscription Does Not Exist"}.get(answer, "Error")
        lines = [
            f"SIP/2.0 {answer} {reason}",
            *(f"{name}: {request.header(name)}" for name in ("Via", "From")),
            f"To: {request.header('To')};tag={subscription.to_tag}",
            *(f"{name}: {request.header(name)}" for name in ("Call-ID", "CSeq")),
            f"Contact: <{self.uri}>",
            "Expires: 600",
            "Content-Length: 0",
        ]
        self.sock.sendto("\r\n".join(lines).encode() + b"\r\n\r\n", self.edge)
        return subscription

    def notify(
        self, subscription: Subscription, body: str | bytes, *, state: str = "active"
    ) -> int:
        """A NOTIFY of ``subscription`` carrying ``body``; the edge's final status."""
        request = subscription.request
        self._counter += 1
        headers = [
            f"From: {request.header('To')};tag={subscription.to_tag}",
            f"To: {request.header('From')}",
            f"Call-ID: {subscription.call_id}",
            f"CSeq: {self._counter} NOTIFY",
            f"Contact: <{self.uri}>",
            "Event: reg",
            f"Subscription-State: {state}"
            + (";expires=600" if state == "active" else ";reason=noresource"),
            "Content-Type: application/reginfo+xml",
        ]
        data = body.encode() if isinstance(body, str) else body
        uri = request.header("Contact").strip("<>") or request.header("From")
        return self._request("NOTIFY", uri, headers, data)


@contextlib.contextmanager
def scripted_scscf(edge_address: str) -> Iterator[ScriptedScscf]:
    scscf = ScriptedScscf(edge_address)
    try:
        yield scscf
    finally:
        scscf.close()


# --- baresip --------------------------------------------------------------------------------


@dataclass
class RunningBaresip:
    process: subprocess.Popen
    folder: Path
    port: int
    control_port: int

    def output(self) -> str:
        """What it printed: with -s, every SIP message it sent and received, and what its
        user interface (stdio) shows."""
        return (self.folder / "baresip.out").read_text(errors="replace")

    def messages_shown(self) -> list[tuple[str, str]]:
        """(sender, text) of each SIP MESSAGE it showed its user, as its menu prints one:
        the sender's URI, a colon and the text in quotes, on a line of its own."""
        return _SHOWN_MESSAGE.findall(self.output().replace("\r\n", "\n"))

    def command(self, command: str, params: str = "") -> dict:
        """One command of its menu (``dial``, ``hangup``, ...) over its ctrl_tcp socket: a
        netstring of JSON; its answer."""
        request = json.dumps({"command": command, "params": params, "token": command}).encode()
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as sock:
            sock.sendall(b"%d:%s," % (len(request), request))
            data = b""
            while not (data and data.endswith(b",") and _netstring_complete(data)):
                chunk = sock.recv(65_535)
                if not chunk:
                    break
                data += chunk
        length, _, rest = data.partition(b":")
        return json.loads(rest[: int(length)])

    def received(self, method: str) -> list[SipMessage]:
        """The requests of ``method`` it received, from its SIP trace (-s): each message
        follows a line "UDP <from> -> <to>" and ends with a colour reset."""
        here = f"127.0.0.1:{self.port}"
        return [
            parse_message(found.group(3))
            for found in _BARESIP_TRACE.finditer(self.output().replace("\r\n", "\n"))
            if found.group(2) == here and found.group(3).startswith(f"{method} ")
        ]


def _netstring_complete(data: bytes) -> bool:
    length, sep, rest = data.partition(b":")
    return bool(sep) and length.isdigit() and len(rest) >= int(length) + 1


_SHOWN_MESSAGE = re.compile(r'^\r?(sips?:[^\s"]+): "(.*)"$', re.MULTILINE)
_BARESIP_TRACE = re.compile(
    r"^(?:UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.MULTILINE | re.DOTALL
)


# opus first: a call negotiates it, and ausine (the test tone) makes 48 kHz audio only.
# stdio is the user interface: without one baresip shows no MESSAGE it takes.
BARESIP_CONFIG = """sip_listen 127.0.0.1:{port}
module_path /usr/lib/baresip/modules
module stdio.so
module opus.so
module g711.so
module ausine.so
module uuid.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{control_port}
audio_player ausine,nil
audio_source ausine,440
audio_alert ausine,nil
"""


@contextlib.contextmanager
def running_baresip(
    folder: Path,
    *,
    aor: str,
    registrar: str,
    instance: str,
    auth_user: str = "",
    auth_pass: str = "",
    answer: bool = False,
) -> Iterator[RunningBaresip]:
    """baresip registered as ``aor`` at ``registrar`` (host:port) with the device UUID
    ``instance`` (its +sip.instance, through RFC 5626 outbound), ready once the registrar
    took the binding; with ``auth_user`` (an IMPI) and ``auth_pass`` it answers digest
    challenges; with ``answer`` it answers calls by itself. It prints every SIP message
    (-s), shows its user the MESSAGEs it takes (``.messages_shown()``), takes commands
    (``.command("dial", uri)``) and quits by itself after PEER_LIFETIME seconds."""
    binary = require_program("baresip")
    folder.mkdir(parents=True, exist_ok=True)
    # baresip listens on UDP and TCP, and TLS one port up, whatever its config says.
    port, control_port = free_sip_port(next_too=True), free_port()
    (folder / "config").write_text(BARESIP_CONFIG.format(port=port, control_port=control_port))
    (folder / "uuid").write_text(instance)  # no line end: it goes into the header as it is
    auth = f";auth_user={auth_user};auth_pass={auth_pass}" if auth_user else ""
    auth += ";answermode=auto" if answer else ""
    (folder / "accounts").write_text(
        f'<{aor}>;outbound="sip:{registrar};transport=udp";regint=600;sipnat=outbound{auth}\n'
    )
    with (folder / "baresip.out").open("wb") as out:
        # stdin a pipe kept open and silent: stdio cannot watch /dev/null, and at the
        # pipe's end it would spin.
        process = subprocess.Popen(
            [binary, "-s", "-f", str(folder), "-t", str(PEER_LIFETIME)],
            cwd=folder, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    peer = RunningBaresip(process, folder, port, control_port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not re.search(r"\{\d+/UDP/v4\} 200 OK", peer.output()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baresip did not register:\n{peer.output()[-3000:]}")
            time.sleep(0.05)
        yield peer
    finally:
        _stop(process)
        if process.stdin is not None:
            process.stdin.close()
