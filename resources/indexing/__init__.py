"""Index maintenance: the write path calls `index_resources` in the same transaction as the write.

Each search-parameter type gets its own module in this package as the search engine grows. Today the
index holds the `identifier` token of every type, which conditional create/update/delete and
transaction conditional references use; the full R4 parameter set fills the remaining tables.
Rows for many resources are written with one bulk insert per table.
"""

from __future__ import annotations

from ..models import Resource, TokenIndex
from . import token


def index_resources(items: list[tuple[Resource, dict]], *, fresh: bool) -> None:
    """(Re)write the index rows of each (row, body). `fresh` means no rows exist yet (new resources)."""
    if not fresh:
        clear_index([row for row, _ in items])
    tokens = [t for row, body in items for t in token.identifier_rows(row, body)]
    if tokens:
        TokenIndex.objects.bulk_create(tokens)


def clear_index(rows: list[Resource]) -> None:
    TokenIndex.objects.filter(resource__in=rows).delete()
