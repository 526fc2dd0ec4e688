"""Fixtures for the black-box tests: a real server process (gunicorn, production settings) on its own
database, started the way an operator starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_database():
    """A fresh PostgreSQL database beside the one the suite uses, when the suite runs on PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None, None
    import psycopg

    server, _, _ = url.rpartition("/")
    name = f"fhir_live_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{server}/{name}", drop


@dataclass(frozen=True)
class LiveServer:
    url: str  # the FHIR base
    env: dict

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a management command against the live server's database, as an operator would."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )

    def token(self, *args: str) -> str:
        return self.manage("issue_token", *args).stdout.strip()


@pytest.fixture(scope="session")
def live_server_url(live):
    return live.url


@pytest.fixture(scope="session")
def live_admin_headers(live):
    return {"Authorization": f"Bearer {live.token('--role', 'Admin', '--label', 'live tests')}"}


@pytest.fixture(scope="session")
def live():
    yield from serve(lambda port: ["gunicorn", "fhirplatform.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"])


def serve(command, env: dict | None = None):
    """A server process under the production settings on a fresh database (PostgreSQL when the
    suite runs on it, else SQLite), migrated; `command(port)` is the module and arguments run with
    `python -m`, `env` adds to or overrides the environment (a broker, worker settings). Yields a
    LiveServer once the server answers; stops it and drops the database after."""
    database_url, drop = _postgres_database()
    workdir = tempfile.TemporaryDirectory()
    if database_url is None:
        database_url = f"sqlite:///{workdir.name}/live.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "fhirplatform.settings.production",
        "SECRET_KEY": "live-test-" + uuid.uuid4().hex,
        "OIDC_RSA_PRIVATE_KEY_FILE": str(Path(workdir.name) / "oidc-key.pem"),
        "FHIR_AUDIT_KEY_FILE": str(Path(workdir.name) / "audit.key"),
        "FHIR_PSEUDONYM_KEY_FILE": str(Path(workdir.name) / "pseudonym.key"),
        # Production settings over plain HTTP on 127.0.0.1 (no HTTPS redirect, secure cookies, HSTS).
        "FHIR_INSECURE_HTTP": "true",
        **(env or {}),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    port = _free_port()
    log = open(Path(workdir.name) / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", *command(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
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
