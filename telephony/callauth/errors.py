"""The error a call-authentication request is answered with (an ATIS request error),
and the number check every request makes."""

from __future__ import annotations

import re

TN_DIGITS = re.compile(r"^\+?(\d{6,15})$")


class CallAuthError(Exception):
    """A request the STI-AS or STI-VS cannot serve (answered as an ATIS request error)."""

    def __init__(self, message_id: str, text: str, variables=(), *, status: int = 400):
        super().__init__(text)
        self.message_id = message_id
        self.text = text
        self.variables = list(variables)
        self.status = status


def e164(tn: str) -> str:
    """``+digits`` from a PASSporT-style or E.164 number."""
    match = TN_DIGITS.match((tn or "").strip())
    if not match:
        raise CallAuthError("SVC4002", "Invalid value for %1", ["tn"])
    return f"+{match.group(1)}"
