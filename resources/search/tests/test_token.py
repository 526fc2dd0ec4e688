"""token search (search.html#token): system|code forms, :not, :text, refused terminology modifiers,
`_id`, `_tag`/`_security`, escaping and :missing."""

import pytest

from resources.models import TokenIndex

from .helpers import diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db

GENDER = "http://hl7.org/fhir/administrative-gender"


@pytest.fixture
def patients():
    male = resource("Patient", "male")
    index(TokenIndex, male, "gender", system=GENDER, code="male")
    index(TokenIndex, male, "identifier", system="urn:a", code="1")
    index(TokenIndex, male, "_tag", system="urn:tags", code="vip")
    female = resource("Patient", "female")
    index(TokenIndex, female, "gender", system=GENDER, code="female")
    index(TokenIndex, female, "identifier", system="urn:b", code="1")
    index(TokenIndex, female, "identifier", system="urn:b", code="a|b,c$d\\e")
    index(TokenIndex, female, "_security", system="urn:conf", code="R")
    nogender = resource("Patient", "nogender")
    index(TokenIndex, nogender, "identifier", system=None, code="1")
    index(TokenIndex, nogender, "_tag", system=None, code="vip")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("gender=male", {"male"}),
        (f"gender={GENDER}|male", {"male"}),
        ("gender=http://other.org|male", set()),
        ("gender=MALE", set()),  # codes are case-sensitive
        ("gender=male,female", {"male", "female"}),
        ("identifier=1", {"male", "female", "nogender"}),
        ("identifier=urn:a|1", {"male"}),
        ("identifier=|1", {"nogender"}),
        ("identifier=urn:b|", {"female"}),
        ("identifier=urn:a|1,urn:b|1", {"male", "female"}),
        ("identifier=1&gender=female", {"female"}),
        ("identifier=urn:a|1&identifier=urn:b|1", set()),
        ("gender:not=male", {"female", "nogender"}),
        ("gender:not=male,female", {"nogender"}),
        (f"gender:not={GENDER}|female", {"male", "nogender"}),
        ("gender:missing=true", {"nogender"}),
        ("gender:missing=false", {"male", "female"}),
        ("gender:missing=true,false", {"male", "female", "nogender"}),
        ("_tag=vip", {"male", "nogender"}),
        ("_tag=urn:tags|vip", {"male"}),
        ("_tag=|vip", {"nogender"}),
        ("_security=urn:conf|R", {"female"}),
        ("_id=male", {"male"}),
        ("_id=male,female", {"male", "female"}),
        ("_id:not=male", {"female", "nogender"}),
        ("_id=unknown", set()),
    ],
)
def test_token_forms(patients, query, expected):
    assert ids("Patient", query) == expected


@pytest.mark.parametrize(
    "value",
    [
        r"urn:b|a\|b\,c\$d\\e",  # every escapable character in the code
        r"a\|b\,c\$d\\e",
    ],
)
def test_escaped_separators_are_literal(patients, value):
    assert ids("Patient", [("identifier", value)]) == {"female"}


def test_escaped_comma_is_not_an_alternative(patients):
    assert ids("Patient", [("identifier", r"1\,urn:a|1")]) == set()


@pytest.fixture
def observations():
    heart = resource("Observation", "heart")
    index(TokenIndex, heart, "code", system="http://loinc.org", code="8867-4", text="heart rate")
    index(TokenIndex, heart, "code", system="http://snomed.info/sct", code="364075005", text="heart rate")
    weight = resource("Observation", "weight")
    index(TokenIndex, weight, "code", system="http://loinc.org", code="29463-7", text="body weight")
    resource("Observation", "nocode")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("code:text=heart", {"heart"}),
        ("code:text=HEART rate", {"heart"}),
        ("code:text=Bódy", {"weight"}),
        ("code:text=weight", set()),  # starts-with, as a string search
        ("code:text=heart,body", {"heart", "weight"}),
        ("code=http://loinc.org|", {"heart", "weight"}),
        ("code:not=http://loinc.org|8867-4", {"weight", "nocode"}),
        ("code:not=http://snomed.info/sct|", {"weight", "nocode"}),
    ],
)
def test_text_and_not_on_codings(observations, query, expected):
    assert ids("Observation", query) == expected


@pytest.mark.parametrize("modifier", ["above", "below", "in", "not-in"])
def test_terminology_modifiers_are_refused_not_faked(modifier):
    error = refused("Observation", f"code:{modifier}=http://loinc.org|8867-4", strict=False)
    assert error.issues[0].code == "not-supported"
    assert f"code:{modifier}" in diagnostics(error)


def test_of_type():
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    mr = resource("Patient", "mr")
    index(TokenIndex, mr, "identifier", system="urn:h", code="446053", type_system=v2, type_code="MR")
    other = resource("Patient", "other")
    index(TokenIndex, other, "identifier", system="urn:h", code="446053", type_system=v2, type_code="SS")
    assert ids("Patient", f"identifier:of-type={v2}|MR|446053") == {"mr"}
    refused("Patient", "identifier:of-type=MR|446053")


@pytest.mark.parametrize(
    "query",
    [
        "gender=",
        "gender=male,",
        "identifier=a|b|c",
        "identifier=|",
        "gender:exact=male",
        "gender:foo=male",
        "gender:=male",
        "gender:missing=yes",
        "_id=bad id!",
        "_id:missing=true",
        "code:text=  ",
    ],
)
def test_malformed_values_are_refused_naming_parameter_and_value(query):
    name, _, value = query.partition("=")
    error = refused("Patient" if not name.startswith("code") else "Observation", query, strict=False)
    assert f"'{name}'" in diagnostics(error)
    assert f"'{value}'" in diagnostics(error)
