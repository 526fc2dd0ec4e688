"""Bulk writing and clearing of index rows, one DELETE and one INSERT per table per call.

PostgreSQL: the DELETEs and INSERTs of a small write (a create or an update: tens of rows) go in one
statement of data-modifying CTEs (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING),
one round trip in all; the sub-statements see the same snapshot, so the DELETEs remove the old rows
and never the new ones. Large writes (transaction bundles, reindex) delete in one such statement and
insert with COPY, which sends values without building SQL text at all.
SQLite: one DELETE per table, one multi-row INSERT per table (split where the parameter limit
requires); statements are in-process calls there, so their number matters little.

Rows are plain tuples rather than model instances: building a Django model object per index row
would cost more than extracting the row. Columns and table names still come from the models, and
values are adapted by the connection's own operations, so SQLite and PostgreSQL store exactly what
the ORM would.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections

from ..models import (
    CompartmentMembership,
    CompositeIndex,
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    StringIndex,
    TokenIndex,
    UriIndex,
)

# Table -> (model, columns after resource_id and resource_type, in the order extract.py emits).
TABLES = {
    "token": (TokenIndex, ("param", "system", "code", "text", "type_system", "type_code")),
    "string": (StringIndex, ("param", "value", "exact")),
    "date": (DateIndex, ("param", "low", "high")),
    "number": (NumberIndex, ("param", "value")),
    "quantity": (QuantityIndex, ("param", "value", "system", "code", "unit")),
    "reference": (ReferenceIndex, ("param", "target_type", "target_id", "url", "url_version")),
    "uri": (UriIndex, ("param", "value")),
    "composite": (
        CompositeIndex,
        (
            "param",
            "c1_system",
            "c1_code",
            "c2_system",
            "c2_code",
            "c2_number",
            "c2_low",
            "c2_high",
            "c2_string",
            "c3_number",
        ),
    ),
    "compartment": (CompartmentMembership, ("compartment_type", "compartment_id")),
}

_DATETIME_COLUMNS = {"low", "high", "c2_low", "c2_high"}
_MAX_ROWS = 1000  # per multi-row INSERT on SQLite
# Up to this many rows one statement, one round trip; beyond, COPY (no SQL text to build and quote).
_SINGLE_STATEMENT_ROWS = 400


@dataclass(frozen=True)
class _Sql:
    """SQL fragments of one table for one database vendor, built once."""

    table: str  # quoted table name
    columns: str  # quoted column list
    resource_column: str
    width: int
    dated: tuple[int, ...]  # positions of datetime columns

    def insert(self, rows: int) -> str:
        """A multi-row INSERT for `rows` rows."""
        placeholder = "(" + ", ".join(["%s"] * self.width) + ")"
        return f"INSERT INTO {self.table} ({self.columns}) VALUES " + ", ".join([placeholder] * rows)


_SQL: dict[tuple[str, str], _Sql] = {}


def _sql(conn, table: str) -> _Sql:
    found = _SQL.get((conn.vendor, table))
    if found is None:
        model, columns = TABLES[table]
        names = ("resource", "resource_type", *columns)
        fields = [model._meta.get_field(n) for n in names]
        quote = conn.ops.quote_name
        found = _SQL[(conn.vendor, table)] = _Sql(
            table=quote(model._meta.db_table),
            columns=", ".join(quote(f.column) for f in fields),
            resource_column=quote(fields[0].column),
            width=len(names),
            dated=tuple(i for i, n in enumerate(names) if n in _DATETIME_COLUMNS),
        )
    return found


def write(rows: dict[str, list[tuple]], *, clear: set[str] | frozenset[str] = frozenset(), resource_ids=()):
    """Delete the rows of `resource_ids` from the `clear` tables, then insert `rows` (per table,
    each row `(resource_id, resource_type, *columns)`)."""
    conn = connections[DEFAULT_DB_ALIAS]
    rows = {table: table_rows for table, table_rows in rows.items() if table_rows}
    clear = sorted(clear) if resource_ids else []
    if conn.vendor == "postgresql":
        if sum(len(r) for r in rows.values()) <= _SINGLE_STATEMENT_ROWS:
            _postgresql_statement(conn, clear, list(resource_ids), rows)
            return
        if clear:
            _postgresql_statement(conn, clear, list(resource_ids), {})
        for table, table_rows in rows.items():
            _copy(conn, table, table_rows)
        return
    _delete_each(conn, clear, list(resource_ids))
    for table, table_rows in rows.items():
        _insert_values(conn, table, table_rows)


def delete(tables, resource_ids: list[int]) -> None:
    """Delete the rows of the given resources from the given tables."""
    if not resource_ids or not tables:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.vendor == "postgresql":
        _postgresql_statement(conn, sorted(tables), resource_ids, {})
    else:
        _delete_each(conn, sorted(tables), resource_ids)


def _delete_each(conn, tables: list[str], resource_ids: list[int]) -> None:
    if not resource_ids:
        return
    limit = conn.features.max_query_params or 999
    with conn.cursor() as cursor:
        for table in tables:
            sql = _sql(conn, table)
            for start in range(0, len(resource_ids), limit):
                chunk = resource_ids[start : start + limit]
                cursor.execute(
                    f"DELETE FROM {sql.table} WHERE {sql.resource_column} IN ({', '.join(['%s'] * len(chunk))})",
                    chunk,
                )


def _postgresql_statement(
    conn, clear: list[str], resource_ids: list[int], rows: dict[str, list[tuple]]
) -> None:
    """One statement: a DELETE per cleared table and a multi-row INSERT per table with rows, all but
    the last as CTEs."""
    parts: list[str] = []
    params: list = []
    for table in clear:
        sql = _sql(conn, table)
        parts.append(f"DELETE FROM {sql.table} WHERE {sql.resource_column} = ANY(%s::bigint[])")
        params.append(resource_ids)
    for table, table_rows in rows.items():
        sql = _sql(conn, table)
        parts.append(sql.insert(len(table_rows)))
        params.extend(value for row in table_rows for value in row)
    if not parts:
        return
    *ctes, main = parts
    statement = main
    if ctes:
        statement = "WITH " + ", ".join(f"w{i} AS ({cte})" for i, cte in enumerate(ctes)) + " " + main
    # Numbered placeholders through psycopg's raw cursor: for a long statement with many
    # parameters, psycopg's own `%s` parsing cost more than the database work when profiled.
    numbers = itertools.count(1)
    statement = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", statement)
    conn.ensure_connection()
    with psycopg.RawCursor(conn.connection) as cursor:
        cursor.execute(statement, params)


_PLACEHOLDER = re.compile(r"%s")


def _copy(conn, table: str, rows: list[tuple]) -> None:
    sql = _sql(conn, table)
    with conn.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {sql.table} ({sql.columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _insert_values(conn, table: str, rows: list[tuple]) -> None:
    sql = _sql(conn, table)
    if sql.dated:
        adapt = conn.ops.adapt_datetimefield_value
        dated = sql.dated
        rows = [
            tuple(adapt(v) if i in dated and v is not None else v for i, v in enumerate(row)) for row in rows
        ]
    limit = conn.features.max_query_params
    per_statement = min(_MAX_ROWS, limit // sql.width) if limit else _MAX_ROWS
    with conn.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(sql.insert(len(chunk)), [value for row in chunk for value in row])
