from django.contrib.auth.backends import ModelBackend

from .models import User


class EmailBackend(ModelBackend):
    """Sign-in by email (case-insensitive); loads the enterprise and contract with the
    user, since nearly every request needs them for tenancy and 2FA policy."""

    def get_user(self, user_id):
        user = (
            User.objects.select_related("enterprise", "enterprise__contract")
            .filter(pk=user_id)
            .first()
        )
        return user if user is not None and self.user_can_authenticate(user) else None


def sign_in_name(request, credentials=None) -> str | None:
    """The name django-axes counts failed sign-ins under (AXES_USERNAME_CALLABLE).

    The backend matches the email case-insensitively, so axes must count every spelling
    that reaches an account as one: the account's own email when one matches, else the
    typed email lower-cased. Otherwise ``marIa@…`` could go on guessing while ``maria@…``
    is locked out."""
    if credentials is not None:
        typed = credentials.get("username")
    elif request is not None:
        typed = getattr(request, "data", request.POST).get("username")
    else:
        return None
    if not isinstance(typed, str) or not typed.strip():
        return typed
    typed = typed.strip()
    # axes asks several times per attempt: look the account up once per request.
    known = getattr(request, "_sign_in_names", None) if request is not None else None
    if known is None:
        known = {}
        if request is not None:
            request._sign_in_names = known
    if typed not in known:
        email = User.objects.filter(email__iexact=typed).values_list("email", flat=True).first()
        known[typed] = (email or typed).lower()
    return known[typed]
