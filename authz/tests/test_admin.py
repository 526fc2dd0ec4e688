"""Console: a token minted in the admin shows its secret once and stores only the hash."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from authz import tokens
from authz.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("op", "op@example.org", "pw")
    client.force_login(user)
    return client


def test_token_minted_in_console_is_shown_once(operator):
    response = operator.post(
        "/admin/authz/apitoken/add/",
        {"role": "Admin", "identity": "", "kind": "durable", "ttl": "", "label": "ci"},
    )
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    secret = re.search(rb"fpt_[A-Za-z0-9_\-]{43}", response.content).group().decode()
    token = ApiToken.objects.get()
    assert token.token_hash == tokens.hash_secret(secret) and token.created_by == "console:op"
    page = operator.get(f"/admin/authz/apitoken/{token.pk}/change/")
    assert page.status_code == 200 and secret.encode() not in page.content


def test_console_refuses_unknown_identity_and_revokes(operator):
    response = operator.post(
        "/admin/authz/apitoken/add/",
        {"role": "Patient", "identity": "Patient/nope", "kind": "durable", "label": ""},
    )
    assert b"does not exist" in response.content and not ApiToken.objects.exists()
    token, _ = tokens.mint(role="Admin")
    operator.post("/admin/authz/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked is not None
