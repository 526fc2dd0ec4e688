"""Large inserts on PostgreSQL by COPY, for the batch writers (transaction bundles, the CarePlan
scheduler, the outbox of a batch).

Django's `bulk_create` builds one SQL text with a placeholder per value: for thousands of rows the
building costs more than the database's work (profiled on the scheduler's batches). COPY sends the
values without any SQL text. Rows that need their ids back take them from the table's own sequence
first (`nextval` for as many rows), so the ids are the ones an INSERT would have drawn. A unique
violation raises Django's IntegrityError, as `bulk_create` would.

Used only on PostgreSQL and above `THRESHOLD` rows; SQLite and small writes keep `bulk_create`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS, connections

THRESHOLD = 200


def wanted(rows: int) -> bool:
    return rows >= THRESHOLD and connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def reserve_ids(model, count: int) -> list[int]:
    conn = connections[DEFAULT_DB_ALIAS]
    table = model._meta.db_table
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
        )
        return [row[0] for row in cursor.fetchall()]


def copy(model, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """COPY `rows` (values in the order of `columns`, given by field name) into the model's table."""
    conn = connections[DEFAULT_DB_ALIAS]
    quote = conn.ops.quote_name
    names = ", ".join(quote(model._meta.get_field(name).column) for name in columns)
    with conn.wrap_database_errors, conn.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN") as target:
            for row in rows:
                target.write_row(row)
