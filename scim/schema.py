"""The SCIM schemas we serve (RFC 7643 §4, §7, §8.7) and the look-up of attribute paths
in them. Attribute names are case-insensitive (RFC 7643 §2.1): every incoming name is
resolved here to its canonical spelling, so the rest of the code compares exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SERVICE_PROVIDER_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"

# The most resources one list answer holds (ServiceProviderConfig filter.maxResults).
MAX_RESULTS = 200


@dataclass(frozen=True)
class Attribute:
    """One attribute definition with its characteristics (RFC 7643 §7)."""

    name: str
    type: str = "string"
    description: str = ""
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()

    def sub(self, name: str) -> Attribute | None:
        lowered = name.lower()
        return next((a for a in self.sub_attributes if a.name.lower() == lowered), None)

    @property
    def is_complex(self) -> bool:
        return self.type == "complex"

    def to_scim(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
        }
        if self.type in ("string", "reference", "binary"):
            body["caseExact"] = self.case_exact
        if self.canonical_values:
            body["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            body["referenceTypes"] = list(self.reference_types)
        body |= {
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.sub_attributes:
            body["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        return body


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        lowered = name.lower()
        return next((a for a in self.attributes if a.name.lower() == lowered), None)

    def to_scim(self, location: str) -> dict[str, Any]:
        return {
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": location},
        }


def _text(name: str, description: str, **characteristics) -> Attribute:
    return Attribute(name, "string", description, **characteristics)


def _multi(name: str, description: str, types: tuple[str, ...], value_type: str = "string"):
    """A multi-valued attribute of the usual value/display/type/primary shape."""
    value = Attribute(
        "value",
        value_type,
        f"The {name} value.",
        reference_types=("external",) if value_type == "reference" else (),
    )
    return Attribute(
        name,
        "complex",
        description,
        multi_valued=True,
        sub_attributes=(
            value,
            _text("display", "A human-readable name, primarily used for display purposes."),
            _text("type", "A label indicating the attribute's function.", canonical_values=types),
            Attribute("primary", "boolean", "Whether this is the primary value."),
        ),
    )


# Common attributes (RFC 7643 §3.1): part of every resource, not of any schema's list.
ID = _text(
    "id",
    "Unique identifier of the resource, issued by the service provider.",
    case_exact=True,
    mutability="readOnly",
    returned="always",
    uniqueness="server",
)
EXTERNAL_ID = _text(
    "externalId", "Identifier of the resource as the provisioning client knows it.", case_exact=True
)
META = Attribute(
    "meta",
    "complex",
    "Resource metadata.",
    mutability="readOnly",
    sub_attributes=(
        _text("resourceType", "The resource's type.", case_exact=True, mutability="readOnly"),
        Attribute("created", "dateTime", "When the resource was added.", mutability="readOnly"),
        Attribute(
            "lastModified", "dateTime", "When the resource last changed.", mutability="readOnly"
        ),
        Attribute(
            "location",
            "reference",
            "The URI of the resource.",
            case_exact=True,
            mutability="readOnly",
            reference_types=("uri",),
        ),
        _text("version", "The resource's entity tag.", case_exact=True, mutability="readOnly"),
    ),
)
COMMON = (ID, EXTERNAL_ID, META)

USER_SCHEMA = Schema(
    USER,
    "User",
    "User Account",
    (
        _text(
            "userName",
            "Unique identifier for the User; here, the email address the user signs in with.",
            required=True,
            uniqueness="server",
        ),
        Attribute(
            "name",
            "complex",
            "The components of the user's real name.",
            sub_attributes=(
                _text("formatted", "The full name, formatted for display."),
                _text("familyName", "The family name."),
                _text("givenName", "The given name."),
                _text("middleName", "The middle name(s)."),
                _text("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
                _text("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
            ),
        ),
        _text("displayName", "The name of the User, suitable for display to end-users."),
        _text("nickName", "The casual way to address the user."),
        Attribute(
            "profileUrl",
            "reference",
            "A URI of the user's online profile.",
            reference_types=("external",),
        ),
        _text("title", "The user's title, such as 'Vice President'."),
        _text("userType", "The relationship between the organization and the user."),
        _text("preferredLanguage", "The user's preferred written or spoken language."),
        _text("locale", "The user's default location for localizing values."),
        _text("timezone", "The user's time zone in the 'Olson' format."),
        Attribute("active", "boolean", "The user's administrative status."),
        _text(
            "password",
            "The user's cleartext password; never returned.",
            mutability="writeOnly",
            returned="never",
        ),
        _multi("emails", "Email addresses for the user.", ("work", "home", "other")),
        _multi(
            "phoneNumbers",
            "Phone numbers for the user; the numbers of the user's live identities are 'work'.",
            ("work", "home", "mobile", "fax", "pager", "other"),
        ),
        _multi(
            "ims",
            "Instant messaging addresses for the user.",
            ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        _multi("photos", "URLs of images of the user.", ("photo", "thumbnail"), "reference"),
        Attribute(
            "addresses",
            "complex",
            "A physical mailing address for this user.",
            multi_valued=True,
            sub_attributes=(
                _text("formatted", "The full mailing address, formatted for display."),
                _text("streetAddress", "The full street address component."),
                _text("locality", "The city or locality component."),
                _text("region", "The state or region component."),
                _text("postalCode", "The zip code or postal code component."),
                _text("country", "The country name component."),
                _text(
                    "type", "A label of the address.", canonical_values=("work", "home", "other")
                ),
                Attribute("primary", "boolean", "Whether this is the primary address."),
            ),
        ),
        Attribute(
            "groups",
            "complex",
            "The groups the user belongs to.",
            multi_valued=True,
            mutability="readOnly",
            sub_attributes=(
                _text("value", "The id of the Group.", mutability="readOnly"),
                Attribute(
                    "$ref",
                    "reference",
                    "The URI of the Group.",
                    mutability="readOnly",
                    reference_types=("User", "Group"),
                ),
                _text("display", "The group's display name.", mutability="readOnly"),
                _text(
                    "type",
                    "How the membership came about.",
                    mutability="readOnly",
                    canonical_values=("direct", "indirect"),
                ),
            ),
        ),
        _multi("entitlements", "A list of entitlements for the user.", ()),
        _multi("roles", "A list of roles for the user.", ()),
        _multi("x509Certificates", "A list of certificates issued to the user.", (), "binary"),
    ),
)

ENTERPRISE_USER_SCHEMA = Schema(
    ENTERPRISE_USER,
    "EnterpriseUser",
    "Enterprise User",
    (
        _text("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
        _text("costCenter", "Identifies the name of a cost center."),
        _text("organization", "Identifies the name of an organization."),
        _text("division", "Identifies the name of a division."),
        _text("department", "Identifies the name of a department."),
        Attribute(
            "manager",
            "complex",
            "The user's manager.",
            sub_attributes=(
                _text("value", "The id of the SCIM resource representing the user's manager."),
                Attribute(
                    "$ref",
                    "reference",
                    "The URI of the manager's SCIM resource.",
                    reference_types=("User",),
                ),
                _text("displayName", "The manager's display name.", mutability="readOnly"),
            ),
        ),
    ),
)

GROUP_SCHEMA = Schema(
    GROUP,
    "Group",
    "Group",
    (
        _text("displayName", "A human-readable name for the Group.", required=True),
        Attribute(
            "members",
            "complex",
            "A list of members of the Group.",
            multi_valued=True,
            sub_attributes=(
                _text("value", "Identifier of the member of this Group.", mutability="immutable"),
                Attribute(
                    "$ref",
                    "reference",
                    "The URI of the member's resource.",
                    mutability="immutable",
                    reference_types=("User", "Group"),
                ),
                _text(
                    "type",
                    "The type of the member.",
                    mutability="immutable",
                    canonical_values=("User", "Group"),
                ),
                _text("display", "The member's display name.", mutability="readOnly"),
            ),
        ),
    ),
)

SCHEMAS = {s.id: s for s in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA)}


@dataclass(frozen=True)
class ResourceType:
    id: str
    endpoint: str
    description: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()

    @property
    def schemas(self) -> tuple[Schema, ...]:
        return (self.schema, *self.extensions)

    def to_scim(self, location: str) -> dict[str, Any]:
        return {
            "schemas": [RESOURCE_TYPE],
            "id": self.id,
            "name": self.id,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [{"schema": s.id, "required": False} for s in self.extensions],
            "meta": {"resourceType": "ResourceType", "location": location},
        }


USER_TYPE = ResourceType("User", "/Users", "User Account", USER_SCHEMA, (ENTERPRISE_USER_SCHEMA,))
GROUP_TYPE = ResourceType("Group", "/Groups", "Group", GROUP_SCHEMA)
RESOURCE_TYPES = {t.id: t for t in (USER_TYPE, GROUP_TYPE)}


def service_provider_config(location: str) -> dict[str, Any]:
    """What this service provider supports (RFC 7643 §5)."""
    return {
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "An enterprise SCIM token (stk_…) in the Authorization header, "
                "created by an enterprise admin in the portal.",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": location},
    }


# --- Attribute paths ----------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeRef:
    """A resolved attribute path: the attribute, the sub-attribute if one was named, and
    the extension URN whose object holds it in a resource (None for core attributes)."""

    attribute: Attribute
    sub: Attribute | None = None
    extension: str | None = None

    @property
    def target(self) -> Attribute:
        """The attribute whose values a comparison looks at."""
        return self.sub or self.attribute

    @property
    def dotted(self) -> str:
        """Canonical ``attr`` or ``attr.sub``, prefixed by the extension URN if any."""
        name = f"{self.attribute.name}.{self.sub.name}" if self.sub else self.attribute.name
        return f"{self.extension}:{name}" if self.extension else name

    def container(self, resource: dict) -> dict:
        if self.extension is None:
            return resource
        holder = resource.get(self.extension)
        return holder if isinstance(holder, dict) else {}


def _split_urn(path: str, resource_type: ResourceType) -> tuple[Schema, str]:
    """The schema a path names (by URN prefix, or the core schema) and the rest."""
    lowered = path.lower()
    for schema in resource_type.schemas:
        if lowered.startswith(schema.id.lower() + ":"):
            return schema, path[len(schema.id) + 1 :]
    return resource_type.schema, path


def resolve(path: str, resource_type: ResourceType) -> AttributeRef | None:
    """``userName``, ``name.givenName``, ``urn:…:enterprise:2.0:User:department`` and the
    like, resolved case-insensitively; None if the resource type has no such attribute."""
    schema, rest = _split_urn(path, resource_type)
    name, _, sub_name = rest.partition(".")
    attribute = schema.attribute(name)
    if attribute is None and schema is resource_type.schema:
        lowered = name.lower()
        attribute = next((a for a in COMMON if a.name.lower() == lowered), None)
    if attribute is None:
        return None
    sub = None
    if sub_name:
        sub = attribute.sub(sub_name)
        if sub is None:
            return None
    extension = schema.id if schema is not resource_type.schema else None
    return AttributeRef(attribute, sub, extension)


def attributes_of(resource_type: ResourceType) -> list[tuple[str | None, Attribute]]:
    """(extension URN or None, attribute) of every attribute a resource can carry."""
    core = [(None, a) for a in (*COMMON, *resource_type.schema.attributes)]
    return core + [(s.id, a) for s in resource_type.extensions for a in s.attributes]
