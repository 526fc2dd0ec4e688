"""Index maintenance (https://hl7.org/fhir/R4/search.html): the write path calls `index_resources` in
the same transaction as the write, and `clear_index` when a resource is deleted.

Every R4 search parameter of the resource's type is indexed (extract.py: what is and is not, and
how expressions are compiled), one module per parameter type holds the row semantics (token.py,
string.py, date.py, number.py, quantity.py, reference.py, uri.py, composite.py), and writer.py
writes the rows of all the resources of one call with one DELETE (updates) and one INSERT or COPY
per table; on PostgreSQL a small write is a single statement.
"""

from __future__ import annotations

from ..models import Resource
from . import writer
from .extract import COMPARTMENT, TABLES, plan_for

ALL_TABLES = frozenset((*TABLES, COMPARTMENT))


def index_resources(items: list[tuple[Resource, dict]], *, fresh: bool) -> None:
    """(Re)write the index rows of each (row, stored body). `fresh` means no rows exist yet."""
    collected: dict[str, list[tuple]] = {}
    clear: set[str] = set()
    for row, body in items:
        plan = plan_for(row.resource_type)
        if not fresh:
            clear |= plan.tables
        prefix = (row.pk, row.resource_type)
        for table, rows in plan.extract(body).items():
            target = collected.setdefault(table, [])
            target.extend(prefix + r for r in dict.fromkeys(rows))
    writer.write(collected, clear=clear, resource_ids=[] if fresh else [row.pk for row, _ in items])


def clear_index(rows: list[Resource], *, every_table: bool = False) -> None:
    """Delete the index and compartment rows of these resources.

    Only the tables their types can fill are visited, unless `every_table` (after the definitions
    changed, rows may sit in a table the type no longer fills).
    """
    if not rows:
        return
    tables: set[str] = set()
    if every_table:
        tables = set(ALL_TABLES)
    else:
        for resource_type in {row.resource_type for row in rows}:
            tables |= plan_for(resource_type).tables
    writer.delete(tables, [row.pk for row in rows])
