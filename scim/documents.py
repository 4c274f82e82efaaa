"""Reading what an identity provider sends: attribute names to their canonical spelling,
values checked against their declared types, and the result turned into the drafts
that the services take. Unknown attributes are ignored (RFC 7644 §3.3 lets a service
provider keep only what it supports); a value of the wrong type is a 400 invalidValue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from kernel.http import object_id
from scim.errors import bad_request
from scim.filters import parse_datetime
from scim.schema import COMMON, Attribute, ResourceType

MAX_TEXT = 2048
MAX_VALUES = 100
# Never kept in the directory record: readOnly, write-only, or held by the account.
NOT_STORED = {
    "schemas",
    "id",
    "meta",
    "groups",
    "password",
    "userName",
    "displayName",
    "externalId",
    "active",
}


def require_schema(body: Any, urn: str) -> dict:
    """The request body, if it is an object that declares ``urn`` in ``schemas``."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", "invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or urn.lower() not in {str(s).lower() for s in schemas}:
        raise bad_request(f"The request's “schemas” must include {urn}.", "invalidSyntax")
    return body


def _scalar(attribute: Attribute, value: Any, path: str) -> Any:
    kind = attribute.type
    if kind == "boolean":
        # Microsoft Entra sends booleans as the strings "True" and "False".
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise bad_request(f"{path} must be true or false.")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"{path} must be an integer.")
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request(f"{path} must be a number.")
        return value
    if not isinstance(value, str):
        raise bad_request(f"{path} must be a string.")
    if len(value) > MAX_TEXT:
        raise bad_request(f"{path} is longer than {MAX_TEXT} characters.")
    if "\x00" in value:
        raise bad_request(f"{path} contains a NUL character.")
    if kind == "dateTime" and parse_datetime(value) is None:
        raise bad_request(f"{path} must be an ISO 8601 date and time.")
    return value


def clean_one(attribute: Attribute, value: Any, path: str) -> Any:
    """One value of ``attribute`` (one item of a multi-valued one); None if unassigned."""
    if value is None:
        return None
    if not attribute.is_complex:
        return _scalar(attribute, value, path)
    value_sub = attribute.sub("value")
    if isinstance(value, str) and value_sub is not None:
        # A bare value for a complex attribute (Entra's manager) is its "value".
        value = {"value": str(value)}
    if not isinstance(value, dict):
        raise bad_request(f"{path} must be an object.")
    cleaned = {}
    for key, sub_value in value.items():
        sub = attribute.sub(str(key))
        if sub is None:
            continue
        sub_value = clean_one(sub, sub_value, f"{path}.{sub.name}")
        if sub_value is not None:
            cleaned[sub.name] = sub_value
    return cleaned


def clean_many(attribute: Attribute, value: Any, path: str) -> list:
    """The values of a multi-valued attribute; a single value is taken as a list of one."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_VALUES:
        raise bad_request(f"{path} has more than {MAX_VALUES} values.")
    cleaned = [
        v for v in (clean_one(attribute, item, path) for item in items) if v not in (None, {})
    ]
    if sum(1 for v in cleaned if isinstance(v, dict) and v.get("primary") is True) > 1:
        raise bad_request(f"At most one value of {path} can be primary (RFC 7643 §2.4).")
    return cleaned


def clean(attribute: Attribute, value: Any, path: str) -> Any:
    if attribute.multi_valued:
        if value is not None and not isinstance(value, list):
            raise bad_request(f"{path} must be a list.")
        return clean_many(attribute, value, path)
    return clean_one(attribute, value, path)


def canonical(body: dict, rt: ResourceType) -> dict[str, Any]:
    """The resource with canonical attribute names and checked values; unknown names
    and unassigned (null, empty) values are left out."""
    extensions = {s.id.lower(): s for s in rt.extensions}
    common = {a.name.lower(): a for a in COMMON}
    resource: dict[str, Any] = {}
    for key, value in body.items():
        key = str(key)
        extension = extensions.get(key.lower())
        if extension is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise bad_request(f"{extension.id} must be an object.")
            inner = {}
            for name, inner_value in value.items():
                attribute = extension.attribute(str(name))
                if attribute is not None:
                    cleaned = clean(attribute, inner_value, attribute.name)
                    if cleaned not in (None, [], {}):
                        inner[attribute.name] = cleaned
            if inner:
                resource[extension.id] = inner
            continue
        if key.lower() == "schemas":
            resource["schemas"] = value
            continue
        attribute = rt.schema.attribute(key) or common.get(key.lower())
        if attribute is None or attribute.mutability == "readOnly":
            continue
        cleaned = clean(attribute, value, attribute.name)
        if cleaned not in (None, [], {}, ""):
            resource[attribute.name] = cleaned
    return resource


# --- Drafts for the services -------------------------------------------------------------


@dataclass(frozen=True)
class UserDraft:
    """A user as the identity provider wants them."""

    user_name: str
    full_name: str
    active: bool | None
    external_id: str
    attributes: dict[str, Any]
    work_numbers: tuple[str, ...]


def _full_name(resource: dict) -> str:
    name = resource.get("name") or {}
    parts = [name.get("givenName", ""), name.get("familyName", "")]
    candidates = [resource.get("displayName"), name.get("formatted"), " ".join(filter(None, parts))]
    return next((" ".join(c.split()) for c in candidates if c and c.strip()), "")


def user_draft(resource: dict) -> UserDraft:
    """The draft of a canonical User resource."""
    user_name = resource.get("userName")
    if not user_name or not user_name.strip():
        raise bad_request("userName is required: the email address the user signs in with.")
    user_name = user_name.strip().lower()
    try:
        EmailValidator()(user_name)
    except ValidationError as exc:
        raise bad_request(f"userName {user_name!r} is not an email address.") from exc
    external_id = resource.get("externalId", "")
    if len(external_id) > 255:
        raise bad_request("externalId is longer than 255 characters.")
    attributes = {k: v for k, v in resource.items() if k not in NOT_STORED}
    phones = sorted(resource.get("phoneNumbers", []), key=lambda p: not p.get("primary"))
    work_numbers = tuple(
        p["value"] for p in phones if p.get("value") and p.get("type", "").lower() == "work"
    )
    return UserDraft(
        user_name=user_name,
        full_name=_full_name(resource),
        active=resource.get("active"),
        external_id=external_id,
        attributes=attributes,
        work_numbers=work_numbers,
    )


@dataclass(frozen=True)
class GroupDraft:
    display_name: str
    external_id: str
    member_ids: tuple[int, ...]


def group_draft(resource: dict) -> GroupDraft:
    display_name = " ".join((resource.get("displayName") or "").split())
    if not display_name:
        raise bad_request("displayName is required.")
    if len(display_name) > 255 or len(resource.get("externalId", "")) > 255:
        raise bad_request("displayName and externalId have at most 255 characters.")
    member_ids = []
    for member in resource.get("members", []):
        value = member.get("value", "")
        if member.get("type", "User").lower() != "user":
            raise bad_request("Only users can be members; groups do not nest here.")
        member_id = object_id(value) if isinstance(value, str) else None
        if member_id is None:
            raise bad_request(f"Member {value!r} is not a user of this enterprise.")
        member_ids.append(member_id)
    return GroupDraft(
        display_name, resource.get("externalId", ""), tuple(dict.fromkeys(member_ids))
    )
