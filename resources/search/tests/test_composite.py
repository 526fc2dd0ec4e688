"""composite search (search.html#composite): `$`-joined components matched within one element
(token+quantity, token+token, token+date, token+string, token+number+number, reference+token)."""

from decimal import Decimal

import pytest

from resources.models import CompositeIndex

from .helpers import date_range, diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def component(row, param, code, **c2):
    index(CompositeIndex, row, param, c1_system=LOINC, c1_code=code, **c2)


@pytest.fixture
def blood_pressures():
    high = resource("Observation", "high")
    component(
        high,
        "component-code-value-quantity",
        "8480-6",
        c2_number=Decimal(150),
        c2_system=UCUM,
        c2_code="mm[Hg]",
    )
    component(
        high,
        "component-code-value-quantity",
        "8462-4",
        c2_number=Decimal(95),
        c2_system=UCUM,
        c2_code="mm[Hg]",
    )
    # the trap: 8480-6 and a value above 120 exist, but in different components
    low = resource("Observation", "low")
    component(
        low,
        "component-code-value-quantity",
        "8480-6",
        c2_number=Decimal(90),
        c2_system=UCUM,
        c2_code="mm[Hg]",
    )
    component(
        low,
        "component-code-value-quantity",
        "8462-4",
        c2_number=Decimal(130),
        c2_system=UCUM,
        c2_code="mm[Hg]",
    )
    resource("Observation", "none")


@pytest.mark.parametrize(
    "query, expected",
    [
        (f"component-code-value-quantity={LOINC}|8480-6$gt120", {"high"}),
        ("component-code-value-quantity=8480-6$gt120", {"high"}),
        (f"component-code-value-quantity={LOINC}|8462-4$gt120", {"low"}),
        (f"component-code-value-quantity={LOINC}|8480-6$gt120,{LOINC}|8480-6$lt95", {"high", "low"}),
        (f"component-code-value-quantity=8480-6$150|{UCUM}|mm[Hg]", {"high"}),
        ("component-code-value-quantity=8480-6$150||mm[Hg]", {"high"}),
        ("component-code-value-quantity=8480-6$150||mg", set()),
        ("component-code-value-quantity=8480-6$ap150", {"high"}),
        ("component-code-value-quantity=8480-6$gt80&component-code-value-quantity=8462-4$gt120", {"low"}),
        ("component-code-value-quantity:missing=true", {"none"}),
    ],
)
def test_token_quantity(blood_pressures, query, expected):
    assert ids("Observation", query) == expected


def test_token_token_date_and_string_components():
    row = resource("Observation", "o")
    component(row, "code-value-concept", "882-1", c2_system="http://snomed.info/sct", c2_code="112144000")
    component(
        row, "code-value-date", "21112-8", **{f"c2_{k}": v for k, v in date_range("1980-02-29").items()}
    )
    component(row, "code-value-string", "8251-1", c2_string="no known allergies")
    resource("Observation", "other")
    assert ids("Observation", "code-value-concept=882-1$http://snomed.info/sct|112144000") == {"o"}
    assert ids("Observation", "code-value-concept=882-1$112144000") == {"o"}
    assert ids("Observation", "code-value-concept=882-1$|112144000") == set()
    assert ids("Observation", "code-value-date=21112-8$1980") == {"o"}
    assert ids("Observation", "code-value-date=21112-8$gt1980-03") == set()
    assert ids("Observation", "code-value-date=21112-8$lt1980-03") == {"o"}
    assert ids("Observation", "code-value-string=8251-1$No Known") == {"o"}
    assert ids("Observation", "code-value-string=8251-1$allergies") == set()


def test_token_number_number():
    row = resource("MolecularSequence", "seq")
    index(
        CompositeIndex,
        row,
        "chromosome-window-coordinate",
        c1_system="http://hl7.org/fhir/chromosome-human",
        c1_code="1",
        c2_number=Decimal(22125500),
        c3_number=Decimal(22125510),
    )
    assert ids("MolecularSequence", "chromosome-window-coordinate=1$ge22125500$le22125510") == {"seq"}
    assert ids("MolecularSequence", "chromosome-window-coordinate=1$ge22125500$lt22125510") == set()
    assert ids("MolecularSequence", "chromosome-window-coordinate=2$ge22125500$le22125510") == set()


def test_reference_token():
    row = resource("DocumentReference", "new")
    index(
        CompositeIndex,
        row,
        "relationship",
        c1_system=None,
        c1_code="DocumentReference/old",
        c2_code="replaces",
    )
    assert ids("DocumentReference", "relationship=DocumentReference/old$replaces") == {"new"}
    assert ids("DocumentReference", "relationship=old$replaces") == {"new"}
    assert ids("DocumentReference", "relationship=OLD$replaces") == set()
    assert ids("DocumentReference", "relationship=old$transforms") == set()


def test_escaped_dollar_is_part_of_a_component():
    row = resource("Observation", "odd")
    component(row, "code-value-concept", "a$b", c2_system=None, c2_code="c,d")
    assert ids("Observation", [("code-value-concept", r"a\$b$c\,d")]) == {"odd"}


@pytest.mark.parametrize(
    "value",
    [f"{LOINC}|8480-6", "8480-6$1$2", "8480-6$abc", "$120", "8480-6$", "8480-6$gt120|mm"],
)
def test_malformed_composites_are_refused(value):
    error = refused("Observation", [("component-code-value-quantity", value)], strict=False)
    assert f"'{value}'" in diagnostics(error)


def test_composite_modifiers_are_refused():
    refused("Observation", "component-code-value-quantity:exact=8480-6$1", strict=False)
