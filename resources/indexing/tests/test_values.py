"""Row semantics per value kind: what each FHIR datatype under each parameter type puts in the index
(the query side relies on exactly these rows)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from resources.indexing.extract import extract, plan_for


def rows(body: dict, table: str, param: str) -> set[tuple]:
    return {row[1:] for row in extract(body["resourceType"], body).get(table, []) if row[0] == param}


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


END_OF = {
    "2024": utc(2024, 12, 31, 23, 59, 59, 999999),
    "2024-05-01": utc(2024, 5, 1, 23, 59, 59, 999999),
}

CASES = [
    # --- string -----------------------------------------------------------------------------
    pytest.param(
        {
            "resourceType": "Patient",
            "name": [
                {
                    "family": "Müller",
                    "given": ["Anna  Lena", "Zoë"],
                    "prefix": ["Dr."],
                    "text": "Dr. Anna Müller",
                }
            ],
        },
        "string",
        "name",
        {
            ("muller", "Müller"),
            ("anna lena", "Anna  Lena"),
            ("zoe", "Zoë"),
            ("dr.", "Dr."),
            ("dr. anna muller", "Dr. Anna Müller"),
        },
        id="HumanName parts, accents folded, whitespace collapsed",
    ),
    pytest.param(
        {"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Anna"]}]},
        "string",
        "family",
        {("muller", "Müller")},
        id="family only",
    ),
    pytest.param(
        {
            "resourceType": "Patient",
            "address": [
                {
                    "line": ["1 Rue de l'Église", "Bât. B"],
                    "city": "Orléans",
                    "district": "Loiret",
                    "state": "Centre",
                    "postalCode": "45000",
                    "country": "FR",
                    "text": "somewhere",
                }
            ],
        },
        "string",
        "address",
        {
            ("1 rue de l'eglise", "1 Rue de l'Église"),
            ("bat. b", "Bât. B"),
            ("orleans", "Orléans"),
            ("loiret", "Loiret"),
            ("centre", "Centre"),
            ("45000", "45000"),
            ("fr", "FR"),
            ("somewhere", "somewhere"),
        },
        id="Address parts",
    ),
    pytest.param(
        {"resourceType": "Organization", "name": "x" * 300},
        "string",
        "name",
        {("x" * 255, "x" * 255)},
        id="string cut to the column",
    ),
    # --- token ------------------------------------------------------------------------------
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "8480-6", "display": "Systolic BP"},
                    {"system": "http://snomed.info/sct", "code": "271649006"},
                ],
                "text": "Blood pressure",
            },
        },
        "token",
        "code",
        {
            ("http://loinc.org", "8480-6", "systolic bp", None, None),
            ("http://snomed.info/sct", "271649006", "blood pressure", None, None),
        },
        id="CodeableConcept: a row per coding, the concept text for a coding without display",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "1", "display": "One"}],
                "text": "Uno",
            },
        },
        "token",
        "code",
        {("http://loinc.org", "1", "one", None, None), (None, None, "uno", None, None)},
        id="CodeableConcept: the concept text keeps a row when no coding carries it",
    ),
    pytest.param(
        {"resourceType": "Observation", "status": "final", "code": {"text": "Something odd"}},
        "token",
        "code",
        {(None, None, "something odd", None, None)},
        id="CodeableConcept with text only: code NULL",
    ),
    pytest.param(
        {
            "resourceType": "Patient",
            "identifier": [
                {
                    "system": "urn:oid:1.2.36",
                    "value": "12345",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                        "text": "Medical record number",
                    },
                },
                {"value": "no-system"},
                {"system": "urn:system-only"},
            ],
        },
        "token",
        "identifier",
        {
            (
                "urn:oid:1.2.36",
                "12345",
                "medical record number",
                "http://terminology.hl7.org/CodeSystem/v2-0203",
                "MR",
            ),
            (None, "no-system", None, None, None),
            ("urn:system-only", None, None, None, None),
        },
        id="Identifier with type for :of-type",
    ),
    pytest.param(
        {
            "resourceType": "Patient",
            "telecom": [
                {"system": "phone", "value": "+49 30 1234"},
                {"system": "email", "value": "a@example.org"},
            ],
        },
        "token",
        "email",
        {(None, "a@example.org", None, None, None)},
        id="ContactPoint filtered by where(system='email'): value as code",
    ),
    pytest.param(
        {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "+49 30 1234"}]},
        "token",
        "telecom",
        {(None, "+49 30 1234", None, None, None)},
        id="ContactPoint",
    ),
    pytest.param(
        {"resourceType": "Patient", "active": False, "gender": "other"},
        "token",
        "active",
        {(None, "false", None, None, None)},
        id="boolean",
    ),
    pytest.param(
        {"resourceType": "Patient", "gender": "other"},
        "token",
        "gender",
        {(None, "other", None, None, None)},
        id="code",
    ),
    pytest.param(
        {"resourceType": "Patient"},
        "token",
        "deceased",
        {(None, "false", None, None, None)},
        id="deceased absent: false (the expression is a boolean)",
    ),
    pytest.param(
        {"resourceType": "Patient", "deceasedDateTime": "2020-01-01"},
        "token",
        "deceased",
        {(None, "true", None, None, None)},
        id="deceased as a dateTime: true",
    ),
    pytest.param(
        {
            "resourceType": "Patient",
            "meta": {"tag": [{"system": "urn:tags", "code": "test", "display": "Test"}]},
        },
        "token",
        "_tag",
        {("urn:tags", "test", "test", None, None)},
        id="_tag Coding",
    ),
    # --- date -------------------------------------------------------------------------------
    pytest.param(
        {"resourceType": "Patient", "birthDate": "2024"},
        "date",
        "birthdate",
        {(utc(2024, 1, 1), END_OF["2024"])},
        id="partial date covers the year",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectiveDateTime": "2024-05-01T12:30:00+02:00",
        },
        "date",
        "date",
        {(utc(2024, 5, 1, 10, 30), utc(2024, 5, 1, 10, 30, 0, 999999))},
        id="dateTime with zone, to the second",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectivePeriod": {"start": "2024-05-01"},
        },
        "date",
        "date",
        {(utc(2024, 5, 1), None)},
        id="Period with open end",
    ),
    pytest.param(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "period": {"end": "2024"},
        },
        "date",
        "date",
        {(None, END_OF["2024"])},
        id="Period without start",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectiveTiming": {
                "event": ["2024-05-01"],
                "repeat": {"boundsPeriod": {"start": "2024", "end": "2024-05-01"}},
            },
        },
        "date",
        "date",
        {(utc(2024, 5, 1), END_OF["2024-05-01"]), (utc(2024, 1, 1), END_OF["2024-05-01"])},
        id="Timing: events and bounds",
    ),
    pytest.param(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p"},
            "activity": [
                {"detail": {"status": "scheduled", "scheduledString": "2024-05-01"}},
                {"detail": {"status": "scheduled", "scheduledString": "every morning"}},
            ],
        },
        "date",
        "activity-date",
        {(utc(2024, 5, 1), END_OF["2024-05-01"])},
        id="string form of a choice: only when written as a date",
    ),
    # --- number and quantity ----------------------------------------------------------------
    pytest.param(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/p"},
            "prediction": [{"probabilityDecimal": 0.25}],
        },
        "number",
        "probability",
        {(Decimal("0.25"),)},
        id="decimal number",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {
                "value": Decimal("7.20"),
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        "quantity",
        "value-quantity",
        {(Decimal("7.20"), "http://unitsofmeasure.org", "mmol/L", "mmol/L")},
        id="Quantity",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": Decimal("1E+30"), "unit": "g"},
        },
        "quantity",
        "value-quantity",
        set(),
        id="value beyond the column is left out",
    ),
    pytest.param(
        {
            "resourceType": "ChargeItem",
            "status": "billed",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
            "priceOverride": {"value": Decimal("12.50"), "currency": "EUR"},
        },
        "quantity",
        "price-override",
        {(Decimal("12.50"), "urn:iso:std:iso:4217", "EUR", "EUR")},
        id="Money",
    ),
    pytest.param(
        {
            "resourceType": "Library",
            "status": "active",
            "type": {"text": "x"},
            "useContext": [
                {
                    "code": {
                        "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                        "code": "age",
                    },
                    "valueRange": {"low": {"value": 18, "unit": "a"}, "high": {"value": 65, "unit": "a"}},
                }
            ],
        },
        "quantity",
        "context-quantity",
        {(Decimal(18), None, None, "a"), (Decimal(65), None, None, "a")},
        id="Range: low and high rows",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueSampledData": {"origin": {"value": 0, "unit": "mV"}, "period": 10, "dimensions": 1},
        },
        "quantity",
        "value-quantity",
        {(Decimal(0), None, None, "mV")},
        id="SampledData origin",
    ),
    # --- reference --------------------------------------------------------------------------
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1/_history/3"},
        },
        "reference",
        "subject",
        {("Patient", "p1", None, None)},
        id="relative reference, version dropped",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Group/g1"},
        },
        "reference",
        "patient",
        set(),
        id="where(resolve() is Patient) excludes a Group",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "https://other.example/fhir/Patient/p9"},
        },
        "reference",
        "patient",
        {(None, None, "https://other.example/fhir/Patient/p9", None)},
        id="absolute URL to a Patient elsewhere: url, and it is a Patient for resolve()",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:0f5b7ab6-0e1c-4d8d-b5a4-7d4a4b1f9c01"},
        },
        "reference",
        "subject",
        {(None, None, "urn:uuid:0f5b7ab6-0e1c-4d8d-b5a4-7d4a4b1f9c01", None)},
        id="urn:uuid",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "#contained-patient"},
        },
        "reference",
        "subject",
        set(),
        id="contained reference: no row",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "42"}},
        },
        "token",
        "patient:identifier",
        {("urn:mrn", "42", None, None, None)},
        id="logical reference: :identifier token under <code>:identifier",
    ),
    pytest.param(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/q|2.1",
        },
        "reference",
        "questionnaire",
        {(None, None, "http://example.org/Questionnaire/q", "2.1")},
        id="canonical with version",
    ),
    pytest.param(
        {"resourceType": "Patient", "meta": {"profile": ["http://example.org/StructureDefinition/p|1.0"]}},
        "uri",
        "_profile",
        {("http://example.org/StructureDefinition/p|1.0",)},
        id="_profile: a uri parameter in R4, as written",
    ),
    # --- uri --------------------------------------------------------------------------------
    pytest.param(
        {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/ValueSet/v"},
        "uri",
        "url",
        {("http://example.org/ValueSet/v",)},
        id="uri",
    ),
    pytest.param(
        {"resourceType": "Patient", "meta": {"source": "urn:uuid:abc"}},
        "uri",
        "_source",
        {("urn:uuid:abc",)},
        id="_source",
    ),
]


@pytest.mark.parametrize(("body", "table", "param", "expected"), CASES)
def test_rows(body, table, param, expected):
    assert rows(body, table, param) == expected


CHOICES = [
    (
        "valueQuantity",
        {"value": 5, "unit": "mg"},
        "quantity",
        "value-quantity",
        {(Decimal(5), None, None, "mg")},
    ),
    (
        "valueCodeableConcept",
        {"coding": [{"system": "s", "code": "c"}]},
        "token",
        "value-concept",
        {("s", "c", None, None, None)},
    ),
    ("valueString", "Positive", "string", "value-string", {("positive", "Positive")}),
    ("valueDateTime", "2024", "date", "value-date", {(utc(2024, 1, 1), END_OF["2024"])}),
    ("valuePeriod", {"start": "2024"}, "date", "value-date", {(utc(2024, 1, 1), None)}),
]


@pytest.mark.parametrize(("key", "value", "table", "param", "expected"), CHOICES)
def test_choice_types_go_to_their_parameter_only(key, value, table, param, expected):
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, key: value}
    extracted = extract("Observation", body)
    assert rows(body, table, param) == expected
    for other in ("value-quantity", "value-concept", "value-string", "value-date"):
        if other != param:
            assert not any(row[0] == other for t in extracted.values() for row in t)


BP = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "Organization/o1"}],
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 120,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "unit": "mmHg"},
        },
    ],
}

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def test_component_code_value_quantity_pairs_each_component_with_its_own_value():
    assert rows(BP, "composite", "component-code-value-quantity") == {
        (LOINC, "8480-6", UCUM, "mm[Hg]", Decimal(120), None, None, None, None),
        # no code: the unit stands in c2_code, as `||unit` asks
        (LOINC, "8462-4", None, "mmHg", Decimal(80), None, None, None, None),
    }


def test_combo_composite_takes_the_observation_and_its_components():
    body = {**BP, "valueQuantity": {"value": 1, "unit": "x"}}
    assert rows(body, "composite", "combo-code-value-quantity") == {
        (LOINC, "85354-9", None, "x", Decimal(1), None, None, None, None),
        (LOINC, "8480-6", UCUM, "mm[Hg]", Decimal(120), None, None, None, None),
        (LOINC, "8462-4", None, "mmHg", Decimal(80), None, None, None, None),
    }
    assert rows(body, "composite", "code-value-quantity") == {
        (LOINC, "85354-9", None, "x", Decimal(1), None, None, None, None)
    }
    assert {r[1] for r in rows(body, "token", "combo-code")} == {"85354-9", "8480-6", "8462-4"}


def test_composite_token_token_date_and_string():
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "883-9"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "112144000"}]},
    }
    assert rows(body, "composite", "code-value-concept") == {
        (LOINC, "883-9", "http://snomed.info/sct", "112144000", None, None, None, None, None)
    }
    body = {**body, "valueCodeableConcept": None, "valueDateTime": "2024"}
    del body["valueCodeableConcept"]
    assert rows(body, "composite", "code-value-date") == {
        (LOINC, "883-9", None, None, None, utc(2024, 1, 1), END_OF["2024"], None, None)
    }
    del body["valueDateTime"]
    body["valueString"] = "Élevé"
    assert rows(body, "composite", "code-value-string") == {
        (LOINC, "883-9", None, None, None, None, None, "eleve", None)
    }


def test_composite_reference_first_and_three_components():
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"url": "http://example.org/doc"}}],
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}],
    }
    assert rows(doc, "composite", "relationship") == {
        (None, "DocumentReference/old", None, "replaces", None, None, None, None, None)
    }
    seq = {
        "resourceType": "MolecularSequence",
        "coordinateSystem": 0,
        "referenceSeq": {
            "chromosome": {"coding": [{"system": "http://x", "code": "1"}]},
            "windowStart": 10,
            "windowEnd": 20,
        },
        "variant": [{"start": 12, "end": 13}],
    }
    assert rows(seq, "composite", "chromosome-window-coordinate") == {
        ("http://x", "1", None, None, Decimal(10), None, None, None, Decimal(20))
    }
    # `%resource.referenceSeq.chromosome` relative to each variant
    assert rows(seq, "composite", "chromosome-variant-coordinate") == {
        ("http://x", "1", None, None, Decimal(12), None, None, None, Decimal(13))
    }


def test_compartments_from_reference_params_and_self():
    assert set(extract("Observation", BP)["compartment"]) == {
        ("Patient", "p1"),
        ("Practitioner", "d1"),
    }
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso"}],
    }
    assert set(extract("Patient", patient)["compartment"]) == {("Patient", "p1"), ("Patient", "p2")}
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Group/g"},
    }
    assert set(extract("Encounter", encounter)["compartment"]) == {("Encounter", "e1")}


@override_settings(FHIR_BASE_URL="https://fhir.example.org/fhir")
def test_absolute_reference_under_our_base_is_local():
    body = {**BP, "subject": {"reference": "https://fhir.example.org/fhir/Patient/p7"}}
    assert rows(body, "reference", "subject") == {("Patient", "p7", None, None)}
    assert ("Patient", "p7") in extract("Observation", body)["compartment"]


def test_skipped_parameters_are_listed():
    assert plan_for("Location").skipped["near"] == "special parameter"
    skipped = plan_for("Patient").skipped
    assert set(skipped) == {"_id", "_lastUpdated", "_text", "_content", "_query"}
