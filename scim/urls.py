"""SCIM 2.0 routes under /scim/v2/ (RFC 7644 §3.2), with or without a trailing slash.
Anything else under the prefix answers a SCIM 404."""

from django.urls import re_path

from scim import views

app_name = "scim"


def _route(pattern: str) -> str:
    return rf"^{pattern}/?$"


urlpatterns = [
    re_path(
        _route("ServiceProviderConfig"),
        views.ServiceProviderConfigView.as_view(),
        name="service_provider_config",
    ),
    re_path(_route("ResourceTypes"), views.ResourceTypesView.as_view(), name="resource_types"),
    re_path(
        _route(r"ResourceTypes/(?P<resource_type_id>[^/]+)"),
        views.ResourceTypesView.as_view(),
        name="resource_type",
    ),
    re_path(_route("Schemas"), views.SchemasView.as_view(), name="schemas"),
    re_path(_route(r"Schemas/(?P<schema_id>[^/]+)"), views.SchemasView.as_view(), name="schema"),
    re_path(
        _route(r"\.search"),
        views.SearchView.as_view(kinds=[views.USERS, views.GROUPS]),
        name="search",
    ),
    re_path(_route("Users"), views.UsersView.as_view(), name="users"),
    re_path(
        _route(r"Users/\.search"),
        views.SearchView.as_view(kinds=[views.USERS]),
        name="users_search",
    ),
    re_path(_route(r"Users/(?P<resource_id>[^/]+)"), views.UserView.as_view(), name="user"),
    re_path(_route("Groups"), views.GroupsView.as_view(), name="groups"),
    re_path(
        _route(r"Groups/\.search"),
        views.SearchView.as_view(kinds=[views.GROUPS]),
        name="groups_search",
    ),
    re_path(_route(r"Groups/(?P<resource_id>[^/]+)"), views.GroupView.as_view(), name="group"),
    re_path(_route("(?:Bulk|Me)"), views.NotImplementedView.as_view()),
    re_path(r"", views.UnknownView.as_view()),
]
