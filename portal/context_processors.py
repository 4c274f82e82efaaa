from django.conf import settings

from accounts.two_factor import needs_verification


def portal(request):
    user = getattr(request, "user", None)
    owes = user is not None and needs_verification(request)
    return {
        "operator_name": settings.OPERATOR_NAME,
        "enterprise": getattr(request, "enterprise", None),
        # A session still owing its second factor sees no navigation.
        "owes_second_factor": owes,
        "unread_notifications": (
            user.notifications.filter(read_at=None).count()
            if user is not None and user.is_authenticated and not owes and not user.is_staff
            else 0
        ),
    }
