"""URL map: the FHIR API under /fhir, the OAuth 2.0 / OIDC provider under /oauth, end users' sign-in
under /accounts, the console under /admin."""

from django.contrib import admin
from django.urls import include, path, re_path

from audit import api as audit_api
from authz import api as authz_api
from authz import login as authz_login
from authz import views as authz_views
from resources.api import routes
from resources.graphql import views as graphql_views

urlpatterns = [
    re_path(r"^fhir/?$", routes.system),
    path("fhir/.well-known/smart-configuration", authz_views.smart_configuration),
    re_path(r"^fhir/\$exchange-token/?$", authz_api.exchange_token),
    re_path(
        r"^fhir/(?P<resource_type>Patient|Practitioner|RelatedPerson|Device)/(?P<fhir_id>[^/]+)/\$api-token/?$",
        authz_api.mint_token,
    ),
    # AuditEvent (audit/api.py): searches merge the server's audit log with client AuditEvents, and
    # ids of digits name the log's read-only entries; every other AuditEvent path is ordinary.
    re_path(r"^fhir/AuditEvent(?P<search>/_search)?/?$", audit_api.type_level),
    re_path(r"^fhir/AuditEvent/(?P<fhir_id>[0-9]+)/?$", audit_api.entry),
    re_path(
        r"^fhir/AuditEvent/(?P<fhir_id>[0-9]+)/_history/(?P<version_id>[^/]+)/?$", audit_api.entry_version
    ),
    re_path(r"^fhir/AuditEvent/(?P<fhir_id>[0-9]+)/.+$", audit_api.unsupported),
    # FHIR GraphQL (resources/graphql/): system and instance level.
    re_path(r"^fhir/\$graphql/?$", graphql_views.system),
    re_path(
        r"^fhir/(?P<resource_type>[A-Z][A-Za-z]+)/(?P<fhir_id>[^/]+)/\$graphql/?$", graphql_views.instance
    ),
    path("fhir/", include("resources.api.urls")),
    path("oauth/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # Where the authorization endpoint sends end users to sign in (LOGIN_URL); staff or not.
    path("accounts/login/", authz_login.SignInView.as_view(), name="login"),
    path("accounts/logout/", authz_login.SignOutView.as_view(), name="logout"),
    path("accounts/", authz_login.SignedInView.as_view(), name="signed-in"),
    path("admin/", admin.site.urls),
]
