"""build_criteria as a whole (search.html#combining, #errors, #escaping): result parameters skipped,
unknown parameters ignored or refused under strict handling, malformed values always refused, one SQL
statement per search and none while compiling; conditional matching on top of it."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authz.context import AccessContext
from resources.models import (
    DateIndex,
    QuantityIndex,
    ReferenceIndex,
    Resource,
    StringIndex,
    TokenIndex,
)
from resources.outcomes import FhirError
from resources.search import conditional
from resources.search.criteria import build_criteria, supported_parameters
from resources.search.params import alternatives, split_escaped, unescape

from .helpers import criteria, date_range, diagnostics, ids, index, refused, resource, system_rows

SYSTEM = AccessContext.system("test")

pytestmark = pytest.mark.django_db

RESULT = (
    "_count=5&_sort=-date&_include=Patient:organization&_revinclude=Observation:patient&_summary=true"
    "&_elements=name&_total=accurate&_page=2&_format=json&_pretty=true&_contained=both&_containedType=container"
)


def test_result_parameters_are_neither_used_nor_ignored():
    found = criteria("Patient", RESULT + "&gender=male", strict=True)
    assert found.used == [("gender", "male")]
    assert found.ignored == []


def test_unknown_parameters_are_ignored_by_default_and_kept_out_of_used():
    found = criteria("Patient", "colour=blue&gender=male&_text=x&_content=y&_query=z&_list=1", strict=False)
    assert found.used == [("gender", "male")]
    assert found.ignored == ["colour", "_text", "_content", "_query", "_list"]


@pytest.mark.parametrize("name", ["colour", "_text", "_filter", "near"])
def test_unknown_parameters_are_refused_under_strict_handling(name):
    resource_type = "Location" if name == "near" else "Patient"
    error = refused(resource_type, [(name, "x")], strict=True)
    assert error.issues[0].code == "not-supported"
    assert f"'{name}'" in diagnostics(error)


def test_malformed_values_are_refused_even_when_lenient():
    error = refused("Patient", "colour=blue&birthdate=tomorrow", strict=False)
    assert error.issues[0].code == "invalid"
    assert "'birthdate'" in diagnostics(error) and "'tomorrow'" in diagnostics(error)


def test_used_keeps_names_with_modifiers_and_chains_and_the_raw_values():
    query = [
        ("name:exact", r"a\,b"),
        ("general-practitioner:Practitioner.name", "x"),
        ("_has:Observation:patient:code", "1,2"),
    ]
    assert criteria("Patient", query).used == query


def test_no_criteria_is_an_empty_condition():
    resource("Patient", "a")
    assert criteria("Patient", []).used == []
    assert ids("Patient", []) == {"a"}


@pytest.mark.parametrize(
    "text, separator, parts",
    [
        ("a,b", ",", ["a", "b"]),
        (r"a\,b", ",", [r"a\,b"]),
        (r"a\\,b", ",", [r"a\\", "b"]),  # an escaped backslash does not escape the comma
        (r"s\|x|c", "|", [r"s\|x", "c"]),
        ("a$b$c", "$", ["a", "b", "c"]),
        ("trailing\\", ",", ["trailing\\"]),
        ("", ",", [""]),
    ],
)
def test_split_escaped(text, separator, parts):
    assert split_escaped(text, separator) == parts


@pytest.mark.parametrize(
    "text, plain",
    [
        (r"a\,b", "a,b"),
        (r"a\$b", "a$b"),
        (r"a\|b", "a|b"),
        (r"a\\b", "a\\b"),
        (r"a\nb", r"a\nb"),
        ("x\\", "x\\"),
    ],
)
def test_unescape(text, plain):
    assert unescape(text) == plain


def test_empty_alternatives_are_malformed():
    for value in ["a,", ",a", "a,,b"]:
        with pytest.raises(Exception, match="empty value"):
            alternatives(value)


def test_supported_parameters_cover_every_type_but_special_and_full_text():
    params = supported_parameters("Observation")
    assert {"code", "subject", "date", "value-quantity", "code-value-quantity", "_id", "_lastUpdated"} <= set(
        params
    )
    assert not {"_text", "_content", "_query"} & set(params)
    assert "near" not in supported_parameters("Location")


@pytest.fixture
def clinic():
    org = resource("Organization", "org")
    index(StringIndex, org, "name", value="acme", exact="Acme")
    patient = resource("Patient", "pat")
    index(StringIndex, patient, "name", value="peter", exact="Peter")
    index(ReferenceIndex, patient, "organization", target_type="Organization", target_id="org")
    obs = resource("Observation", "obs")
    index(ReferenceIndex, obs, "patient", target_type="Patient", target_id="pat")
    index(ReferenceIndex, obs, "subject", target_type="Patient", target_id="pat")
    index(TokenIndex, obs, "code", system="http://loinc.org", code="8867-4")
    index(DateIndex, obs, "date", **date_range("2024-05-01T10:00:00Z"))
    index(
        QuantityIndex,
        obs,
        "value-quantity",
        value=Decimal(72),
        system="http://unitsofmeasure.org",
        code="/min",
    )
    index(
        ReferenceIndex,
        resource("DiagnosticReport", "rep"),
        "result",
        target_type="Observation",
        target_id="obs",
    )


COMPLEX = [
    ("code", "http://loinc.org|8867-4,|1234-5"),
    ("date", "ge2024-01-01"),
    ("date", "lt2025"),
    ("value-quantity", "gt60|http://unitsofmeasure.org|/min"),
    ("subject:Patient.name", "pet"),
    ("patient.organization.name", "acme"),
    ("code:not", "http://loinc.org|0000-0"),
    ("_has:DiagnosticReport:result:status:missing", "true"),
    ("category:missing", "true"),
    ("_lastUpdated", "gt2000"),
]


def test_every_search_is_one_statement_and_compiling_runs_none(clinic):
    with CaptureQueriesContext(connection) as compiling:
        found = build_criteria("Observation", COMPLEX, strict=True, rows=system_rows)
    assert len(compiling.captured_queries) == 0
    with CaptureQueriesContext(connection) as running:
        rows = list(
            Resource.objects.system("test").filter(resource_type="Observation", deleted=False).filter(found.q)
        )
    assert len(running.captured_queries) == 1
    assert [r.fhir_id for r in rows] == ["obs"]


def test_has_is_one_statement(clinic):
    found = build_criteria(
        "Organization",
        [("_has:Patient:organization:_has:Observation:patient:code", "8867-4")],
        strict=True,
        rows=system_rows,
    )
    with CaptureQueriesContext(connection) as running:
        rows = list(
            Resource.objects.system("test")
            .filter(resource_type="Organization", deleted=False)
            .filter(found.q)
        )
    assert len(running.captured_queries) == 1
    assert [r.fhir_id for r in rows] == ["org"]


def test_conditional_matching_uses_the_engine_strictly(clinic):
    assert [r.fhir_id for r in conditional.find_matches(SYSTEM, "Patient", "name=pet")] == ["pat"]
    assert [
        r.fhir_id for r in conditional.find_matches(SYSTEM, "Observation", "?patient.name=peter&date=2024")
    ] == ["obs"]
    with pytest.raises(FhirError) as caught:
        conditional.find_matches(SYSTEM, "Patient", "colour=blue")
    assert caught.value.status == 400 and "colour" in diagnostics(caught.value)
    with pytest.raises(FhirError):
        conditional.find_matches(SYSTEM, "Patient", "_count=1")  # no criteria left: would match everything
    with pytest.raises(FhirError):
        conditional.find_matches(SYSTEM, "Patient", "")


def test_conditional_criteria_filter_is_still_available(clinic):
    condition = conditional.criteria_filter(SYSTEM, "Patient", [("_id", "pat")])
    assert list(Resource.objects.system("test").filter(condition).values_list("fhir_id", flat=True)) == [
        "pat"
    ]
