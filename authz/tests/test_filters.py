"""Property filters: parsing, redaction of returned resources, and the search parameters and includes
a redacting rule must refuse."""

from __future__ import annotations

import copy
import hashlib
import hmac

import pytest
from django.conf import settings as django_settings

from authz.filters import (
    PropertyFilter,
    _param_reads,
    _Reader,
    apply_filters,
    blocked_includes,
    blocked_search_params,
    parse_property_filters,
)
from authz.validators.base import RuleError
from resources import definitions

REDACTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "REDACTED"}
PATIENT = frozenset({"Patient"})
EXAMPLE_RULE = [
    {"path": "name", "action": "remove"},
    {"path": "telecom", "action": "remove"},
    {"path": "birthDate", "action": "generalize-year"},
    {"path": "identifier", "action": "pseudonymize"},
    {"path": "address.line", "action": "mask"},
]
EXAMPLE_ENTRIES = [(e["path"], e["action"]) for e in EXAMPLE_RULE]


def filters(*entries: tuple[str, str], types: frozenset[str] | None = None) -> tuple[PropertyFilter, ...]:
    return parse_property_filters([{"path": p, "action": a} for p, a in entries], types)


def pseudonym(text: str, where: str) -> str:
    """What a pseudonym must be, computed apart from the code under test: HMAC-SHA256 under the
    dedicated key over element path, NUL and value, 128 bits in hex."""
    key = django_settings.FHIR_PSEUDONYM_KEY.encode()
    return hmac.new(key, f"{where}\x00{text}".encode(), hashlib.sha256).hexdigest()[:32]


def redacted(body: dict) -> dict:
    """`body` as apply_filters returns it when something changed: labelled REDACTED."""
    out = dict(body)
    meta = dict(out.get("meta", {}))
    meta["security"] = [*meta.get("security", []), REDACTED]
    out["meta"] = meta
    return out


def patient(**elements) -> dict:
    return {"resourceType": "Patient", "id": "p1", **elements}


# --- apply_filters --------------------------------------------------------------------------------

NAME = {"family": "Doe", "given": ["Jane", "Q"], "period": {"start": "2001-01-01"}}

APPLY_CASES = [
    # (case, filters, input, expected; None = unchanged)
    (
        "remove simple",
        [("birthDate", "remove")],
        patient(birthDate="1980-03-04", gender="female"),
        redacted(patient(gender="female")),
    ),
    (
        "remove takes the primitive's extensions",
        [("birthDate", "remove")],
        patient(
            birthDate="1980-03-04",
            _birthDate={"extension": [{"url": "birthTime", "valueDateTime": "1980-03-04T10:00:00Z"}]},
        ),
        redacted(patient()),
    ),
    (
        "remove nested, emptied parents go",
        [("name.family", "remove")],
        patient(name=[{"family": "Doe", "given": ["Jane"]}, {"family": "Roe"}]),
        redacted(patient(name=[{"given": ["Jane"]}])),
    ),
    (
        "remove through arrays",
        [("address.line", "remove")],
        patient(address=[{"line": ["1 Main St", "Apt 2"], "city": "Springfield"}, {"line": ["PO Box 9"]}]),
        redacted(patient(address=[{"city": "Springfield"}])),
    ),
    ("remove absent", [("telecom", "remove")], patient(gender="male"), None),
    ("remove absent nested", [("address.line", "remove")], patient(address=[{"city": "X"}]), None),
    ("mask simple", [("gender", "mask")], patient(gender="female"), redacted(patient(gender="***"))),
    (
        "mask complex: text masked, dates gone",
        [("name", "mask")],
        patient(name=[NAME]),
        redacted(patient(name=[{"family": "***", "given": ["***", "***"]}])),
    ),
    (
        "mask through arrays",
        [("address.line", "mask")],
        patient(address=[{"line": ["1 Main St", "Apt 2"], "city": "Springfield"}, {"line": ["PO Box 9"]}]),
        redacted(patient(address=[{"line": ["***", "***"], "city": "Springfield"}, {"line": ["***"]}])),
    ),
    ("mask a date removes it", [("birthDate", "mask")], patient(birthDate="1980-03-04"), redacted(patient())),
    (
        "mask drops numbers and booleans",
        [("multipleBirth", "mask"), ("active", "mask")],
        patient(multipleBirthInteger=2, active=True, gender="other"),
        redacted(patient(gender="other")),
    ),
    ("mask absent", [("name", "mask")], patient(active=True), None),
    (
        "pseudonymize keeps system, use and type",
        [("identifier", "pseudonymize")],
        patient(
            identifier=[
                {
                    "use": "official",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                    },
                    "system": "urn:oid:1.2.3",
                    "value": "12345",
                    "period": {"start": "2001"},
                    "assigner": {"display": "Acme Hospital"},
                },
                {"system": "urn:ssn", "value": "999-99-9999"},
            ]
        ),
        redacted(
            patient(
                identifier=[
                    {
                        "use": "official",
                        "type": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                            ]
                        },
                        "system": "urn:oid:1.2.3",
                        "value": pseudonym("12345", "identifier.value"),
                        "assigner": {"display": pseudonym("Acme Hospital", "identifier.assigner.display")},
                    },
                    {"system": "urn:ssn", "value": pseudonym("999-99-9999", "identifier.value")},
                ]
            )
        ),
    ),
    (
        "pseudonymize nested primitive",
        [("name.family", "pseudonymize")],
        patient(name=[{"family": "Doe", "given": ["Jane"]}]),
        redacted(patient(name=[{"family": pseudonym("Doe", "name.family"), "given": ["Jane"]}])),
    ),
    (
        "pseudonymize telecom keeps system and use",
        [("telecom", "pseudonymize")],
        patient(telecom=[{"system": "phone", "use": "home", "value": "555-0100", "rank": 1}]),
        redacted(
            patient(
                telecom=[{"system": "phone", "use": "home", "value": pseudonym("555-0100", "telecom.value")}]
            )
        ),
    ),
    ("pseudonymize absent", [("identifier", "pseudonymize")], patient(gender="male"), None),
    (
        "generalize-year date",
        [("birthDate", "generalize-year")],
        patient(birthDate="1980-03-04"),
        redacted(patient(birthDate="1980")),
    ),
    (
        "generalize-month date",
        [("birthDate", "generalize-month")],
        patient(birthDate="1980-03-04"),
        redacted(patient(birthDate="1980-03")),
    ),
    ("generalize coarser than asked", [("birthDate", "generalize-month")], patient(birthDate="1980"), None),
    (
        "generalize drops the primitive's extensions",
        [("birthDate", "generalize-year")],
        patient(
            birthDate="1980",
            _birthDate={"extension": [{"url": "birthTime", "valueDateTime": "1980-03-04T10:00:00Z"}]},
        ),
        redacted(patient(birthDate="1980")),
    ),
    (
        "generalize dateTime keeps the year as written in its time zone",
        [("recordedDate", "generalize-year")],
        {"resourceType": "Condition", "recordedDate": "2019-12-31T23:30:00-05:00"},
        redacted({"resourceType": "Condition", "recordedDate": "2019"}),
    ),
    (
        "generalize-month instant with time zone",
        [("issued", "generalize-month")],
        {"resourceType": "Observation", "issued": "2020-03-01T00:30:00+02:00"},
        redacted({"resourceType": "Observation", "issued": "2020-03"}),
    ),
    ("generalize absent", [("birthDate", "generalize-year")], patient(gender="male"), None),
    (
        "choice element: every type of it",
        [("value", "remove")],
        {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 7, "unit": "mmol/L"}},
        redacted({"resourceType": "Observation", "status": "final"}),
    ),
    (
        "choice element not touching component.value",
        [("value[x]", "mask")],
        {"resourceType": "Observation", "valueString": "positive", "component": [{"valueString": "weak"}]},
        redacted(
            {"resourceType": "Observation", "valueString": "***", "component": [{"valueString": "weak"}]}
        ),
    ),
    (
        "below a choice element",
        [("value.unit", "remove")],
        {"resourceType": "Observation", "valueQuantity": {"value": 7, "unit": "mmol/L"}},
        redacted({"resourceType": "Observation", "valueQuantity": {"value": 7}}),
    ),
    (
        "prefixed filter only for its type",
        [("Patient.name", "remove")],
        {"resourceType": "Practitioner", "name": [{"family": "Who"}]},
        None,
    ),
    (
        "contained resources filtered by their own type",
        [("Patient.name", "remove")],
        {
            "resourceType": "Observation",
            "text": {"status": "generated", "div": "<div>Jane Doe</div>"},
            "contained": [
                {"resourceType": "Patient", "id": "c", "name": [{"family": "Doe"}], "gender": "female"}
            ],
        },
        redacted(
            {
                "resourceType": "Observation",
                "contained": [{"resourceType": "Patient", "id": "c", "gender": "female"}],
            }
        ),
    ),
    (
        "narrative removed with the element",
        [("name", "remove")],
        patient(text={"status": "generated", "div": "<div>Jane Doe</div>"}, name=[{"family": "Doe"}]),
        redacted(patient()),
    ),
    (
        "narrative removed even when the element is absent",
        [("name", "remove")],
        patient(text={"status": "generated", "div": "<div>Jane Doe</div>"}),
        redacted(patient()),
    ),
    (
        "narrative kept on a type no filter applies to",
        [("Patient.birthDate", "remove")],
        {"resourceType": "Practitioner", "text": {"status": "generated", "div": "<div>Dr Who</div>"}},
        None,
    ),
    (
        "REDACTED added once, other labels kept",
        [("gender", "remove")],
        patient(gender="male", meta={"versionId": "3", "security": [{"system": "s", "code": "R"}, REDACTED]}),
        patient(meta={"versionId": "3", "security": [{"system": "s", "code": "R"}, REDACTED]}),
    ),
    (
        "several filters, one label",
        EXAMPLE_ENTRIES,
        patient(
            name=[{"family": "Doe"}],
            telecom=[{"system": "phone", "value": "555"}],
            birthDate="1980-03-04",
            identifier=[{"system": "urn:mrn", "value": "42"}],
            address=[{"line": ["1 Main St"], "city": "Springfield"}],
            gender="female",
        ),
        redacted(
            patient(
                birthDate="1980",
                identifier=[{"system": "urn:mrn", "value": pseudonym("42", "identifier.value")}],
                address=[{"line": ["***"], "city": "Springfield"}],
                gender="female",
            )
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "entries", "body", "expected"), APPLY_CASES, ids=[c[0] for c in APPLY_CASES]
)
def test_apply_filters(case, entries, body, expected):
    parsed = filters(*entries)
    before = copy.deepcopy(body)
    out = apply_filters(body, parsed)
    assert out == (before if expected is None else expected)
    assert body == before, "the input must not be modified"
    assert out is not body
    security = out.get("meta", {}).get("security", [])
    assert security.count(REDACTED) == (0 if expected is None else 1)


def test_output_changes_do_not_reach_the_input():
    body = patient(name=[{"family": "Doe"}], address=[{"city": "X", "line": ["1"]}], meta={"versionId": "1"})
    before = copy.deepcopy(body)
    out = apply_filters(body, filters(("name", "remove")))
    out["meta"]["security"].append({"code": "X"})
    out["gender"] = "male"
    assert body == before


def test_pseudonyms_are_stable_and_distinct():
    parsed = filters(("identifier", "pseudonymize"))

    def value(v: str) -> str:
        return apply_filters(patient(identifier=[{"system": "urn:mrn", "value": v}]), parsed)["identifier"][
            0
        ]["value"]

    assert value("12345") == value("12345") == pseudonym("12345", "identifier.value")
    assert value("12345") != value("12346")
    # issue 10, item 12: 64 bits were too few; at least 128 bits (32 hex digits)
    assert len(value("12345")) == 32 and "12345" not in value("12345")


def test_pseudonyms_use_their_own_key_not_the_secret_key(settings):
    """Issue 10, item 12: pseudonyms were keyed with SECRET_KEY; they have a key of their own."""
    parsed = filters(("identifier", "pseudonymize"))
    body = patient(identifier=[{"system": "urn:mrn", "value": "12345"}])
    first = apply_filters(body, parsed)["identifier"][0]["value"]
    settings.SECRET_KEY = "another-secret"
    assert apply_filters(body, parsed)["identifier"][0]["value"] == first
    settings.FHIR_PSEUDONYM_KEY = "another-pseudonym-key-of-32-characters-or-more"
    assert apply_filters(body, parsed)["identifier"][0]["value"] != first
    assert apply_filters(body, parsed)["identifier"][0]["value"] == pseudonym("12345", "identifier.value")


def test_pseudonyms_are_bound_to_the_element():
    """Issue 10, item 12: the same value in two elements gave the same pseudonym, linking them."""
    parsed = filters(("identifier", "pseudonymize"), ("telecom", "pseudonymize"))
    out = apply_filters(
        patient(
            identifier=[{"system": "urn:phone-id", "value": "555-0100"}],
            telecom=[{"system": "phone", "value": "555-0100"}],
        ),
        parsed,
    )
    assert out["identifier"][0]["value"] != out["telecom"][0]["value"]
    # the element path, not the type: a `*` rule's `subject` links an Observation and a Condition
    subject = filters(("subject", "pseudonymize"))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/1"},
    }
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/1"}}
    assert (
        apply_filters(observation, subject)["subject"]["reference"]
        == apply_filters(condition, subject)["subject"]["reference"]
        == pseudonym("Patient/1", "subject.reference")
    )
    # a choice element is named without its type, whichever type the value has
    value = filters(("Observation.value", "pseudonymize"))
    observed = apply_filters(dict(observation, valueString="positive"), value)
    assert observed["valueString"] == pseudonym("positive", "value")


def test_pseudonym_key_file_is_generated_once_and_private(tmp_path):
    import stat

    from fhirplatform.keys import secret_key

    path = tmp_path / "var" / "pseudonym.key"
    first = secret_key(str(path))
    assert len(first) == 64 and int(first, 16) >= 0
    assert secret_key(str(path)) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(str(tmp_path / "other.key")) != first


def test_no_filters_returns_a_copy():
    body = patient(text={"status": "generated", "div": "<div/>"}, name=[{"family": "Doe"}])
    out = apply_filters(body, ())
    assert out == body and out is not body


# --- parse_property_filters -----------------------------------------------------------------------

PARSE_ERRORS = [
    # (case, raw, resource types, words of the message)
    ("not a list", {"path": "name", "action": "remove"}, PATIENT, "must be a list"),
    ("None", None, PATIENT, "must be a list"),
    ("entry not a mapping", ["name"], PATIENT, "property-filters[0]: each filter is a mapping"),
    ("unknown key", [{"path": "name", "action": "remove", "when": "x"}], PATIENT, "unknown key(s) when"),
    ("missing path", [{"action": "remove"}], PATIENT, "'path' is required"),
    ("missing action", [{"path": "name"}], PATIENT, "'action' is required"),
    ("unknown action", [{"path": "name", "action": "hash"}], PATIENT, "unknown action 'hash'"),
    ("action not text", [{"path": "name", "action": ["remove"]}], PATIENT, "unknown action"),
    ("empty path", [{"path": "", "action": "remove"}], PATIENT, "'path' must be a non-empty element path"),
    ("blank path", [{"path": "  ", "action": "remove"}], PATIENT, "'path' must be a non-empty element path"),
    ("path not text", [{"path": 5, "action": "remove"}], PATIENT, "'path' must be a non-empty element path"),
    ("bad syntax", [{"path": "name..family", "action": "remove"}], PATIENT, "is not an element path"),
    (
        "no such element",
        [{"path": "species", "action": "remove"}],
        PATIENT,
        "'species' is not an element of Patient",
    ),
    (
        "no such element on any type",
        [{"path": "species", "action": "remove"}],
        frozenset({"Patient", "Observation"}),
        "not an element of any of the rule's types",
    ),
    (
        "no such element anywhere",
        [{"path": "nonsense", "action": "remove"}],
        None,
        "not an element of any type",
    ),
    (
        "no such child",
        [{"path": "name.street", "action": "remove"}],
        PATIENT,
        "'name.street' is not an element",
    ),
    ("below a primitive", [{"path": "birthDate.year", "action": "remove"}], PATIENT, "is not an element"),
    (
        "choice element written by its JSON name",
        [{"path": "valueQuantity", "action": "remove"}],
        frozenset({"Observation"}),
        "write 'value'",
    ),
    (
        "[x] on a non-choice element",
        [{"path": "name[x]", "action": "remove"}],
        PATIENT,
        "is not an element of Patient",
    ),
    (
        "unknown type prefix",
        [{"path": "Patinet.name", "action": "remove"}],
        PATIENT,
        "'Patinet' in path 'Patinet.name' is not an R4 resource type",
    ),
    (
        "prefix outside the rule",
        [{"path": "Observation.status", "action": "remove"}],
        PATIENT,
        "names Observation, which the rule does not cover",
    ),
    (
        "type alone",
        [{"path": "Patient", "action": "remove"}],
        PATIENT,
        "names a resource type but no element",
    ),
    ("id", [{"path": "id", "action": "remove"}], PATIENT, "'id' cannot be filtered"),
    ("prefixed id", [{"path": "Patient.id", "action": "mask"}], PATIENT, "'id' cannot be filtered"),
    ("meta", [{"path": "meta", "action": "remove"}], PATIENT, "'meta' cannot be filtered"),
    ("under meta", [{"path": "meta.security", "action": "remove"}], PATIENT, "'meta' cannot be filtered"),
    (
        "resourceType",
        [{"path": "resourceType", "action": "remove"}],
        None,
        "'resourceType' cannot be filtered",
    ),
    (
        "generalize a string",
        [{"path": "name.family", "action": "generalize-year"}],
        PATIENT,
        "generalize-year needs a date",
    ),
    (
        "generalize a choice with a boolean",
        [{"path": "deceased", "action": "generalize-month"}],
        PATIENT,
        "can be boolean",
    ),
    (
        "generalize a Period",
        [{"path": "Observation.effective", "action": "generalize-year"}],
        None,
        "can be Period, Timing",
    ),
    (
        "filtered twice",
        [{"path": "name", "action": "remove"}, {"path": "name", "action": "mask"}],
        PATIENT,
        "property-filters[1]: path 'name' is filtered twice",
    ),
    (
        "index in the message",
        [{"path": "name", "action": "remove"}, {"path": "x", "action": "remove"}],
        PATIENT,
        "property-filters[1]:",
    ),
]


@pytest.mark.parametrize(("case", "raw", "types", "message"), PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors(case, raw, types, message):
    with pytest.raises(RuleError) as caught:
        parse_property_filters(raw, types)
    assert message in str(caught.value)


PARSE_OK = [
    ("unprefixed", "name", "remove", PATIENT, PropertyFilter("name", "remove")),
    ("prefixed", "Patient.name", "mask", PATIENT, PropertyFilter("Patient.name", "mask")),
    (
        "prefixed, every type",
        "Observation.value",
        "remove",
        None,
        PropertyFilter("Observation.value", "remove"),
    ),
    (
        "choice written with [x]",
        "value[x]",
        "remove",
        frozenset({"Observation"}),
        PropertyFilter("value", "remove"),
    ),
    ("nested", "address.line", "pseudonymize", PATIENT, PropertyFilter("address.line", "pseudonymize")),
    (
        "exists on one of the types",
        "birthDate",
        "generalize-month",
        frozenset({"Patient", "Observation"}),
        None,
    ),
    ("instant", "issued", "generalize-year", frozenset({"Observation"}), None),
    ("dateTime below a choice", "effective.start", "generalize-year", frozenset({"Observation"}), None),
    ("backbone element", "contact.name.family", "remove", PATIENT, None),
    ("whitespace trimmed", " name ", "remove", PATIENT, PropertyFilter("name", "remove")),
]


@pytest.mark.parametrize(
    ("case", "path", "action", "types", "expected"), PARSE_OK, ids=[c[0] for c in PARSE_OK]
)
def test_parse_ok(case, path, action, types, expected):
    parsed = parse_property_filters([{"path": path, "action": action}], types)
    assert len(parsed) == 1 and parsed[0].action == action
    if expected is not None:
        assert parsed[0] == expected


def test_parse_empty_list():
    assert parse_property_filters([], PATIENT) == ()


def test_filter_split_is_precomputed():
    f = PropertyFilter("Patient.address.line", "mask")
    assert (f.type_name, f.steps) == ("Patient", ("address", "line"))
    assert hash(f) == hash(PropertyFilter("Patient.address.line", "mask"))


# --- blocked_search_params / blocked_includes -----------------------------------------------------


def test_example_rule_blocks_what_reads_the_filtered_elements():
    blocked = blocked_search_params("Patient", parse_property_filters(EXAMPLE_RULE, PATIENT))
    for code in [
        "name",
        "family",
        "given",
        "phonetic",
        "telecom",
        "phone",
        "email",
        "birthdate",
        "identifier",
    ]:
        assert code in blocked, code
    for code in ["_text", "_content", "address"]:  # `address` reads every part, lines included
        assert code in blocked, code
    for code in [
        "gender",
        "active",
        "_id",
        "_lastUpdated",
        "address-city",
        "death-date",
        "general-practitioner",
    ]:
        assert code not in blocked, code


BLOCK_CASES = [
    # (case, resource type, filters, blocked (subset), not blocked)
    (
        "whole address",
        "Patient",
        [("address", "remove")],
        {"address", "address-city", "address-country", "address-postalcode", "address-state", "address-use"},
        {"gender"},
    ),
    (
        "below what is read",
        "Patient",
        [("name.given", "mask")],
        {"name", "given", "phonetic"},
        {"family", "gender"},
    ),
    ("deceased", "Patient", [("deceased", "remove")], {"deceased", "death-date"}, {"birthdate"}),
    (
        "Observation value",
        "Observation",
        [("value", "remove")],
        {
            "value-quantity",
            "value-string",
            "value-concept",
            "value-date",
            "combo-value-quantity",
            "combo-value-concept",
            "code-value-quantity",
            "combo-code-value-quantity",
        },
        {
            "component-value-quantity",
            "component-value-concept",
            "component-code-value-quantity",
            "code",
            "combo-code",
            "_id",
        },
    ),
    (
        "Observation component.value",
        "Observation",
        [("component.value", "remove")],
        {
            "component-value-quantity",
            "component-code-value-quantity",
            "combo-value-quantity",
            "combo-code-value-quantity",
        },
        {"value-quantity", "code-value-quantity", "component-code"},
    ),
    (
        "reference filtered",
        "Observation",
        [("subject", "remove")],
        {"subject", "patient"},
        {"performer", "code"},
    ),
    (
        "where criteria read",
        "PlanDefinition",
        [("relatedArtifact.type", "remove")],
        {"depends-on", "composed-of"},
        {"url"},
    ),
    (
        "%resource in a composite",
        "MolecularSequence",
        [("referenceSeq.chromosome", "remove")],
        {"chromosome", "chromosome-variant-coordinate", "chromosome-window-coordinate"},
        {"type"},
    ),
    ("bare names", "InsurancePlan", [("alias", "remove")], {"name"}, {"status"}),
    (
        "filter prefixed for another type",
        "Practitioner",
        [("Patient.name", "remove")],
        set(),
        {"name", "_text", "_content"},
    ),
    (
        "element absent on this type",
        "Observation",
        [("birthDate", "remove")],
        set(),
        {"_text", "_content", "code"},
    ),
]


@pytest.mark.parametrize(
    ("case", "rtype", "entries", "blocked", "allowed"), BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES]
)
def test_blocked_search_params(case, rtype, entries, blocked, allowed):
    result = blocked_search_params(rtype, filters(*entries))
    assert blocked <= result, blocked - result
    assert not (allowed & result), allowed & result
    assert result <= set(definitions.search_parameters(rtype))


def test_full_text_blocked_whenever_a_filter_applies():
    result = blocked_search_params("Patient", filters(("gender", "remove")))
    assert {"_text", "_content", "gender"} <= result
    assert "name" not in result


def test_blocking_is_cached_and_takes_lists():
    parsed = filters(("name", "remove"))
    assert blocked_search_params("Patient", list(parsed)) is blocked_search_params("Patient", parsed)
    assert blocked_search_params("NoSuchType", parsed) == frozenset()


def test_every_r4_expression_is_read():
    """The reader follows every R4 expression; only the expression-less ones are blocked blindly."""
    unread = [
        (t, code)
        for t in sorted(definitions.resource_types())
        for code in definitions.search_parameters(t)
        if _param_reads(t, code) is None and code not in ("_text", "_content", "_query")
    ]
    assert unread == []


READER_CASES = [
    ("Patient.name.family", "Patient", {("name", "family")}),
    ("(Patient.telecom.where(system='phone'))", "Patient", {("telecom",), ("telecom", "system")}),
    ("Patient.deceased.exists() and Patient.deceased != false", "Patient", {("deceased",)}),
    ("Observation.value as Quantity", "Observation", {("value",)}),
    ("Observation.value.as(Quantity)", "Observation", {("value",)}),
    ("(Observation.value as CodeableConcept).text", "Observation", {("value", "text")}),
    ("Observation.subject.where(resolve() is Patient)", "Observation", {("subject",)}),
    ("Bundle.entry[0].resource", "Bundle", {("entry", "resource")}),
    ("Resource.meta.lastUpdated", "Patient", {("meta", "lastUpdated")}),
]


@pytest.mark.parametrize(("expression", "rtype", "reads"), READER_CASES)
def test_reader(expression, rtype, reads):
    reader = _Reader(expression, rtype)
    assert set(reader.whole(frozenset({()}))) | reader.reads == reads


@pytest.mark.parametrize(
    "expression", ["Practitioner.name", "Patient.name.where(", "Patient.name ? x", "%vs.x"]
)
def test_reader_refuses_what_it_cannot_follow(expression):
    with pytest.raises(Exception) as caught:
        _Reader(expression, "Patient").whole(frozenset({()}))
    assert type(caught.value).__name__ == "_Unreadable"


INCLUDE_CASES = [
    ("Patient", [("generalPractitioner", "remove")], {"Patient:general-practitioner"}),
    ("Patient", [("managingOrganization", "pseudonymize")], {"Patient:organization"}),
    ("Patient", EXAMPLE_ENTRIES, set()),
    ("Observation", [("subject", "remove")], {"Observation:subject", "Observation:patient"}),
    ("Observation", [("Patient.generalPractitioner", "remove")], set()),
]


@pytest.mark.parametrize(("rtype", "entries", "expected"), INCLUDE_CASES)
def test_blocked_includes(rtype, entries, expected):
    assert blocked_includes(rtype, filters(*entries)) == expected


def test_blocked_includes_unknown_source():
    assert blocked_includes("*", filters(("name", "remove"))) == frozenset()
