"""`_sort` (https://hl7.org/fhir/R4/search.html#_sort): keys from the index tables, several keys,
descending, resources lacking the element last in both directions, a stable tie-break."""

import pytest

from resources.outcomes import FhirError

from .results_support import create, ids, observation, patient, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def families():
    return {
        "b": patient("Baker", birthDate="1990-05-01"),
        "a": patient("adams", birthDate="1980-01-01"),
        "c": patient("Çarter", birthDate="1985-03-03"),
        "none": patient(None, birthDate="1970-01-01"),
    }


def test_string_ascending_uses_normalised_value_and_puts_missing_last(families):
    assert ids(run("Patient", "_sort=family")) == [families[k] for k in ("a", "b", "c", "none")]


def test_string_descending_still_puts_missing_last(families):
    assert ids(run("Patient", "_sort=-family")) == [families[k] for k in ("c", "b", "a", "none")]


def test_date_sort_both_directions(families):
    assert ids(run("Patient", "_sort=birthdate")) == [families[k] for k in ("none", "a", "c", "b")]
    assert ids(run("Patient", "_sort=-birthdate")) == [families[k] for k in ("b", "c", "a", "none")]


def test_date_sort_uses_earliest_start_ascending_and_latest_end_descending():
    long = create(
        "Encounter", status="finished", **{"class": _AMB}, period={"start": "2020-01-01", "end": "2020-12-31"}
    )
    short = create(
        "Encounter", status="finished", **{"class": _AMB}, period={"start": "2020-03-01", "end": "2020-03-02"}
    )
    undated = create("Encounter", status="finished", **{"class": _AMB})
    assert ids(run("Encounter", "_sort=date")) == [long, short, undated]
    assert ids(run("Encounter", "_sort=-date")) == [long, short, undated]


def test_several_keys(families):
    twin = patient("Baker", birthDate="2000-01-01")
    assert ids(run("Patient", "_sort=family,-birthdate"))[:3] == [families["a"], twin, families["b"]]
    assert ids(run("Patient", "_sort=family&_sort=birthdate"))[:3] == [families["a"], families["b"], twin]


def test_ties_are_broken_by_insertion_order_the_same_way_every_time():
    same = [patient("Same") for _ in range(5)]
    assert ids(run("Patient", "_sort=family")) == same
    assert ids(run("Patient", "_sort=-family")) == list(reversed(same))
    assert ids(run("Patient", "_sort=family")) == same


def test_id_and_last_updated(families):
    by_id = sorted(families.values())
    assert ids(run("Patient", "_sort=_id")) == by_id
    assert ids(run("Patient", "_sort=-_id")) == list(reversed(by_id))
    created = [families[k] for k in ("b", "a", "c", "none")]
    assert ids(run("Patient", "_sort=_lastUpdated")) == created
    assert ids(run("Patient", "_sort=-_lastUpdated")) == list(reversed(created))


def test_quantity_sort_lowest_ascending_highest_descending():
    low = observation(valueQuantity={"value": 1.5, "unit": "kg"})
    high = observation(valueQuantity={"value": 100, "unit": "kg"})
    mid = observation(valueQuantity={"value": 12.25, "unit": "kg"})
    none = observation()
    assert ids(run("Observation", "_sort=value-quantity")) == [low, mid, high, none]
    assert ids(run("Observation", "_sort=-value-quantity")) == [high, mid, low, none]


def test_token_and_reference_sort():
    m = patient("X", gender="male")
    f = patient("Y", gender="female")
    u = patient("Z")
    assert ids(run("Patient", "_sort=gender")) == [f, m, u]
    assert ids(run("Patient", "_sort=-gender")) == [m, f, u]
    to_b = observation("Patient/b")
    to_a = observation("Patient/a")
    assert ids(run("Observation", "_sort=subject")) == [to_a, to_b]


@pytest.mark.parametrize(
    "query",
    [
        "_sort=",
        "_sort=-",
        "_sort=family,",
        "_sort=--family",
        "_sort=nonsense",
        "_sort=family:exact",
        "_sort=family,family",
        "_sort=_text",
    ],
)
def test_malformed_or_unknown_sort_is_400(query):
    with pytest.raises(FhirError) as caught:
        run("Patient", query)
    assert caught.value.status == 400
    assert "_sort" in caught.value.issues[0].diagnostics or "_sort" in caught.value.issues[0].expression


def test_composite_parameters_cannot_sort():
    with pytest.raises(FhirError) as caught:
        run("Observation", "_sort=code-value-quantity")
    assert caught.value.status == 400
    assert caught.value.issues[0].code == "not-supported"


def test_system_search_sorts_only_by_common_parameters():
    a = patient("A")
    o = observation()
    assert ids(run(None, "_sort=-_lastUpdated")) == [o, a]
    with pytest.raises(FhirError):
        run(None, "_sort=family")
    assert ids(run(None, "_type=Patient,Observation&_sort=_id")) == sorted([a, o])


_AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
