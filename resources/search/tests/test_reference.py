"""reference search (search.html#reference): id, Type/id, :[type], absolute URLs (own base and
foreign), canonical url|version, :identifier, :missing."""

import pytest
from django.test import override_settings

from resources.models import ReferenceIndex, TokenIndex

from .helpers import diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db


@pytest.fixture
def observations():
    index(ReferenceIndex, resource("Observation", "to_p1"), "subject", target_type="Patient", target_id="p1")
    index(ReferenceIndex, resource("Observation", "to_g1"), "subject", target_type="Group", target_id="g1")
    both = resource("Observation", "to_p2_with_identifier")
    index(ReferenceIndex, both, "subject", target_type="Patient", target_id="p2")
    index(TokenIndex, both, "subject:identifier", system="urn:mrn", code="123")
    only_identifier = resource("Observation", "identifier_only")
    index(TokenIndex, only_identifier, "subject:identifier", system="urn:mrn", code="456")
    index(
        ReferenceIndex, resource("Observation", "foreign"), "subject", url="http://other.org/fhir/Patient/9"
    )
    index(
        ReferenceIndex,
        resource("Observation", "to_loc_p1"),
        "subject",
        target_type="Location",
        target_id="p1",
    )
    resource("Observation", "nosubject")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("subject=Patient/p1", {"to_p1"}),
        ("subject=p1", {"to_p1", "to_loc_p1"}),  # any target type
        ("subject:Patient=p1", {"to_p1"}),
        ("subject:Location=p1", {"to_loc_p1"}),
        ("subject:Group=g1", {"to_g1"}),
        ("subject:Patient=g1", set()),
        ("subject:Patient=Patient/p1", {"to_p1"}),
        ("subject=Patient/p1,Group/g1", {"to_p1", "to_g1"}),
        ("subject=Patient/p1/_history/3", {"to_p1"}),
        ("subject=http://other.org/fhir/Patient/9", {"foreign"}),
        ("subject=http://other.org/fhir/Patient/1", set()),
        ("subject=Patient/9", set()),  # a foreign server's Patient/9 is not ours
        ("subject:identifier=urn:mrn|123", {"to_p2_with_identifier"}),
        ("subject:identifier=456", {"identifier_only"}),
        ("subject:identifier=|456", set()),
        ("subject:missing=true", {"nosubject"}),
        (
            "subject:missing=false",
            {"to_p1", "to_g1", "to_p2_with_identifier", "identifier_only", "foreign", "to_loc_p1"},
        ),
        ("patient=p1", set()),  # `patient` rows are separate from `subject` rows
        ("subject=Patient/p1&subject=Patient/p2", set()),
    ],
)
def test_reference_forms(observations, query, expected):
    assert ids("Observation", query) == expected


@override_settings(FHIR_BASE_URL="https://fhir.example.org/r4")
def test_absolute_url_on_our_base_matches_the_local_reference(observations):
    assert ids("Observation", "subject=https://fhir.example.org/r4/Patient/p1") == {"to_p1"}
    assert ids("Observation", "subject:Patient=https://fhir.example.org/r4/Patient/p1") == {"to_p1"}
    assert ids("Observation", "subject=https://fhir.example.org/r4/metadata") == set()


def test_base_url_hint(observations):
    found = ids(
        "Observation", "subject=http://testserver/fhir/Patient/p2", base_urls=("http://testserver/fhir",)
    )
    assert found == {"to_p2_with_identifier"}
    assert ids("Observation", "subject=http://testserver/fhir/Patient/p2") == set()


def test_types_outside_the_declared_targets_are_searched_as_given():
    # Observation.subject does not list Practitioner, but stored data may still point there
    index(
        ReferenceIndex, resource("Observation", "odd"), "subject", target_type="Practitioner", target_id="d1"
    )
    assert ids("Observation", "subject=Practitioner/d1") == {"odd"}
    assert ids("Observation", "subject:Practitioner=d1") == {"odd"}
    assert ids("Observation", "subject=d1") == set()  # a bare id looks among the declared targets


def test_relative_canonical_references_stored_as_urls():
    row = resource("Library", "uses")
    index(ReferenceIndex, row, "depends-on", url="Library/helpers")
    index(ReferenceIndex, row, "predecessor", url="old-helpers")
    assert ids("Library", "depends-on=Library/helpers") == {"uses"}
    assert ids("Library", "predecessor=old-helpers") == {"uses"}
    index(ReferenceIndex, row, "composed-of", url="#contained")
    assert ids("Library", "composed-of=%23contained") == {"uses"}


def test_canonical_references():
    url = "http://example.org/Questionnaire/intake"
    index(
        ReferenceIndex, resource("QuestionnaireResponse", "v1"), "questionnaire", url=url, url_version="1.0"
    )
    index(
        ReferenceIndex, resource("QuestionnaireResponse", "v2"), "questionnaire", url=url, url_version="2.0"
    )
    index(ReferenceIndex, resource("QuestionnaireResponse", "nov"), "questionnaire", url=url)
    assert ids("QuestionnaireResponse", f"questionnaire={url}|1.0") == {"v1"}
    assert ids("QuestionnaireResponse", f"questionnaire={url}|3.0") == set()
    assert ids("QuestionnaireResponse", f"questionnaire={url}") == {"v1", "v2", "nov"}
    assert ids("QuestionnaireResponse", f"questionnaire={url}|1.0,{url}|2.0") == {"v1", "v2"}


@pytest.mark.parametrize(
    "query, code",
    [
        ("subject=Foo/1", "invalid"),
        ("subject=a/b/c", "invalid"),
        ("subject=bad id!", "invalid"),
        ("subject:Foo=1", "invalid"),
        ("subject:Patient=Group/g1", "invalid"),
        ("subject:exact=1", "invalid"),
        ("subject:below=http://x", "not-supported"),
        ("subject:above=http://x", "not-supported"),
        ("subject=http://x|", "invalid"),
        ("subject=", "invalid"),
    ],
)
def test_reference_refusals(query, code):
    name, _, value = query.partition("=")
    error = refused("Observation", query, strict=False)
    assert error.issues[0].code == code
    assert f"'{name}'" in diagnostics(error) and f"'{value}'" in diagnostics(error)
