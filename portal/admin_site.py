from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp.admin import OTPAdminSite


class OperatorAdminSite(OTPAdminSite):
    """Django admin for operator staff, open only to a session verified by a second
    factor (django-otp). Sign-in happens on the portal's own page, which throttles
    guessing and handles enrolment."""

    site_header = "Operator administration"
    site_title = "Operator administration"
    index_title = "Enterprises, inventory and operations"

    def __init__(self, name="admin"):
        super().__init__(name)

    def login(self, request, extra_context=None):
        if request.user.is_authenticated:
            # Signed in (and verified, or the middleware would have sent them to the
            # second factor) but not operator staff.
            raise PermissionDenied
        target = request.GET.get("next") or reverse("admin:index")
        return redirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")
