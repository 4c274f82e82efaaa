"""Real SIP peers for tests, on loopback: Kamailio (Debian's package) running a cfg the
test gives, and sipp running a scenario the test gives (a UAS that answers MESSAGE, for
example), whose message trace the test then reads.

Both are context managers: every process is started in its own process group, bounded
in time, and stopped by its pid when the block ends, also when a test or the start fails.
They bind 127.0.0.1, except sipp's control socket, which sipp 3.6 always binds on every
address (on a free port, for the test's seconds only).

A user's clone without ``kamailio`` or ``sipp`` skips these tests; CI (``make peers``
installs both) fails instead. Reused by every test of the SIP edge:

    with running_kamailio(rpc_edge_cfg(sip_port, http_port), tmp_path, http_port) as edge, \\
         running_sipp(uas_scenario(200, "OK"), tmp_path) as ue:
        edge.rpc("tm.t_uac_wait_block", "MESSAGE", ue.uri("phone"), "", "", headers, "Hi")
        ue.received("MESSAGE")[0].body
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from portal.testing import require_program

START_TIMEOUT = 20  # seconds for a peer to start answering
PEER_LIFETIME = 60  # a sipp quits by itself after this long, whatever the test does


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now (TCP by default; ``socket.SOCK_DGRAM``: UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers; by pid, never by name."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- Kamailio --------------------------------------------------------------------------


def kamailio_modules() -> str:
    """The folder of Kamailio's modules (Debian installs them under the multiarch path)."""
    candidates = [
        *sorted(Path("/usr/lib").glob("*/kamailio/modules")),
        Path("/usr/lib/kamailio/modules"),
    ]
    for path in candidates:
        if (path / "tm.so").exists():
            return f"{path}/"
    raise RuntimeError("Kamailio's modules (tm.so) are not installed")


def rpc_edge_cfg(*, sip_port: int, http_port: int, fr_timer_ms: int = 2000) -> str:
    """The smallest edge that sends SIP requests when asked over JSON-RPC (HTTP POST
    ``/RPC``): tm's ``t_uac_wait_block`` answers with the final reply, or 408 after
    ``fr_timer_ms``. Requests that come in over SIP are refused."""
    return f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
http_reply_parse=yes
tcp_accept_no_cl=yes
listen=udp:127.0.0.1:{sip_port}
listen=tcp:127.0.0.1:{http_port}
mpath="{kamailio_modules()}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
modparam("jsonrpcs", "transport", 1)
modparam("tm", "fr_timer", {fr_timer_ms})

request_route {{
    sl_send_reply("403", "Forbidden");
    exit;
}}

event_route[xhttp:request] {{
    if ($hu =~ "^/RPC") {{
        jsonrpc_dispatch();
    }} else {{
        xhttp_reply("404", "Not Found", "text/plain", "");
    }}
}}
"""


@dataclass
class RunningKamailio:
    process: subprocess.Popen
    folder: Path
    http_port: int

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/RPC"

    def rpc(self, method: str, *params, timeout: float = 30) -> dict:
        """One JSON-RPC call; the whole answer (``result`` or ``error``)."""
        call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(self.rpc_url, json=call, timeout=timeout).json()

    def output(self) -> str:
        return (self.folder / "kamailio.out").read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def running_kamailio(cfg: str, folder: Path, http_port: int) -> Iterator[RunningKamailio]:
    """Kamailio in the foreground running ``cfg`` (written to ``folder``), ready once its
    HTTP port (``http_port``, a ``listen=tcp`` of the cfg) answers JSON-RPC."""
    binary = require_program("kamailio")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kamailio.cfg").write_text(cfg)
    (folder / "run").mkdir(exist_ok=True)
    with (folder / "kamailio.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-DD", "-E", "-f", str(folder / "kamailio.cfg"),
             "-P", str(folder / "kamailio.pid"), "-Y", str(folder / "run"), "-w", str(folder)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: _stop takes its children
        )  # fmt: skip
    peer = RunningKamailio(process, folder, http_port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"kamailio exited:\n{peer.output()}")
            with contextlib.suppress(requests.RequestException, ValueError):
                if "result" in peer.rpc("core.version", timeout=2):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not answer JSON-RPC:\n{peer.output()}")
            time.sleep(0.1)
        yield peer
    finally:
        _stop(process)


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
        if not found or not message.strip():
            continue
        header_block, _, body = message.partition("\n\n")
        start_line, *lines = header_block.split("\n")
        headers = [
            (name.strip(), value.strip())
            for name, sep, value in (line.partition(":") for line in lines)
            if sep
        ]
        messages.append(SipMessage(found.group(1), start_line, headers, body.rstrip("\n")))
    return messages


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
def running_sipp(scenario: str, folder: Path, calls: int = 1) -> Iterator[RunningSipp]:
    """sipp on a free UDP port of 127.0.0.1 running ``scenario`` for up to ``calls``
    calls; it quits by itself after PEER_LIFETIME seconds."""
    binary = require_program("sipp")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.xml").write_text(scenario)
    port = free_port(socket.SOCK_DGRAM)
    with (folder / "sipp.out").open("wb") as out:
        process = subprocess.Popen(
            [binary, "-sf", str(folder / "scenario.xml"), "-i", "127.0.0.1", "-bind_local",
             "-p", str(port), "-cp", str(free_port(socket.SOCK_DGRAM)),
             "-mi", "127.0.0.1", "-mp", str(_free_port_pair()),
             "-m", str(calls), "-nostdin", "-timeout", f"{PEER_LIFETIME}s",
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
