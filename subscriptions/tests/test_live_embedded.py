"""The embedded mode end to end: a server process with no broker and no worker process delivers by
itself, after the write has answered, and a slow receiver does not hold up the others."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from tests.conftest import serve

from . import receivers

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server():
    saved = dict(os.environ)
    os.environ.update(
        {
            "FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS": "127.0.0.1",
            "FHIR_WORKER_SWEEP_SECONDS": "1",
            "FHIR_WORKER": "embedded",
        }
    )
    try:
        yield from serve(
            lambda port: [
                "gunicorn",
                "fhirplatform.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "--threads",
                "4",
            ]
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


def call(server, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict, float]:
    request = urllib.request.Request(
        f"{server.url}/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"{}"), time.monotonic() - started


def wait_for(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_deliveries_run_in_the_server_process_after_the_write_answers(server):
    token = server.token("--role", "Admin")
    slow, fast = receivers.start(), receivers.start()
    slow.delay = 3.0
    try:
        for hook in (slow, fast):
            status, _, _ = call(
                server,
                "POST",
                "Subscription",
                token,
                {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "live",
                    "criteria": "Observation",
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": hook.url,
                        "payload": "application/fhir+json",
                    },
                },
            )
            assert status == 201
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "heart rate"},
            "valueQuantity": {"value": 61},
        }
        status, created, elapsed = call(server, "POST", "Observation", token, observation)
        assert status == 201
        assert elapsed < 2.0  # the write does not wait for the slow receiver
        assert wait_for(lambda: len(fast.requests) == 1, 10.0)
        # The fast receiver had its notification while the slow one was still being served.
        assert len(slow.requests) == 0
        assert wait_for(lambda: len(slow.requests) == 1, 20.0)
        assert json.loads(fast.requests[0].body)["id"] == created["id"]
    finally:
        slow.close()
        fast.close()
