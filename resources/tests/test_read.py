"""read and vread (http.html#read, #vread), with _summary, _elements, _pretty and conditional reads."""

import pytest

from .factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_read_returns_stored_body_with_version_headers(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.get(f"Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json_body == created
    assert response["ETag"] == 'W/"1"'
    assert "GMT" in response["Last-Modified"]


def test_read_unknown_is_404_outcome(fhir):
    response = fhir.get("Patient/nope")
    assert response.status_code == 404
    assert response.json_body["resourceType"] == "OperationOutcome"
    assert response.json_body["issue"][0]["code"] == "not-found"


def test_unknown_type_is_404(fhir):
    response = fhir.get("Spaceship/1")
    assert response.status_code == 404
    assert "Spaceship" in response.json_body["issue"][0]["diagnostics"]


def test_vread_each_version(fhir):
    created = fhir.create(PatientFactory())
    updated = {**created, "gender": "male"}
    assert fhir.put(f"Patient/{created['id']}", updated).status_code == 200
    v1 = fhir.get(f"Patient/{created['id']}/_history/1")
    v2 = fhir.get(f"Patient/{created['id']}/_history/2")
    assert v1.json_body["gender"] == "female"
    assert v2.json_body["gender"] == "male"
    assert v2["ETag"] == 'W/"2"'
    assert fhir.get(f"Patient/{created['id']}/_history/3").status_code == 404
    assert fhir.get(f"Patient/{created['id']}/_history/x").status_code == 404


def test_if_none_match_gives_304(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.get(f"Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    response = fhir.get(f"Patient/{created['id']}", headers={"If-None-Match": 'W/"0"'})
    assert response.status_code == 200


def test_if_modified_since(fhir):
    created = fhir.create(PatientFactory())
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    past = "Mon, 01 Jan 1990 00:00:00 GMT"
    assert fhir.get(f"Patient/{created['id']}", headers={"If-Modified-Since": future}).status_code == 304
    assert fhir.get(f"Patient/{created['id']}", headers={"If-Modified-Since": past}).status_code == 200


def test_summary_true_keeps_summary_elements_and_tags_subsetted(fhir):
    created = fhir.create(
        PatientFactory(
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
        )
    )
    body = fhir.get(f"Patient/{created['id']}?_summary=true").json_body
    assert "name" in body and "gender" in body
    assert "text" not in body
    assert any(tag["code"] == "SUBSETTED" for tag in body["meta"]["tag"])


def test_summary_data_drops_text_and_text_keeps_it(fhir):
    created = fhir.create(
        PatientFactory(
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
        )
    )
    data = fhir.get(f"Patient/{created['id']}?_summary=data").json_body
    assert "text" not in data and "name" in data
    text = fhir.get(f"Patient/{created['id']}?_summary=text").json_body
    assert "text" in text and "name" not in text


def test_elements(fhir):
    created = fhir.create(PatientFactory())
    body = fhir.get(f"Patient/{created['id']}?_elements=gender").json_body
    assert body["gender"] == "female"
    assert "name" not in body
    assert body["id"] == created["id"]


def test_bad_summary_value_is_400(fhir):
    created = fhir.create(PatientFactory())
    assert fhir.get(f"Patient/{created['id']}?_summary=maybe").status_code == 400


def test_pretty(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.get(f"Patient/{created['id']}?_pretty=true")
    assert b'\n  "resourceType"' in response.content


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_is_406(fhir, accept):
    created = fhir.create(PatientFactory())
    response = fhir.get(f"Patient/{created['id']}", headers={"Accept": accept})
    assert response.status_code == 406
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_format_xml_is_406(fhir):
    assert fhir.get("metadata?_format=xml").status_code == 406


@pytest.mark.parametrize(
    "accept", ["application/fhir+json", "application/json", "*/*", "text/html,*/*;q=0.8"]
)
def test_json_accept_variants(fhir, accept):
    assert fhir.get("metadata", headers={"Accept": accept}).status_code == 200


@pytest.mark.parametrize("suffix", ["_history/99999999999999999999999", "_history/-1", "_history/1.5"])
def test_absurd_version_ids_are_404(fhir, suffix):
    created = fhir.create(PatientFactory())
    assert fhir.get(f"Patient/{created['id']}/{suffix}").status_code == 404


@pytest.mark.parametrize(
    "query", ["_page=99999999999999999999999", "_page=1.2", "_count=99999999999999999999"]
)
def test_absurd_paging_values_do_not_fail(fhir, query):
    fhir.create(PatientFactory())
    assert fhir.get(f"Patient?{query}").status_code in (200, 400)
    assert fhir.get(f"Patient/_history?{query}").status_code in (200, 400)
