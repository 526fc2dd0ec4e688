"""Project-wide pytest fixtures: a FHIR client over Django's test client, authenticated as the
operator (an Admin API token) unless a test says otherwise."""

from __future__ import annotations

import json

import pytest

from resources import fhirjson

FHIR_JSON = "application/fhir+json"


class Fhir:
    """Small helper around the Django test client that speaks FHIR JSON."""

    def __init__(self, client):
        self.client = client

    def _send(self, method: str, url: str, body=None, *, content_type: str = FHIR_JSON, headers=None):
        data = body if isinstance(body, (str, bytes)) or body is None else fhirjson.dumps(body)
        kwargs = {"content_type": content_type} if data is not None else {}
        response = getattr(self.client, method)(
            "/fhir/" + url.lstrip("/") if url else "/fhir", data, headers=headers or {}, **kwargs
        )
        response.json_body = json.loads(response.content) if response.content else None
        return response

    def get(self, url, headers=None):
        response = self.client.get("/fhir/" + url.lstrip("/"), headers=headers or {})
        response.json_body = json.loads(response.content) if response.content else None
        return response

    def post(self, url, body, **kw):
        return self._send("post", url, body, **kw)

    def put(self, url, body, **kw):
        return self._send("put", url, body, **kw)

    def patch(self, url, body, **kw):
        return self._send(
            "patch", url, body, content_type=kw.pop("content_type", "application/json-patch+json"), **kw
        )

    def delete(self, url, headers=None):
        return self._send("delete", url, headers=headers)

    def create(self, body) -> dict:
        response = self.post(body["resourceType"], body)
        assert response.status_code == 201, response.content
        return response.json_body


def bearer(role: str, identity: str = "") -> str:
    """An Authorization header value for a freshly minted API token."""
    from authz import tokens

    _, secret = tokens.mint(role=role, identity=identity, created_by="tests")
    return f"Bearer {secret}"


@pytest.fixture
def fhir(client, db) -> Fhir:
    client.defaults["HTTP_AUTHORIZATION"] = bearer("Admin")
    return Fhir(client)


@pytest.fixture
def anonymous(client) -> Fhir:
    """A caller without credentials (role Public)."""
    return Fhir(client)
