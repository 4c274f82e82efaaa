"""SCIM 2.0 routes under /scim/v2/."""

urlpatterns = []
