from django.conf import settings


def portal(request):
    return {
        "operator_name": settings.OPERATOR_NAME,
        "enterprise": getattr(request, "enterprise", None),
    }
