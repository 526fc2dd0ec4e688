"""string search (search.html#string): starts-with on the folded value, :contains, :exact, case,
accent and whitespace folding, LIKE wildcards taken literally, escaping and :missing."""

import pytest

from resources.models import StringIndex
from resources.search.normalize import normalize_string

from .helpers import diagnostics, ids, index, refused, resource

pytestmark = pytest.mark.django_db


def named(fhir_id: str, *families: str) -> None:
    row = resource("Patient", fhir_id)
    for family in families:
        index(StringIndex, row, "family", value=normalize_string(family), exact=family)


@pytest.fixture
def patients():
    named("muller", "Müller")
    named("mullins", "Mullins")
    named("vanderberg", "  Van   der Berg")
    named("eve", "Eve")
    named("severine", "Séverine")
    named("strasse", "Straße")
    named("underscore", "a_b")
    named("comma", "Smith, Jr")
    named("twonames", "Ng", "Nguyen-Ng")
    resource("Patient", "nofamily")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("family=muller", {"muller"}),
        ("family=MÜLLER", {"muller"}),
        ("family=mul", {"muller", "mullins"}),
        ("family=Mül", {"muller", "mullins"}),
        ("family=ller", set()),  # starts-with by default
        ("family=van der", {"vanderberg"}),
        ("family=  VAN   DER   b", {"vanderberg"}),
        ("family=strasse", {"strasse"}),  # ß casefolds to ss
        ("family=STRASSE", {"strasse"}),
        ("family=eve", {"eve"}),
        ("family:contains=eve", {"eve", "severine"}),
        ("family:contains=LLER", {"muller"}),
        ("family:contains=der b", {"vanderberg"}),
        ("family:exact=Müller", {"muller"}),
        ("family:exact=müller", set()),
        ("family:exact=Muller", set()),
        ("family:exact=Mül", set()),
        ("family:exact=Eve,Mullins", {"eve", "mullins"}),
        ("family=a_", {"underscore"}),
        ("family=a_b", {"underscore"}),
        ("family=m_ller", set()),  # '_' is not a LIKE wildcard here
        ("family=%", set()),
        ("family:contains=%", set()),
        ("family=ng", {"twonames"}),
        ("family=nguyen", {"twonames"}),
        ("family=eve,mullins", {"eve", "mullins"}),
        ("family=eve&family=sev", set()),
        ("family=mu&family=mull", {"muller", "mullins"}),
        ("family:missing=true", {"nofamily"}),
        (
            "family:missing=false",
            {
                "muller",
                "mullins",
                "vanderberg",
                "eve",
                "severine",
                "strasse",
                "underscore",
                "comma",
                "twonames",
            },
        ),
    ],
)
def test_string_search(patients, query, expected):
    assert ids("Patient", query) == expected


def test_escaped_comma_is_part_of_the_value(patients):
    assert ids("Patient", [("family", r"smith\, jr")]) == {"comma"}
    assert ids("Patient", [("family:exact", r"Smith\, Jr")]) == {"comma"}
    # unescaped, the comma separates two alternatives, 'Smith' and ' Jr', neither exact
    assert ids("Patient", [("family:exact", "Smith, Jr")]) == set()


@pytest.mark.parametrize("query", ["family:text=x", "family:not=x", "family:below=x", "family=", "family= "])
def test_malformed(query):
    name, _, value = query.partition("=")
    error = refused("Patient", query, strict=False)
    assert f"'{name}'" in diagnostics(error) and f"'{value}'" in diagnostics(error)
