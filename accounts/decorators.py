from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from .models import Role

ADMIN = (Role.ADMIN,)
ADMIN_OR_HELPDESK = (Role.ADMIN, Role.HELPDESK)
ANY_MEMBER = (Role.ADMIN, Role.HELPDESK, Role.EMPLOYEE)


def enterprise_role_required(roles):
    """A page for members of an enterprise holding one of ``roles``; others get 403.

    Operator staff have no enterprise and work in Django admin instead.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.enterprise is None or request.user.role not in roles:
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
