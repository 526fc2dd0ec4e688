"""Database ceiling: what PostgreSQL alone does for the writes the server makes per created resource.

Several processes (not threads: the client's own Python must not be the limit) each loop for a fixed
time over: BEGIN; INSERT the resources_resource row (RETURNING its id); INSERT the
resources_resourceversion row with the same body; INSERT its resources_tokenindex rows (identifiers);
COMMIT. One transaction per resource, like a FHIR create. Bodies are S1-style Patients, serialised the
way the server stores them (compact JSON with id and meta). No Django, no HTTP, no validation: the gap
between this and S5/S6 is the application's cost.

Prints one JSON line: inserts, window seconds, inserts/s, and the client processes' CPU seconds in the
window. With --hold the connections stay open until a line arrives on stdin, so a caller can read the
database's CPU counters before the backends exit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import fixtures  # noqa: E402

INSERT_RESOURCE = (
    "INSERT INTO resources_resource (resource_type, fhir_id, version, last_updated, deleted, body)"
    " VALUES (%s, %s, 1, %s, false, %s) RETURNING id"
)
INSERT_VERSION = (
    "INSERT INTO resources_resourceversion"
    " (resource_id, resource_type, fhir_id, version, last_updated, method, body)"
    " VALUES (%s, %s, %s, 1, %s, 'POST', %s)"
)
INSERT_TOKEN = (
    "INSERT INTO resources_tokenindex (resource_id, resource_type, param, system, code, text)"
    " VALUES (%s, %s, 'identifier', %s, %s, NULL)"
)


def _bodies(seed: int, count: int) -> list[tuple[str, str, list[tuple[str | None, str]]]]:
    """(fhir_id, stored body text, identifier (system, value) pairs) for `count` Patients."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        body = fixtures.patient(rng)
        fhir_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        stored = {
            "resourceType": "Patient",
            "id": fhir_id,
            "meta": {"versionId": "1", "lastUpdated": "2025-01-01T00:00:00.000Z"},
            **{k: v for k, v in body.items() if k != "resourceType"},
        }
        tokens = [(i.get("system"), i["value"]) for i in body.get("identifier", [])]
        out.append((fhir_id, fixtures.dumps(stored), tokens))
    return out


def _worker(dsn: str, seed: int, start: mp.Barrier, deadline_box, results, release) -> None:
    bodies = _bodies(seed, 2000)
    with psycopg.connect(dsn) as conn:
        start.wait()
        deadline = deadline_box.value
        cpu0 = time.process_time()
        done = 0
        n = len(bodies)
        while time.monotonic() < deadline:
            fhir_id, text, tokens = bodies[done % n]
            # Each loop over the list re-inserts the same body under a fresh id (unique constraint).
            if done >= n:
                fhir_id = f"{fhir_id[:28]}{done:08x}"
            now = datetime.now(UTC)
            with conn.transaction():
                row_id = conn.execute(INSERT_RESOURCE, ("Patient", fhir_id, now, text)).fetchone()[0]
                conn.execute(INSERT_VERSION, (row_id, "Patient", fhir_id, now, text))
                for system, value in tokens:
                    conn.execute(INSERT_TOKEN, (row_id, "Patient", system, value))
            done += 1
        results.put((done, time.process_time() - cpu0))
        # Keep the connection (and its backend) until the caller has read the CPU counters.
        release.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--hold",
        action="store_true",
        help="after printing the result, keep the connections open until a line (or EOF) on stdin",
    )
    args = parser.parse_args()

    ctx = mp.get_context("fork")
    start = ctx.Barrier(args.procs + 1)
    deadline_box = ctx.Value("d", 0.0)
    results = ctx.Queue()
    release = ctx.Event()
    procs = [
        ctx.Process(
            target=_worker, args=(args.dsn, args.seed * 100 + i, start, deadline_box, results, release)
        )
        for i in range(args.procs)
    ]
    for p in procs:
        p.start()
    # Set the deadline just before releasing the barrier: every worker runs the same window.
    began = time.monotonic()
    deadline_box.value = began + args.seconds
    start.wait()
    totals = [results.get() for _ in procs]
    window = time.monotonic() - began
    inserts = sum(t[0] for t in totals)
    print(
        json.dumps(
            {
                "inserts": inserts,
                "seconds": window,
                "inserts_per_s": inserts / window,
                "client_cpu_s": sum(t[1] for t in totals),
                "procs": args.procs,
            }
        ),
        flush=True,
    )
    if args.hold:
        sys.stdin.readline()
    release.set()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
