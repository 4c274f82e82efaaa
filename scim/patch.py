"""PATCH (RFC 7644 §3.5.2) applied to a resource's representation. The services then
take the patched representation as the wanted state, exactly as for PUT, so that both
write through one path and a PATCH is all or nothing.

Besides the RFC, what identity providers are known to send: operation names in any case
("Replace"), booleans as strings ("False"), a bare manager id, attribute paths as keys
of a path-less value ("name.givenName"), and "remove" of ``members`` with the values to
remove (Microsoft Entra), and the resource's ``id`` in a path-less value (Okta).
"""

from __future__ import annotations

import copy
from typing import Any

from scim import filters
from scim.documents import clean_many, clean_one, require_schema
from scim.errors import ScimError, bad_request
from scim.schema import PATCH_OP, USER, Attribute, ResourceType, resolve

OPERATIONS = ("add", "remove", "replace")
MAX_OPERATIONS = 1000
IGNORED_IN_VALUES = {"schemas", "id", "meta"}


def operations(body: Any) -> list[tuple[str, str | None, Any]]:
    """(op, path, value) of each operation of a PatchOp request."""
    body = require_schema(body, PATCH_OP)
    found = next((v for k, v in body.items() if str(k).lower() == "operations"), None)
    if not isinstance(found, list) or not found:
        raise bad_request("A PatchOp request needs a non-empty “Operations” list.", "invalidSyntax")
    if len(found) > MAX_OPERATIONS:
        raise bad_request(f"At most {MAX_OPERATIONS} operations at once.", "invalidSyntax")
    parsed = []
    for operation in found:
        if not isinstance(operation, dict):
            raise bad_request("Each operation must be an object.", "invalidSyntax")
        fields = {str(k).lower(): v for k, v in operation.items()}
        op, path = fields.get("op"), fields.get("path")
        if not isinstance(op, str) or op.lower() not in OPERATIONS:
            raise bad_request(
                f"Unknown operation {op!r}; use add, remove or replace.", "invalidSyntax"
            )
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise bad_request("An operation's path must be a non-empty string.", "invalidPath")
        parsed.append((op.lower(), path.strip() if path else None, fields.get("value")))
    return parsed


def apply(resource: dict, ops: list[tuple[str, str | None, Any]], rt: ResourceType) -> dict:
    """A copy of ``resource`` with the operations applied in order."""
    resource = copy.deepcopy(resource)
    extensions = {s.id.lower(): s for s in rt.extensions}
    for op, path, value in ops:
        if path is not None:
            _apply(resource, op, path, value, rt)
            continue
        if op == "remove":
            raise ScimError(400, "A remove operation needs a path.", "noTarget")
        if not isinstance(value, dict):
            raise bad_request(f"An {op} without a path needs an object of attributes as value.")
        for key, inner in value.items():
            key = str(key)
            if key.lower() in IGNORED_IN_VALUES:
                continue
            extension = extensions.get(key.lower())
            if extension is None:
                _apply(resource, op, key, inner, rt)
            elif isinstance(inner, dict):
                for name, item in inner.items():
                    _apply(resource, op, f"{extension.id}:{name}", item, rt)
            elif inner is not None:
                raise bad_request(f"{extension.id} must be an object.")
    return resource


def _apply(resource: dict, op: str, path_text: str, value: Any, rt: ResourceType) -> None:
    extension = next((s for s in rt.extensions if s.id.lower() == path_text.lower()), None)
    if extension is not None:
        _apply_extension(resource, op, extension.id, value, rt)
        return
    path = filters.parse_patch_path(path_text)
    ref = resolve(path.path, rt)
    if ref is None:
        raise ScimError(400, f"Unknown attribute “{path.path}”.", "invalidPath")
    attribute, sub = ref.attribute, ref.sub
    value_filter = None
    if path.filter is not None:
        if sub is not None or not (attribute.is_complex and attribute.multi_valued):
            raise ScimError(400, f"{path.path}[…] needs a multi-valued attribute.", "invalidPath")
        value_filter = _bind_value_filter(path.filter, attribute, path_text)
        if path.sub is not None:
            sub = attribute.sub(path.sub)
            if sub is None:
                raise ScimError(400, f"{attribute.name} has no “{path.sub}”.", "invalidPath")
    _ensure_mutable(attribute, sub, op)
    if op == "remove" and sub is None and value_filter is None:
        _ensure_removable(attribute, rt)
    holder = resource if ref.extension is None else resource.setdefault(ref.extension, {})
    if value_filter is not None:
        _apply_filtered(holder, op, attribute, value_filter, sub, value, path_text)
    elif sub is not None:
        _apply_sub(holder, op, attribute, sub, value, path_text)
    else:
        _apply_whole(holder, op, attribute, value, path_text)
    if holder.get(attribute.name) in ([], {}, None):
        holder.pop(attribute.name, None)
    if ref.extension is not None and not holder:
        resource.pop(ref.extension)


def _apply_extension(resource: dict, op: str, urn: str, value: Any, rt: ResourceType) -> None:
    """A bare extension URN as the path (RFC 7644's grammar wants an attribute after it,
    but clients send it): the whole extension removed, or its attributes written one by
    one (replace first clears it)."""
    if op == "remove" or (op == "replace" and isinstance(value, dict)):
        resource.pop(urn, None)
        if op == "remove":
            return
    if not isinstance(value, dict):
        raise bad_request(f"{urn} must be an object.")
    for name, item in value.items():
        if str(name).lower() not in IGNORED_IN_VALUES:
            _apply(resource, op, f"{urn}:{name}", item, rt)


def _bind_value_filter(node: filters.Node, attribute: Attribute, path_text: str) -> filters.Node:
    try:
        return filters.bind_within(node, attribute)
    except ScimError as exc:
        raise ScimError(400, f"{path_text}: {exc.detail}", "invalidPath") from exc


def _ensure_mutable(attribute: Attribute, sub: Attribute | None, op: str) -> None:
    if attribute.name == "password":
        raise ScimError(
            400,
            "Passwords are not set through SCIM (changePassword is not supported): the user "
            "chooses one through their invitation.",
            "mutability",
        )
    for target in (attribute, sub):
        if target is not None and target.mutability == "readOnly":
            raise ScimError(400, f"{target.name} is read-only.", "mutability")


# Attributes that always have a value here, though RFC 7643 makes them optional: the
# person's name in the portal, and the account's state (docs/scim.md, "Deviations").
ALWAYS_ASSIGNED = {
    "displayName": "displayName is the user's name in the portal; replace it instead.",
    "active": "active is the account's state; replace it with false to deactivate the user.",
}


def _ensure_removable(attribute: Attribute, rt: ResourceType) -> None:
    """RFC 7644 §3.5.2.2: removing a required attribute answers 400 "mutability"."""
    if attribute.required:
        raise ScimError(400, f"{attribute.name} is required and cannot be removed.", "mutability")
    if rt.schema.id == USER and attribute.name in ALWAYS_ASSIGNED:
        raise ScimError(400, ALWAYS_ASSIGNED[attribute.name], "mutability")


def _same(item: Any, other: Any) -> bool:
    if isinstance(item, dict) and isinstance(other, dict) and "value" in item:
        types = (item.get("type"), other.get("type"))
        return item.get("value") == other.get("value") and (None in types or types[0] == types[1])
    return item == other


def _only_one_primary(items: list, chosen: list) -> None:
    """At most one value is primary (RFC 7643 §2.4): the one just set wins."""
    if any(isinstance(c, dict) and c.get("primary") for c in chosen):
        for item in items:
            if isinstance(item, dict) and all(item is not c for c in chosen):
                item.pop("primary", None)


def _apply_whole(holder: dict, op: str, attribute: Attribute, value: Any, path: str) -> None:
    name = attribute.name
    if op == "remove":
        if attribute.multi_valued and value is not None:
            # Entra removes members with {"path": "members", "value": [{"value": id}]}.
            doomed = clean_many(attribute, value, path)
            holder[name] = [i for i in holder.get(name, []) if not any(_same(i, d) for d in doomed)]
        else:
            holder.pop(name, None)
        return
    if attribute.multi_valued:
        new = clean_many(attribute, value, path)
        if op == "add":
            existing = holder.get(name, [])
            new = [n for n in new if not any(_same(n, e) for e in existing)]
            holder[name] = existing + new
        else:
            holder[name] = new
        _only_one_primary(holder[name], new)
    elif attribute.is_complex:
        merged = dict(holder.get(name) or {})
        merged |= clean_one(attribute, value, path) or {}
        holder[name] = merged
    else:
        holder[name] = clean_one(attribute, value, path)


def _apply_sub(
    holder: dict, op: str, attribute: Attribute, sub: Attribute, value: Any, path: str
) -> None:
    if attribute.multi_valued:
        raise ScimError(
            400,
            f"{attribute.name}.{sub.name} names no single value; select one with a filter, "
            f'e.g. {attribute.name}[type eq "work"].{sub.name}.',
            "invalidPath",
        )
    current = dict(holder.get(attribute.name) or {})
    if op == "remove":
        current.pop(sub.name, None)
    else:
        current[sub.name] = clean_one(sub, value, path)
    holder[attribute.name] = {k: v for k, v in current.items() if v is not None}


def _apply_filtered(
    holder: dict,
    op: str,
    attribute: Attribute,
    value_filter: filters.Node,
    sub: Attribute | None,
    value: Any,
    path: str,
) -> None:
    items = list(holder.get(attribute.name, []))
    chosen = [i for i, item in enumerate(items) if filters.matches(value_filter, item)]
    if op == "remove":
        if sub is None:
            holder[attribute.name] = [item for i, item in enumerate(items) if i not in chosen]
        else:
            for i in chosen:
                items[i] = {k: v for k, v in items[i].items() if k != sub.name}
            holder[attribute.name] = items
        return
    if not chosen:
        terms = filters.equality_terms(value_filter) if op == "add" else None
        if terms is None:
            raise ScimError(400, f"No value matches {path}.", "noTarget")
        # "add" to emails[type eq "work"].value with no work email yet adds one.
        items.append(clean_one(attribute, terms, path))
        chosen = [len(items) - 1]
    for i in chosen:
        if sub is not None:
            items[i] = {**items[i], sub.name: clean_one(sub, value, path)}
        else:
            items[i] = (items[i] if op == "add" else {}) | (clean_one(attribute, value, path) or {})
    holder[attribute.name] = items
    _only_one_primary(items, [items[i] for i in chosen])
