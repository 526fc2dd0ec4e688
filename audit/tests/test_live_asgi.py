"""End to end under an ASGI server (daphne, production settings): concurrent requests, each served
in a thread of its own, leave exactly one audit row each, in one chain that `audit_verify` walks;
a row deleted behind the application's back, in the middle or at the end, is found."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, LiveServer, _free_port, _postgres_database

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def asgi():
    database_url, drop = _postgres_database()
    workdir = tempfile.TemporaryDirectory()
    if database_url is None:
        database_url = f"sqlite:///{workdir.name}/live.sqlite3"
    env = {
        **__import__("os").environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "fhirplatform.settings.production",
        "SECRET_KEY": "live-test-" + uuid.uuid4().hex,
        "OIDC_RSA_PRIVATE_KEY_FILE": str(Path(workdir.name) / "oidc-key.pem"),
        "FHIR_AUDIT_KEY_FILE": str(Path(workdir.name) / "audit.key"),
        "FHIR_PSEUDONYM_KEY_FILE": str(Path(workdir.name) / "pseudonym.key"),
        "FHIR_INSECURE_HTTP": "true",  # plain http on the loopback, no TLS proxy in front
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    port = _free_port()
    log = open(Path(workdir.name) / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "fhirplatform.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/metadata", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(Path(log.name).read_text()) from None
                time.sleep(0.2)
        yield LiveServer(base, env)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        if drop:
            drop()
        workdir.cleanup()


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
        "AuditEntry.objects.order_by('chain', 'seq').values_list('chain', 'seq', 'request_id')))"
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

    rows = _rows(asgi)
    assert sorted(r for _c, _s, r in rows) == sorted(ids)  # one row per request, no more
    chains = {c for c, _s, _r in rows}
    assert len(chains) == 1  # daphne: one process, its request threads share the chain
    assert [s for _c, s, _r in rows] == list(range(1, 49))

    verified = asgi.manage("audit_verify", check=False)
    assert verified.returncode == 0 and "48 rows in 1 chains" in verified.stdout, verified.stderr

    (chain,) = chains
    _sql(asgi, f"DELETE FROM audit_auditentry WHERE chain = '{chain}' AND seq = 20")
    broken = asgi.manage("audit_verify", check=False)
    assert broken.returncode == 1 and "rows missing" in broken.stderr and "seq 20 missing" in broken.stderr

    # The tail: audit_verify anchored seq 48 when it passed above.
    _sql(asgi, f"DELETE FROM audit_auditentry WHERE chain = '{chain}' AND seq >= 20")
    cut = asgi.manage("audit_verify", check=False)
    assert cut.returncode == 1 and "seq 20..48 missing at the end of the chain" in cut.stderr, cut.stderr
