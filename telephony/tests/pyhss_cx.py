"""A Cx client for the peer tests: run with PyHSS's own Python (its library builds and
reads the Diameter messages), it connects to PyHSS's Diameter service as an S-CSCF
would, sends a CER, then a Server-Assignment-Request (REGISTRATION) for an IMSI, and
prints the answer's result code as JSON: what PyHSS tells an S-CSCF about a REGISTER.

Usage: pyhss_cx.py <pyhss root> <diameter port> <imsi> <ims domain>
"""

import json
import os
import socket
import sys

root, port, imsi, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, os.path.join(root, "lib"))

from diameter import Diameter  # noqa: E402 - PyHSS's library, from its root
from logtool import LogTool  # noqa: E402
from pyhss_config import config  # noqa: E402

REGISTRATION = 1
RESULT_CODE, EXPERIMENTAL_RESULT_CODE = 268, 298


def read_message(sock: socket.socket) -> bytes:
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            raise ConnectionError("PyHSS closed the Diameter connection")
        header += chunk
    length = int.from_bytes(header[1:4], "big")
    body = header
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("PyHSS closed the Diameter connection")
        body += chunk
    return body


def result_code(diameter: Diameter, message: bytes) -> int:
    _, avps = diameter.decode_diameter_packet(message)
    for avp in avps:
        for candidate in [avp, *avp.get("sub_avps", [])]:
            if candidate.get("avp_code") in (RESULT_CODE, EXPERIMENTAL_RESULT_CODE):
                return int(candidate["misc_data"], 16)
    raise ValueError("no result code in the answer")


diameter = Diameter(
    LogTool(config),
    originHost="scscf.peer-test",
    originRealm=domain,
    mcc=config["hss"]["MCC"],
    mnc=config["hss"]["MNC"],
)
with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    sock.sendall(bytes.fromhex(diameter.Request_257()))
    cea = result_code(diameter, read_message(sock))
    sock.sendall(bytes.fromhex(diameter.Request_16777216_301(imsi, domain, REGISTRATION)))
    saa = result_code(diameter, read_message(sock))
print(json.dumps({"cea": cea, "saa": saa}))
