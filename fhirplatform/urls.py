"""URL map: the FHIR API under /fhir, the console under /admin."""

from django.contrib import admin
from django.urls import include, path, re_path

from resources.api import routes

urlpatterns = [
    re_path(r"^fhir/?$", routes.system),
    path("fhir/", include("resources.api.urls")),
    path("admin/", admin.site.urls),
]
