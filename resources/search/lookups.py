"""Case-sensitive prefix and suffix matches that still use the index.

URIs and ids compare case-sensitively (https://hl7.org/fhir/R4/search.html#uri), but SQLite's LIKE
folds ASCII case. The LIKE stays, so PostgreSQL can walk a pattern index, and an exact comparison
of the prefix (or suffix) makes the result the same on every database.
"""

from __future__ import annotations

from django.db.models import F, Q
from django.db.models.functions import Right, Substr
from django.db.models.lookups import Exact


def starts_with(field: str, prefix: str) -> Q:
    return Q(**{f"{field}__startswith": prefix}) & Q(Exact(Substr(F(field), 1, len(prefix)), prefix))


def ends_with(field: str, suffix: str) -> Q:
    return Q(**{f"{field}__endswith": suffix}) & Q(Exact(Right(F(field), len(suffix)), suffix))
