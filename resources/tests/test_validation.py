"""Tests of the R4 definition data (resources.definitions) and the structural validator.

Rules under test: https://hl7.org/fhir/R4/json.html (representation), https://hl7.org/fhir/R4/datatypes.html
(primitive formats), https://hl7.org/fhir/R4/terminologies.html#required (required bindings).
No database access: run with `pytest -p no:django` when Django settings are unavailable.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import simplejson
from hypothesis import given, settings
from hypothesis import strategies as st

from resources.definitions import (
    compartments,
    element_for_json_key,
    mandatory_elements,
    resource_types,
    search_parameter_by_url,
    search_parameters,
    summary_elements,
    type_schema,
)
from resources.outcomes import Issue
from resources.validation import MAX_ISSUES, _matcher, _non_capturing, validate_resource

REPO = Path(__file__).resolve().parents[2]
HL7_SOURCE = REPO.parent / "shared" / "fhir-r4"


def parse(text: str):
    return simplejson.loads(text, use_decimal=True)


def issues_of(body) -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.expression) for i in validate_resource(body)]


def assert_valid(body) -> None:
    issues = validate_resource(body)
    assert issues == [], [i.as_json() for i in issues]


DROP = object()  # helper argument: remove this key from the template


def _apply(body: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def patient(**extra) -> dict:
    body = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05.123Z"},
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jane</div>'},
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": True,
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
        "telecom": [{"system": "phone", "value": "555", "use": "home", "rank": 1}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "deceasedBoolean": False,
        "address": [{"line": ["1 Main St"], "city": "Town", "period": {"start": "2000"}}],
        "contact": [{"relationship": [{"coding": [{"code": "N"}]}], "name": {"family": "Doe"}}],
        "managingOrganization": {"reference": "Organization/1"},
    }
    return _apply(body, extra)


def observation(**extra) -> dict:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2016-03-28T09:30:00+01:00",
        "valueQuantity": {
            "value": Decimal("67.5"),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    return _apply(body, extra)


# --------------------------------------------------------------------------------------------
# Definitions


def test_resource_types_are_the_concrete_r4_types():
    types = resource_types()
    # R4 4.0.1 defines 146 non-abstract resource StructureDefinitions.
    assert len(types) == 146
    assert {"Patient", "Observation", "Bundle", "Binary", "Parameters"} <= types
    assert {"MedicinalProduct", "EffectEvidenceSynthesis", "RiskEvidenceSynthesis"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource"} & types


def test_type_schema_content_reference_and_choices():
    item = type_schema("Questionnaire.item")
    assert item.elements["item"].types == ("Questionnaire.item",)
    assert item.elements["item"].repeats
    deceased = type_schema("Patient").elements["deceased"]
    assert deceased.choice and deceased.types == ("boolean", "dateTime")
    assert type_schema("Patient").json_keys["deceasedDateTime"] == (deceased, "dateTime")
    gender = type_schema("Patient").elements["gender"]
    assert gender.binding == "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert gender.codes == {"male", "female", "other", "unknown"}
    # Resource.id is an `id`, even though the 4.0.1 snapshot types it as System.String.
    assert type_schema("Patient").elements["id"].types == ("id",)
    assert type_schema("date").kind == "primitive-type"
    assert type_schema("positiveInt").json_kind == "integer"


def test_summary_and_mandatory_elements():
    summary = summary_elements("Patient")
    assert {"id", "meta", "identifier", "name", "gender", "birthDate", "deceased"} <= summary
    assert not {"photo", "contact", "text", "communication"} & summary
    assert mandatory_elements("Observation") == {"status", "code"}
    assert mandatory_elements("Patient") == frozenset()
    assert element_for_json_key("Patient", "deceasedBoolean") == "deceased"
    assert element_for_json_key("Patient", "_birthDate") == "birthDate"
    assert element_for_json_key("Patient", "nope") is None


def test_search_parameters_per_base():
    params = search_parameters("Patient")
    birthdate = params["birthdate"]
    assert birthdate.type == "date"
    assert birthdate.expression == "Patient.birthDate"
    assert birthdate.full_expression == "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate"
    assert birthdate.base == ("Patient", "Person", "RelatedPerson")
    assert search_parameters("Person")["birthdate"].expression == "Person.birthDate"
    # Common parameters of Resource apply to all types, those of DomainResource not to Bundle.
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content"):
        assert code in params and code in search_parameters("Bundle")
    assert params["_id"].expression == "Resource.id"
    assert "_text" in params and "_text" not in search_parameters("Bundle")
    assert params["_text"].expression == ""
    subject = search_parameters("Observation")["subject"]
    assert subject.type == "reference" and "Patient" in subject.targets
    composite = search_parameters("Observation")["code-value-quantity"]
    assert composite.components == (
        ("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        ("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"),
    )
    assert search_parameter_by_url(composite.components[1][0]).code == "value-quantity"
    # The cached table cannot be altered through the returned dict.
    params.clear()
    assert "birthdate" in search_parameters("Patient")
    with pytest.raises(KeyError):
        search_parameters("Nope")


def test_clinical_patient_param_keeps_only_its_base_part():
    param = search_parameters("AllergyIntolerance")["patient"]
    assert param.expression == "AllergyIntolerance.patient"
    assert "CarePlan.subject" in param.full_expression


def test_compartments():
    comps = compartments()
    assert set(comps) == {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    assert comps["Patient"]["Observation"] == ("subject", "performer")
    assert comps["Patient"]["AllergyIntolerance"] == ("patient", "recorder", "asserter")
    # Members listed without a param are not linked and are omitted.
    assert "ActivityDefinition" not in comps["Patient"]


@pytest.mark.skipif(not HL7_SOURCE.is_dir(), reason="HL7 source files not available")
def test_generator_is_deterministic(tmp_path):
    script = REPO / "scripts" / "generate_definitions.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    committed = REPO / "resources" / "definitions" / "data"
    for path in sorted(committed.glob("*.json.gz")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


# --------------------------------------------------------------------------------------------
# Resource type and unknown properties


def test_valid_resources():
    assert_valid(patient())
    assert_valid(observation())
    assert_valid({"resourceType": "Patient"})


def test_r4_only_types_are_accepted():
    assert_valid({"resourceType": "MedicinalProduct", "name": [{"productName": "Aspirin 100 mg"}]})
    assert_valid(
        {
            "resourceType": "EffectEvidenceSynthesis",
            "status": "draft",
            "population": {"reference": "EvidenceVariable/pop"},
            "exposure": {"reference": "EvidenceVariable/exp"},
            "exposureAlternative": {"reference": "EvidenceVariable/alt"},
            "outcome": {"reference": "EvidenceVariable/out"},
        }
    )
    assert issues_of(
        {"resourceType": "MedicinalProduct", "name": [{"namePart": [{"part": "A", "type": {"code": "x"}}]}]}
    ) == [("required", ("MedicinalProduct.name[0].productName",))]


@pytest.mark.parametrize("rt", ["Foo", "Resource", "DomainResource", "MetadataResource", "patient", 7])
def test_unknown_or_abstract_resource_type(rt):
    assert issues_of({"resourceType": rt}) == [("invalid", ("resourceType",))]


def test_missing_resource_type_and_non_object():
    assert issues_of({"id": "x"}) == [("required", ("resourceType",))]
    assert issues_of([]) == [("structure", ())]


def test_unknown_properties_at_every_level():
    body = patient(foo=1)
    body["name"][0]["bar"] = "x"
    body["contact"][0]["baz"] = "y"
    body["managingOrganization"]["resourceType"] = "Organization"
    assert issues_of(body) == [
        ("structure", ("Patient.name[0].bar",)),
        ("structure", ("Patient.contact[0].baz",)),
        ("structure", ("Patient.managingOrganization.resourceType",)),
        ("structure", ("Patient.foo",)),
    ]
    assert issues_of(patient(_name=[{"id": "x"}])) == [("structure", ("Patient._name",))]


# --------------------------------------------------------------------------------------------
# Choice elements


def test_choice_elements():
    assert_valid(observation(valueQuantity=DROP, valueString="positive"))
    assert_valid(observation(valueQuantity=DROP, valueCodeableConcept={"text": "x"}))
    (issue,) = validate_resource(observation(valueQuantity=DROP, valueFoo="x"))
    assert (issue.code, issue.expression) == ("structure", ("Observation.valueFoo",))
    assert "valueQuantity" in issue.diagnostics
    assert issues_of(observation(valueString="x")) == [("structure", ("Observation.valueString",))]
    assert issues_of(patient(deceasedDateTime="2020")) == [("structure", ("Patient.deceasedDateTime",))]
    # `valueString` and `_valueString` are the same variant.
    assert_valid(observation(valueQuantity=DROP, valueString="x", _valueString={"id": "v"}))


# --------------------------------------------------------------------------------------------
# Cardinality and JSON shapes


def test_arrays_and_singletons():
    assert issues_of(patient(name={"family": "Doe"})) == [("structure", ("Patient.name",))]
    assert issues_of(patient(gender=["female"])) == [("structure", ("Patient.gender",))]
    assert issues_of(patient(identifier=[])) == [("structure", ("Patient.identifier",))]
    assert issues_of(patient(managingOrganization={})) == [("structure", ("Patient.managingOrganization",))]
    assert issues_of(patient(gender=None)) == [("structure", ("Patient.gender",))]
    assert issues_of(patient(maritalStatus="M")) == [("structure", ("Patient.maritalStatus",))]
    assert issues_of(patient(identifier=[None])) == [("structure", ("Patient.identifier[0]",))]


def test_required_elements():
    body = observation(status=DROP, code=DROP)
    assert issues_of(body) == [("required", ("Observation.status",)), ("required", ("Observation.code",))]
    # Inside backbone elements and datatypes that are present.
    assert issues_of(patient(link=[{"type": "seealso"}])) == [("required", ("Patient.link[0].other",))]
    assert issues_of(patient(extension=[{"valueString": "x"}])) == [
        ("required", ("Patient.extension[0].url",))
    ]
    nested = patient(extension=[{"url": "http://e", "extension": [{"valueInteger": 1}]}])
    assert issues_of(nested) == [("required", ("Patient.extension[0].extension[0].url",))]
    # A primitive present only through its extensions counts as present.
    absent = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    assert_valid(observation(status=DROP, _status={"extension": [absent]}))


# --------------------------------------------------------------------------------------------
# Primitive values


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthDate", "1970"),
        ("birthDate", "1970-12"),
        ("birthDate", "2000-02-29"),
        ("deceasedDateTime", "2015-02-07T13:28:17.239+02:00"),
        ("deceasedDateTime", "2015-02-07T13:28:17Z"),
        ("deceasedDateTime", "2015"),
        ("id", "A-Za-z0.9"),
        ("id", "a" * 64),
        ("multipleBirthInteger", 2),
        ("multipleBirthInteger", -(2**31)),
    ],
)
def test_valid_primitives(field, value):
    assert_valid(patient(deceasedBoolean=DROP, **{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("birthDate", "1970-13-01"),
        ("birthDate", "1970-01-01T00:00:00Z"),
        ("birthDate", "70-01-01"),
        ("birthDate", 1970),
        ("deceasedDateTime", "2015-02-07T13:28"),
        ("deceasedDateTime", "2015-02-07T13:28:17"),
        ("id", "a_b"),
        ("id", "a" * 65),
        ("id", ""),
        ("active", "true"),
        ("active", 1),
        ("multipleBirthInteger", True),
        ("multipleBirthInteger", "2"),
        ("multipleBirthInteger", Decimal("2.0")),
        ("multipleBirthInteger", 2**31),
        ("gender", ""),
        ("gender", 3),
    ],
)
def test_invalid_primitives(field, value):
    (issue,) = validate_resource(patient(deceasedBoolean=DROP, **{field: value}))
    assert (issue.code, issue.expression) == ("value", (f"Patient.{field}",))


def test_instant_uri_oid_uuid_code():
    assert_valid(patient(meta={"lastUpdated": "2024-01-02T03:04:05+14:00", "source": "urn:uuid:x"}))
    assert issues_of(patient(meta={"lastUpdated": "2024-01-02"})) == [
        ("value", ("Patient.meta.lastUpdated",))
    ]
    assert issues_of(patient(meta={"profile": ["http://a b"]})) == [("value", ("Patient.meta.profile[0]",))]
    ident = {"system": "urn:ietf:rfc:3986", "value": "x"}
    assert_valid(patient(identifier=[ident]))
    assert issues_of(patient(identifier=[{"system": ""}])) == [("value", ("Patient.identifier[0].system",))]
    # code: no leading/trailing or double whitespace.
    assert issues_of(observation(status=" final")) == [("value", ("Observation.status",))]
    assert issues_of(observation(status="fi  nal")) == [("value", ("Observation.status",))]


def test_oid_and_uuid_datatypes():
    # Extension values give direct access to every primitive type.
    def ext(key, value):
        return patient(extension=[{"url": "http://e", key: value}])

    assert_valid(ext("valueOid", "urn:oid:2.16.840.1.113883"))
    assert issues_of(ext("valueOid", "2.16.840")) == [("value", ("Patient.extension[0].valueOid",))]
    assert_valid(ext("valueUuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"))
    assert issues_of(ext("valueUuid", "urn:uuid:C757873D")) == [
        ("value", ("Patient.extension[0].valueUuid",))
    ]
    assert_valid(ext("valuePositiveInt", 1))
    assert issues_of(ext("valuePositiveInt", 0)) == [("value", ("Patient.extension[0].valuePositiveInt",))]
    assert_valid(ext("valueUnsignedInt", 0))
    assert issues_of(ext("valueUnsignedInt", -1)) == [("value", ("Patient.extension[0].valueUnsignedInt",))]
    assert_valid(ext("valueTime", "23:59:60"))
    assert issues_of(ext("valueTime", "24:00:00")) == [("value", ("Patient.extension[0].valueTime",))]
    assert_valid(ext("valueBase64Binary", "aGVs bG8g\nd29y"))
    assert issues_of(ext("valueBase64Binary", "aGVsbG8")) == [
        ("value", ("Patient.extension[0].valueBase64Binary",))
    ]
    assert_valid(ext("valueMarkdown", "# Title\n\n* item"))
    assert_valid(ext("valueCanonical", "http://hl7.org/fhir/ValueSet/x|4.0.1"))


def test_decimals():
    def quantity(value):
        return observation(valueQuantity={"value": value, "unit": "kg"})

    assert_valid(quantity(Decimal("1.50")))
    assert_valid(quantity(Decimal("1E+3")))
    assert_valid(quantity(3))
    assert_valid(
        parse(
            '{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":0.1}}'
        )
    )
    for bad in ("1.5", True, Decimal("NaN"), None):
        expected = "structure" if bad is None else "value"
        assert issues_of(quantity(bad)) == [(expected, ("Observation.valueQuantity.value",))], bad


def test_strings_need_non_whitespace_content():
    assert issues_of(patient(name=[{"family": "   "}])) == [("value", ("Patient.name[0].family",))]
    assert issues_of(patient(name=[{"given": ["Jane", ""]}])) == [("value", ("Patient.name[0].given[1]",))]
    assert issues_of(patient(name=[{"text": "a\x0cb"}])) == [("value", ("Patient.name[0].text",))]
    # Leading/trailing whitespace and non-ASCII spaces are content.
    assert_valid(patient(name=[{"family": " Doe ", "text": "Jane\u00a0Doe\n"}]))


def test_narrative_div():
    text = {"status": "generated", "div": "<p>hi</p>"}
    assert issues_of(patient(text=text)) == [("value", ("Patient.text.div",))]
    assert issues_of(patient(text={"status": "generated"})) == [("required", ("Patient.text.div",))]


# --------------------------------------------------------------------------------------------
# Primitive extensions


def test_primitive_extensions():
    ext = {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "CL"}
        ]
    }
    assert_valid(patient(name=[{"given": ["a", None], "_given": [None, ext]}]))
    assert_valid(patient(name=[{"given": ["a", "b"], "_given": [ext, None]}]))
    assert_valid(patient(_birthDate={"id": "b1"}))
    assert_valid(patient(birthDate=DROP, _birthDate=ext))
    assert issues_of(patient(name=[{"given": ["a", None]}])) == [("structure", ("Patient.name[0].given[1]",))]
    assert issues_of(patient(name=[{"given": ["a", None], "_given": [None, None]}])) == [
        ("structure", ("Patient.name[0].given[1]",)),
        ("structure", ("Patient.name[0]._given[1]",)),
    ]
    assert issues_of(patient(name=[{"given": ["a", "b"], "_given": [ext]}])) == [
        ("structure", ("Patient.name[0]._given",))
    ]
    assert issues_of(patient(_birthDate={"foo": 1})) == [("structure", ("Patient._birthDate.foo",))]
    assert issues_of(patient(_birthDate=[ext])) == [("structure", ("Patient._birthDate",))]
    assert issues_of(patient(_birthDate="x")) == [("structure", ("Patient._birthDate",))]
    assert issues_of(patient(_birthDate={"extension": [{"valueCode": "x"}]})) == [
        ("required", ("Patient._birthDate.extension[0].url",))
    ]


# --------------------------------------------------------------------------------------------
# Complex types, nested resources, contentReference


def test_complex_datatypes_recurse():
    assert issues_of(patient(identifier=[{"period": {"start": "bad"}}])) == [
        ("value", ("Patient.identifier[0].period.start",))
    ]
    assert issues_of(patient(identifier=[{"assigner": {"identifier": {"use": "nope"}}}])) == [
        ("code-invalid", ("Patient.identifier[0].assigner.identifier.use",))
    ]
    # Age and Duration are specialisations of Quantity.
    onset = {"resourceType": "Condition", "subject": {"reference": "Patient/1"}}
    assert_valid(
        onset | {"onsetAge": {"value": 52, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"}}
    )
    assert issues_of(onset | {"onsetAge": {"value": "52"}}) == [("value", ("Condition.onsetAge.value",))]
    assert issues_of(onset | {"onsetAge": {"comparator": "~"}}) == [
        ("code-invalid", ("Condition.onsetAge.comparator",))
    ]


def test_contained_and_bundle_resources():
    body = patient(contained=[{"resourceType": "Organization", "id": "o1", "name": 5}])
    assert issues_of(body) == [("value", ("Patient.contained[0].name",))]
    assert issues_of(patient(contained=[{"resourceType": "Nope"}])) == [
        ("invalid", ("Patient.contained[0].resourceType",))
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "resource": patient()},
            {"resource": observation(status="done")},
        ],
    }
    assert issues_of(bundle) == [("code-invalid", ("Bundle.entry[1].resource.status",))]
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "r", "resource": {"resourceType": "Patient", "x": 1}}],
    }
    assert issues_of(params) == [("structure", ("Parameters.parameter[0].resource.x",))]
    # Parameters.parameter.part is a contentReference to Parameters.parameter.
    params = {"resourceType": "Parameters", "parameter": [{"name": "a", "part": [{"valueString": "x"}]}]}
    assert issues_of(params) == [("required", ("Parameters.parameter[0].part[0].name",))]


def test_content_reference_recursion():
    q = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [
                    {"linkId": "1.1", "type": "string", "item": [{"linkId": "1.1.1", "type": "display"}]}
                ],
            }
        ],
    }
    assert_valid(q)
    broken = copy.deepcopy(q)
    broken["item"][0]["item"][0]["item"][0]["type"] = "essay"
    del broken["item"][0]["item"][0]["linkId"]
    assert issues_of(broken) == [
        ("code-invalid", ("Questionnaire.item[0].item[0].item[0].type",)),
        ("required", ("Questionnaire.item[0].item[0].linkId",)),
    ]


# --------------------------------------------------------------------------------------------
# Required bindings


def test_required_binding_on_code():
    (issue,) = validate_resource(patient(gender="robot"))
    assert issue == Issue(
        "code-invalid",
        "Code 'robot' is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender",
        expression=("Patient.gender",),
    )
    for gender in ("male", "female", "other", "unknown"):
        assert_valid(patient(gender=gender))
    # Repeating code element: CapabilityStatement.rest.resource.interaction.code.
    cap = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [{"type": "Patient", "interaction": [{"code": "read"}, {"code": "peek"}]}],
            }
        ],
    }
    assert issues_of(cap) == [
        ("code-invalid", ("CapabilityStatement.rest[0].resource[0].interaction[1].code",))
    ]
    cap["rest"][0]["resource"][0]["type"] = "Resource"
    cap["rest"][0]["resource"][0]["interaction"].pop()
    # `type` is bound to resource-types, which lists the abstract types as well.
    assert_valid(cap)
    cap["rest"][0]["resource"][0]["type"] = "Nope"
    assert issues_of(cap) == [("code-invalid", ("CapabilityStatement.rest[0].resource[0].type",))]


def test_unexpandable_value_sets_are_not_checked():
    # mimetypes (BCP-13) and currencies (ISO 4217) are external code systems.
    assert_valid(patient(photo=[{"contentType": "application/x-anything"}]))
    money = {"resourceType": "Invoice", "status": "draft", "totalNet": {"value": 1, "currency": "XYZ"}}
    assert_valid(money)


def test_coding_codes_are_not_bound():
    assert_valid(patient(maritalStatus={"coding": [{"system": "http://x", "code": "anything"}]}))


# --------------------------------------------------------------------------------------------
# Limits


def test_issue_count_is_capped():
    body = patient(name=[{"family": 1} for _ in range(500)])
    issues = validate_resource(body)
    assert len(issues) == MAX_ISSUES + 1
    assert issues[-1].code == "too-costly"


def test_deep_nesting_is_refused_not_crashing():
    ext: dict = {"url": "http://e", "valueString": "x"}
    for _ in range(3000):
        ext = {"url": "http://e", "extension": [ext]}
    issues = validate_resource(patient(extension=[ext]))
    assert issues and issues[-1].diagnostics == "Resource is too deeply nested"


# --------------------------------------------------------------------------------------------
# Regex handling


HL7_STRING = r"[ \r\n\t\S]+"
HL7_BASE64 = r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab=+/ \t\n\r\x0b\x0c\u00a0é9Z-_"), max_size=24))
def test_fast_matchers_agree_with_hl7_regexes(value):
    for regex in (HL7_STRING, HL7_BASE64):
        expected = re.compile(regex, re.ASCII).fullmatch(value) is not None
        assert (_matcher(regex)(value) is not None) == expected, (regex, value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789-T:.+Z"), max_size=32))
def test_non_capturing_rewrite_keeps_date_time_semantics(value):
    regex = type_schema("dateTime").regex
    assert (re.compile(regex).fullmatch(value) is None) == (_matcher(regex)(value) is None)


def test_non_capturing_rewrite_leaves_escapes_and_classes():
    assert _non_capturing(r"(a)\(b[(]([^)(])(?:x)") == r"(?:a)\(b[(](?:[^)(])(?:x)"
    assert _non_capturing(r"[]()](b)") == r"[]()](?:b)"


# --------------------------------------------------------------------------------------------
# Official examples (smoke test over a few; the full run lives in the round-trip test)


EXAMPLES = Path("/tmp/ex/package")


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="HL7 example package not unpacked")
@pytest.mark.parametrize(
    "name",
    [
        "Patient-example",
        "Observation-example",
        "Bundle-bundle-example",
        "Questionnaire-f201",
        "MedicinalProduct-example",
    ],
)
def test_official_examples(name):
    assert_valid(parse((EXAMPLES / f"{name}.json").read_text(encoding="utf-8")))


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="HL7 example package not unpacked")
def test_official_example_that_breaks_the_spec():
    body = parse((EXAMPLES / "Questionnaire-qs1.json").read_text(encoding="utf-8"))
    assert {code for code, _ in issues_of(body)} == {"required"}
