"""The SIP edge asks the portal's STI service about an INVITE, within a budget.

Kamailio's app_python3 runs this module in each SIP worker; kamailio.cfg calls
``python_exec("ask_portal", "<url> <budget ms> <credential>")`` with the INVITE as it
came, and reads two variables back: ``$var(sti_code)``, the HTTP status of the portal's
answer (0 when none came within the budget: refused, timed out or broken), and
``$var(sti_answer)``, its body. Kamailio's http_client counts its timeouts in whole
seconds; a call cannot wait that long, so this one exchange is done here. Nothing else
is: the script applies the answer.
"""

import http.client
import time
from urllib.parse import urlsplit

import KSR  # type: ignore[import-not-found]  # Kamailio's own module, inside Kamailio only

# A reused keep-alive connection the portal closed in the meantime fails before any
# answer: asking again on a new one is safe (nothing reached the portal).
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class StiClient:
    """One per SIP worker, keeping one connection to the portal alive."""

    def __init__(self) -> None:
        self.connection: http.client.HTTPConnection | None = None

    def child_init(self, rank: int) -> int:
        return 0

    def ask_portal(self, msg, args: str) -> int:
        url, budget_ms, credential = args.split(" ")
        deadline = time.monotonic() + int(budget_ms) / 1000
        code, answer = 0, ""
        try:
            message = KSR.pv.get("$mb").encode("utf-8", "surrogateescape")
            headers = {
                "Content-Type": "message/sip",
                "Authorization": f"Bearer {credential}",
                "X-RequestID": (KSR.pv.get("$ci") or "")[:64],
            }
            code, answer = self._post(url, message, headers, deadline)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the call goes on unchanged
            self._close()
            KSR.info(f"the portal gave no answer within {budget_ms} ms: {type(exc).__name__}\n")
        KSR.pv.seti("$var(sti_code)", code)
        KSR.pv.sets("$var(sti_answer)", answer)
        return 1

    def _post(self, url: str, body: bytes, headers: dict, deadline: float) -> tuple[int, str]:
        reused = self.connection is not None
        try:
            return self._exchange(url, body, headers, deadline)
        except _STALE:
            self._close()
            if not reused:
                raise
        return self._exchange(url, body, headers, deadline)

    def _exchange(self, url: str, body: bytes, headers: dict, deadline: float) -> tuple[int, str]:
        if self.connection is None:
            self.connection = _connection(url, _left(deadline))
        connection = self.connection
        connection.timeout = _left(deadline)
        if connection.sock is not None:
            connection.sock.settimeout(_left(deadline))
        connection.request("POST", urlsplit(url).path, body, headers)
        connection.sock.settimeout(_left(deadline))
        response = connection.getresponse()
        data = response.read()
        if response.will_close:
            self._close()
        return response.status, data.decode("utf-8", "replace")

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the budget is spent")
    return left


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname or "", parts.port, timeout=timeout)


def mod_init() -> StiClient:
    return StiClient()
