"""Index maintenance: the write path calls `index_resource` in the same transaction as the write.

Each search-parameter type gets its own module in this package as the search engine grows. Today the
index holds the `identifier` token of every type, which conditional create/update/delete and
transaction conditional references use; the full R4 parameter set fills the remaining tables.
"""

from __future__ import annotations

from ..models import Resource, TokenIndex
from . import token


def index_resource(row: Resource, body: dict, *, fresh: bool) -> None:
    """(Re)write the index rows of `row` for `body`. `fresh` means no rows exist yet (a new resource)."""
    if not fresh:
        clear_index(row)
    tokens = token.identifier_rows(row, body)
    if tokens:
        TokenIndex.objects.bulk_create(tokens)


def clear_index(row: Resource) -> None:
    TokenIndex.objects.filter(resource=row).delete()
