"""SMART scopes on a token are a ceiling over the REST API: interactions, searched types and the
types that `_include` may add."""

from __future__ import annotations

import base64

import pytest
from oauth2_provider.models import Application

from authz.models import ClientRole

pytestmark = pytest.mark.django_db

SECRET = "s3cret-of-the-agent"


@pytest.fixture
def agent(client):
    app = Application.objects.create(
        name="agent",
        client_id="agent",
        client_secret=SECRET,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    ClientRole.objects.create(application=app, role="Admin")

    def token(scope: str) -> dict:
        basic = base64.b64encode(f"agent:{SECRET}".encode()).decode()
        answer = client.post(
            "/oauth/token/",
            {"grant_type": "client_credentials", "scope": scope},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert answer.status_code == 200, answer.content
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    return token


def _seed(fhir):
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Ito"}]})
    fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
    )
    return patient["id"]


def test_read_only_scope_refuses_writes_and_other_types(client, fhir, agent):
    patient_id = _seed(fhir)
    headers = agent("system/Observation.rs")
    client.defaults.pop("HTTP_AUTHORIZATION")
    assert client.get("/fhir/Observation", headers=headers).status_code == 200
    created = client.post(
        "/fhir/Observation",
        '{"resourceType":"Observation","status":"final","code":{"text":"x"}}',
        content_type="application/fhir+json",
        headers=headers,
    )
    assert created.status_code == 403
    assert client.get(f"/fhir/Patient/{patient_id}", headers=headers).status_code == 403
    assert client.get("/fhir/Patient", headers=headers).status_code == 403
    # a search across all types needs a wildcard scope
    assert client.get("/fhir?_type=Observation", headers=headers).status_code == 200
    assert client.get("/fhir", headers=headers).status_code == 403


def test_include_adds_only_types_the_scopes_may_read(client, fhir, agent):
    _seed(fhir)
    client.defaults.pop("HTTP_AUTHORIZATION")
    narrow = agent("system/Observation.rs")
    bundle = client.get("/fhir/Observation?_include=Observation:subject", headers=narrow).json()
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Observation"}
    wide = agent("system/Observation.rs system/Patient.r")
    bundle = client.get("/fhir/Observation?_include=Observation:subject", headers=wide).json()
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Observation", "Patient"}


def test_token_without_resource_scopes_grants_nothing(client, agent):
    headers = agent("system/Observation.rs")  # the client exists; now a token with only OIDC-ish scopes
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    assert client.get("/fhir/Observation", headers=headers).status_code == 200
    from oauth2_provider.models import AccessToken

    AccessToken.objects.update(scope="offline_access")
    assert client.get("/fhir/Observation", headers=headers).status_code == 403
