"""JSON read the strict way, for the REST API and the network API.

The standard library's parser accepts things that let a hostile body cost a server
error or mean two things at once: nesting deep enough to exhaust the recursion limit
(a RecursionError, not a ValueError), duplicate keys (the last one wins here, the first
one in some proxy or log pipeline), non-finite numbers (NaN, Infinity, 1e999), text
in any encoding, and a NUL character in a string (PostgreSQL stores it in neither text
nor jsonb: a value that reached a row would fail its statement, or a whole batch of
call records, later). Every one of them is refused here as invalid JSON, which the
callers answer with a 400. Size is bounded before parsing: DRF reads JSON bodies through
``request.body``, which refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE (answered 413).
"""

import json
import math

from rest_framework import exceptions, parsers


class InvalidJson(ValueError):
    """A body that is not strict JSON; the message says why."""


def _object(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise InvalidJson(f"the key {key[:40]!r} appears twice in an object")
        result[key] = value
    return result


def _constant(name):
    raise InvalidJson(f"{name} is not a JSON number")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"the number {text[:40]} is out of range")
    return value


def loads(raw: bytes):
    """The value of a UTF-8 JSON document, or InvalidJson."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the body is not UTF-8 (byte {exc.start + 1} is not)") from exc
    try:
        value = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite
        )
    except RecursionError as exc:
        raise InvalidJson("the body nests too deeply") from exc
    except InvalidJson:
        raise
    except ValueError as exc:
        raise InvalidJson(str(exc)) from exc
    # Only the escape makes a NUL (JSON refuses the raw character): look closer only then.
    if "\\u0000" in text and _holds_nul(value):
        raise InvalidJson("a string contains a NUL character (\\u0000)")
    return value


def _holds_nul(value) -> bool:
    """Whether a string in ``value`` (a key or a value, at any depth) holds a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return loads(stream.read())
        except InvalidJson as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
