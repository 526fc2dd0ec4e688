"""search over HTTP (https://hl7.org/fhir/R4/http.html#search, https://hl7.org/fhir/R4/search.html):
type, system and compartment search, POST _search, paging links, _summary/_elements, includes,
$everything, the CapabilityStatement's search entries, and the handling of unknown parameters."""

from urllib.parse import parse_qsl, urlparse

import pytest

from .factories import ObservationFactory, OrganizationFactory, PatientFactory

pytestmark = pytest.mark.django_db


def links(bundle: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def follow(fhir, url: str):
    parsed = urlparse(url)
    return fhir.get(parsed.path.removeprefix("/fhir") + ("?" + parsed.query if parsed.query else ""))


def by_mode(bundle: dict, mode: str) -> list[dict]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def resource_ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in by_mode(bundle, mode)]


# --- type search --------------------------------------------------------------------------------


def test_search_by_identifier_forms(fhir):
    created = fhir.create(PatientFactory(identifier=[{"system": "urn:a", "value": "1"}]))
    fhir.create(PatientFactory(identifier=[{"system": "urn:b", "value": "1"}]))
    assert fhir.get("Patient?identifier=urn:a|1").json_body["total"] == 1
    assert fhir.get("Patient?identifier=1").json_body["total"] == 2
    assert fhir.get("Patient?identifier=urn:a|").json_body["total"] == 1
    assert fhir.get(f"Patient?_id={created['id']}").json_body["entry"][0]["resource"]["id"] == created["id"]
    assert fhir.get("Patient?identifier=urn:a|1,urn:b|1").json_body["total"] == 2


def test_entries_embed_the_stored_body_with_full_url(fhir):
    created = fhir.create(PatientFactory())
    response = fhir.get(f"Patient?_id={created['id']}")
    assert response["Content-Type"].startswith("application/fhir+json")
    entry = response.json_body["entry"][0]
    assert entry["resource"] == created
    assert entry["fullUrl"].endswith(f"/fhir/Patient/{created['id']}")
    assert entry["search"] == {"mode": "match"}
    assert response.json_body["type"] == "searchset"


def test_unsupported_parameter_is_reported_and_left_out_of_self_link(fhir):
    fhir.create(PatientFactory())
    bundle = fhir.get("Patient?colour=blue&gender=female").json_body
    outcome = by_mode(bundle, "outcome")
    assert outcome and "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    assert len(by_mode(bundle, "match")) == 1
    self_link = links(bundle)["self"]
    assert "colour" not in self_link and "gender=female" in self_link


def test_strict_handling_refuses_unsupported_parameter(fhir):
    response = fhir.get("Patient?colour=blue", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "colour" in response.json_body["issue"][0]["diagnostics"]


def test_malformed_value_is_400_even_without_strict(fhir):
    response = fhir.get("Patient?birthdate=not-a-date")
    assert response.status_code == 400
    assert "birthdate" in response.json_body["issue"][0]["diagnostics"]


def test_post_search_combines_query_and_form(fhir):
    fhir.create(PatientFactory(identifier=[{"system": "urn:a", "value": "9"}], gender="male"))
    fhir.create(PatientFactory(identifier=[{"system": "urn:a", "value": "9"}], gender="female"))
    response = fhir.client.post(
        "/fhir/Patient/_search?gender=male",
        "identifier=urn%3Aa%7C9",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == 1
    self_query = dict(parse_qsl(urlparse(links(bundle)["self"]).query))
    assert self_query == {"gender": "male", "identifier": "urn:a|9"}


def test_post_search_refuses_other_bodies(fhir):
    response = fhir.client.post("/fhir/Patient/_search", "{}", content_type="application/json")
    assert response.status_code == 415


# --- paging -------------------------------------------------------------------------------------


def test_paging_links_walk_forward_and_back(fhir):
    made = [fhir.create(PatientFactory(name=[{"family": f"F{i}"}]))["id"] for i in range(5)]
    first = fhir.get("Patient?_count=2&_sort=family").json_body
    assert set(links(first)) == {"self", "first", "next"}
    seen, bundle = [], first
    while True:
        seen += resource_ids(bundle)
        if "next" not in links(bundle):
            break
        bundle = follow(fhir, links(bundle)["next"]).json_body
    assert seen == made
    assert "previous" in links(bundle)
    back = follow(fhir, links(bundle)["previous"]).json_body
    assert resource_ids(back) == made[2:4]
    assert resource_ids(follow(fhir, links(back)["first"]).json_body) == made[:2]
    again = follow(fhir, links(back)["self"]).json_body
    assert resource_ids(again) == made[2:4]


def test_paging_while_inserting(fhir):
    made = [fhir.create(PatientFactory())["id"] for _ in range(5)]
    seen, bundle = [], fhir.get("Patient?_count=2").json_body
    while True:
        seen += resource_ids(bundle)
        fhir.create(PatientFactory())
        if "next" not in links(bundle) or len(seen) >= 20:
            break
        bundle = follow(fhir, links(bundle)["next"]).json_body
    assert seen[:5] == made
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("cursor", ["nonsense", "eyJ9.abc", "%00", "1.2.3"])
def test_bad_cursor_is_400(fhir, cursor):
    fhir.create(PatientFactory())
    response = fhir.get(f"Patient?_page={cursor}")
    assert response.status_code == 400
    assert response.json_body["resourceType"] == "OperationOutcome"


def test_count_is_capped(fhir, settings):
    settings.FHIR_MAX_COUNT = 2
    for _ in range(3):
        fhir.create(PatientFactory())
    bundle = fhir.get("Patient?_count=50").json_body
    assert len(bundle["entry"]) == 2 and "next" in links(bundle)
    assert fhir.get("Patient?_count=-1").status_code == 400


def test_total_modes(fhir):
    for _ in range(3):
        fhir.create(PatientFactory())
    assert "total" not in fhir.get("Patient?_count=2").json_body
    assert fhir.get("Patient?_count=2&_total=accurate").json_body["total"] == 3
    assert isinstance(fhir.get("Patient?_count=2&_total=estimate").json_body["total"], int)
    assert "total" not in fhir.get("Patient?_count=2&_total=none").json_body
    assert fhir.get("Patient?_count=10").json_body["total"] == 3  # free: the first page is not full
    assert fhir.get("Patient?_total=some").status_code == 400


def test_sort_errors_are_400(fhir):
    assert fhir.get("Patient?_sort=colour").status_code == 400
    assert fhir.get("Patient?_sort=").status_code == 400


# --- _summary / _elements -----------------------------------------------------------------------


def test_summary_count(fhir):
    for _ in range(3):
        fhir.create(PatientFactory())
    bundle = fhir.get("Patient?_summary=count").json_body
    assert bundle["total"] == 3
    assert "entry" not in bundle


def test_summary_and_elements(fhir):
    created = fhir.create(
        PatientFactory(
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
        )
    )
    summary = fhir.get("Patient?_summary=true").json_body["entry"][0]["resource"]
    assert "name" in summary and "text" not in summary
    assert any(t.get("code") == "SUBSETTED" for t in summary["meta"]["tag"])
    data = fhir.get("Patient?_summary=data").json_body["entry"][0]["resource"]
    assert "text" not in data and "birthDate" in data
    elements = fhir.get("Patient?_elements=gender").json_body["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "gender"}
    assert elements["id"] == created["id"]
    text = fhir.get("Patient?_summary=text").json_body["entry"][0]["resource"]
    assert "text" in text and "name" not in text
    assert fhir.get("Patient?_summary=false").json_body["entry"][0]["resource"] == created
    assert fhir.get("Patient?_summary=maybe").status_code == 400


def test_elements_leave_included_resources_whole(fhir):
    org = fhir.create(OrganizationFactory())
    fhir.create(PatientFactory(managingOrganization={"reference": f"Organization/{org['id']}"}))
    bundle = fhir.get("Patient?_elements=gender&_include=Patient:organization").json_body
    assert set(by_mode(bundle, "match")[0]["resource"]) == {"resourceType", "id", "meta", "gender"}
    assert by_mode(bundle, "include")[0]["resource"] == org


# --- includes -----------------------------------------------------------------------------------


def test_include_and_revinclude_entries(fhir):
    patient = fhir.create(PatientFactory())
    obs = [
        fhir.create(ObservationFactory(subject={"reference": f"Patient/{patient['id']}"})) for _ in range(2)
    ]
    bundle = fhir.get("Observation?_include=Observation:subject").json_body
    assert resource_ids(bundle) == [o["id"] for o in obs]
    assert resource_ids(bundle, "include") == [patient["id"]]
    assert "_include=Observation%3Asubject" in links(bundle)["self"]
    bundle = fhir.get(f"Patient?_id={patient['id']}&_revinclude=Observation:subject").json_body
    assert resource_ids(bundle, "include") == [o["id"] for o in obs]
    iterate = fhir.get("Observation?_include=Observation:subject&_include:iterate=Patient:organization")
    assert iterate.status_code == 200


def test_unknown_include_is_reported_or_refused(fhir):
    fhir.create(ObservationFactory())
    bundle = fhir.get("Observation?_include=Observation:colour").json_body
    assert "_include" in by_mode(bundle, "outcome")[0]["resource"]["issue"][0]["diagnostics"]
    response = fhir.get("Observation?_include=Observation:colour", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert fhir.get("Observation?_include=junk").status_code == 400


def test_contained_is_not_supported(fhir):
    fhir.create(PatientFactory())
    bundle = fhir.get("Patient?_contained=true").json_body
    assert by_mode(bundle, "outcome")
    response = fhir.get("Patient?_contained=true", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "_contained" in response.json_body["issue"][0]["diagnostics"]
    assert not by_mode(fhir.get("Patient?_contained=false").json_body, "outcome")


# --- system search ------------------------------------------------------------------------------


def test_system_search(fhir):
    patient = fhir.create(PatientFactory())
    org = fhir.create(OrganizationFactory())
    fhir.create(ObservationFactory())
    bundle = fhir.get("?_type=Patient,Organization&_sort=_lastUpdated").json_body
    assert resource_ids(bundle) == [patient["id"], org["id"]]
    assert links(bundle)["self"].split("?")[0].endswith("/fhir")
    bundle = fhir.get(f"?_id={org['id']}").json_body
    assert resource_ids(bundle) == [org["id"]]
    response = fhir.client.post(
        "/fhir/_search", "_type=Organization", content_type="application/x-www-form-urlencoded"
    )
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [org["id"]]


def test_system_search_without_type_takes_only_common_parameters(fhir):
    fhir.create(PatientFactory())
    bundle = fhir.get("?gender=female").json_body
    assert "gender" in by_mode(bundle, "outcome")[0]["resource"]["issue"][0]["diagnostics"]
    assert fhir.get("?gender=female", headers={"Prefer": "handling=strict"}).status_code == 400


def test_batch_still_posts_to_the_base(fhir):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
    response = fhir.post("", bundle)
    assert response.status_code == 200
    assert response.json_body["type"] == "batch-response"
    assert fhir.client.delete("/fhir").status_code == 405


# --- compartments -------------------------------------------------------------------------------


def test_compartment_search(fhir):
    alice = fhir.create(PatientFactory())
    bob = fhir.create(PatientFactory())
    mine = fhir.create(ObservationFactory(subject={"reference": f"Patient/{alice['id']}"}))
    fhir.create(ObservationFactory(subject={"reference": f"Patient/{bob['id']}"}))
    bundle = fhir.get(f"Patient/{alice['id']}/Observation").json_body
    assert resource_ids(bundle) == [mine["id"]]
    assert links(bundle)["self"].endswith(f"/Patient/{alice['id']}/Observation")
    assert resource_ids(fhir.get(f"Patient/{alice['id']}/Observation?code=8867-4").json_body) == [mine["id"]]
    assert resource_ids(fhir.get(f"Patient/{alice['id']}/Observation?code=other").json_body) == []
    assert resource_ids(fhir.get(f"Patient/{alice['id']}/*").json_body) == [alice["id"], mine["id"]]
    response = fhir.client.post(
        f"/fhir/Patient/{alice['id']}/Observation/_search",
        "",
        content_type="application/x-www-form-urlencoded",
    )
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [mine["id"]]


def test_compartment_errors(fhir):
    assert fhir.get("Organization/1/Observation").status_code == 404
    assert fhir.get("Patient/1/Organization").status_code == 400
    assert fhir.get("Patient/1/Nope").status_code == 404


def test_instance_paths_keep_working(fhir):
    created = fhir.create(PatientFactory())
    assert fhir.get(f"Patient/{created['id']}").status_code == 200
    assert fhir.get(f"Patient/{created['id']}/_history").status_code == 200
    assert fhir.get(f"Patient/{created['id']}/_history/1").status_code == 200


# --- $everything --------------------------------------------------------------------------------


def test_everything(fhir):
    org = fhir.create(OrganizationFactory())
    alice = fhir.create(PatientFactory(managingOrganization={"reference": f"Organization/{org['id']}"}))
    obs = fhir.create(ObservationFactory(subject={"reference": f"Patient/{alice['id']}"}))
    other = fhir.create(PatientFactory())
    fhir.create(ObservationFactory(subject={"reference": f"Patient/{other['id']}"}))
    bundle = fhir.get(f"Patient/{alice['id']}/$everything").json_body
    assert bundle["type"] == "searchset"
    assert resource_ids(bundle) == [alice["id"], obs["id"]]
    assert resource_ids(bundle, "include") == [org["id"]]
    assert links(bundle)["self"].endswith(f"/Patient/{alice['id']}/$everything")

    only = fhir.get(f"Patient/{alice['id']}/$everything?_type=Observation").json_body
    assert resource_ids(only) == [obs["id"]]
    future = fhir.get(f"Patient/{alice['id']}/$everything?_since=2999-01-01").json_body
    assert "entry" not in future
    paged = fhir.get(f"Patient/{alice['id']}/$everything?_count=1").json_body
    assert len(paged["entry"]) == 1 and "next" in links(paged)

    everyone = fhir.get("Patient/$everything?_count=100").json_body
    assert len(everyone["entry"]) == 5


def test_everything_parameters(fhir):
    alice = fhir.create(PatientFactory())
    bundle = fhir.get(f"Patient/{alice['id']}/$everything?start=2020-01-01").json_body
    assert "start" in by_mode(bundle, "outcome")[0]["resource"]["issue"][0]["diagnostics"]
    strict = fhir.get(f"Patient/{alice['id']}/$everything?start=2020", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert fhir.get(f"Patient/{alice['id']}/$everything?_since=yesterday").status_code == 400
    assert fhir.get(f"Patient/{alice['id']}/$everything?_type=Nope").status_code == 400
    assert fhir.get("Observation/1/$everything").status_code == 404


# --- CapabilityStatement ------------------------------------------------------------------------


def test_capability_statement_lists_search(fhir):
    statement = fhir.get("metadata").json_body
    rest = statement["rest"][0]
    resources = {r["type"]: r for r in rest["resource"]}
    patient = resources["Patient"]
    params = {p["name"]: p for p in patient["searchParam"]}
    assert params["name"] == {
        "name": "name",
        "type": "string",
        "definition": "http://hl7.org/fhir/SearchParameter/Patient-name",
    }
    assert {"birthdate", "identifier", "_id", "_lastUpdated", "general-practitioner"} <= set(params)
    assert "_text" not in params
    assert "Patient:general-practitioner" in patient["searchInclude"] and "*" in patient["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
    assert (
        patient["operation"][0]["definition"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    )
    assert {i["code"] for i in rest["interaction"]} >= {"search-system"}
    assert {p["name"] for p in rest["searchParam"]} == {
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
    }
    assert "http://hl7.org/fhir/CompartmentDefinition/patient" in rest["compartment"]


def test_self_link_keeps_what_was_understood(fhir):
    fhir.create(ObservationFactory())
    bundle = fhir.get(
        "Observation?_include=Observation:subject&_include=Observation:colour&_count=5&_sort=-date&shade=red"
    ).json_body
    query = parse_qsl(urlparse(links(bundle)["self"]).query)
    assert query == [("_include", "Observation:subject"), ("_count", "5"), ("_sort", "-date")]
    diagnostics = [i["diagnostics"] for i in by_mode(bundle, "outcome")[0]["resource"]["issue"]]
    assert any("shade" in d for d in diagnostics) and any("_include" in d for d in diagnostics)
