"""django-oauth-toolkit glue: SMART scopes, the fhirUser claim and the patient launch context.

- Scopes: SMART App Launch "Scopes and Launch Context"
  (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): the OpenID Connect scopes,
  `fhirUser`, `launch`, `launch/patient`, `offline_access`, `online_access` and every resource scope
  (smart.py).
- `fhirUser` claim in the ID token and at userinfo ("Scopes for requesting identity data": the absolute
  URL of the user's FHIR resource).
- `patient` in the token response ("Launch context arrives with your access_token").
- PKCE with S256 only (SMART App Launch "App Launch", section "Considerations for PKCE Support": servers
  SHALL NOT support the `plain` method).

Settings name these classes in OAUTH2_PROVIDER (SCOPES_BACKEND_CLASS, OAUTH2_VALIDATOR_CLASS).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from oauth2_provider.models import AbstractApplication
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import BaseScopes
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors

from . import smart

log = logging.getLogger(__name__)

# Scopes that are not resource scopes, with what the consent page says about them.
OTHER_SCOPES: dict[str, str] = {
    "openid": "Sign you in (OpenID Connect)",
    "profile": "Your name and profile",
    "email": "Your email address",
    "fhirUser": "Your FHIR identity (the resource that describes you)",
    "offline_access": "Keep access when you are not using the app",
    "online_access": "Keep access while you are signed in",
    "launch": "Receive the launch context from the EHR",
    "launch/patient": "Choose a patient at launch (your own record)",
}

CLIENT_CREDENTIALS_DEFAULT = ["system/*.cruds"]
USER_DEFAULT = ["openid", "fhirUser", "user/*.cruds"]


class ScopeDescriptions(dict[str, str]):
    """The descriptions of the known scopes, and of any valid SMART resource scope on demand.

    The resource scopes cannot be listed (146 types times contexts and permission subsets), yet DOT's
    consent page looks up the description of each requested scope; `__missing__` answers for them and
    raises KeyError for anything that is not a scope.
    """

    def __missing__(self, scope: str) -> str:
        description = smart.describe(scope)
        if description is None:
            raise KeyError(scope)
        return description


class SmartScopes(BaseScopes):
    """The scopes backend (OAUTH2_PROVIDER["SCOPES_BACKEND_CLASS"])."""

    def get_all_scopes(self) -> ScopeDescriptions:
        descriptions = ScopeDescriptions(OTHER_SCOPES)
        descriptions.update({s: descriptions[s] for s in smart.SUPPORTED_SCOPES})
        return descriptions

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        # Only the advertised list (OIDC discovery calls this without arguments); what a client may
        # request is decided by Validator.validate_scopes, which accepts any valid resource scope.
        return list(dict.fromkeys([*OTHER_SCOPES, *smart.SUPPORTED_SCOPES]))

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        # DOT calls this (through Validator.get_default_scopes) when a request names no scope.
        if application is not None and application.authorization_grant_type == (
            AbstractApplication.GRANT_CLIENT_CREDENTIALS
        ):
            return list(CLIENT_CREDENTIALS_DEFAULT)
        return list(USER_DEFAULT)


def is_valid_scope(scope: str) -> bool:
    return scope in OTHER_SCOPES or smart.is_resource_scope(scope)


class Validator(OAuth2Validator):
    """The OAuth2 / OIDC request validator (OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"])."""

    # DOT releases a claim only when the scope it names was granted; fhirUser comes with `fhirUser`.
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "fhirUser": "fhirUser"}

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        unknown = [s for s in scopes if not is_valid_scope(s)]
        if unknown:
            log.info("Refused unknown scopes %s for client %s", unknown, client_id)
        # An OpenID Connect token names a user; a client acting for itself has none to name.
        if request.grant_type == "client_credentials" and {"openid", "fhirUser", "profile"} & set(scopes):
            log.info("Refused user scopes on a client-credentials grant for client %s", client_id)
            return False
        return not unknown

    def is_pkce_required(self, client_id, request) -> bool:
        # oauthlib asks this while validating an authorization request, right before it accepts the
        # challenge method (defaulting to "plain"); it has no hook for the method itself.
        if request.response_type and request.code_challenge is not None:
            if (request.code_challenge_method or "plain") != "S256":
                raise errors.UnsupportedCodeChallengeMethodError(
                    description="Only the S256 code_challenge_method is supported.", request=request
                )
        return super().is_pkce_required(client_id, request)

    def get_additional_claims(self, request) -> dict[str, Any]:
        """Claims of the ID token and userinfo beyond `sub`: `fhirUser` when the user has an identity."""
        reference = _identity_reference(getattr(request, "user", None))
        if not reference:
            return {}
        return {"fhirUser": f"{fhir_base_url(request)}/{reference}"}

    def get_discovery_claims(self, request) -> list[str]:
        # DOT lists only `sub` when get_additional_claims takes the request; name ours too.
        return ["sub", "fhirUser"]

    def save_bearer_token(self, token: dict, request, *args, **kwargs) -> None:
        """Store the token, then add the launch context: oauthlib serialises `token` as the response
        body after this call, so a key added here reaches the client."""
        super().save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type in ("authorization_code", "refresh_token"):
            reference = _identity_reference(getattr(request, "user", None))
            resource_type, _, fhir_id = reference.partition("/")
            if resource_type == "Patient" and fhir_id:
                token["patient"] = fhir_id


def _identity_reference(user) -> str:
    """The FHIR identity ("Patient/123") of a local Django user, or ""."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    from .identity import local_identity  # imported late: identity.py imports models and issuers

    found = local_identity(user)
    return found.reference if found is not None else ""


def fhir_base_url(request: HttpRequest | OAuthlibRequest) -> str:
    """The FHIR base URL: settings.FHIR_BASE_URL, else this server's /fhir as the request reached it."""
    configured = settings.FHIR_BASE_URL.rstrip("/")
    if configured:
        return configured
    return django_request(request).build_absolute_uri("/fhir")


class _HeadersRequest(HttpRequest):
    """A Django request rebuilt from the headers DOT hands to oauthlib (a copy of request.META), enough
    for build_absolute_uri: Host, the WSGI scheme, and the proxy header of SECURE_PROXY_SSL_HEADER."""

    def _get_scheme(self) -> str:
        if self.META.get("X_DJANGO_OAUTH_TOOLKIT_SECURE"):  # DOT sets it when request.is_secure()
            return "https"
        return self.META.get("wsgi.url_scheme", "http")


def django_request(request: HttpRequest | OAuthlibRequest) -> HttpRequest:
    if isinstance(request, HttpRequest):
        return request
    rebuilt = _HeadersRequest()
    rebuilt.META = dict(request.headers or {})
    return rebuilt
