"""SCIM 2.0 endpoints (RFC 7644) for an enterprise's identity provider, under /scim/v2/.

Every call authenticates with an enterprise SCIM token and acts within its enterprise:
another enterprise's users and groups do not exist here. A read-only token reads and
searches. Each request is one transaction, rolled back on any error; every error
answers with a SCIM Error body; responses are ``application/scim+json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from rest_framework.exceptions import NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import ScimTokenAuthentication
from accounts.audit import Actor
from accounts.models import ApiToken, Enterprise
from scim import documents, patch, protocol, resources, schema, selectors, services
from scim.errors import ScimError, bad_request, exception_handler, not_found
from scim.resources import Locations
from scim.schema import GROUP_TYPE, RESOURCE_TYPES, SCHEMAS, SEARCH_REQUEST, USER_TYPE, ResourceType


class ScimView(APIView):
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [protocol.ScimAccess]
    parser_classes = [protocol.ScimParser]
    renderer_classes = [protocol.ScimRenderer]
    content_negotiation_class = protocol.ScimNegotiation
    schema = None  # not part of the REST API's OpenAPI document

    def dispatch(self, request, *args, **kwargs):
        with transaction.atomic():
            return super().dispatch(request, *args, **kwargs)

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        protocol.ensure_body_size(request)
        super().initial(request, *args, **kwargs)

    @cached_property
    def enterprise(self) -> Enterprise:
        token = self.request.auth
        if not isinstance(token, ApiToken):  # ScimAccess lets no other caller this far
            raise NotAuthenticated
        return token.enterprise

    @cached_property
    def actor(self) -> Actor:
        return Actor.from_request(self.request)

    @cached_property
    def locations(self) -> Locations:
        return Locations(self.request.build_absolute_uri("/scim/v2"))

    def body(self) -> dict:
        if not isinstance(self.request.data, dict):
            raise bad_request("The request body must be a JSON object.", "invalidSyntax")
        return self.request.data


# --- Discovery (RFC 7644 §4) -------------------------------------------------------------


class DiscoveryView(ScimView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if "filter" in request.query_params:
            # RFC 7644 §4: a filtered answer here could be read as "these matched".
            raise ScimError(403, "The discovery endpoints do not support filtering.")


def _listing(items: list[dict]) -> dict:
    return resources.list_response(len(items), 1, items)


class ServiceProviderConfigView(DiscoveryView):
    def get(self, request):
        return Response(schema.service_provider_config(self.locations.of("/ServiceProviderConfig")))


class ResourceTypesView(DiscoveryView):
    def get(self, request, resource_type_id=None):
        def described(rt):
            return rt.to_scim(self.locations.of("/ResourceTypes", rt.id))

        if resource_type_id is None:
            return Response(_listing([described(rt) for rt in RESOURCE_TYPES.values()]))
        rt = RESOURCE_TYPES.get(resource_type_id)
        if rt is None:
            raise not_found(f"No resource type {resource_type_id}.")
        return Response(described(rt))


class SchemasView(DiscoveryView):
    def get(self, request, schema_id=None):
        def described(s):
            return s.to_scim(self.locations.of("/Schemas", s.id))

        if schema_id is None:
            return Response(_listing([described(s) for s in SCHEMAS.values()]))
        found = next((s for s in SCHEMAS.values() if s.id.lower() == schema_id.lower()), None)
        if found is None:
            raise not_found(f"No schema {schema_id}.")
        return Response(described(found))


# --- Users and groups ----------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceKind:
    """What differs between /Users and /Groups."""

    resource_type: ResourceType
    translation: selectors.Translation
    queryset: Callable[[Enterprise], QuerySet]
    prefetch: Callable[[QuerySet], QuerySet]
    render: Callable[[Any, Locations], dict]
    by_id: Callable[[Enterprise, str], Any]

    def renderer(self, locations: Locations) -> Callable[[Any], dict]:
        return lambda obj: self.render(obj, locations)


USERS = ResourceKind(
    USER_TYPE,
    selectors.USERS,
    selectors.users,
    selectors.with_representation,
    resources.user_resource,
    selectors.user_by_id,
)
GROUPS = ResourceKind(
    GROUP_TYPE,
    selectors.GROUPS,
    selectors.groups,
    selectors.groups_with_members,
    resources.group_resource,
    selectors.group_by_id,
)


def _version(resource: dict) -> str:
    return resource["meta"]["version"]


class ResourceView(ScimView):
    kind: ResourceKind

    def represent(self, obj) -> dict:
        return self.kind.render(obj, self.locations)

    def answer(self, resource: dict, status: int = 200, **headers) -> Response:
        attributes, excluded = protocol.selection(self.request.query_params)
        shown = resources.project(resource, self.kind.resource_type, attributes, excluded)
        return Response(shown, status=status, headers={"ETag": _version(resource), **headers})

    def search(self, kinds: list[ResourceKind], source, *, lenient: bool = False) -> Response:
        query = protocol.list_query(source)
        if lenient:
            types = [k.resource_type for k in kinds]
            selectors.ensure_known(query, types)
        found = [
            selectors.matches(
                k.translation,
                k.queryset(self.enterprise),
                k.prefetch,
                k.renderer(self.locations),
                query,
                lenient=lenient,
            )
            for k in kinds
        ]
        total, page = selectors.page(found, query)
        attributes, excluded = protocol.selection(source)
        shown = [
            resources.project(r, RESOURCE_TYPES[r["meta"]["resourceType"]], attributes, excluded)
            for r in page
        ]
        return Response(
            resources.list_response(total, query.start_index, shown if query.count else None)
        )


class CollectionView(ResourceView):
    """GET lists (with filter, sort and page), POST creates."""

    def get(self, request):
        return self.search([self.kind], request.query_params)

    def create(self, document: dict) -> Model:
        """The new resource, written by its kind's service (each view below says which)."""
        raise NotImplementedError

    def post(self, request):
        document = documents.canonical(
            documents.require_schema(self.body(), self.kind.resource_type.schema.id),
            self.kind.resource_type,
        )
        created = self.create(document)
        resource = self.represent(self.kind.by_id(self.enterprise, str(created.pk)))
        return self.answer(resource, 201, Location=resource["meta"]["location"])


class UsersView(CollectionView):
    kind = USERS

    def create(self, document):
        return services.user_provision(
            actor=self.actor, enterprise=self.enterprise, draft=documents.user_draft(document)
        )


class GroupsView(CollectionView):
    kind = GROUPS

    def create(self, document):
        return services.group_create(
            actor=self.actor, enterprise=self.enterprise, draft=documents.group_draft(document)
        )


class MemberView(ResourceView):
    """GET, PUT, PATCH and DELETE of one resource, with ETags (RFC 7644 §3.14)."""

    def current(self, resource_id: str):
        return self.kind.by_id(self.enterprise, resource_id)

    def get(self, request, resource_id):
        resource = self.represent(self.current(resource_id))
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match and resources.etag_matches(if_none_match, _version(resource)):
            return Response(status=304, headers={"ETag": _version(resource)})
        return self.answer(resource)

    def put(self, request, resource_id):
        obj = self.current(resource_id)
        document = documents.canonical(
            documents.require_schema(self.body(), self.kind.resource_type.schema.id),
            self.kind.resource_type,
        )
        return self.replaced(obj, document)

    def patch(self, request, resource_id):
        obj = self.current(resource_id)
        operations = patch.operations(self.body())
        document = patch.apply(self.represent(obj), operations, self.kind.resource_type)
        return self.replaced(obj, document)

    def replaced(self, obj, document: dict) -> Response:
        self.replace(obj, document, self.request.headers.get("If-Match"))
        return self.answer(self.represent(self.current(str(obj.pk))))

    def delete(self, request, resource_id):
        self.remove(self.current(resource_id), request.headers.get("If-Match"))
        return Response(status=204)

    # The writes of one resource, through its kind's services (each view below says which).
    def replace(self, obj, document: dict, if_match: str | None) -> None:
        raise NotImplementedError

    def remove(self, obj, if_match: str | None) -> None:
        raise NotImplementedError


class UserView(MemberView):
    kind = USERS

    def replace(self, user, document, if_match):
        draft = documents.user_draft(document)
        services.user_replace(actor=self.actor, user=user, draft=draft, if_match=if_match)

    def remove(self, user, if_match):
        services.user_delete(actor=self.actor, user=user, if_match=if_match)


class GroupView(MemberView):
    kind = GROUPS

    def replace(self, group, document, if_match):
        draft = documents.group_draft(document)
        services.group_replace(actor=self.actor, group=group, draft=draft, if_match=if_match)

    def remove(self, group, if_match):
        services.group_delete(actor=self.actor, group=group, if_match=if_match)


class SearchView(ResourceView):
    """POST …/.search (RFC 7644 §3.4.3): a query in the body; a read, so a read-only
    token may search. At the root it searches users and groups."""

    reads_only = True
    kinds: list[ResourceKind] = []

    def post(self, request):
        body = documents.require_schema(self.body(), SEARCH_REQUEST)
        return self.search(self.kinds, body, lenient=len(self.kinds) > 1)


class NotImplementedView(ScimView):
    """Endpoints of RFC 7644 this service provider does not offer (/Bulk, /Me)."""

    def handle(self, request, *args, **kwargs):
        raise ScimError(501, f"{request.path} is not supported by this service provider.")

    get = post = put = patch = delete = handle


class UnknownView(ScimView):
    def handle(self, request, *args, **kwargs):
        raise not_found(f"There is no SCIM endpoint at {request.path}.")

    get = post = put = patch = delete = handle
