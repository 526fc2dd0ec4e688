"""Type-level search by _id and identifier, paging, and reporting of unsupported parameters."""

from urllib.parse import urlparse

import pytest

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_search_by_identifier_forms(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:a", "value": "1"}]))
    fhir.create(PatientFactory(identifier=[{"system": "urn:b", "value": "1"}]))
    assert fhir.get("Patient?identifier=urn:a|1").json_body["total"] == 1
    assert fhir.get("Patient?identifier=1").json_body["total"] == 2
    assert fhir.get("Patient?identifier=urn:a|").json_body["total"] == 1
    assert fhir.get(f"Patient?_id={created['id']}").json_body["entry"][0]["resource"]["id"] == created["id"]
    assert fhir.get("Patient?identifier=urn:a|1,urn:b|1").json_body["total"] == 2


def test_unsupported_parameter_is_reported_and_left_out_of_self_link(fhir):
    fhir.create(PatientFactory())
    bundle = fhir.get("Patient?colour=blue").json_body
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "colour" not in self_link


def test_strict_handling_refuses_unsupported_parameter(fhir):
    response = fhir.get("Patient?colour=blue", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "colour" in response.json_body["issue"][0]["diagnostics"]


def test_paging_with_next_links(fhir):
    ids = {fhir.create(PatientFactory())["id"] for _ in range(5)}
    seen = []
    bundle = fhir.get("Patient?_count=2").json_body
    while True:
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        bundle = fhir.get("Patient?" + urlparse(links["next"]).query).json_body
    assert sorted(seen) == sorted(ids)


def test_summary_count(fhir):
    for _ in range(3):
        fhir.create(PatientFactory())
    bundle = fhir.get("Patient?_summary=count").json_body
    assert bundle["total"] == 3
    assert "entry" not in bundle


def test_post_search(fhir):
    fhir.create(PatientFactory(identifier=[{"system": "urn:a", "value": "9"}]))
    response = fhir.client.post(
        "/fhir/Patient/_search", "identifier=urn%3Aa%7C9", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert response.json()["total"] == 1
