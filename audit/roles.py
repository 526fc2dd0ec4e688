"""The PostgreSQL privileges that keep the application from rewriting its own audit log.

The tables belong to a migrator role (the one `manage.py migrate` runs as); the application runs
as another role that may read and write the clinical tables but only SELECT and INSERT the audit
log (and not even INSERT the archive anchors), cannot TRUNCATE it, cannot disable its trigger
(only an owner can) and cannot call `audit_archive_delete` (migration 0004). An archiver role may
read the audit tables and call that function, which is what `audit_archive` does. Set up in
docs/deployment.md; `manage.py audit_db_roles` prints or applies `grants(...)`, and `migrate`
applies them itself when FHIR_DB_APP_ROLE is set (apps.py), so tables added later are covered.
"""

from __future__ import annotations

from django.db import connections

AUDIT_TABLES = ("audit_auditentry", "audit_auditpatient", "audit_auditanchor", "audit_auditcheckpoint")
ARCHIVE_FUNCTION = "audit_archive_delete(text, jsonb)"


def grants(app_role: str, archiver_role: str | None = None, using: str = "default") -> list[str]:
    """The statements, for the current schema; run them as the tables' owner."""
    conn = connections[using]
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = qn(cursor.fetchone()[0])
    app = qn(app_role)
    audit = ", ".join(f"{schema}.{table}" for table in AUDIT_TABLES)
    statements = [
        f"GRANT USAGE ON SCHEMA {schema} TO {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {app}",
        # Tables that later migrations create (as the role running this) get the same.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app}",
        # The audit log: read and append, nothing else.
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {app}",
        f"REVOKE INSERT ON {schema}.audit_auditanchor FROM {app}",
        f"REVOKE ALL ON FUNCTION {schema}.{ARCHIVE_FUNCTION} FROM PUBLIC, {app}",
    ]
    if archiver_role:
        archiver = qn(archiver_role)
        statements += [
            f"GRANT USAGE ON SCHEMA {schema} TO {archiver}",
            f"GRANT SELECT ON {audit} TO {archiver}",
            f"GRANT EXECUTE ON FUNCTION {schema}.{ARCHIVE_FUNCTION} TO {archiver}",
        ]
    return statements


def apply(statements: list[str], using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
