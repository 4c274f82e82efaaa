from collections.abc import Collection

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiToken, NetworkClient, Role


class EnterpriseRole(BasePermission):
    """Callers act within one enterprise with one role (a user's, or an API token's).

    A view lists the roles that may read (``read_roles``) and write (``write_roles``);
    ``action_roles`` overrides both for a named action. A read-only API token (the
    helpdesk role) changes nothing, whatever a view allows the helpdesk people: it is
    refused before any lookup, so it cannot learn which objects exist either.
    """

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and getattr(user, "enterprise_id", None)):
            return False
        if (
            request.method not in SAFE_METHODS
            and isinstance(request.auth, ApiToken)
            and request.auth.role != Role.ADMIN
        ):
            return False
        roles: Collection[str] | None = getattr(view, "action_roles", {}).get(
            getattr(view, "action", None)
        )
        if roles is None:
            if request.method in SAFE_METHODS:
                roles = getattr(view, "read_roles", (Role.ADMIN, Role.HELPDESK))
            else:
                roles = getattr(view, "write_roles", (Role.ADMIN,))
        return user.role in roles


class IsNetworkClient(BasePermission):
    """A network element of the operator, authenticated with its client credential."""

    def has_permission(self, request, view):
        return isinstance(request.auth, NetworkClient)
