"""On PostgreSQL only `audit_archive_delete()` removes audit rows; no session flag opens the tables.

Migration 0002 let any session that set `audit.archiving` delete rows. Now the trigger refuses
UPDATE and DELETE on every audit table (entries, patient rows, archive anchors, checkpoints) unless
the statement runs inside the SECURITY DEFINER function `audit_archive_delete(archive, ranges)`,
as the tables' owner: the trigger reads the PL/pgSQL call stack (PG_CONTEXT) and `current_user`,
neither of which a session can set. The function is the archive's delete step (audit/archive.py):
for each chain it removes a prefix, exactly the rows from the chain's last archive anchor to
`to_seq` (whose hash must be `to_hash`, the file's), their patient rows and the checkpoints they
supersede, and records the archive anchor naming the file, so a deletion always leaves an anchor
that `audit_verify --archives` matches against a file.

EXECUTE is revoked from PUBLIC: the owner (the migrator role) may call it, and
`audit_db_roles --archiver-role` grants it to the role the archiving job runs as
(docs/deployment.md). The owner of the tables can still do anything (drop the trigger): that is
why the application should not run as the owner.
"""

from django.db import migrations

TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
DECLARE
    stack text;
BEGIN
    GET DIAGNOSTICS stack = PG_CONTEXT;
    -- Line 1 is this function, line 2 the statement that fired it, line 3 its caller.
    IF split_part(stack, E'\n', 2) LIKE 'SQL statement "DELETE FROM audit\_%'
       AND split_part(stack, E'\n', 3)
           ~ '^PL/pgSQL function audit_archive_delete\(text,jsonb\) line [0-9]+ at SQL statement$'
       AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'The audit log is append-only (% on %): only audit_archive_delete(), called by audit_archive, removes rows',
        TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
"""

# Each DELETE stays on one line: the trigger finds the caller on the line after the statement.
ARCHIVE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION audit_archive_delete(archive text, ranges jsonb)
RETURNS TABLE (entries bigint, patients bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    r jsonb;
    c text;
    f bigint;
    t bigint;
    h text;
    last_seq bigint;
    n bigint;
    p bigint;
BEGIN
    entries := 0;
    patients := 0;
    IF coalesce(archive, '') = '' OR jsonb_typeof(ranges) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'audit_archive_delete: an archive file name and a JSON array of ranges are required';
    END IF;
    FOR r IN SELECT value FROM jsonb_array_elements(ranges) LOOP
        c := r->>'chain';
        f := (r->>'from_seq')::bigint;
        t := (r->>'to_seq')::bigint;
        SELECT coalesce(max(seq), 0) INTO last_seq FROM audit_auditanchor WHERE chain = c;
        IF c IS NULL OR f IS DISTINCT FROM last_seq + 1 OR t IS NULL OR t < f THEN
            RAISE EXCEPTION 'audit_archive_delete: chain % can only lose its oldest rows, from seq % (asked %..%)',
                c, last_seq + 1, f, t;
        END IF;
        SELECT e.hash INTO h FROM audit_auditentry e WHERE e.chain = c AND e.seq = t;
        IF h IS NULL OR h IS DISTINCT FROM r->>'to_hash' THEN
            RAISE EXCEPTION 'audit_archive_delete: row % of chain % is missing or not the archived one', t, c;
        END IF;
        DELETE FROM audit_auditpatient WHERE entry_id IN (SELECT e.id FROM audit_auditentry e WHERE e.chain = c AND e.seq BETWEEN f AND t);
        GET DIAGNOSTICS p = ROW_COUNT;
        DELETE FROM audit_auditentry e WHERE e.chain = c AND e.seq BETWEEN f AND t;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> t - f + 1 THEN
            RAISE EXCEPTION 'audit_archive_delete: chain % has % rows in seq %..%, not %', c, n, f, t, t - f + 1;
        END IF;
        DELETE FROM audit_auditcheckpoint k WHERE k.chain = c AND k.seq <= t;
        INSERT INTO audit_auditanchor (chain, seq, hash, archive, created) VALUES (c, t, h, archive, now());
        entries := entries + n;
        patients := patients + p;
    END LOOP;
    RETURN NEXT;
END;
$$;
"""

OLD_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.archiving', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'The audit log is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
"""
NEW_TABLES = ("audit_auditanchor", "audit_auditcheckpoint")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
        # No parameters: psycopg leaves the PL/pgSQL '%' placeholders alone.
        cursor.execute(TRIGGER_FUNCTION)
        cursor.execute(ARCHIVE_FUNCTION.replace("{schema}", schema))
        cursor.execute("REVOKE ALL ON FUNCTION audit_archive_delete(text, jsonb) FROM PUBLIC")
        for table in NEW_TABLES:
            cursor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
            )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in NEW_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS audit_archive_delete(text, jsonb)")
        cursor.execute(OLD_TRIGGER_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_integrity")]
    operations = [migrations.RunPython(forwards, backwards)]
