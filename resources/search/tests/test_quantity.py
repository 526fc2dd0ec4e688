"""quantity search (search.html#quantity): number prefixes and precision, with and without system
and unit (`5.4|http://unitsofmeasure.org|mg`, `5.4||mg`, `5.4`)."""

from decimal import Decimal

import pytest

from resources.models import QuantityIndex

from .helpers import diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db

UCUM = "http://unitsofmeasure.org"


@pytest.fixture
def observations():
    for fhir_id, value, system, code, unit in [
        ("mg", "5.4", UCUM, "mg", "mg"),
        ("g", "5.4", UCUM, "g", "g"),
        ("freetext_mg", "5.4", None, None, "mg"),
        ("six_mg", "6.0", UCUM, "mg", "milligram"),
        ("edge_mg", "5.45", UCUM, "mg", "mg"),
        ("other_system", "5.4", "http://snomed.info/sct", "258684004", "mg"),
    ]:
        row = resource("Observation", fhir_id)
        index(QuantityIndex, row, "value-quantity", value=Decimal(value), system=system, code=code, unit=unit)
    resource("Observation", "novalue")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("value-quantity=5.4", {"mg", "g", "freetext_mg", "other_system"}),
        (f"value-quantity=5.4|{UCUM}|mg", {"mg"}),
        ("value-quantity=5.4||mg", {"mg", "freetext_mg", "other_system"}),  # code or unit
        (f"value-quantity=5.4|{UCUM}|", {"mg", "g"}),
        ("value-quantity=5.4||", {"mg", "g", "freetext_mg", "other_system"}),
        (f"value-quantity=gt5.4|{UCUM}|mg", {"six_mg", "edge_mg"}),
        (f"value-quantity=ge5.45|{UCUM}|mg", {"six_mg", "edge_mg"}),
        (f"value-quantity=lt6|{UCUM}|mg", {"mg", "edge_mg"}),
        (f"value-quantity=le6|{UCUM}|mg", {"mg", "edge_mg", "six_mg"}),
        (f"value-quantity=ne5.4|{UCUM}|mg", {"six_mg", "edge_mg"}),
        (f"value-quantity=sa5.4|{UCUM}|mg", {"six_mg", "edge_mg"}),
        (f"value-quantity=eb6|{UCUM}|mg", {"mg", "edge_mg"}),
        ("value-quantity=ap5.4||mg", {"mg", "freetext_mg", "edge_mg", "other_system"}),  # [4.86, 5.94]
        ("value-quantity=ap6||milligram", {"six_mg"}),
        ("value-quantity=6", {"six_mg"}),
        ("value-quantity=5.40", {"mg", "g", "freetext_mg", "other_system"}),  # [5.395, 5.405)
        (f"value-quantity=5.4|{UCUM}|mg,6|{UCUM}|mg", {"mg", "six_mg"}),
        ("value-quantity=5.4||g&value-quantity=lt6", {"g"}),
        ("value-quantity:missing=true", {"novalue"}),
    ],
)
def test_quantity_search(observations, query, expected):
    assert ids("Observation", query) == expected


def test_escaped_bar_in_unit():
    row = resource("Observation", "odd")
    index(QuantityIndex, row, "value-quantity", value=Decimal("1"), system="urn:u", code="a|b", unit=None)
    assert ids("Observation", [("value-quantity", r"1|urn:u|a\|b")]) == {"odd"}


@pytest.mark.parametrize("value", ["5.4|mg", "abc||mg", "5.4|a|b|c", "||mg", "xx5.4||mg", "gt||mg", ""])
def test_malformed_quantities_are_refused(value):
    error = refused("Observation", [("value-quantity", value)], strict=False)
    assert "'value-quantity'" in diagnostics(error) and f"'{value}'" in diagnostics(error)
