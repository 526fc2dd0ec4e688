"""End-to-end OAuth 2.0 / OpenID Connect flows against django-oauth-toolkit with authz.oauth's glue.

SMART App Launch (https://hl7.org/fhir/smart-app-launch/app-launch.html): authorization code with PKCE
S256 for confidential and public clients, refresh, client credentials, revocation, introspection, the
fhirUser claim, the patient launch context, and SMART discovery (conformance.html).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from oauth2_provider.models import AccessToken, Application, RefreshToken

from authz.context import AccessContext
from authz.models import IdentityLink
from authz.smart import SUPPORTED_SCOPES
from resources.services import resource_create

pytestmark = pytest.mark.django_db

REDIRECT = "https://app.example.org/callback"
SECRET = "s3cret-for-tests-only"
ISSUER = "http://testserver/oauth"


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def _app(client_type: str, grant: str, name: str) -> Application:
    return Application.objects.create(
        name=name,
        client_type=client_type,
        authorization_grant_type=grant,
        redirect_uris=REDIRECT if grant == Application.GRANT_AUTHORIZATION_CODE else "",
        client_secret=SECRET,  # hashed on save; the tests keep the clear text
        algorithm=Application.RS256_ALGORITHM,
    )


@pytest.fixture
def user():
    return get_user_model().objects.create_user("alice", password="pw-alice")


@pytest.fixture
def patient_user(user):
    resource_create(
        AccessContext.system("test"),
        resource_type="Patient",
        body={"resourceType": "Patient", "name": [{"family": "Alice"}]},
        fhir_id="p1",
    )
    IdentityLink.objects.create(issuer=IdentityLink.LOCAL, subject=str(user.pk), reference="Patient/p1")
    return user


@pytest.fixture
def confidential_app() -> Application:
    return _app(Application.CLIENT_CONFIDENTIAL, Application.GRANT_AUTHORIZATION_CODE, "confidential app")


@pytest.fixture
def public_app() -> Application:
    return _app(Application.CLIENT_PUBLIC, Application.GRANT_AUTHORIZATION_CODE, "public app")


@pytest.fixture
def service_app() -> Application:
    return _app(Application.CLIENT_CONFIDENTIAL, Application.GRANT_CLIENT_CREDENTIALS, "service")


def _basic(app: Application) -> dict[str, str]:
    raw = f"{app.client_id}:{SECRET}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def _client_auth(app: Application) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, body fields) that authenticate the client at the token endpoint."""
    if app.client_type == Application.CLIENT_CONFIDENTIAL:
        return _basic(app), {}
    return {}, {"client_id": app.client_id}


def _authorize_params(app: Application, scope: str, pkce: Pkce | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st4te",
        "nonce": "n0nce",
    }
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    return params | extra


def _redirect_query(response) -> dict[str, str]:
    assert response.status_code == 302, response.content
    location = response["Location"]
    assert location.startswith(REDIRECT), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize(client: Client, app: Application, scope: str, pkce: Pkce | None, **extra: str) -> dict:
    """The consent page (GET) then the user's approval (POST): the parameters of the redirect."""
    params = _authorize_params(app, scope, pkce, **extra)
    page = client.get("/oauth/authorize/?" + urlencode(params))
    if page.status_code != 200:  # an error goes back to the client's redirect URI
        return _redirect_query(page)
    return _redirect_query(client.post("/oauth/authorize/", params | {"allow": True}))


def token_request(client: Client, app: Application, fields: dict[str, str]):
    headers, auth_fields = _client_auth(app)
    return client.post("/oauth/token/", fields | auth_fields, headers=headers)


def exchange(client: Client, app: Application, code: str, verifier: str | None):
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        fields["code_verifier"] = verifier
    return token_request(client, app, fields)


def login_flow(client: Client, user, app: Application, scope: str) -> dict:
    client.force_login(user)
    pkce = Pkce.new()
    redirect = authorize(client, app, scope, pkce)
    assert "code" in redirect, redirect
    assert redirect["state"] == "st4te"
    response = exchange(client, app, redirect["code"], pkce.verifier)
    assert response.status_code == 200, response.content
    return response.json()


def verify_id_token(client: Client, id_token: str, app: Application) -> dict:
    jwks = client.get("/oauth/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        id_token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=app.client_id, issuer=ISSUER
    )


def introspect(client: Client, app: Application, token: str) -> dict:
    response = client.post("/oauth/introspect/", {"token": token}, headers=_basic(app))
    assert response.status_code == 200, response.content
    return response.json()


# --- authorization code + PKCE ---------------------------------------------------------------------


@pytest.mark.parametrize("app_fixture", ["confidential_app", "public_app"])
def test_authorization_code_with_pkce(request, client, patient_user, app_fixture) -> None:
    app = request.getfixturevalue(app_fixture)
    body = login_flow(client, patient_user, app, "openid fhirUser user/*.rs offline_access")
    assert body["token_type"] == "Bearer"
    assert body["access_token"] and body["refresh_token"] and body["id_token"]
    assert set(body["scope"].split()) == {"openid", "fhirUser", "user/*.rs", "offline_access"}
    claims = verify_id_token(client, body["id_token"], app)
    assert claims["sub"] == str(patient_user.pk)
    assert claims["nonce"] == "n0nce"
    assert claims["fhirUser"] == "http://testserver/fhir/Patient/p1"


def test_consent_page_describes_smart_scopes(client, user, confidential_app) -> None:
    client.force_login(user)
    scope = "openid patient/Observation.rs launch/patient"
    page = client.get(
        "/oauth/authorize/?" + urlencode(_authorize_params(confidential_app, scope, Pkce.new()))
    )
    assert page.status_code == 200
    assert b"Read, search Observation resources of the current patient" in page.content


def test_missing_pkce_is_refused(client, user, confidential_app) -> None:
    client.force_login(user)
    redirect = authorize(client, confidential_app, "openid user/*.rs", None)
    assert redirect["error"] == "invalid_request"
    assert "code" not in redirect


def test_plain_pkce_is_refused(client, user, public_app) -> None:
    client.force_login(user)
    pkce = Pkce.new()
    params = {"code_challenge": pkce.verifier, "code_challenge_method": "plain"}
    redirect = authorize(client, public_app, "openid user/*.rs", None, **params)
    assert redirect["error"] == "invalid_request"
    assert "S256" in redirect["error_description"]
    assert "code" not in redirect


@pytest.mark.parametrize("verifier", [None, "wrong-" + "x" * 50])
def test_missing_or_wrong_verifier_is_refused(client, user, public_app, verifier) -> None:
    client.force_login(user)
    redirect = authorize(client, public_app, "openid user/*.rs", Pkce.new())
    response = exchange(client, public_app, redirect["code"], verifier)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_grant", "invalid_request")
    assert not AccessToken.objects.exists()


def test_code_is_single_use(client, user, confidential_app) -> None:
    client.force_login(user)
    pkce = Pkce.new()
    redirect = authorize(client, confidential_app, "user/*.rs", pkce)
    assert exchange(client, confidential_app, redirect["code"], pkce.verifier).status_code == 200
    assert exchange(client, confidential_app, redirect["code"], pkce.verifier).status_code == 400


def test_denied_consent_gives_no_code(client, user, confidential_app) -> None:
    client.force_login(user)
    params = _authorize_params(confidential_app, "user/*.rs", Pkce.new())
    redirect = _redirect_query(client.post("/oauth/authorize/", params | {"allow": False}))
    assert redirect["error"] == "access_denied"


# --- SMART scopes and launch context ----------------------------------------------------------------


def test_smart_scopes_are_granted_with_patient_context(client, patient_user, public_app) -> None:
    scope = "patient/Observation.rs launch/patient openid fhirUser"
    body = login_flow(client, patient_user, public_app, scope)
    assert set(body["scope"].split()) == set(scope.split())
    assert body["patient"] == "p1"
    token = AccessToken.objects.get()
    assert set(token.scope.split()) == set(scope.split())


def test_v1_and_v2_scopes_together(client, user, confidential_app) -> None:
    scope = "user/Patient.read user/Observation.cruds system/*.write"
    body = login_flow(client, user, confidential_app, scope)
    assert set(body["scope"].split()) == set(scope.split())
    assert "patient" not in body  # the user has no Patient identity
    assert "id_token" not in body  # no openid scope


def test_invalid_scope_is_refused_at_authorization(client, user, confidential_app) -> None:
    client.force_login(user)
    for scope in ("openid foo/bar", "patient/Nope.rs", "patient/Observation.sr", "admin"):
        redirect = authorize(client, confidential_app, scope, Pkce.new())
        assert redirect["error"] == "invalid_scope", scope


def test_default_scopes_for_a_user(client, user, confidential_app) -> None:
    client.force_login(user)
    pkce = Pkce.new()
    params = _authorize_params(confidential_app, "", pkce)
    del params["scope"]
    page = client.get("/oauth/authorize/?" + urlencode(params))
    assert page.status_code == 200, page.content
    # The consent form carries the default scopes on to the approval.
    assert page.context["form"].initial["scope"] == "openid fhirUser user/*.cruds"
    redirect = _redirect_query(
        client.post("/oauth/authorize/", params | {"scope": "openid fhirUser user/*.cruds", "allow": True})
    )
    response = exchange(client, confidential_app, redirect["code"], pkce.verifier)
    assert set(response.json()["scope"].split()) == {"openid", "fhirUser", "user/*.cruds"}


# --- refresh, client credentials --------------------------------------------------------------------


def test_refresh_token_grant(client, patient_user, confidential_app) -> None:
    body = login_flow(client, patient_user, confidential_app, "openid fhirUser patient/*.rs launch/patient")
    refreshed = token_request(
        client, confidential_app, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.content
    new = refreshed.json()
    assert new["access_token"] != body["access_token"]
    assert new["refresh_token"] != body["refresh_token"]  # rotation is on
    assert set(new["scope"].split()) == {"openid", "fhirUser", "patient/*.rs", "launch/patient"}
    assert new["patient"] == "p1"
    # The old refresh token is spent.
    again = token_request(
        client, confidential_app, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert again.status_code == 400


def test_refresh_cannot_widen_scopes(client, user, public_app) -> None:
    body = login_flow(client, user, public_app, "user/Observation.rs")
    response = token_request(
        client,
        public_app,
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "scope": "user/*.cruds"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_client_credentials_grant(client, service_app) -> None:
    response = client.post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "system/*.rs"},
        headers=_basic(service_app),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "system/*.rs"
    assert "refresh_token" not in body and "patient" not in body
    assert AccessToken.objects.get().user is None


def test_client_credentials_default_scope(client, service_app) -> None:
    response = client.post("/oauth/token/", {"grant_type": "client_credentials"}, headers=_basic(service_app))
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/*.cruds"


def test_client_credentials_invalid_scope_and_secret(client, service_app) -> None:
    bad_scope = client.post(
        "/oauth/token/", {"grant_type": "client_credentials", "scope": "foo/bar"}, headers=_basic(service_app)
    )
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"] == "invalid_scope"
    raw = base64.b64encode(f"{service_app.client_id}:wrong".encode()).decode()
    bad_secret = client.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {raw}"}
    )
    assert bad_secret.status_code == 401
    assert not AccessToken.objects.exists()


def test_client_secret_post(client, service_app) -> None:
    fields = {"grant_type": "client_credentials", "client_id": service_app.client_id, "client_secret": SECRET}
    assert client.post("/oauth/token/", fields).status_code == 200


# --- introspection and revocation -------------------------------------------------------------------


def test_introspection_of_a_live_token(client, user, confidential_app, service_app) -> None:
    body = login_flow(client, user, confidential_app, "openid patient/Observation.rs")
    info = introspect(client, service_app, body["access_token"])
    assert info["active"] is True
    assert set(info["scope"].split()) == {"openid", "patient/Observation.rs"}
    assert info["client_id"] == confidential_app.client_id
    assert info["username"] == "alice"


def test_introspection_of_an_unknown_token(client, service_app) -> None:
    assert introspect(client, service_app, "not-a-token") == {"active": False}


def test_introspection_needs_client_authentication(client, user, confidential_app) -> None:
    body = login_flow(client, user, confidential_app, "user/*.rs")
    client.logout()
    response = client.post("/oauth/introspect/", {"token": body["access_token"]})
    assert response.status_code in (401, 403)


def test_revocation_then_introspection(client, user, confidential_app, service_app) -> None:
    body = login_flow(client, user, confidential_app, "openid user/*.rs")
    assert introspect(client, service_app, body["access_token"])["active"] is True
    response = client.post(
        "/oauth/revoke_token/", {"token": body["access_token"]}, headers=_basic(confidential_app)
    )
    assert response.status_code == 200
    assert introspect(client, service_app, body["access_token"]) == {"active": False}


def test_revoking_a_refresh_token(client, user, public_app) -> None:
    body = login_flow(client, user, public_app, "user/*.rs")
    response = client.post(
        "/oauth/revoke_token/",
        {
            "token": body["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": public_app.client_id,
        },
    )
    assert response.status_code == 200
    assert RefreshToken.objects.get().revoked is not None
    refreshed = token_request(
        client, public_app, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 400


# --- OpenID Connect ---------------------------------------------------------------------------------


def test_openid_discovery_and_jwks(client) -> None:
    response = client.get("/oauth/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == "http://testserver/oauth/.well-known/jwks.json"
    assert config["userinfo_endpoint"] == "http://testserver/oauth/userinfo/"
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert "fhirUser" in config["claims_supported"]
    assert "patient/*.rs" in config["scopes_supported"]
    jwks = client.get("/oauth/.well-known/jwks.json").json()
    assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]


def test_userinfo_returns_fhir_user(client, patient_user, confidential_app) -> None:
    body = login_flow(client, patient_user, confidential_app, "openid fhirUser patient/*.rs")
    client.logout()
    response = client.get("/oauth/userinfo/", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert response.status_code == 200, response.content
    info = json.loads(response.content)
    assert info == {"sub": str(patient_user.pk), "fhirUser": "http://testserver/fhir/Patient/p1"}


@override_settings(FHIR_BASE_URL="https://fhir.example.org/r4/")
def test_fhir_user_uses_the_configured_base(client, patient_user, confidential_app) -> None:
    body = login_flow(client, patient_user, confidential_app, "openid fhirUser")
    claims = verify_id_token(client, body["id_token"], confidential_app)
    assert claims["fhirUser"] == "https://fhir.example.org/r4/Patient/p1"


def test_fhir_user_needs_the_fhir_user_scope(client, patient_user, confidential_app) -> None:
    body = login_flow(client, patient_user, confidential_app, "openid patient/*.rs")
    claims = verify_id_token(client, body["id_token"], confidential_app)
    assert "fhirUser" not in claims


def test_unlinked_user_has_no_fhir_user(client, user, confidential_app) -> None:
    body = login_flow(client, user, confidential_app, "openid fhirUser")
    claims = verify_id_token(client, body["id_token"], confidential_app)
    assert claims["sub"] == str(user.pk)
    assert "fhirUser" not in claims
    assert "patient" not in body


# --- SMART discovery --------------------------------------------------------------------------------


def test_smart_configuration(client) -> None:
    response = client.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    config = response.json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == "http://testserver/oauth/.well-known/jwks.json"
    assert config["authorization_endpoint"] == "http://testserver/oauth/authorize/"
    assert config["token_endpoint"] == "http://testserver/oauth/token/"
    assert config["revocation_endpoint"] == "http://testserver/oauth/revoke_token/"
    assert config["introspection_endpoint"] == "http://testserver/oauth/introspect/"
    assert config["userinfo_endpoint"] == "http://testserver/oauth/userinfo/"
    assert config["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert config["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert config["scopes_supported"] == SUPPORTED_SCOPES
    assert config["response_types_supported"] == ["code"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "permission-v1", "permission-v2", "sso-openid-connect"} <= set(
        config["capabilities"]
    )
    # The issuer agrees with OIDC discovery, so clients can check an ID token's `iss` against either.
    assert config["issuer"] == client.get("/oauth/.well-known/openid-configuration").json()["issuer"]


@override_settings(FHIR_BASE_URL="https://fhir.example.org/r4")
def test_smart_configuration_behind_a_configured_base(client) -> None:
    config = client.get("/fhir/.well-known/smart-configuration").json()
    assert config["issuer"] == "https://fhir.example.org/oauth"
    assert config["token_endpoint"] == "https://fhir.example.org/oauth/token/"
    assert config["jwks_uri"] == "https://fhir.example.org/oauth/.well-known/jwks.json"


def test_smart_configuration_methods(client) -> None:
    assert client.head("/fhir/.well-known/smart-configuration").status_code == 200
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/fhir/.well-known/smart-configuration").status_code == 405


# --- the token at the FHIR API ----------------------------------------------------------------------


def test_token_is_accepted_by_the_fhir_api(client, user, confidential_app) -> None:
    body = login_flow(client, user, confidential_app, "openid user/*.rs")
    client.logout()
    response = client.get("/fhir/metadata", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert response.status_code == 200, response.content
