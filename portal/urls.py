from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from oauth2_provider import views as oauth_views

from accounts.api.introspection import IntrospectionView
from accounts.views import OidcAuthorizationView, OidcDiscoveryView, OidcTokenView

from . import views

# The OpenID provider: django-oauth-toolkit's token, revocation, JWKS and userinfo
# endpoints, with the portal's own authorization, introspection and discovery.
oidc_patterns = (
    [
        path("authorize/", OidcAuthorizationView.as_view(), name="authorize"),
        path("token/", OidcTokenView.as_view(), name="token"),
        path("revoke_token/", oauth_views.RevokeTokenView.as_view(), name="revoke-token"),
        path("introspect/", IntrospectionView.as_view(), name="introspect"),
        path(".well-known/jwks.json", oauth_views.JwksInfoView.as_view(), name="jwks-info"),
        path("userinfo/", oauth_views.UserInfoView.as_view(), name="user-info"),
    ],
    "oauth2_provider",
)

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api.urls")),
    path("network/v1/", include("telephony.network.urls")),
    path("scim/v2/", include("scim.urls")),
    path("o/", include(oidc_patterns)),
    path(".well-known/openid-configuration", OidcDiscoveryView.as_view(), name="oidc-discovery"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("accounts.urls")),
    path("", include("telephony.urls")),
]

handler403 = "portal.views.error_403"
handler404 = "portal.views.error_404"
handler500 = "portal.views.error_500"
