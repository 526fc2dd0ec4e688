"""EXPLAIN (ANALYZE, BUFFERS) of the SQL the search engine runs for each S3 query.

    python bench/explain.py QUERIES.json OUT.txt    # prints a JSON summary on stdout

Run by bench/driver.py with the bench server's environment (production settings, DATABASE_URL of the
bench database). QUERIES.json is a list of {"name", "path"} with paths like `/Patient?name=John`.
Each search is run the way resources/api/search.py runs it (`resources.search.engine.search` with
the page size, `_total` and cursor taken from the query string) inside `CaptureQueriesContext`, so the
captured statements are exactly those of an HTTP search, with their parameters already interpolated
(Django's psycopg 3 backend binds client-side). Each statement is then EXPLAINed with ANALYZE on the
same connection: the second execution runs on a warm cache, like the searches in the S3 run.

The summary names, per statement, the indexes the plan uses, the tables it reads sequentially and the
execution time; a sequential scan of a table with more than SEQ_SCAN_ROWS rows counts as missing
index use (a small table scanned whole is the planner's correct choice, not a miss).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEQ_SCAN_ROWS = 10_000
# A plan gone wrong (stale statistics) can run for minutes: cap each statement and report the timeout.
STATEMENT_TIMEOUT_MS = 60_000
_INDEX = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)")
_GENERIC_INDEX = re.compile(r"_pkey$|_resource_id_[0-9a-f]+$")
_SEQ = re.compile(r"Seq Scan on (\S+)")
_EXEC = re.compile(r"Execution Time: ([\d.]+) ms")


def run_search(path: str) -> list[str]:
    """The SQL statements of one search, as executed."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from authz.context import AccessContext
    from resources.search.engine import search

    parts = urlsplit(path)
    resource_type = parts.path.strip("/") or None
    params = parse_qsl(parts.query, keep_blank_values=True)
    counts = [v for k, v in params if k == "_count"]
    count = min(int(counts[-1]), settings.FHIR_MAX_COUNT) if counts else settings.FHIR_DEFAULT_COUNT
    totals = [v for k, v in params if k == "_total"]
    with CaptureQueriesContext(connection) as captured:
        page = search(
            AccessContext(role="Admin"),
            resource_type=resource_type,
            params=params,
            count=count,
            total=totals[-1] if totals else None,
            base_urls=("http://127.0.0.1/fhir",),
        )
    if page.ignored:
        print(f"explain: {path}: ignored parameters {page.ignored}", file=sys.stderr)
    return [q["sql"] for q in captured.captured_queries]


def table_rows() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r'")
        return dict(cur.fetchall())


def explain(sql: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return [row[0] for row in cur.fetchall()]


def main() -> None:
    queries = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fhirplatform.settings.production")
    import django

    django.setup()
    from django.db import OperationalError, connection

    with connection.cursor() as cur:
        cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    rows = table_rows()
    summary = []
    with open(out_path, "w") as out:
        for query in queries:
            out.write(f"{'=' * 100}\n{query['name']}: GET /fhir{query['path']}\n")
            statements = []
            try:
                captured = run_search(query["path"])
            except OperationalError as exc:  # statement_timeout (the search itself)
                out.write(f"\nsearch failed: {exc}\n\n")
                summary.append({"name": query["name"], "path": query["path"], "error": str(exc).strip()})
                continue
            for number, sql in enumerate(captured, 1):
                try:
                    plan = explain(sql)
                except OperationalError as exc:
                    plan = [f"EXPLAIN failed: {str(exc).strip()}"]
                out.write(f"\n-- statement {number}\n{sql}\n\n" + "\n".join(plan) + "\n")
                text = "\n".join(plan)
                seq = sorted(set(_SEQ.findall(text)))
                exec_ms = _EXEC.search(text)
                indexes = sorted(set(_INDEX.findall(text)))
                statements.append(
                    {
                        "indexes": indexes,
                        # The index-table lookups (token_lookup, string_exact, reference_target...), as
                        # opposed to the primary key and the per-resource foreign-key indexes: a plan
                        # using only those walks resources in id order and probes each one's rows.
                        "lookup_indexes": [i for i in indexes if not _GENERIC_INDEX.search(i)],
                        "seq_scans": seq,
                        "seq_scans_large": [t for t in seq if rows.get(t, 0) > SEQ_SCAN_ROWS],
                        "execution_ms": float(exec_ms.group(1)) if exec_ms else None,
                        "top": plan[0].strip(),
                    }
                )
            out.write("\n")
            summary.append(
                {
                    "name": query["name"],
                    "path": query["path"],
                    "statements": statements,
                    "execution_ms": round(sum(s["execution_ms"] or 0 for s in statements), 3),
                    "uses_index": bool(statements) and all(s["indexes"] for s in statements),
                    # The first statement selects the matches; includes follow.
                    "uses_lookup_index": bool(statements) and bool(statements[0]["lookup_indexes"]),
                    "misses_index": any(s["seq_scans_large"] for s in statements),
                    "error": None,
                }
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
