"""history at instance, type and system level (http.html#history)."""

import time
from urllib.parse import parse_qs, urlparse

import pytest

from .factories import OrganizationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def _next(bundle):
    links = {link["relation"]: link["url"] for link in bundle.get("link", [])}
    return links.get("next")


def test_instance_history_newest_first_with_total(fhir):
    created = fhir.create(PatientFactory())
    for gender in ("male", "other"):
        fhir.put(f"Patient/{created['id']}", {**created, "gender": gender})
    bundle = fhir.get(f"Patient/{created['id']}/_history").json_body
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["3", "2", "1"]
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "PUT", "POST"]
    assert bundle["entry"][0]["response"]["etag"] == 'W/"3"'


def test_type_and_system_history(fhir):
    fhir.create(PatientFactory())
    fhir.create(OrganizationFactory())
    assert len(fhir.get("Patient/_history").json_body["entry"]) == 1
    assert len(fhir.get("_history").json_body["entry"]) == 2


def test_history_of_unknown_resource_is_404(fhir):
    assert fhir.get("Patient/none/_history").status_code == 404


def test_paging_walks_every_version_once_even_while_writing(fhir):
    ids = [fhir.create(PatientFactory())["id"] for _ in range(7)]
    seen = []
    url = "Patient/_history?_count=3"
    page = fhir.get(url).json_body
    while True:
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        fhir.create(PatientFactory())  # newer rows must not shift the pages being walked
        nxt = _next(page)
        if not nxt:
            break
        query = urlparse(nxt).query
        assert parse_qs(query)["_count"] == ["3"]
        page = fhir.get(f"Patient/_history?{query}").json_body
    assert sorted(seen) == sorted(ids)


def test_since_and_at(fhir):
    created = fhir.create(PatientFactory())
    first = fhir.get(f"Patient/{created['id']}").json_body["meta"]["lastUpdated"]
    time.sleep(0.01)
    fhir.put(f"Patient/{created['id']}", {**created, "gender": "male"})
    second = fhir.get(f"Patient/{created['id']}").json_body["meta"]["lastUpdated"]
    since = fhir.get(f"Patient/{created['id']}/_history?_since={second}").json_body
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["2"]
    at_first = fhir.get(f"Patient/{created['id']}/_history?_at={first}").json_body
    assert [e["resource"]["meta"]["versionId"] for e in at_first["entry"]] == ["1"]
    at_year = fhir.get(f"Patient/{created['id']}/_history?_at={first[:4]}").json_body
    assert len(at_year["entry"]) == 2


@pytest.mark.parametrize("query", ["_since=yesterday", "_at=2024-13", "_count=-1", "_page=zzz", "_sort=x"])
def test_bad_history_parameters_are_400(fhir, query):
    fhir.create(PatientFactory())
    response = fhir.get(f"Patient/_history?{query}")
    assert response.status_code == 400
    assert response.json_body["resourceType"] == "OperationOutcome"
