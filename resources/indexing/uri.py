"""URI index rows (https://hl7.org/fhir/R4/search.html#uri).

Row columns: (value,): uri, url, canonical, oid and uuid values exactly as written (cut to 512
characters); a canonical keeps its `|version`, since uri search compares the whole text.
`_profile` (Resource.meta.profile, canonical) is a uri parameter in R4 and is indexed here only.
"""

from __future__ import annotations

MAX = 512


def uri_rows(values: list) -> list[tuple]:
    return [(value[:MAX],) for value in values if type(value) is str and value]


CONVERTERS = {
    "uri": uri_rows,
    "string": uri_rows,
}
