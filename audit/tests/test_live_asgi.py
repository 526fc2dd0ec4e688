"""End to end under an ASGI server (daphne, production settings): concurrent requests, each served
in a thread of its own, leave exactly one audit row each, in one chain that `audit_verify` walks;
a row deleted behind the application's back, in the middle or at the end, is found."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import LiveServer, serve

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def asgi():
    yield from serve(
        lambda port: ["daphne", "-b", "127.0.0.1", "-p", str(port), "fhirplatform.asgi:application"]
    )


def _sql(live: LiveServer, statement: str) -> None:
    """Run a statement behind the application's back, as someone holding the database's keys
    (on PostgreSQL a superuser, with the triggers off for the session)."""
    url = live.env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
        return
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement)


def _rows(live: LiveServer) -> list[tuple[str, int, str]]:
    code = (
        "from audit.models import AuditEntry;"
        "print('\\n'.join(f'row {c} {s} {r}' for c, s, r in "
        "AuditEntry.objects.exclude(http_method='command').order_by('chain', 'seq')"
        ".values_list('chain', 'seq', 'request_id')))"
    )
    lines = live.manage("shell", "-c", code).stdout.splitlines()
    rows = [line.split()[1:] for line in lines if line.startswith("row ")]
    return [(chain, int(seq), request_id) for chain, seq, request_id in rows]


def test_concurrent_requests_one_row_each_in_one_chain_and_deletions_found(asgi):
    token = asgi.token("--role", "Admin", "--label", "asgi")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    def request(n: int) -> str:
        if n % 4 == 0:
            response = requests.post(
                f"{asgi.url}/Patient",
                json={"resourceType": "Patient", "name": [{"family": f"A{n}"}]},
                headers=headers,
            )
            assert response.status_code == 201, response.text
        elif n % 4 == 1:
            # A refused write: its transaction rolls back and a failure row takes its place.
            response = requests.post(
                f"{asgi.url}/Patient", json={"resourceType": "Patient", "bad": 1}, headers=headers
            )
            assert response.status_code == 400, response.text
        else:
            response = requests.get(f"{asgi.url}/Patient?_count=3", headers=headers)
            assert response.status_code == 200, response.text
        return response.headers["X-Request-Id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(request, range(48)))

    rows = _rows(asgi)  # the server's rows (minting the token on the command line left one too)
    assert sorted(r for _c, _s, r in rows) == sorted(ids)  # one row per request, no more
    chains = {c for c, _s, _r in rows}
    assert len(chains) == 1  # daphne: one process, its request threads share the chain
    assert [s for _c, s, _r in rows] == list(range(1, 49))

    verified = asgi.manage("audit_verify", check=False)
    # The server's chain and the command line's (the token was minted there, and audited).
    assert verified.returncode == 0 and "49 rows in 2 chains" in verified.stdout, verified.stderr

    (chain,) = chains
    _sql(asgi, f"DELETE FROM audit_auditentry WHERE chain = '{chain}' AND seq = 20")
    broken = asgi.manage("audit_verify", check=False)
    assert broken.returncode == 1 and "rows missing" in broken.stderr and "seq 20 missing" in broken.stderr

    # The tail: audit_verify anchored seq 48 when it passed above.
    _sql(asgi, f"DELETE FROM audit_auditentry WHERE chain = '{chain}' AND seq >= 20")
    cut = asgi.manage("audit_verify", check=False)
    assert cut.returncode == 1 and "seq 20..48 missing at the end of the chain" in cut.stderr, cut.stderr
