"""A JSON-RPC 2.0 client over HTTP for the network's management interfaces (Kamailio's
``jsonrpcs``: the SIP edge, an S-CSCF). The answer is network input: read up to a cap,
parsed defensively, and anything but a well-formed answer is the peer's fault."""

from __future__ import annotations

import json

import requests

# An answer is read up to this size; a longer one is not a management answer.
ANSWER_MAX = 64 * 1024


class RpcError(Exception):
    """The call did not succeed."""


class RpcUnavailable(RpcError):
    """Unreachable, or an answer that is no JSON-RPC answer, or an error object of the
    peer's own (a code outside 4xx): worth trying again later."""


class RpcRefused(RpcError):
    """The peer refused the command as given (an error object with a 4xx code)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def call(url: str, method: str, params: list, *, timeout: float, call_id: int = 1) -> object:
    """The ``result`` of ``method(*params)`` at ``url``."""
    return parse_answer(*post(url, method, params, timeout=timeout, call_id=call_id))


def post(
    url: str, method: str, params: list, *, timeout: float, call_id: int = 1
) -> tuple[int, bytes]:
    """Send the call; the HTTP status and the answer's body, read up to the cap."""
    body = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
    try:
        with requests.post(
            url, json=body, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            return response.status_code, _read_capped(response)
    except requests.RequestException as exc:
        raise RpcUnavailable(f"unreachable: {exc.__class__.__name__}") from exc


def parse_answer(http_status: int, raw: bytes) -> object:
    """The ``result`` an answer carries; RpcRefused or RpcUnavailable for an error."""
    try:
        answer = json.loads(raw) if len(raw) <= ANSWER_MAX else None
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        answer = None
    if not isinstance(answer, dict):
        raise RpcUnavailable(f"answered HTTP {http_status} without a JSON-RPC body")
    error = answer.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else http_status
        message = error.get("message")
        text = " ".join(message.split())[:200] if isinstance(message, str) else ""
        if 400 <= code < 500:
            raise RpcRefused(f"refused the request ({code} {text})", code)
        raise RpcUnavailable(f"refused the request ({code} {text})")
    return answer.get("result")


def _read_capped(response: requests.Response) -> bytes:
    """The body up to ANSWER_MAX + 1 bytes: enough to tell that it is too long."""
    body = b""
    for chunk in response.iter_content(8192):
        body += chunk
        if len(body) > ANSWER_MAX:
            break
    return body
