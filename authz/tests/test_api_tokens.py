"""API tokens: minting by operation and command, one-time use and exchange, revocation, refusals."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections
from django.test import Client, override_settings
from django.utils import timezone

from authz import tokens
from authz.context import AccessContext
from authz.models import ApiToken
from resources.services import resource_create, resource_delete

pytestmark = pytest.mark.django_db


def _patient(fhir_id: str = "p1") -> str:
    from resources.services import resource_update

    resource_update(
        AccessContext.system("test"),
        resource_type="Patient",
        fhir_id=fhir_id,
        body={"resourceType": "Patient", "id": fhir_id, "name": [{"family": "Nakamura"}]},
    )
    return f"Patient/{fhir_id}"


def _get(client: Client, url: str, token: str | None = None, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(url, headers=headers)


def _assert_401(response, *, leaked: str = ""):
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith('Bearer realm="fhir"')
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    if leaked:
        assert leaked not in response.content.decode()
        assert leaked not in response["WWW-Authenticate"]


def test_secret_is_stored_only_as_hash():
    token, secret = tokens.mint(role="Admin")
    assert secret.startswith("fpt_") and len(secret) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert secret not in (stored.token_hash, stored.hint, str(stored))
    assert stored.token_hash == tokens.hash_secret(secret)


def test_admin_token_reads_and_writes(client):
    _, secret = tokens.mint(role="Admin")
    created = client.post(
        "/fhir/Patient",
        '{"resourceType":"Patient","gender":"other"}',
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert created.status_code == 201
    assert created["X-Request-Id"]


def test_no_credential_is_public_and_refused_with_a_challenge(client):
    response = _get(client, "/fhir/Patient")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="fhir"'
    assert _get(client, "/fhir/metadata").status_code == 200


def test_role_without_rules_is_forbidden(client):
    reference = _patient()
    _, secret = tokens.mint(role="Patient", identity=reference)
    response = _get(client, f"/fhir/{reference}", secret)
    # Authenticated, but the default rule set grants the Patient role nothing.
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer two parts",
        "Token fpt_abc",
        "Bearer " + "x" * 9000,
    ],
)
def test_malformed_header(client, header):
    response = client.get("/fhir/Patient", headers={"Authorization": header})
    _assert_401(response)


def test_unknown_token(client):
    _assert_401(_get(client, "/fhir/Patient", "fpt_" + "A" * 43), leaked="A" * 43)


def test_expired_token(client):
    token, secret = tokens.mint(role="Admin", ttl=60)
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    response = _get(client, "/fhir/Patient", secret)
    _assert_401(response, leaked=secret)
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def test_revoked_token_by_secret_and_by_id(client):
    _, first = tokens.mint(role="Admin")
    second, second_secret = tokens.mint(role="Admin")
    assert _get(client, "/fhir/Patient", first).status_code == 200
    out = StringIO()
    call_command("revoke_token", first, stdout=out)
    assert "Revoked" in out.getvalue() and first not in out.getvalue()
    call_command("revoke_token", str(second.pk), stdout=StringIO())
    _assert_401(_get(client, "/fhir/Patient", first), leaked=first)
    _assert_401(_get(client, "/fhir/Patient", second_secret))
    call_command("revoke_token", str(second.pk), stdout=StringIO())  # twice is harmless


def test_token_of_a_deleted_identity_authenticates_nobody(client):
    reference = _patient("gone")
    _, secret = tokens.mint(role="Admin", identity=reference)
    assert _get(client, "/fhir/Patient", secret).status_code == 200
    resource_delete(AccessContext.system("test"), resource_type="Patient", fhir_id="gone")
    response = _get(client, "/fhir/Patient", secret)
    _assert_401(response)
    assert "no longer exists" in response.json()["issue"][0]["diagnostics"]


def test_one_time_token_is_used_once(client):
    _, secret = tokens.mint(role="Admin", kind=ApiToken.ONE_TIME)
    assert _get(client, "/fhir/Patient", secret).status_code == 200
    response = _get(client, "/fhir/Patient", secret)
    _assert_401(response)
    assert "already been used" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_uses_of_a_one_time_token_exactly_one_succeeds():
    reference = _patient("race")
    _, secret = tokens.mint(role="Patient", identity=reference, kind=ApiToken.ONE_TIME)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def use():
        try:
            barrier.wait()
            response = Client().post(
                "/fhir/$exchange-token",
                "",
                content_type="application/fhir+json",
                headers={"Authorization": f"Bearer {secret}"},
            )
            statuses.append(response.status_code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 401, 401, 401, 401, 401]
    assert ApiToken.objects.filter(kind=ApiToken.DURABLE, identity=reference).count() == 1


def test_exchange_one_time_for_durable(client):
    reference = _patient()
    _, one_time = tokens.mint(
        role="Patient", identity=reference, kind=ApiToken.ONE_TIME, label="QR onboarding"
    )
    response = client.post(
        "/fhir/$exchange-token",
        '{"resourceType":"Parameters","parameter":[{"name":"label","valueString":"phone"}]}',
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {one_time}"},
    )
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    values = {p["name"]: p for p in response.json()["parameter"]}
    durable = values["token"]["valueString"]
    assert values["kind"]["valueCode"] == "durable"
    assert values["identity"]["valueReference"]["reference"] == reference
    assert values["label"]["valueString"] == "phone"
    row = ApiToken.objects.get(pk=int(values["id"]["valueString"]))
    assert row.exchanged_from is not None and row.role == "Patient"
    # the durable token authenticates (and is then refused by the default rules), the one-time is spent
    assert _get(client, f"/fhir/{reference}", durable).status_code == 403
    _assert_401(client.post("/fhir/$exchange-token", headers={"Authorization": f"Bearer {one_time}"}))


def test_exchange_needs_a_one_time_token(client):
    _, durable = tokens.mint(role="Admin")
    response = client.post("/fhir/$exchange-token", headers={"Authorization": f"Bearer {durable}"})
    assert response.status_code == 403
    assert client.post("/fhir/$exchange-token").status_code == 401
    assert _get(client, "/fhir/$exchange-token", durable).status_code == 405


def _mint(client, url, secret, body=None):
    return client.post(
        url,
        body or "",
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {secret}"},
    )


def test_api_token_operation_mints_for_an_identity(client):
    reference = _patient()
    _, admin = tokens.mint(role="Admin")
    body = (
        '{"resourceType":"Parameters","parameter":[{"name":"kind","valueCode":"one-time"},'
        '{"name":"lifetime","valueInteger":600},{"name":"label","valueString":"ward tablet"}]}'
    )
    response = _mint(client, f"/fhir/{reference}/$api-token", admin, body)
    assert response.status_code == 201, response.content
    values = {p["name"]: p for p in response.json()["parameter"]}
    assert values["kind"]["valueCode"] == "one-time"
    assert values["role"]["valueString"] == "Patient"
    assert "expires" in values
    token = ApiToken.objects.get(pk=int(values["id"]["valueString"]))
    assert token.identity == reference and token.label == "ward tablet"
    assert 590 <= (token.expires - timezone.now()).total_seconds() <= 600
    # an empty body means a durable token with the default lifetime (FHIR_API_TOKEN_TTL): it expires too
    plain = _mint(client, f"/fhir/{reference}/$api-token", admin)
    assert plain.status_code == 201
    values = {p["name"]: p for p in plain.json()["parameter"]}
    assert values["kind"]["valueCode"] == "durable"
    durable = ApiToken.objects.get(pk=int(values["id"]["valueString"]))
    assert durable.expires is not None and "expires" in values


@pytest.mark.parametrize("lifetime", [0, 3601])
@override_settings(FHIR_TOKEN_MAX_LIFETIME=3600)
def test_api_token_operation_refuses_lifetime_zero_or_above_the_cap(client, lifetime):
    """Issue 10, item 12: `lifetime: 0` minted a token that never expires; now every token expires."""
    reference = _patient()
    _, admin = tokens.mint(role="Admin", ttl=600)
    before = ApiToken.objects.count()
    body = f'{{"resourceType":"Parameters","parameter":[{{"name":"lifetime","valueInteger":{lifetime}}}]}}'
    response = _mint(client, f"/fhir/{reference}/$api-token", admin, body)
    assert response.status_code == 400, response.content
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "between 1 and 3600 seconds" in outcome["issue"][0]["diagnostics"]
    assert ApiToken.objects.count() == before
    # the cap itself is accepted
    body = '{"resourceType":"Parameters","parameter":[{"name":"lifetime","valueInteger":3600}]}'
    assert _mint(client, f"/fhir/{reference}/$api-token", admin, body).status_code == 201


@override_settings(FHIR_TOKEN_MAX_LIFETIME=3600, FHIR_API_TOKEN_TTL=1800)
def test_exchanged_token_expires(client):
    """Issue 10, item 12: a one-time token exchanged for a durable one gave a token without expiry."""
    reference = _patient()
    _, one_time = tokens.mint(role="Patient", identity=reference, kind=ApiToken.ONE_TIME, ttl=600)
    response = _mint(client, "/fhir/$exchange-token", one_time)
    assert response.status_code == 201, response.content
    values = {p["name"]: p for p in response.json()["parameter"]}
    row = ApiToken.objects.get(pk=int(values["id"]["valueString"]))
    assert 1790 <= (row.expires - timezone.now()).total_seconds() <= 1800
    # asking for "never" (or more than the cap) at the exchange is refused, and spends nothing new
    for lifetime in (0, 7200):
        _, one_time = tokens.mint(role="Patient", identity=reference, kind=ApiToken.ONE_TIME, ttl=600)
        refused = client.post(
            "/fhir/$exchange-token",
            f'{{"resourceType":"Parameters","parameter":[{{"name":"lifetime","valueInteger":{lifetime}}}]}}',
            content_type="application/fhir+json",
            headers={"Authorization": f"Bearer {one_time}"},
        )
        assert refused.status_code == 400, refused.content
        assert "FHIR_TOKEN_MAX_LIFETIME" in refused.json()["issue"][0]["diagnostics"]
    assert ApiToken.objects.filter(kind=ApiToken.DURABLE).count() == 1


@override_settings(FHIR_TOKEN_MAX_LIFETIME=3600)
def test_mint_refuses_no_expiry_everywhere():
    for ttl in (0, 3601, -1):
        with pytest.raises(tokens.TokenError):
            tokens.mint(role="Admin", ttl=ttl)
    for args in (["--ttl", "0"], ["--ttl", "3601"]):
        with pytest.raises(CommandError):
            call_command("issue_token", "--role", "Admin", *args, stdout=StringIO(), stderr=StringIO())
    assert ApiToken.objects.count() == 0
    token, _ = tokens.mint(role="Admin", ttl=3600)
    assert token.expires is not None


def test_api_token_operation_needs_generate_token(client):
    reference = _patient()
    _, patient_token = tokens.mint(role="Patient", identity=reference)
    assert _mint(client, f"/fhir/{reference}/$api-token", patient_token).status_code == 403
    assert client.post(f"/fhir/{reference}/$api-token").status_code == 401


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"resourceType":"Patient"}', "Parameters"),
        ('{"resourceType":"Parameters","parameter":[{"name":"kind","valueCode":"forever"}]}', "kind"),
        ('{"resourceType":"Parameters","parameter":[{"name":"lifetime","valueString":"10"}]}', "lifetime"),
        ('{"resourceType":"Parameters","parameter":[{"name":"lifetime","valueInteger":-5}]}', "lifetime"),
        ('{"resourceType":"Parameters","parameter":[{"name":"role","valueString":"Admin"}]}', "role"),
        ("not json", ""),
    ],
)
def test_api_token_operation_bad_input(client, body, message):
    reference = _patient()
    _, admin = tokens.mint(role="Admin")
    before = ApiToken.objects.count()
    response = _mint(client, f"/fhir/{reference}/$api-token", admin, body)
    assert response.status_code == 400, response.content
    assert message in response.json()["issue"][0]["diagnostics"]
    assert ApiToken.objects.count() == before


def test_api_token_operation_unknown_identity(client):
    _, admin = tokens.mint(role="Admin")
    assert _mint(client, "/fhir/Patient/nobody/$api-token", admin).status_code == 404
    assert _mint(client, "/fhir/Observation/x/$api-token", admin).status_code == 404


def test_issue_token_command_prints_only_the_token(client):
    reference = _patient()
    out, err = StringIO(), StringIO()
    call_command(
        "issue_token", "--role", "Patient", "--identity", reference, "--label", "cli", stdout=out, stderr=err
    )
    secret = out.getvalue().strip()
    assert secret.startswith("fpt_") and "\n" not in secret
    assert ApiToken.objects.get(token_hash=tokens.hash_secret(secret)).identity == reference


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "Not a role"],
        ["--role", "Patient", "--identity", "Patient/missing"],
        ["--role", "Patient", "--identity", "Observation/1"],
        ["--role", "Admin", "--ttl", "-1"],
        ["--role", "Admin", "--ttl", "0"],
    ],
)
def test_issue_token_command_bad_input_exits_2(args):
    with pytest.raises(CommandError) as raised:
        call_command("issue_token", *args, stdout=StringIO())
    assert raised.value.returncode == 2
    assert ApiToken.objects.count() == 0


def test_revoke_token_command_unknown_exits_2():
    for value in ("12345", "fpt_nope", "garbage"):
        with pytest.raises(CommandError) as raised:
            call_command("revoke_token", value, stdout=StringIO())
        assert raised.value.returncode == 2


def test_failed_attempts_are_logged_without_the_secret(client, caplog):
    _, secret = tokens.mint(role="Admin", ttl=60)
    tokens.revoke(secret)
    with caplog.at_level("WARNING"):
        _get(client, "/fhir/Patient", secret)
    assert "Authentication refused" in caplog.text
    assert secret not in caplog.text


def test_identity_must_exist_when_minting():
    with pytest.raises(tokens.TokenError):
        tokens.mint(role="Patient", identity="Patient/none")
    created = resource_create(
        AccessContext.system("test"), resource_type="Device", body={"resourceType": "Device"}
    )
    token, _ = tokens.mint(role="Device", identity=f"Device/{created.stored.fhir_id}")
    assert token.identity.startswith("Device/")


def test_upgrade_gives_tokens_without_expiry_one(settings):
    """Tokens minted before every token expired (expires NULL) get FHIR_TOKEN_MAX_LIFETIME from the
    upgrade; revoked ones are left alone."""
    import importlib

    from django.apps import apps

    token, _ = tokens.mint(role="Admin", ttl=600)
    revoked, _ = tokens.mint(role="Admin", ttl=600)
    ApiToken.objects.filter(pk__in=[token.pk, revoked.pk]).update(expires=None)
    tokens.revoke(str(revoked.pk))
    migration = importlib.import_module("authz.migrations.0006_tokens_without_expiry_expire")
    migration.give_expiry(apps, None)
    token.refresh_from_db()
    revoked.refresh_from_db()
    left = (token.expires - timezone.now()).total_seconds()
    assert settings.FHIR_TOKEN_MAX_LIFETIME - 60 <= left <= settings.FHIR_TOKEN_MAX_LIFETIME
    assert revoked.expires is None
