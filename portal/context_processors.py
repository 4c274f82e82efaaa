from django.conf import settings

from accounts.two_factor import needs_verification


def portal(request):
    return {
        "operator_name": settings.OPERATOR_NAME,
        "enterprise": getattr(request, "enterprise", None),
        # A session still owing its second factor sees no navigation.
        "owes_second_factor": hasattr(request, "user") and needs_verification(request),
    }
