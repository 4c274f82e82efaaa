"""How the API's authentication shows in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An enterprise API token (`ptk_…`), created by an enterprise admin.",
        }


class VerifiedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.VerifiedSessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "The portal's browser session, after the second factor; "
            "writes need the X-CSRFToken header.",
        }


class NetworkClientScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.NetworkClientAuthentication"
    name = "networkClient"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A network client credential (`ntk_…`) issued by the operator.",
        }


class ScimTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ScimTokenAuthentication"
    name = "scimToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An enterprise SCIM token (`stk_…`).",
        }
