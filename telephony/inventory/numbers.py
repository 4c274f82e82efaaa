"""Parsing and validation of the identifiers the operator hands out: E.164 telephone
numbers (with the phonenumbers library), IMSIs and ICCIDs. Bad input raises
RuleViolation with a message an admin can act on."""

import re

import phonenumbers
from phonenumbers import geocoder

from kernel.errors import RuleViolation

IMSI_RE = re.compile(r"^\d{6,15}$")
ICCID_RE = re.compile(r"^89\d{16,18}$")


def parse_tn(raw: str, *, field: str = "tn") -> tuple[str, str]:
    """(E.164, ISO country) of a valid number written in international form."""
    text = (raw or "").strip().replace(" ", "").replace("-", "")
    if not text.startswith("+"):
        raise RuleViolation(
            f"{raw!r}: write the number in international form, e.g. +49301234567.", field=field
        )
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise RuleViolation(f"{raw!r} is not a telephone number: {exc}.", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise RuleViolation(f"{raw!r} is not a valid telephone number.", field=field)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number) or "001"


def tn_range(first_raw: str, last_raw: str, *, max_size: int) -> tuple[str, str, str, list[str]]:
    """(first, last, country, every E.164 in between) of a number block."""
    first, country = parse_tn(first_raw, field="first_number")
    last, last_country = parse_tn(last_raw, field="last_number")
    if len(first) != len(last):
        raise RuleViolation("The first and last number of a block must have the same length.")
    if country != last_country:
        raise RuleViolation(f"The block spans two countries ({country}, {last_country}).")
    low, high = int(first[1:]), int(last[1:])
    if high < low:
        raise RuleViolation("The last number comes before the first.", field="last_number")
    if high - low + 1 > max_size:
        raise RuleViolation(f"A block holds at most {max_size:,} numbers.", field="last_number")
    width = len(first) - 1
    return first, last, country, [f"+{n:0{width}d}" for n in range(low, high + 1)]


def country_name(region: str) -> str:
    """The English name of an ISO 3166 region (libphonenumber's), else the code itself."""
    example = phonenumbers.example_number(region)
    return (geocoder.country_name_for_number(example, "en") if example else "") or region


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def with_luhn_digit(body: str) -> str:
    """``body`` followed by the check digit that makes it Luhn-valid (ICCIDs end so)."""
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


def clean_imsi(raw: str) -> str:
    imsi = (raw or "").strip()
    if not IMSI_RE.match(imsi):
        raise RuleViolation(f"{raw!r} is not an IMSI (6 to 15 digits).", field="imsi")
    return imsi


def clean_iccid(raw: str) -> str:
    iccid = (raw or "").strip().replace(" ", "")
    if not ICCID_RE.match(iccid) or not luhn_valid(iccid):
        raise RuleViolation(
            f"{raw!r} is not an ICCID (18 to 20 digits starting 89, with a valid check digit).",
            field="iccid",
        )
    return iccid


def lab_ki(imsi: str) -> str:
    """The SIM key (ki) the lab (``make lab``) gives a line in its HSS: fixed per IMSI,
    upper-case hex, because PyHSS answers a Digest-MD5 MAR with the ki string as stored as
    the password, and case matters. Never an operator's key: only the lab provisions it."""
    import hashlib

    return hashlib.sha256(f"lab sim {imsi}".encode()).hexdigest()[:32].upper()
