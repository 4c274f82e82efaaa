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
