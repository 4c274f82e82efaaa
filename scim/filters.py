"""SCIM filters (RFC 7644 §3.4.2.2): a tokenizer, a recursive-descent parser into a small
syntax tree, binding of the tree's attribute paths to a resource type's schema, and
evaluation of a bound tree against a resource's representation.

Precedence, loosest first: ``or``, ``and``, ``not``; parentheses group. ``not`` takes a
parenthesised filter, as the RFC's grammar says. Keywords and attribute names are
case-insensitive; strings compare case-insensitively unless the attribute is caseExact.
The same parser reads PATCH paths (§3.5.2), with ``invalidPath`` for their errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from scim.errors import ScimError
from scim.schema import Attribute, AttributeRef, ResourceType, resolve

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32
COMPARISONS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}
SUBSTRINGS = {"co", "sw", "ew"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\()|(?P<close>\))|(?P<lbracket>\[)|(?P<rbracket>\])
        |(?P<string>"(?:[^"\\]|\\.)*")
        |(?P<word>[^\s()\[\]"]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ATTR_PATH = re.compile(
    r"^(?:urn:[A-Za-z0-9:._-]+:)?[A-Za-z][A-Za-z0-9_-]*(?:\.\$?[A-Za-z][A-Za-z0-9_-]*)?$"
)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")


# --- Syntax tree ---------------------------------------------------------------------------


class _Bindable:
    """A node naming an attribute: ``ref`` is None as parsed and set by ``bind``."""

    ref: AttributeRef | None

    @property
    def bound(self) -> AttributeRef:
        """The resolved attribute; matching and SQL see bound filters only."""
        if self.ref is None:
            raise AssertionError(f"{self} is not bound to a resource type.")
        return self.ref


@dataclass(frozen=True)
class Compare(_Bindable):
    path: str
    op: str
    value: Any
    ref: AttributeRef | None = None


@dataclass(frozen=True)
class Present(_Bindable):
    path: str
    ref: AttributeRef | None = None


@dataclass(frozen=True)
class ValuePath(_Bindable):
    """``emails[type eq "work" and value co "@x"]``: some value of a multi-valued
    attribute matches the inner filter, whose paths name its sub-attributes."""

    path: str
    filter: Node
    ref: AttributeRef | None = None


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Nothing:
    """Matches nothing: an attribute the resource type does not have, in a search
    across resource types (RFC 7644 §3.4.2.2)."""


Node = Compare | Present | ValuePath | And | Or | Not | Nothing


@dataclass(frozen=True)
class PatchPath:
    """``attr``, ``attr.sub``, ``attr[filter]`` or ``attr[filter].sub`` (unbound)."""

    path: str
    filter: Node | None = None
    sub: str | None = None


# --- Parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(text: str, scim_type: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position or match.lastgroup is None:
            if text[position:].strip() == "":
                break
            raise ScimError(400, f"Unexpected character at {position + 1}.", scim_type)
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, scim_type: str):
        self.scim_type = scim_type
        if len(text) > MAX_FILTER_LENGTH:
            self.fail(f"longer than {MAX_FILTER_LENGTH} characters")
        self.tokens = _tokens(text, scim_type)
        self.index = 0
        self.depth = 0

    def fail(self, problem: str) -> NoReturn:
        raise ScimError(400, f"The {self.what} is not valid: {problem}.", self.scim_type)

    @property
    def what(self) -> str:
        return "filter" if self.scim_type == "invalidFilter" else "path"

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def peek_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def take(self, kind: str, expected: str) -> _Token:
        token = self.peek()
        if token is None or token.kind != kind:
            found = f"“{token.text}” at {token.position + 1}" if token else "the end"
            self.fail(f"expected {expected}, found {found}")
        self.index += 1
        return token

    def end(self) -> None:
        token = self.peek()
        if token is not None:
            self.fail(f"unexpected “{token.text}” at {token.position + 1}")

    def filter(self, *, inside_brackets: bool = False) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail("nested too deeply")
        node = self.conjunction(inside_brackets)
        while self.peek_word("or"):
            self.index += 1
            node = Or(node, self.conjunction(inside_brackets))
        self.depth -= 1
        return node

    def conjunction(self, inside_brackets: bool) -> Node:
        node = self.negation(inside_brackets)
        while self.peek_word("and"):
            self.index += 1
            node = And(node, self.negation(inside_brackets))
        return node

    def negation(self, inside_brackets: bool) -> Node:
        if self.peek_word("not"):
            self.index += 1
            self.take("open", "“(” after “not”")
            node = self.filter(inside_brackets=inside_brackets)
            self.take("close", "“)”")
            return Not(node)
        return self.atom(inside_brackets)

    def atom(self, inside_brackets: bool) -> Node:
        token = self.peek()
        if token is not None and token.kind == "open":
            self.index += 1
            node = self.filter(inside_brackets=inside_brackets)
            self.take("close", "“)”")
            return node
        path = self.attribute_path()
        next_token = self.peek()
        if next_token is not None and next_token.kind == "lbracket":
            if inside_brackets:
                self.fail("a value filter cannot hold another")
            self.index += 1
            inner = self.filter(inside_brackets=True)
            self.take("rbracket", "“]”")
            return ValuePath(path, inner)
        operator = self.take("word", "an operator").text.lower()
        if operator == "pr":
            return Present(path)
        if operator not in COMPARISONS:
            self.fail(f"unknown operator “{operator}”")
        return Compare(path, operator, self.value())

    def attribute_path(self) -> str:
        token = self.take("word", "an attribute name")
        if not _ATTR_PATH.match(token.text):
            self.fail(f"“{token.text}” is not an attribute path")
        return token.text

    def value(self) -> Any:
        token = self.peek()
        if token is None or token.kind not in ("string", "word"):
            self.fail("expected a value")
        self.index += 1
        if token.kind == "string":
            try:
                text = json.loads(token.text)
            except ValueError:
                self.fail(f"bad string {token.text}")
            if "\x00" in text:
                self.fail("a string contains a NUL character")
            return text
        literal = token.text.lower()
        if literal in ("true", "false"):
            return literal == "true"
        if literal == "null":
            return None
        if _NUMBER.match(token.text):
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        self.fail(f"“{token.text}” is not a value; quote strings")


def parse(text: str) -> Node:
    """The syntax tree of a filter; 400 invalidFilter if it is malformed."""
    parser = _Parser(text, "invalidFilter")
    if not parser.tokens:
        parser.fail("it is empty")
    node = parser.filter()
    parser.end()
    return node


def parse_patch_path(text: str) -> PatchPath:
    """A PATCH operation's path; 400 invalidPath if it is malformed."""
    parser = _Parser(text, "invalidPath")
    path = parser.attribute_path()
    token = parser.peek()
    if token is None:
        return PatchPath(path)
    parser.take("lbracket", "“[”")
    inner = parser.filter(inside_brackets=True)
    parser.take("rbracket", "“]”")
    sub = None
    if parser.peek() is not None:
        sub = parser.take("word", "a sub-attribute").text
        if not re.match(r"^\.\$?[A-Za-z][A-Za-z0-9_-]*$", sub):
            parser.fail(f"“{sub}” is not a sub-attribute")
        sub = sub[1:]
    parser.end()
    return PatchPath(path, inner, sub)


# --- Binding to a schema -----------------------------------------------------------------


def _invalid(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def _comparable(ref: AttributeRef, op: str | None, value: Any, path: str) -> AttributeRef:
    """The reference a comparison reads (a complex attribute compares by its "value"
    sub-attribute), after checking that operator and value suit the attribute's type."""
    target = ref.target
    if target.is_complex:
        value_sub = target.sub("value")
        if value_sub is None or ref.sub is not None:
            if op is None:
                return ref
            raise _invalid(f"{path} is complex; compare one of its sub-attributes.")
        ref = replace(ref, sub=value_sub)
        target = value_sub
    if op is None:
        return ref
    if value is None:
        if op not in ("eq", "ne"):
            raise _invalid(f"null can only be compared with eq or ne ({path}).")
        return ref
    kind = target.type
    if kind == "boolean":
        if op not in ("eq", "ne") or not isinstance(value, bool):
            raise _invalid(f"{path} is a boolean: compare it with eq or ne and true or false.")
    elif kind == "dateTime":
        if op in SUBSTRINGS or not isinstance(value, str) or parse_datetime(value) is None:
            raise _invalid(f"{path} is a dateTime: compare it with an ISO 8601 string.")
    elif kind in ("integer", "decimal"):
        if op in SUBSTRINGS or isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(f"{path} is a number: compare it with a number.")
    elif not isinstance(value, str):
        raise _invalid(f"{path} is a string: compare it with a quoted string.")
    return ref


def bind(node: Node, resource_type: ResourceType, *, lenient: bool = False) -> Node:
    """The tree with every path resolved against ``resource_type``. An unknown attribute
    is a 400 invalidFilter, or, with ``lenient`` (searches across resource types),
    matches nothing."""
    return _bind(node, resource_type, None, lenient)


def bind_within(node: Node, attribute: Attribute) -> Node:
    """A value filter bound to the sub-attributes of ``attribute`` (PATCH paths)."""
    return _bind(node, None, attribute, lenient=False)


def _bind(node: Node, rt: ResourceType | None, parent: Attribute | None, lenient: bool) -> Node:
    if isinstance(node, And | Or):
        return type(node)(
            _bind(node.left, rt, parent, lenient), _bind(node.right, rt, parent, lenient)
        )
    if isinstance(node, Not):
        return Not(_bind(node.child, rt, parent, lenient))
    if isinstance(node, Nothing):
        return node
    ref = _resolve(node.path, rt, parent)
    if ref is None:
        if lenient:
            return Nothing()
        raise _invalid(f"Unknown attribute “{node.path}”.")
    if isinstance(node, ValuePath):
        if ref.sub is not None or not ref.attribute.is_complex:
            raise _invalid(f"{node.path}[…] needs a complex attribute.")
        return ValuePath(node.path, _bind(node.filter, rt, ref.attribute, lenient=False), ref)
    if isinstance(node, Present):
        return Present(node.path, _comparable(ref, None, None, node.path))
    return replace(node, ref=_comparable(ref, node.op, node.value, node.path))


def _resolve(path: str, rt: ResourceType | None, parent: Attribute | None) -> AttributeRef | None:
    if parent is not None:
        sub = parent.sub(path) if "." not in path and ":" not in path else None
        return AttributeRef(sub) if sub is not None else None
    return resolve(path, rt) if rt is not None else None


# --- Evaluation ----------------------------------------------------------------------------


def parse_datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def values_of(ref: AttributeRef, resource: dict) -> list:
    """The values at ``ref`` in a representation: one per value of a multi-valued one."""
    value = ref.container(resource).get(ref.attribute.name)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if ref.sub is None:
        return items
    return [
        item[ref.sub.name]
        for item in items
        if isinstance(item, dict) and item.get(ref.sub.name) is not None
    ]


def _is_present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _compare(actual: Any, op: str, expected: Any, attribute: Attribute) -> bool:
    if attribute.type == "boolean":
        return actual is expected if op == "eq" else actual is not expected
    if attribute.type == "dateTime":
        actual, expected = parse_datetime(str(actual)), parse_datetime(expected)
        if actual is None:
            return False
    elif attribute.type not in ("integer", "decimal"):
        actual, expected = str(actual), str(expected)
        if not attribute.case_exact:
            actual, expected = actual.lower(), expected.lower()
    match op:
        case "eq":
            return actual == expected
        case "co":
            return expected in actual
        case "sw":
            return actual.startswith(expected)
        case "ew":
            return actual.endswith(expected)
        case "gt":
            return actual > expected
        case "ge":
            return actual >= expected
        case "lt":
            return actual < expected
        case "le":
            return actual <= expected
    raise AssertionError(op)


def matches(node: Node, resource: dict) -> bool:
    """Whether a representation satisfies a bound filter."""
    match node:
        case And(left, right):
            return matches(left, resource) and matches(right, resource)
        case Or(left, right):
            return matches(left, resource) or matches(right, resource)
        case Not(child):
            return not matches(child, resource)
        case Nothing():
            return False
        case Present(_, AttributeRef() as ref):
            return any(_is_present(v) for v in values_of(ref, resource))
        case ValuePath(_, inner, AttributeRef() as ref):
            items = ref.container(resource).get(ref.attribute.name) or []
            items = items if isinstance(items, list) else [items]
            return any(isinstance(item, dict) and matches(inner, item) for item in items)
        case Compare(_, op, expected, AttributeRef() as ref):
            present = [v for v in values_of(ref, resource) if _is_present(v)]
            if expected is None:
                return bool(present) == (op == "ne")
            if op == "ne":
                return not any(_compare(v, "eq", expected, ref.target) for v in present)
            return any(_compare(v, op, expected, ref.target) for v in present)
    raise AssertionError(node)


def attribute_paths(node: Node | None) -> list[str]:
    """The attribute paths a filter names (outside value filters' brackets)."""
    match node:
        case And(left, right) | Or(left, right):
            return attribute_paths(left) + attribute_paths(right)
        case Not(child):
            return attribute_paths(child)
        case Compare() | Present() | ValuePath():
            return [node.path]
    return []


def equality_terms(node: Node) -> dict[str, Any] | None:
    """``{sub-attribute: value}`` of a value filter made only of ``eq`` joined by ``and``
    (``type eq "work"``), from which PATCH "add" builds a new value; else None."""
    match node:
        case Compare(_, "eq", value, ref) if ref is not None and value is not None:
            return {ref.attribute.name: value}
        case And(left, right):
            left_terms, right_terms = equality_terms(left), equality_terms(right)
            if left_terms is None or right_terms is None:
                return None
            return left_terms | right_terms
    return None
