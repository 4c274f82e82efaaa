"""How users and groups read in SCIM (RFC 7643 §4), list answers (RFC 7644 §3.4.2),
the selection of returned attributes (§3.9) and entity tags (§3.14).

A user reads from their account (userName = the sign-in email, displayName = full name,
active from the status), the numbers of their live identities (work phone numbers), their
directory groups, and the rest as the identity provider sent it
(``DirectoryRecord.attributes``), ``name`` and ``emails`` included. A user the identity
provider never wrote reads ``name`` and ``emails`` from the account (``account_attributes``).
Representations read prefetched relations only: see ``selectors.with_representation``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from django.db.models import Model

from accounts.models import DirectoryGroup, DirectoryRecord, User
from scim import schema
from scim.schema import ENTERPRISE_USER, GROUP, LIST_RESPONSE, USER, ResourceType

ACTIVE_STATUSES = (User.Status.ACTIVE, User.Status.INVITED)
# Attributes that the account, its identities or its groups give, never the stored copy.
DERIVED = {"userName", "displayName", "active", "phoneNumbers", "groups"}


class Locations:
    """Absolute URLs of resources under the service provider's base URL."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")

    def of(self, endpoint: str, resource_id: Any = "") -> str:
        return f"{self.base}{endpoint}" + (f"/{resource_id}" if resource_id != "" else "")

    def user(self, pk: int) -> str:
        return self.of("/Users", pk)

    def group(self, pk: int) -> str:
        return self.of("/Groups", pk)


def _without_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_refs(v) for k, v in value.items() if k != "$ref"}
    if isinstance(value, list):
        return [_without_refs(v) for v in value]
    return value


def etag(body: dict[str, Any]) -> str:
    """The entity tag of a representation (without its meta): a digest of what a client
    reads, so that a change made in the portal (a new number, a suspension, a renamed
    member) changes it as surely as a change made through SCIM. References are left out:
    they follow from the ids and the base URL, which differs behind proxies."""
    canonical = json.dumps(_without_refs(body), sort_keys=True, separators=(",", ":"))
    return f'W/"{hashlib.sha256(canonical.encode()).hexdigest()[:20]}"'


def etag_matches(header: str, current: str) -> bool:
    """Whether an If-Match / If-None-Match header names the ``current`` entity tag, or
    any ("*"); tags compare weakly (RFC 7232 §2.3.2)."""
    wanted = current.removeprefix("W/")
    return any(
        tag.strip() == "*" or tag.strip().removeprefix("W/") == wanted for tag in header.split(",")
    )


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def directory_record(user: User) -> DirectoryRecord | None:
    try:
        return user.directory
    except DirectoryRecord.DoesNotExist:
        return None


def phone_digits(value: str) -> str:
    return re.sub(r"[\s().-]", "", value or "")


def account_attributes(user: User) -> dict[str, Any]:
    """What a user reads who has no directory record (made in the portal), and what a
    record starts from when SCIM first touches such a user."""
    return {
        "name": {"formatted": user.full_name},
        "emails": [{"value": user.email, "type": "work", "primary": True}],
    }


def _prefetched(obj: Model, to_attr: str) -> list[Any]:
    """The objects ``selectors`` prefetched into ``to_attr`` (``Prefetch(..., to_attr=)``):
    attributes that exist only on the instances a query made, unknown to the type checker."""
    return getattr(obj, to_attr)


def _phone_numbers(user: User, stored: list[Any] | None) -> list[dict]:
    numbers = [i.number.e164 for i in _prefetched(user, "live_identities") if i.number_id]
    phones = [{"value": tn, "type": "work"} for tn in numbers]
    phones += [p for p in stored or [] if phone_digits(str(p.get("value"))) not in numbers]
    return phones


def user_resource(user: User, locations: Locations) -> dict[str, Any]:
    """The full representation of a user (every attribute that has a value)."""
    record = directory_record(user)
    stored = record.attributes if record else account_attributes(user)
    resource: dict[str, Any] = {
        "schemas": [USER, ENTERPRISE_USER] if stored.get(ENTERPRISE_USER) else [USER],
        "id": str(user.pk),
    }
    if record and record.external_id:
        resource["externalId"] = record.external_id
    resource |= {
        "userName": user.email,
        "displayName": user.full_name,
        "active": user.status in ACTIVE_STATUSES,
    }
    phones = _phone_numbers(user, stored.get("phoneNumbers"))
    if phones:
        resource["phoneNumbers"] = phones
    resource |= {k: v for k, v in stored.items() if k not in DERIVED}
    groups = [
        {
            "value": str(g.pk),
            "$ref": locations.group(g.pk),
            "display": g.display_name,
            "type": "direct",
        }
        for g in _prefetched(user, "scim_groups")
    ]
    if groups:
        resource["groups"] = groups
    resource["meta"] = {
        "resourceType": "User",
        "created": _timestamp(user.date_joined),
        "lastModified": _timestamp(record.updated_at if record else user.date_joined),
        "location": locations.user(user.pk),
        "version": etag(resource),
    }
    return resource


def group_resource(group: DirectoryGroup, locations: Locations) -> dict[str, Any]:
    resource: dict[str, Any] = {"schemas": [GROUP], "id": str(group.pk)}
    if group.external_id:
        resource["externalId"] = group.external_id
    resource["displayName"] = group.display_name
    resource["members"] = [
        {"value": str(m.pk), "$ref": locations.user(m.pk), "display": m.full_name, "type": "User"}
        for m in _prefetched(group, "scim_members")
    ]
    resource["meta"] = {
        "resourceType": "Group",
        "created": _timestamp(group.created_at),
        "lastModified": _timestamp(group.updated_at),
        "location": locations.group(group.pk),
        "version": etag(resource),
    }
    return resource


def list_response(total: int, start_index: int, resources: list[dict] | None) -> dict[str, Any]:
    """A ListResponse; ``resources`` None when the client asked for the count only."""
    body: dict[str, Any] = {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources or []),
    }
    if resources is not None:
        body["Resources"] = resources
    return body


# --- Returned attributes (RFC 7644 §3.9) ----------------------------------------------------


def _selection(names: list[str], rt: ResourceType) -> dict[tuple[str | None, str], set | None]:
    """{(extension, attribute): sub-attribute names, or None for all of it}; names the
    resource type does not have are ignored."""
    selected: dict[tuple[str | None, str], set | None] = {}
    extensions = {s.id.lower(): s for s in rt.extensions}
    for name in names:
        extension = extensions.get(name.lower())
        if extension is not None:
            for attribute in extension.attributes:
                selected[(extension.id, attribute.name)] = None
            continue
        ref = schema.resolve(name, rt)
        if ref is None:
            continue
        key = (ref.extension, ref.attribute.name)
        if ref.sub is None or (key in selected and selected[key] is None):
            selected[key] = None
        else:
            selected[key] = (selected.get(key) or set()) | {ref.sub.name}
    return selected


def _pick(value: Any, subs: set) -> Any:
    if isinstance(value, list):
        picked = [_pick(item, subs) for item in value]
        return [item for item in picked if item]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k in subs}
    return value


def _always(rt: ResourceType) -> set[tuple[str | None, str]]:
    return {(ext, a.name) for ext, a in schema.attributes_of(rt) if a.returned == "always"}


def project(
    resource: dict[str, Any],
    rt: ResourceType,
    attributes: list[str] | None = None,
    excluded: list[str] | None = None,
) -> dict[str, Any]:
    """The resource with only the attributes asked for (``attributes``) or without those
    excluded (``excludedAttributes``); ``schemas`` and "returned: always" ones stay."""
    always = _always(rt)
    if attributes:
        selected = _selection(attributes, rt)
        selected.update(dict.fromkeys(always))
        out: dict[str, Any] = {"schemas": resource["schemas"]}
        for (extension, name), subs in selected.items():
            holder = resource.get(extension, {}) if extension else resource
            if name not in holder:
                continue
            value = holder[name] if subs is None else _pick(holder[name], subs)
            if value in ([], {}):
                continue
            (out.setdefault(extension, {}) if extension else out)[name] = value
        resource = {k: out[k] for k in resource if k in out}  # keep the usual order
    if excluded:
        resource = dict(resource)
        for (extension, name), subs in _selection(excluded, rt).items():
            if (extension, name) in always:
                continue
            holder = dict(resource.get(extension, {})) if extension else resource
            if subs is None:
                holder.pop(name, None)
            elif name in holder:
                kept = _pick(holder[name], _sub_names(rt, extension, name) - subs)
                holder[name] = kept
            if extension:
                resource[extension] = holder
                if not holder:
                    resource.pop(extension)
    return resource


def _sub_names(rt: ResourceType, extension: str | None, name: str) -> set[str]:
    attribute = next(
        a for ext, a in schema.attributes_of(rt) if ext == extension and a.name == name
    )
    return {s.name for s in attribute.sub_attributes}
