"""uri search (search.html#uri): exact, case-sensitive matching, :above and :below, `_profile`,
`_source`."""

import pytest

from resources.models import UriIndex

from .helpers import ids, index, refused, resource

pytestmark = pytest.mark.django_db


@pytest.fixture
def value_sets():
    for fhir_id, url in [
        ("vs123", "http://acme.org/fhir/ValueSet/123"),
        ("vs124", "http://acme.org/fhir/ValueSet/124"),
        ("root", "http://acme.org/fhir/"),
        ("oid", "urn:oid:1.2.3"),
        ("upper", "http://ACME.org/fhir/ValueSet/123"),
        ("acmeish", "http://acme.org/fhirish"),
    ]:
        index(UriIndex, resource("ValueSet", fhir_id), "url", value=url)
    resource("ValueSet", "nourl")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("url=http://acme.org/fhir/ValueSet/123", {"vs123"}),
        ("url=http://acme.org/fhir/ValueSet/12", set()),
        ("url=urn:oid:1.2.3", {"oid"}),
        ("url=http://acme.org/fhir/ValueSet/123,urn:oid:1.2.3", {"vs123", "oid"}),
        ("url:below=http://acme.org/fhir/", {"vs123", "vs124", "root"}),
        ("url:below=http://acme.org/fhir/ValueSet", {"vs123", "vs124"}),
        ("url:above=http://acme.org/fhir/ValueSet/123/_history/5", {"vs123", "root"}),
        ("url:above=http://acme.org/fhir/ValueSet/123", {"vs123", "root"}),
        ("url:above=http://acme.org/fhirish/x", {"acmeish"}),
        ("url:missing=true", {"nourl"}),
    ],
)
def test_uri_search(value_sets, query, expected):
    assert ids("ValueSet", query) == expected


def test_profile_and_source():
    row = resource("Patient", "profiled")
    index(UriIndex, row, "_profile", value="http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
    index(UriIndex, row, "_source", value="http://ehr.example.org/feed#abc")
    resource("Patient", "plain")
    assert ids("Patient", "_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient") == {
        "profiled"
    }
    assert ids("Patient", "_profile:below=http://hl7.org/fhir/us/core/") == {"profiled"}
    assert ids("Patient", "_source=http://ehr.example.org/feed%23abc") == {"profiled"}
    assert ids("Patient", "_profile:missing=true") == {"plain"}


@pytest.mark.parametrize("query", ["url:contains=acme", "url:exact=x", "url="])
def test_uri_refusals(query):
    refused("ValueSet", query, strict=False)
