"""SMART discovery: `GET [base]/.well-known/smart-configuration`.

SMART App Launch "Conformance" (https://hl7.org/fhir/smart-app-launch/conformance.html), section "Using
.well-known": the endpoints of the authorization server (django-oauth-toolkit under /oauth) and the
capabilities this server supports.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe
from oauth2_provider.settings import oauth2_settings

from .smart import SUPPORTED_SCOPES

CAPABILITIES = [
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "context-standalone-patient",
    "sso-openid-connect",
    "permission-offline",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]

_DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


@login_not_required
@require_safe
def smart_configuration(request: HttpRequest) -> JsonResponse:
    urls = oauth_urls(request)
    document = {
        "issuer": _issuer(_origin(request)),
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "revocation_endpoint": urls["revoke"],
        "introspection_endpoint": urls["introspect"],
        "userinfo_endpoint": urls["userinfo"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        # DOT authenticates clients with HTTP Basic first, then with credentials in the body.
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        # authz.oauth.Validator refuses `plain`, as SMART requires.
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }
    response = JsonResponse(document)
    # Browser apps read this before they have any credential (as DOT does for its discovery documents).
    response["Access-Control-Allow-Origin"] = "*"
    return response


_ENDPOINTS = {
    "jwks": "jwks-info",
    "authorize": "authorize",
    "token": "token",
    "revoke": "revoke-token",
    "introspect": "introspect",
    "userinfo": "user-info",
}


def oauth_urls(request: HttpRequest) -> dict[str, str]:
    """Absolute URLs of the OAuth endpoints, for the SMART document and the CapabilityStatement."""
    origin = _origin(request)
    return {name: origin + reverse(f"oauth2_provider:{view}") for name, view in _ENDPOINTS.items()}


def _origin(request: HttpRequest) -> str:
    """scheme://host of settings.FHIR_BASE_URL when set, else of the request."""
    configured = urlsplit(settings.FHIR_BASE_URL)
    if configured.scheme and configured.netloc:
        return f"{configured.scheme}://{configured.netloc}"
    return request.build_absolute_uri("/").rstrip("/")


def _issuer(origin: str) -> str:
    """The OpenID Connect issuer: OIDC_ISS_ENDPOINT when configured, else where DOT is mounted (/oauth)."""
    if oauth2_settings.OIDC_ISS_ENDPOINT:
        return oauth2_settings.OIDC_ISS_ENDPOINT
    discovery = reverse("oauth2_provider:oidc-connect-discovery-info")
    return origin + discovery.removesuffix(_DISCOVERY_SUFFIX)
