"""At-least-once delivery of rest-hook notifications (https://hl7.org/fhir/R4/subscription.html#2.46.7.1)
with the processes of a production deployment: a private Redis (the broker), the web server
(gunicorn, production settings, FHIR_WORKER=celery), a Celery worker and a Celery beat, and a real
HTTP receiver that keeps the `X-FHIR-Idempotency-Key` of every request.

- normal running: every event is delivered once;
- the worker is killed (SIGKILL, its whole process group) while deliveries are in flight: a new
  worker delivers every event, and an event delivered twice carries the same key both times;
- the broker is killed while writes go on and started again, empty: the beat sweep finds the events
  and deliveries the lost tasks named, and every event is delivered.

The database is the suite's kind (PostgreSQL when DATABASE_URL names one, else SQLite), fresh.
The lease of a claimed delivery is short here (FHIR_SUBSCRIPTION_LEASE), so a dead worker's
deliveries come back within seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from importlib.util import find_spec
from pathlib import Path

import pytest
import requests

from subscriptions.tests import receivers

from .conftest import ROOT, serve

# One xdist worker runs the whole module (`make test` uses --dist loadgroup): its scenarios share one
# set of processes.
pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live-celery")]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
FHIR = "application/fhir+json"
LEASE = 5.0  # seconds; the beat sweeps every 5 s (settings CELERY_BEAT_SCHEDULE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Redis:
    """A redis-server of our own on a free port (never the machine's shared one), with an
    append-only file so that it can be stopped and started again on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self._pong, 10, "redis-server to answer")

    def _pong(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError((self.dir / "redis.log").read_text())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Celery:
    """`celery -A fhirplatform worker` or `beat` in a process group of its own, so that a kill takes
    the pool's children with their parent, as a lost machine or container would."""

    def __init__(self, env: dict, workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}-{len(self.processes)}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "fhirplatform", *args, "--loglevel", "INFO"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        return process, log

    def worker(self) -> subprocess.Popen:
        process, log = self._start(
            "worker", "worker", "--concurrency", "2", "--hostname", f"live-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle",
        )  # fmt: skip

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(log.read_text())
            return " ready." in log.read_text()

        _wait(ready, 60, "the Celery worker to be ready", step=0.2)
        return process

    def beat(self) -> subprocess.Popen:
        schedule = self.workdir / f"beat-schedule-{uuid.uuid4().hex[:8]}"
        return self._start("beat", "beat", "--schedule", str(schedule))[0]

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill(process)


class Stack:
    def __init__(self, url: str, headers: dict, redis: Redis, celery: Celery, worker) -> None:
        self.url, self.headers, self.redis, self.celery, self.worker = url, headers, redis, celery, worker

    def subscribe(self, hook: receivers.HttpReceiver, code: str) -> str:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "live Celery tests",
            "criteria": f"Observation?code={code}",
            "channel": {"type": "rest-hook", "endpoint": hook.url, "payload": FHIR},
        }
        created = requests.post(f"{self.url}/Subscription", json=body, headers=self.headers, timeout=30)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "active"
        return created.json()["id"]

    def observe(self, code: str) -> str:
        """Write one matching Observation over HTTP; its id."""
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": 70, "unit": "/min"},
        }
        created = requests.post(f"{self.url}/Observation", json=body, headers=self.headers, timeout=30)
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def status(self, sid: str) -> dict:
        bundle = requests.get(f"{self.url}/Subscription/{sid}/$status", headers=self.headers, timeout=30)
        assert bundle.status_code == 200, bundle.text
        parameters = bundle.json()["entry"][0]["resource"]["parameter"]
        return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in parameters}


@pytest.fixture(scope="module")
def stack():
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    if find_spec("celery") is None:
        pytest.skip("celery is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = Redis(workdir)
        redis.start()
        env = {
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url,  # over one the environment may name
            "FHIR_WORKER": "celery",
            "FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS": "127.0.0.1",
            "FHIR_SUBSCRIPTION_TIMEOUT": "4",
            "FHIR_SUBSCRIPTION_LEASE": str(LEASE),
            "FHIR_SUBSCRIPTION_BACKOFF": "0.5",
            "FHIR_SUBSCRIPTION_BACKOFF_MAX": "2",
        }
        gunicorn = ["gunicorn", "fhirplatform.wsgi", "-w", "2", "--timeout", "60"]
        celery = None
        try:
            with contextlib.contextmanager(serve)(
                lambda port: [*gunicorn, "-b", f"127.0.0.1:{port}"], env
            ) as live:
                celery = Celery(live.env, workdir)
                celery.beat()
                worker = celery.worker()
                headers = {
                    "Authorization": f"Bearer {live.token('--role', 'Admin', '--label', 'celery')}",
                    "Content-Type": FHIR,
                }
                yield Stack(live.url, headers, redis, celery, worker)
        finally:
            if celery is not None:
                celery.stop_all()
            redis.kill()


@pytest.fixture
def hook():
    receiver = receivers.start()
    yield receiver
    receiver.close()


def _keys_by_resource(hook: receivers.HttpReceiver) -> dict[str, list[str]]:
    """The idempotency keys each Observation was delivered with, one per request, in order."""
    keys: dict[str, list[str]] = defaultdict(list)
    for request in list(hook.requests):
        assert request.method == "PUT", request
        keys[request.path.rsplit("/", 1)[-1]].append(request.headers["X-FHIR-Idempotency-Key"])
    return keys


def _assert_at_least_once(hook: receivers.HttpReceiver, ids: list[str]) -> dict[str, list[str]]:
    keys = _keys_by_resource(hook)
    assert set(keys) == set(ids)
    for fhir_id, sent in keys.items():
        assert len(set(sent)) == 1, f"Observation/{fhir_id} delivered under different keys: {sent}"
    assert len({sent[0] for sent in keys.values()}) == len(ids), "two events share a key"
    return keys


def test_every_event_is_delivered_once(stack, hook):
    code = f"live-a-{uuid.uuid4().hex[:6]}"
    sid = stack.subscribe(hook, code)
    ids = [stack.observe(code) for _ in range(5)]
    _wait(lambda: set(_keys_by_resource(hook)) == set(ids), 30, "five deliveries")
    time.sleep(1)  # room for a duplicate to show, if one were coming
    keys = _assert_at_least_once(hook, ids)
    assert all(len(sent) == 1 for sent in keys.values()), keys
    assert len(hook.requests) == 5
    assert stack.status(sid)["events-since-subscription-start"] == "5"


def test_a_killed_worker_loses_nothing_and_repeats_under_the_same_key(stack, hook):
    code = f"live-b-{uuid.uuid4().hex[:6]}"
    stack.subscribe(hook, code)
    hook.delay = 1.5  # slow, so that deliveries are in flight when the worker dies
    ids = [stack.observe(code) for _ in range(6)]
    _wait(lambda: len(hook.arrived) > len(hook.requests), 30, "a delivery in flight")
    Celery.kill(stack.worker)  # mid-request: the receiver gets the request, the worker never records it
    answered = Counter(request.path for request in list(hook.requests))
    in_flight = {path.rsplit("/", 1)[-1] for path in Counter(hook.arrived) - answered}
    assert in_flight
    stack.worker = stack.celery.worker()

    def done() -> bool:
        keys = _keys_by_resource(hook)
        return set(keys) == set(ids) and all(len(keys[i]) >= 2 for i in in_flight)

    # The lease runs out, the next sweep finds the claimed deliveries and the new worker sends them.
    _wait(done, 3 * LEASE + 30, "every event, and the interrupted ones again")
    keys = _assert_at_least_once(hook, ids)
    assert any(len(sent) > 1 for sent in keys.values())


def test_a_restarted_broker_loses_nothing(stack, hook):
    code = f"live-c-{uuid.uuid4().hex[:6]}"
    sid = stack.subscribe(hook, code)
    ids = [stack.observe(code) for _ in range(2)]
    stack.redis.kill()  # SIGKILL: what the append-only file had not flushed is gone
    down = time.monotonic()
    ids += [stack.observe(code) for _ in range(3)]  # writes go on: the outbox keeps their events
    assert time.monotonic() - down < 15, "writes were held up by the missing broker"
    stack.redis.start()
    # No write wakes the worker now: the beat's sweep finds the events whose wake-up was lost.
    _wait(lambda: set(_keys_by_resource(hook)) == set(ids), 60, "every event after the broker came back")
    ids += [stack.observe(code) for _ in range(2)]
    _wait(lambda: set(_keys_by_resource(hook)) == set(ids), 30, "the writes after the broker came back")
    _assert_at_least_once(hook, ids)
    assert stack.status(sid)["status"] == "active"
