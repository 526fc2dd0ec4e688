"""Identity resolution: link, FHIR-user claim, identifier, email, auto-create; ambiguity refused."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from authz.context import AccessContext
from authz.identity import identity_alive, local_identity, resolve_external
from authz.issuers import IssuerConfig
from authz.models import IdentityLink
from resources.models import Resource
from resources.outcomes import FhirError
from resources.services import resource_delete, resource_update

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.org/realms/clinic"
SYSTEM = "https://idp.example.org/subject"


def _config(**overrides) -> IssuerConfig:
    values = {"issuer": ISSUER, "audience": "fhir", "jwks_url": "https://idp.example.org/jwks"}
    values.update(overrides)
    return IssuerConfig(**values)


def _put(resource_type: str, fhir_id: str, **fields) -> str:
    body = {"resourceType": resource_type, "id": fhir_id, **fields}
    resource_update(AccessContext.system("test"), resource_type=resource_type, fhir_id=fhir_id, body=body)
    return f"{resource_type}/{fhir_id}"


def _refused(config: IssuerConfig, claims: dict) -> str:
    with pytest.raises(FhirError) as raised:
        resolve_external(config, claims)
    assert raised.value.status == 401
    assert "WWW-Authenticate" in raised.value.headers
    return raised.value.issues[0].diagnostics


def test_explicit_link_wins_over_every_claim():
    linked = _put("Practitioner", "dr-link")
    _put("Patient", "claimed")
    IdentityLink.objects.create(issuer=ISSUER, subject="u1", reference=linked)
    resolved = resolve_external(_config(), {"sub": "u1", "fhirUser": "Patient/claimed"})
    assert (resolved.reference, resolved.role) == (linked, "Practitioner")


def test_link_with_a_role_only_and_link_role_overrides_type():
    IdentityLink.objects.create(issuer=ISSUER, subject="ops", role="Admin")
    assert resolve_external(_config(), {"sub": "ops"}).role == "Admin"
    patient = _put("Patient", "p-res")
    IdentityLink.objects.create(issuer=ISSUER, subject="res", reference=patient, role="Researcher")
    resolved = resolve_external(_config(), {"sub": "res"})
    assert (resolved.reference, resolved.role) == (patient, "Researcher")


@pytest.mark.parametrize("claim", ["Patient/p7", "https://fhir.example.org/fhir/Patient/p7", "Patient/p7/"])
def test_fhir_user_claim(claim):
    _put("Patient", "p7")
    resolved = resolve_external(_config(), {"sub": "u7", "fhirUser": claim})
    assert (resolved.reference, resolved.role) == ("Patient/p7", "Patient")


def test_fhir_user_claim_naming_nothing_or_a_non_identity_is_refused():
    assert "no longer exists" in _refused(_config(), {"sub": "u", "fhirUser": "Patient/none"})
    assert "does not name" in _refused(_config(), {"sub": "u", "fhirUser": "Observation/1"})


def test_deleted_identity_authenticates_nobody():
    reference = _put("Patient", "left")
    IdentityLink.objects.create(issuer=ISSUER, subject="u-left", reference=reference)
    resource_delete(AccessContext.system("test"), resource_type="Patient", fhir_id="left")
    assert not identity_alive(reference)
    _refused(_config(), {"sub": "u-left"})
    _refused(_config(), {"sub": "u-other", "fhirUser": reference})


def test_identifier_match_and_ambiguity():
    _put("Practitioner", "dr-a", identifier=[{"system": SYSTEM, "value": "alice"}])
    config = _config(identifier_system=SYSTEM)
    assert resolve_external(config, {"sub": "alice"}).reference == "Practitioner/dr-a"
    _put("Patient", "also-alice", identifier=[{"system": SYSTEM, "value": "alice"}])
    assert "more than one" in _refused(config, {"sub": "alice"})
    # another system's identifier with the same value is not a match
    _put("Patient", "bob", identifier=[{"system": "urn:other", "value": "bob"}])
    assert "not mapped" in _refused(config, {"sub": "bob"})


def test_email_match_and_ambiguity():
    _put(
        "RelatedPerson",
        "rp1",
        patient={"reference": "Patient/x"},
        telecom=[{"system": "email", "value": "kim@example.org"}],
    )
    resolved = resolve_external(
        _config(), {"sub": "k", "email": "Kim@example.org".lower(), "email_verified": True}
    )
    assert (resolved.reference, resolved.role) == ("RelatedPerson/rp1", "RelatedPerson")
    _put("Patient", "kim2", telecom=[{"system": "email", "value": "kim@example.org"}])
    assert "more than one" in _refused(
        _config(), {"sub": "k", "email": "kim@example.org", "email_verified": True}
    )
    # an unverified email is not trusted for matching; matching can be switched off
    _put("Patient", "solo", telecom=[{"system": "email", "value": "solo@example.org"}])
    assert "not mapped" in _refused(
        _config(), {"sub": "s", "email": "solo@example.org", "email_verified": False}
    )
    assert "not mapped" in _refused(
        _config(match_email=False), {"sub": "s", "email": "solo@example.org", "email_verified": True}
    )


@pytest.mark.parametrize(
    "claim",
    [
        {},
        {"email_verified": False},
        {"email_verified": "false"},
        {"email_verified": None},
        {"email_verified": 1},
        {"email_verified": "yes"},
        {"email_verified": "True "},
    ],
)
def test_unverified_email_never_matches(claim):
    """Issue 10, item 12: a missing or "false" `email_verified` was taken as verified, so anyone who
    could type a patient's address at the issuer signed in as that patient."""
    _put("Patient", "victim", telecom=[{"system": "email", "value": "victim@example.org"}])
    claims = {"sub": "attacker", "email": "victim@example.org", **claim}
    assert "not mapped" in _refused(_config(), claims)


@pytest.mark.parametrize("verified", [True, "true"])
def test_verified_email_matches(verified):
    _put("Patient", "vera", telecom=[{"system": "email", "value": "vera@example.org"}])
    claims = {"sub": "v", "email": "vera@example.org", "email_verified": verified}
    assert resolve_external(_config(), claims).reference == "Patient/vera"


def test_auto_create_keeps_only_a_verified_email():
    config = _config(auto_create="Patient", identifier_system=SYSTEM)
    resolve_external(config, {"sub": "u-1", "email": "unproved@example.org"})
    resolve_external(config, {"sub": "u-2", "email": "proved@example.org", "email_verified": True})
    bodies = " ".join(r.body for r in Resource.objects.system("test").filter(resource_type="Patient"))
    assert "unproved@example.org" not in bodies and "proved@example.org" in bodies


def test_no_identity_uses_mapped_or_default_role():
    config = _config(
        roles_claim="realm_access.roles", role_map={"research": "Researcher"}, default_role="Guest"
    )
    assert (
        resolve_external(config, {"sub": "r", "realm_access": {"roles": ["x", "research"]}}).role
        == "Researcher"
    )
    assert resolve_external(config, {"sub": "g"}).role == "Guest"
    # a role name the map does not know is ignored, even one that looks like a platform role
    assert resolve_external(config, {"sub": "a", "realm_access": {"roles": ["Admin"]}}).role == "Guest"
    assert "not mapped" in _refused(_config(), {"sub": "nobody"})


def test_mapped_role_overrides_identity_type():
    _put("Practitioner", "dr-r", identifier=[{"system": SYSTEM, "value": "rita"}])
    config = _config(identifier_system=SYSTEM, roles_claim="roles", role_map={"auditor": "Auditor"})
    resolved = resolve_external(config, {"sub": "rita", "roles": "staff auditor"})
    assert (resolved.reference, resolved.role) == ("Practitioner/dr-r", "Auditor")


def test_auto_create_once_per_subject():
    config = _config(auto_create="Patient", identifier_system=SYSTEM)
    claims = {
        "sub": "new-1",
        "given_name": "Ana",
        "family_name": "Silva",
        "email": "ana@example.org",
        "email_verified": True,
    }
    first = resolve_external(config, claims)
    assert first.role == "Patient" and first.reference.startswith("Patient/")
    again = resolve_external(config, claims)
    assert again.reference == first.reference
    assert Resource.objects.system("test").filter(resource_type="Patient").count() == 1
    body = Resource.objects.system("test").get(resource_type="Patient").body
    assert "Silva" in body and SYSTEM in body and "ana@example.org" in body
    assert IdentityLink.objects.get(issuer=ISSUER, subject="new-1").reference == first.reference


def test_auto_create_is_off_by_default():
    assert "not mapped" in _refused(_config(), {"sub": "new-2"})
    assert not Resource.objects.system("test").exists()


def test_local_user_identity():
    user = get_user_model().objects.create_user("nina", email="nina@example.org", password="x")
    assert local_identity(user) is None
    _put("Patient", "nina", telecom=[{"system": "email", "value": "nina@example.org"}])
    assert local_identity(user).reference == "Patient/nina"
    IdentityLink.objects.create(issuer=IdentityLink.LOCAL, subject=str(user.pk), role="Admin")
    resolved = local_identity(user)
    assert (resolved.reference, resolved.role) == ("", "Admin")
