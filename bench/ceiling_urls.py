"""The project's URLs plus /bench/ping (a small JsonResponse, no database)."""

from django.http import JsonResponse
from django.urls import path

from fhirplatform.urls import urlpatterns as project_urlpatterns


def ping(request):
    return JsonResponse({"status": "ok", "service": "fhirplatform-bench"})


urlpatterns = [path("bench/ping", ping), *project_urlpatterns]
