"""number search (search.html#number, #prefix): implicit precision of the search value, every prefix."""

from decimal import Decimal

import pytest

from resources.models import NumberIndex

from .helpers import diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db

VALUES = {
    "v99_4": "99.4",
    "v99_5": "99.5",
    "v100": "100",
    "v100_04": "100.04",
    "v100_4": "100.4",
    "v100_5": "100.5",
    "v101": "101",
    "v0": "0",
    "vneg": "-5",
    "v60": "60",
}


@pytest.fixture
def assessments():
    for fhir_id, value in VALUES.items():
        index(NumberIndex, resource("RiskAssessment", fhir_id), "probability", value=Decimal(value))
    resource("RiskAssessment", "none")


def having(*names):
    return set(names)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("probability=100", having("v99_5", "v100", "v100_04", "v100_4")),  # [99.5, 100.5)
        ("probability=eq100", having("v99_5", "v100", "v100_04", "v100_4")),
        ("probability=100.0", having("v100", "v100_04")),  # [99.95, 100.05)
        ("probability=100.00", having("v100")),  # [99.995, 100.005)
        # one significant figure: [50, 150) (the spec's example says [95, 105), which is two)
        ("probability=1e2", having("v99_4", "v99_5", "v100", "v100_04", "v100_4", "v100_5", "v101", "v60")),
        ("probability=1.0e2", having("v99_4", "v99_5", "v100", "v100_04", "v100_4", "v100_5", "v101")),
        ("probability=1.00e2", having("v99_5", "v100", "v100_04", "v100_4")),
        ("probability=lt100", having("v99_4", "v99_5", "v0", "vneg", "v60")),  # exact 100
        ("probability=le100", having("v99_4", "v99_5", "v100", "v0", "vneg", "v60")),
        ("probability=gt100", having("v100_04", "v100_4", "v100_5", "v101")),
        ("probability=ge100", having("v100", "v100_04", "v100_4", "v100_5", "v101")),
        ("probability=ne100", having("v99_4", "v100_5", "v101", "v0", "vneg", "v60")),
        ("probability=sa100", having("v100_5", "v101")),
        ("probability=eb100", having("v99_4", "v0", "vneg", "v60")),
        ("probability=ap100", set(VALUES) - {"v0", "vneg", "v60"}),  # +-10
        ("probability=ap1000", set()),
        ("probability=ap0", having("v0")),
        ("probability=-5", having("vneg")),
        ("probability=lt-4.5", having("vneg")),
        ("probability=0", having("v0")),
        ("probability=100,0", having("v99_5", "v100", "v100_04", "v100_4", "v0")),
        ("probability=gt99&probability=lt100", having("v99_4", "v99_5")),
        ("probability:missing=true", having("none")),
    ],
)
def test_number_prefixes_and_precision(assessments, query, expected):
    assert ids("RiskAssessment", query) == expected


@pytest.mark.parametrize(
    "value", ["abc", "1_000", "xx5", "NaN", "Infinity", "gt", "1e", "1.2.3", "5%", "0x10", "1e9999"]
)
def test_malformed_numbers_are_refused(value):
    error = refused("RiskAssessment", [("probability", value)], strict=False)
    assert "'probability'" in diagnostics(error) and f"'{value}'" in diagnostics(error)


def test_more_digits_than_a_double_holds_still_find_the_value():
    index(NumberIndex, resource("RiskAssessment", "long"), "probability", value=Decimal("66.899999999999991"))
    assert ids("RiskAssessment", "probability=66.899999999999991") == {"long"}
    assert ids("RiskAssessment", "probability=66.89999999999999") == {"long"}
    assert ids("RiskAssessment", "probability=66.9") == {"long"}
    assert ids("RiskAssessment", "probability=66.89999999999") == set()  # [..985, ..995)


def test_number_has_no_modifiers():
    refused("RiskAssessment", "probability:exact=1", strict=False)
