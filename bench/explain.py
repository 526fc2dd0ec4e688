"""EXPLAIN (ANALYZE, BUFFERS) of the SQL the search engine runs for each S3 query.

    python bench/explain.py QUERIES.json OUT.txt    # prints a JSON summary on stdout

Run by bench/driver.py with the bench server's environment (production settings, DATABASE_URL of the
bench database). QUERIES.json is a list of {"name", "path"} with paths like `/Patient?name=John`,
optionally with "role" and "identity" (`Patient/123`): the search then runs as that caller,
`AccessContext(role=..., identity=...)`, narrowed by the rule chain in force (S9); without them as
`Admin`. Each search is run the way resources/api/search.py runs it (`resources.search.engine.search`
with the page size, `_total` and cursor taken from the query string) inside `CaptureQueriesContext`,
so the captured statements are exactly those of an HTTP search (the rule chain's own lookups
included: the rule-set version, the caller's patients or organisations), with their parameters
already interpolated (Django's psycopg 3 backend binds client-side). Each statement is then EXPLAINed
with ANALYZE on the same connection: the second execution runs on a warm cache, like the searches in
the S3 run.

The match statement is the one selecting the page (`LIMIT count+1`); the statements before it are
lookups whose number does not depend on the rows searched, those after it includes. For a caller
narrowed by the rules, `narrowing_in_sql` says whether the match statement carries the narrowing
itself (the compartment membership table appears in it): the narrowing is then part of the
one SQL statement, not a filter applied to rows in Python.

An item with "get" (a path such as `/fhir/Observation/123`) and "auth" (an Authorization header
value) is instead one whole HTTP request through Django's test client in this process (middleware,
authentication, the access decision, the audit row...): it runs `repeat` times unmeasured by SQL
capture (in-process wall time, no network nor gunicorn: its p50 is the server's own cost), then once
inside `CaptureQueriesContext`; every statement is listed with its captured time, and the SELECTs are
EXPLAINed (S10: a read as Admin and as a Patient). `python_ms` = request time - SQL time
(Python, and the wait of COMMIT, which is not a cursor statement).

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


def run_search(path: str, role: str = "Admin", identity: str | None = None) -> tuple[list[str], int, int]:
    """The SQL statements of one search as `role` (and `identity`), as executed; the page size; the
    number of entries the page holds (matches and includes)."""
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
            AccessContext(role=role, identity=identity or None),
            resource_type=resource_type,
            params=params,
            count=count,
            total=totals[-1] if totals else None,
            base_urls=("http://127.0.0.1/fhir",),
        )
    if page.ignored:
        print(f"explain: {path}: ignored parameters {page.ignored}", file=sys.stderr)
    entries = len(page.matches) + len(page.included)
    return [q["sql"] for q in captured.captured_queries], count, entries


# The table every Patient-compartment narrowing reads (authz/validators/lookups.py): in the match
# statement, the narrowing is part of it. (No S3 criterion reads it, so Admin's plans lack it.)
_NARROWING_TABLES = ("resources_compartmentmembership",)


def match_index(statements: list[str], count: int) -> int | None:
    """Position of the statement that selects the page: the first with `LIMIT count+1`."""
    limit = re.compile(rf"\bLIMIT {count + 1}\b")
    return next((i for i, sql in enumerate(statements) if limit.search(sql)), None)


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


_TRANSACTION_SQL = {"BEGIN", "COMMIT", "ROLLBACK"}


def run_http(query: dict, rows: dict[str, int], out) -> dict:
    """One HTTP GET in-process (see the module docstring): statements, their times and plans."""
    import statistics
    import time

    from django.db import OperationalError, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"HTTP_AUTHORIZATION": query.get("auth", ""), "HTTP_ACCEPT": "application/fhir+json"}
    times = []
    for _ in range(int(query.get("repeat", 20))):
        t0 = time.perf_counter()
        client.get(query["get"], **headers)
        times.append((time.perf_counter() - t0) * 1000)
    # Django's capture rounds times to the millisecond: time each statement at the cursor as well.
    # BEGIN/COMMIT/ROLLBACK are logged by the capture but not run through cursor.execute.
    durations: list[float] = []

    def timer(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            durations.append((time.perf_counter() - t0) * 1000)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timer):
        t0 = time.perf_counter()
        response = client.get(query["get"], **headers)
        captured_ms = (time.perf_counter() - t0) * 1000
    executed = [
        i for i, q in enumerate(captured.captured_queries) if q["sql"].strip().upper() not in _TRANSACTION_SQL
    ]
    precise = dict(zip(executed, durations, strict=False)) if len(executed) == len(durations) else {}
    out.write(
        f"{'=' * 100}\n{query['name']} as {query.get('persona', '?')}: GET {query['get']} -> {response.status_code}\n"
    )
    statements = []
    for number, q in enumerate(captured.captured_queries, 1):
        sql = q["sql"]
        ms = precise.get(number - 1, float(q.get("time") or 0) * 1000)
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            try:
                plan = explain(sql)
            except OperationalError as exc:
                plan = [f"EXPLAIN failed: {str(exc).strip()}"]
        else:
            plan = ["(not explained: not a SELECT)"]
        out.write(f"\n-- statement {number} ({ms:.2f} ms as run)\n{sql}\n\n" + "\n".join(plan) + "\n")
        text = "\n".join(plan)
        exec_ms = _EXEC.search(text)
        statements.append(
            {
                "sql": sql[:160],
                "ms": round(ms, 3),
                "execution_ms": float(exec_ms.group(1)) if exec_ms else None,
                "indexes": sorted(set(_INDEX.findall(text))),
                "seq_scans_large": [
                    t for t in sorted(set(_SEQ.findall(text))) if rows.get(t, 0) > SEQ_SCAN_ROWS
                ],
            }
        )
    out.write("\n")
    sql_ms = sum(st["ms"] for st in statements)
    p50 = statistics.median(times) if times else captured_ms
    return {
        "name": query["name"],
        "persona": query.get("persona"),
        "get": query["get"],
        "status": response.status_code,
        "statement_count": len(statements),
        "statements": statements,
        "sql_ms": round(sql_ms, 3),
        "statement_times": "cursor" if precise else "django (ms resolution)",
        "request_ms_p50": round(p50, 3),
        "request_ms_min": round(min(times), 3) if times else None,
        "captured_request_ms": round(captured_ms, 3),
        "python_ms": round(captured_ms - sql_ms, 3),
        "error": None if response.status_code == 200 else f"status {response.status_code}",
    }


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
            if "get" in query:
                try:
                    summary.append(run_http(query, rows, out))
                except Exception as exc:  # reported, the others go on
                    summary.append(
                        {
                            "name": query["name"],
                            "persona": query.get("persona"),
                            "get": query["get"],
                            "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}",
                        }
                    )
                continue
            role, identity = query.get("role", "Admin"), query.get("identity")
            persona = query.get("persona", role)
            who = f" as {role}" + (f" {identity}" if identity else "") if "role" in query else ""
            out.write(f"{'=' * 100}\n{query['name']}{who}: GET /fhir{query['path']}\n")
            head = {"name": query["name"], "path": query["path"], "persona": persona, "role": role}
            statements = []
            try:
                captured, count, entries = run_search(query["path"], role, identity)
            except OperationalError as exc:  # statement_timeout (the search itself)
                out.write(f"\nsearch failed: {exc}\n\n")
                summary.append({**head, "error": str(exc).strip()})
                continue
            except Exception as exc:  # a refusal (FhirError) or a bug: reported, the others go on
                out.write(f"\nsearch failed: {type(exc).__name__}: {exc}\n\n")
                summary.append({**head, "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"})
                continue
            match = match_index(captured, count)
            for number, sql in enumerate(captured, 1):
                try:
                    plan = explain(sql)
                except OperationalError as exc:
                    plan = [f"EXPLAIN failed: {str(exc).strip()}"]
                role_txt = (
                    "match"
                    if match is not None and number - 1 == match
                    else ("lookup" if match is None or number - 1 < match else "include")
                )
                out.write(f"\n-- statement {number} ({role_txt})\n{sql}\n\n" + "\n".join(plan) + "\n")
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
            # The match statement selects the page; before it the lookups (rule set version, the
            # caller's patients or organisations), after it the includes.
            main = statements[match] if match is not None else (statements[0] if statements else None)
            main_sql = captured[match] if match is not None else ""
            summary.append(
                {
                    **head,
                    "statements": statements,
                    "statement_count": len(statements),
                    "match_statement": None if match is None else match + 1,
                    "lookup_statements": match if match is not None else None,
                    "entries": entries,
                    "execution_ms": round(sum(s["execution_ms"] or 0 for s in statements), 3),
                    "match_execution_ms": main["execution_ms"] if main else None,
                    # The match and include statements (lookups of small sets, such as the rule set's
                    # version, may read a tiny table whole).
                    "uses_index": bool(statements)
                    and all(s["indexes"] for s in statements[match if match is not None else 0 :]),
                    "uses_lookup_index": bool(main) and bool(main["lookup_indexes"]),
                    "misses_index": any(s["seq_scans_large"] for s in statements),
                    "seq_scans_large": sorted({t for s in statements for t in s["seq_scans_large"]}),
                    "narrowing_in_sql": any(t in main_sql for t in _NARROWING_TABLES) if main_sql else None,
                    "error": None,
                }
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
