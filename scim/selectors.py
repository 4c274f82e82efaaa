"""Reads for SCIM: the users and groups an enterprise's identity provider sees, and list
queries (RFC 7644 §3.4.2) in a fixed number of SQL queries per page.

A filter becomes a SQL condition. Where an attribute lives in a column, or is a single
value in the directory record's JSON, the condition is exact; attributes held in JSON
lists (emails, phone numbers, addresses…) get a condition that may match too much (a
text search in the list's JSON), and the filter itself then decides in Python over at
most ``MAX_CANDIDATES`` resources. Sorting on an attribute without a column works the
same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Exists,
    Expression,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, Lower, NullIf
from django.db.models.lookups import (
    Contains,
    EndsWith,
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
    StartsWith,
)

from accounts.models import DirectoryGroup, Enterprise, User
from kernel.http import object_id
from scim import filters
from scim.errors import ScimError, bad_request, not_found
from scim.filters import And, Compare, Node, Not, Nothing, Or, Present, ValuePath
from scim.resources import ACTIVE_STATUSES
from scim.schema import GROUP_TYPE, USER_TYPE, Attribute, AttributeRef, ResourceType, resolve
from telephony.models import Identity

# A column or computed value in a query: the stubs give F and expressions no common base
# with asc() and desc().
Column = F | Expression
# A SCIM resource's JSON representation.
Resource = dict[str, Any]

MAX_CANDIDATES = 5000
TRUE = Q(pk__isnull=False)
FALSE = Q(pk__isnull=True)
LOOKUPS = {
    "eq": Exact,
    "co": Contains,
    "sw": StartsWith,
    "ew": EndsWith,
    "gt": GreaterThan,
    "ge": GreaterThanOrEqual,
    "lt": LessThan,
    "le": LessThanOrEqual,
}


# --- The resources an enterprise sees ----------------------------------------------------


def _visible(prefix: str = "") -> Q:
    # Deleted through SCIM (offboarded, no directory record) reads as not found.
    offboarded = {f"{prefix}status": User.Status.OFFBOARDED}
    return ~Q(**offboarded) | Q(**{f"{prefix}directory__isnull": False})


def users(enterprise: Enterprise) -> QuerySet[User]:
    found: QuerySet[User] = User.objects.for_enterprise(enterprise)
    return found.filter(_visible())


def with_representation(queryset: QuerySet[User]) -> QuerySet[User]:
    """What ``resources.user_resource`` reads, fetched in two more queries per page."""
    # One prefetch per call: the stubs type a call's lookups as one kind of queryset.
    return (
        queryset.select_related("directory")
        .prefetch_related(
            Prefetch(
                "identities",
                Identity.objects.live().select_related("number").order_by("pk"),
                to_attr="live_identities",
            )
        )
        .prefetch_related(
            Prefetch(
                "directory_groups",
                DirectoryGroup.objects.order_by("display_name", "pk"),
                to_attr="scim_groups",
            )
        )
    )


def groups(enterprise: Enterprise) -> QuerySet[DirectoryGroup]:
    return DirectoryGroup.objects.for_enterprise(enterprise)


def groups_with_members(queryset: QuerySet[DirectoryGroup]) -> QuerySet[DirectoryGroup]:
    members = User.objects.filter(_visible()).only("pk", "full_name").order_by("pk")
    return queryset.prefetch_related(Prefetch("members", members, to_attr="scim_members"))


def _pk(resource_id: str) -> int:
    pk = object_id(resource_id)
    if pk is None:
        raise not_found()
    return pk


def user_by_id(enterprise: Enterprise, resource_id: str) -> User:
    user = with_representation(users(enterprise)).filter(pk=_pk(resource_id)).first()
    if user is None:
        raise not_found(f"No user {resource_id}.")
    return user


def group_by_id(enterprise: Enterprise, resource_id: str) -> DirectoryGroup:
    group = groups_with_members(groups(enterprise)).filter(pk=_pk(resource_id)).first()
    if group is None:
        raise not_found(f"No group {resource_id}.")
    return group


# --- Filters as SQL ------------------------------------------------------------------------


def _stored(*keys: str) -> KeyTextTransform:
    """The text at ``keys`` in the user's directory record's JSON (NULL if absent)."""
    expression: Column = F("directory__attributes")
    for key in keys[:-1]:
        expression = KeyTransform(key, expression)
    return KeyTextTransform(keys[-1], expression)


def _compare(expression: Column, op: str, value: Any, attribute: Attribute) -> Q:
    if attribute.type == "dateTime":
        value = filters.parse_datetime(value)
    elif attribute.type in ("string", "reference", "binary") and not attribute.case_exact:
        expression, value = Lower(expression), value.lower()
    return Q(LOOKUPS[op](expression, value))


def _present(expression: Column, attribute: Attribute) -> Q:
    present = Q(IsNull(expression, False))
    if attribute.type in ("string", "reference", "binary"):
        present &= ~Q(Exact(expression, ""))
    return present


def _exact_leaf(expression: Column, node: Compare | Present) -> Q:
    if isinstance(node, Present):
        return _present(expression, node.bound.target)
    return _compare(expression, node.op, node.value, node.bound.target)


def _json_text_approx(key: str, terms: list[Compare | Present]) -> Q:
    """A condition true for every user whose JSON list at ``key`` could hold a value
    satisfying all ``terms`` (and for some others): a text search in the list's JSON.
    Only plain ASCII strings read the same in JSON as in SQL, so others are not narrowed."""
    condition = Q(IsNull(_stored(key), False))
    for term in terms:
        if not isinstance(term, Compare) or not isinstance(term.value, str):
            continue
        text = term.value.lower()
        if not (text.isascii() and text.isprintable()) or '"' in text or "\\" in text:
            continue
        needle = {"eq": f'"{text}"', "sw": f'"{text}', "ew": f'{text}"', "co": text}.get(term.op)
        if needle:
            condition &= Q(Contains(Lower(_stored(key)), needle))
    return condition


def _terms(node: Node) -> list[Compare | Present]:
    """The comparisons that must all hold for ``node`` to (those joined by and)."""
    if isinstance(node, And):
        return _terms(node.left) + _terms(node.right)
    if isinstance(node, Present) or (isinstance(node, Compare) and node.op != "ne"):
        return [node]
    return []


def _only_terms(node: Node) -> bool:
    """Whether ``node`` is nothing but its ``_terms``."""
    if isinstance(node, And):
        return _only_terms(node.left) and _only_terms(node.right)
    return bool(_terms(node)) and not (isinstance(node, Compare) and node.value is None)


def _on(sub: str, terms: list[Compare | Present]) -> list[Compare | Present]:
    return [
        t
        for t in terms
        if t.bound.attribute.name == sub or (t.bound.sub and t.bound.sub.name == sub)
    ]


@dataclass(frozen=True)
class Translation:
    """How one resource type's filters and sorts become SQL."""

    resource_type: ResourceType
    model: type[User] | type[DirectoryGroup]
    column: Callable[[AttributeRef], Column | None]
    multi_valued: Callable[[AttributeRef, Node], tuple[Q, bool]]
    sortable: Callable[[AttributeRef], Column | None]

    def condition(self, node: Node) -> tuple[Q, bool]:
        """(condition, exact): a condition that every matching row meets, and whether
        it is met by matching rows only."""
        match node:
            case And(left, right) | Or(left, right):
                (left_q, left_exact), (right_q, right_exact) = map(self.condition, (left, right))
                combined = left_q & right_q if isinstance(node, And) else left_q | right_q
                return combined, left_exact and right_exact
            case Not(child):
                inner, exact = self.condition(child)
                if not exact:
                    return TRUE, False
                return ~Q(pk__in=self.model.objects.filter(inner).values("pk")), True
            case Nothing():
                return FALSE, True
            case Compare(_, op, None, ref):
                present = Present(node.path, ref)
                return self.condition(present if op == "ne" else Not(present))
            case Compare(_, "ne", _, _):
                return self.condition(Not(replace(node, op="eq")))
            case ValuePath(_, inner, AttributeRef() as ref):
                return self.multi_valued(ref, inner)
            case Compare(_, _, _, AttributeRef() as ref) | Present(_, AttributeRef() as ref) if (
                ref.attribute.multi_valued
            ):
                return self.multi_valued(ref, node)
            case Compare(_, _, _, AttributeRef() as ref) | Present(_, AttributeRef() as ref):
                expression = self.column(ref)
                if expression is None:
                    return TRUE, False
                return _exact_leaf(expression, node), True
        raise AssertionError(node)


# Users: columns of the account, or single values in the directory record's JSON.
USER_COLUMNS: dict[str, Callable[[], Column]] = {
    "id": lambda: Cast("pk", CharField()),
    "userName": lambda: F("email"),
    "displayName": lambda: F("full_name"),
    "externalId": lambda: NullIf(F("directory__external_id"), Value("")),
    "meta.created": lambda: F("date_joined"),
    "meta.lastModified": lambda: Coalesce(F("directory__updated_at"), F("date_joined")),
    # A user without a directory record reads their full name here (account_attributes).
    "name.formatted": lambda: Case(
        When(directory__isnull=True, then=F("full_name")),
        default=_stored("name", "formatted"),
        output_field=TextField(),
    ),
}


def _user_column(ref: AttributeRef) -> Column | None:
    if ref.dotted in USER_COLUMNS:
        return USER_COLUMNS[ref.dotted]()
    if ref.attribute.name == "active":
        return None
    if ref.target.is_complex or ref.attribute.name in ("meta", "password", "groups"):
        return None
    keys = [ref.extension, ref.attribute.name, ref.sub.name if ref.sub else None]
    return _stored(*filter(None, keys))


def _user_multi_valued(ref: AttributeRef, node: Node) -> tuple[Q, bool]:
    return _user_values_approx(ref, _terms(node)), False


def _user_values_approx(ref: AttributeRef, terms: list[Compare | Present]) -> Q:
    name = ref.attribute.name
    condition = _json_text_approx(name, terms)
    values = _on("value", terms)
    if name == "emails":  # the sign-in address is an email of every user
        sign_in = Q(*(_exact_leaf(F("email"), t) for t in values))
        return condition | (sign_in if values else TRUE)
    if name == "phoneNumbers":  # the numbers of live identities
        numbers = Identity.objects.live().filter(owner=OuterRef("pk"))
        numbers = numbers.filter(*(_exact_leaf(F("number__e164"), t) for t in values))
        return condition | Q(Exists(numbers))
    if name == "groups":
        return TRUE
    return condition


class UserTranslation(Translation):
    def condition(self, node: Node) -> tuple[Q, bool]:
        if (
            isinstance(node, Compare)
            and node.bound.attribute.name == "active"
            and node.value is not None
        ):
            active = Q(status__in=ACTIVE_STATUSES)
            return (active if node.value == (node.op == "eq") else ~active), True
        return super().condition(node)


def _user_sortable(ref: AttributeRef) -> Column | None:
    if ref.dotted == "id":
        return F("pk")
    if ref.attribute.name == "emails" and ref.sub in (None, ref.attribute.sub("value")):
        return F("email")
    if ref.attribute.multi_valued or ref.attribute.name == "active":
        return None
    expression = _user_column(ref)
    if expression is not None and ref.target.type == "string" and not ref.target.case_exact:
        expression = Lower(expression)
    return expression


USERS = UserTranslation(USER_TYPE, User, _user_column, _user_multi_valued, _user_sortable)

GROUP_COLUMNS: dict[str, Callable[[], Column]] = {
    "id": lambda: Cast("pk", CharField()),
    "displayName": lambda: F("display_name"),
    "externalId": lambda: NullIf(F("external_id"), Value("")),
    "meta.created": lambda: F("created_at"),
    "meta.lastModified": lambda: F("updated_at"),
}
MEMBER_COLUMNS: dict[str, Callable[[], Column]] = {
    "value": lambda: Cast("user_id", CharField()),
    "display": lambda: F("user__full_name"),
}


def _group_column(ref: AttributeRef) -> Column | None:
    factory = GROUP_COLUMNS.get(ref.dotted)
    return factory() if factory else None


def _group_members(ref: AttributeRef, node: Node) -> tuple[Q, bool]:
    # Exact for value and display joined by "and"; the rest is checked in Python.
    memberships = DirectoryGroup.members.through.objects.filter(
        directorygroup_id=OuterRef("pk"), user__in=User.objects.filter(_visible())
    )
    exact = _only_terms(node)
    for term in _terms(node):
        factory = MEMBER_COLUMNS.get((term.bound.sub or term.bound.attribute).name)
        if factory is None:
            exact = False
        else:
            memberships = memberships.filter(_exact_leaf(factory(), term))
    return Q(Exists(memberships)), exact


def _group_sortable(ref: AttributeRef) -> Column | None:
    if ref.dotted == "id":
        return F("pk")
    expression = _group_column(ref)
    if ref.dotted == "displayName":
        return Lower(expression)
    return expression


GROUPS = Translation(GROUP_TYPE, DirectoryGroup, _group_column, _group_members, _group_sortable)


# --- List queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """Filter, sort and page of a list or search request (RFC 7644 §3.4.2, §3.4.3)."""

    filter: Node | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1
    count: int = 100


@dataclass(frozen=True)
class Matches:
    """How many resources match, and how to fetch a slice of them (representations)."""

    total: int
    fetch: Callable[[int, int], list[Resource]]


def _python_order(resources: list[Resource], ref: AttributeRef, descending: bool) -> list[Resource]:
    def key(resource: Resource) -> Any:
        values = filters.values_of(ref, resource)
        value = values[0] if values else None
        if isinstance(value, str) and not ref.target.case_exact:
            value = value.lower()
        return value

    present = [r for r in resources if key(r) is not None]
    absent = [r for r in resources if key(r) is None]
    return sorted(present, key=key, reverse=descending) + absent


def matches(
    translation: Translation,
    queryset: QuerySet[Any],
    prefetch: Callable[[QuerySet[Any]], QuerySet[Any]],
    render: Callable[[Any], Resource],
    query: ListQuery,
    *,
    lenient: bool = False,
) -> Matches:
    """The resources of ``queryset`` that ``query`` selects, in its order."""
    rt = translation.resource_type
    node = filters.bind(query.filter, rt, lenient=lenient) if query.filter else None
    condition, exact = translation.condition(node) if node else (TRUE, True)
    sort_ref = resolve(query.sort_by, rt) if query.sort_by else None
    if query.sort_by and sort_ref is None and not lenient:
        raise bad_request(f"Cannot sort by “{query.sort_by}”: no such attribute.")
    order = translation.sortable(sort_ref) if sort_ref else F("pk")
    if exact and order is not None:
        selected = queryset.filter(condition)
        direction = order.desc(nulls_last=True) if query.descending else order.asc(nulls_last=True)
        ordered = selected.order_by(direction, "pk")

        def fetch(offset: int, limit: int) -> list[Resource]:
            return [render(obj) for obj in prefetch(ordered)[offset : offset + limit]]

        return Matches(selected.count(), fetch)
    candidates = list(prefetch(queryset.filter(condition).order_by("pk"))[: MAX_CANDIDATES + 1])
    if len(candidates) > MAX_CANDIDATES:
        raise ScimError(
            400,
            f"The filter selects more than {MAX_CANDIDATES} resources to check one by one; "
            "narrow it with userName, externalId, displayName or id.",
            "tooMany",
        )
    resources = [render(obj) for obj in candidates]
    if node is not None:
        resources = [r for r in resources if filters.matches(node, r)]
    if sort_ref is not None:
        resources = _python_order(resources, sort_ref, query.descending)
    return Matches(len(resources), lambda offset, limit: resources[offset : offset + limit])


def page(found: list[Matches], query: ListQuery) -> tuple[int, list[Resource]]:
    """(totalResults, the page's resources) across one or more resource types in turn."""
    total = sum(m.total for m in found)
    offset, wanted = query.start_index - 1, query.count
    resources: list[Resource] = []
    for m in found:
        if wanted <= 0:
            break
        if offset >= m.total:
            offset -= m.total
            continue
        batch = m.fetch(offset, wanted)
        resources += batch
        wanted -= len(batch)
        offset = 0
    return total, resources


def ensure_known(query: ListQuery, types: list[ResourceType]) -> None:
    """A search across resource types may filter and sort by attributes that only some
    of them have, but not by one that none has."""
    if query.sort_by and not any(resolve(query.sort_by, rt) for rt in types):
        raise bad_request(f"Cannot sort by “{query.sort_by}”: no such attribute.")
    for path in filters.attribute_paths(query.filter):
        if not any(resolve(path, rt) for rt in types):
            raise bad_request(f"Unknown attribute “{path}”.", "invalidFilter")
