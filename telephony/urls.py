from django.urls import include, path

from . import bulk_views, views

app_name = "telephony"

urlpatterns = [
    path("import/", include(bulk_views.urlpatterns)),
]
