"""Subscription scenarios of `make bench` (issue 11's performance part), run by bench/driver.py.

- S11  latency: the server as deployed (gunicorn, Redis, `FHIR_WORKER=celery`, one Celery worker),
       100 active rest-hook subscriptions each on `Observation?patient=Patient/<k>` (each write matches
       exactly one), a paced client POSTing Observations at `BENCH_S11_RATE` writes/s (50) for
       `BENCH_SECONDS`; commit-to-receipt latency of every notification at a local receiver.
- S11A the same with 100 subscriptions on one criteria every write matches (each write owes 100
       notifications), at `BENCH_S11A_RATE` writes/s (2).
- S12  one worker's notification throughput: a backlog written with the worker stopped (2,000 writes
       matching one subscription each, then 20 writes matching 100 each), then one worker started and
       timed until the last notification is received.
- S13  the outbox's cost on the write path: S1 (bench/lua/crud.lua) on a server as the bench runs it
       (outbox on, embedded worker) and on a second one started with FHIR_SUBSCRIPTION_OUTBOX=false,
       alternated, `BENCH_S13_ROUNDS` (2) rounds.
- S14  WebSocket latency (the R4 bind/ping protocol under daphne): measured only when the consumer is
       in the tree; otherwise reported as skipped with what is missing.

Subscription semantics: https://hl7.org/fhir/R4/subscription.html (rest-hook with payload
`application/fhir+json` PUTs `[endpoint]/[type]/[id]`, which names the resource, so each receipt is
paired with its write). Latency is receipt time (bench/hook_receiver.py, its own process) minus the
write's `meta.lastUpdated` (the server's clock, stamped in the write's transaction just before it
commits, same machine), and also minus the moment the client had the `201`.

The main bench server is stopped while S11/S12 run (its embedded worker would otherwise sweep and
dispatch the same outbox) and started again afterwards; these scenarios use their own gunicorn, Celery
worker, receiver and Redis database (`BENCH_REDIS_URL`, default DB 14, flushed before and after: only
that DB).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from bench import fixtures

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SUBSCRIPTIONS = 100
GOAL_P95_MS = 500
GOAL_OUTBOX_COST = 0.05
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
SCENARIOS = ("S13", "S11", "S11A", "S12", "S14")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def deployed_env() -> dict:
    """The server and worker settings of a deployment with Redis and Celery workers."""
    return {
        "REDIS_URL": REDIS_URL,
        "FHIR_WORKER": "celery",
        "FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS": "127.0.0.1",
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def parse_instant(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# --- processes ------------------------------------------------------------------------------------


class Receiver:
    """bench/hook_receiver.py in its own process; receipts are read back from its file."""

    def __init__(self, kit: SimpleNamespace, name: str):
        self.port = kit.free_port()
        self.path = kit.work / f"{name}-receipts.tsv"
        self.path.write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, str(kit.root / "bench" / "hook_receiver.py"), str(self.port), str(self.path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.stdout.readline()  # "listening on ..."

    def endpoint(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{n}"

    def receipts(self) -> list[dict]:
        out = []
        for line in self.path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != 5:
                continue
            at, method, path, key, updated = parts
            segments = path.strip("/").split("/")  # hook, n, type, id
            out.append(
                {
                    "at": float(at),
                    "method": method,
                    "hook": segments[1] if len(segments) > 1 else "",
                    "id": segments[3] if len(segments) > 3 else "",
                    "key": key,
                    "last_updated": parse_instant(updated),
                }
            )
        return out

    def count(self) -> int:
        with open(self.path, "rb") as f:
            return sum(1 for _ in f)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Worker:
    """One `celery -A fhirplatform worker` process (prefork; its pool children do the work), with the
    beat schedule embedded (-B: the periodic sweep of settings CELERY_BEAT_SCHEDULE), as deployed."""

    def __init__(self, kit: SimpleNamespace, env: dict, name: str):
        self.kit = kit
        self.env = env
        self.concurrency = env_int("BENCH_CELERY_CONCURRENCY", 0) or (os.cpu_count() or 1)
        self.log_path = kit.results / f"celery-{name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            str(self.kit.venv_bin / "celery"),
            "-A",
            "fhirplatform",
            "worker",
            "-B",
            "-s",
            str(self.kit.work / "celerybeat-schedule"),
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]

    def start(self) -> float:
        """Start the worker; returns the time (unix) it logged `ready`."""
        self.log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop())
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.kit.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery exited with {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, errors="replace") as f:
                f.seek(offset)
                if " ready." in f.read():
                    return time.time()
            time.sleep(0.05)
        raise RuntimeError(f"celery did not log 'ready' within 90 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


@contextmanager
def main_server_paused(server):
    """The main bench server stopped (its embedded worker would sweep the same outbox), then back."""
    server.stop()
    try:
        yield
    finally:
        server.start()


@contextmanager
def deployed_stack(kit: SimpleNamespace, cfg, name: str):
    """A gunicorn as the bench runs it plus Redis and FHIR_WORKER=celery, and a receiver."""
    flush_redis()
    receiver = Receiver(kit, name)
    srv = kit.Server(cfg, extra_env=deployed_env(), log_name=f"gunicorn-{name}.log")
    try:
        srv.start()
        yield srv, receiver
    finally:
        srv.stop()
        receiver.stop()
        flush_redis()


# --- FHIR setup -----------------------------------------------------------------------------------


def make_patients(srv, n: int, seed: str) -> list[str]:
    rng = random.Random(seed)
    return [f"{t}/{i}" for t, i in srv.transaction([fixtures.patient(rng) for _ in range(n)])]


def make_subscriptions(srv, receiver: Receiver, criteria: list[str]) -> list[str]:
    ids = []
    for n, crit in enumerate(criteria):
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": crit,
            "channel": {
                "type": "rest-hook",
                "endpoint": receiver.endpoint(n),
                "payload": "application/fhir+json",
            },
        }
        status, answer = srv.request("POST", "/fhir/Subscription", body)
        if status != 201 or answer.get("status") != "active":
            raise RuntimeError(f"Subscription not created active ({status}): {json.dumps(answer)[:1000]}")
        ids.append(answer["id"])
    return ids


def delete_subscriptions(srv, ids: list[str]) -> None:
    for sid in ids:
        srv.request("DELETE", f"/fhir/Subscription/{sid}")


def observation(rng: random.Random, patient_ref: str) -> bytes:
    return fixtures.dumps(fixtures.observation(rng, patient_ref)).encode()


class PacedWriter:
    """POSTs Observations on a fixed schedule (write i at t0 + i / rate) from a few threads, so a slow
    answer does not delay the writes after it; records each write's times, id and meta.lastUpdated."""

    def __init__(self, base: str, auth: str, patients: list[str], rate: float, count: int, threads: int = 4):
        self.host, self.port = base.removeprefix("http://").split(":")
        self.auth = auth
        self.rate = rate
        self.count = count
        self.threads = threads
        rng = random.Random(11)
        self.bodies = [observation(rng, patients[i % len(patients)]) for i in range(count)]
        self.writes: list[dict | None] = [None] * count
        self._next = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.count:
                return None
            self._next += 1
            return self._next - 1

    def _one(self, i: int) -> dict:
        sent = time.time()
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=60)
        try:
            conn.request(
                "POST",
                "/fhir/Observation",
                body=self.bodies[i],
                headers={
                    "Authorization": self.auth,
                    "Content-Type": "application/fhir+json",
                    "Accept": "application/fhir+json",
                },
            )
            resp = conn.getresponse()
            raw = resp.read()
            done = time.time()
            status = resp.status
        except OSError as exc:
            return {"i": i, "sent": sent, "status": f"error {type(exc).__name__}"}
        finally:
            conn.close()
        out = {"i": i, "sent": sent, "done": done, "status": status}
        if status == 201:
            answer = json.loads(raw)
            out["id"] = answer["id"]
            out["last_updated"] = parse_instant(answer.get("meta", {}).get("lastUpdated"))
        return out

    def _loop(self, t0: float) -> None:
        while (i := self._take()) is not None:
            wait = t0 + i / self.rate - time.time()
            if wait > 0:
                time.sleep(wait)
            self.writes[i] = self._one(i)

    def run(self) -> float:
        t0 = time.time() + 0.2
        threads = [threading.Thread(target=self._loop, args=(t0,)) for _ in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.time() - t0

    def lag_ms(self) -> float:
        """How late the last write was sent against its schedule (the client kept the pace if small)."""
        t0 = min(w["sent"] for w in self.writes if w)
        return round(max(w["sent"] - (t0 + w["i"] / self.rate) for w in self.writes if w) * 1000, 1)


def wait_for(receiver: Receiver, expected: int, timeout: float, quiet: float = 3.0) -> float:
    """Wait until `expected` receipts (then `quiet` more seconds for duplicates) or `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline and receiver.count() < expected:
        time.sleep(0.1)
    time.sleep(quiet)
    return time.time()


# --- CPU of process trees -------------------------------------------------------------------------


def tree_ticks(kit: SimpleNamespace, root_pid: int) -> dict[tuple[int, int], int]:
    """CPU ticks of `root_pid` and its descendants, keyed by (pid, start time)."""
    stats = kit.all_stats()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[(pid, stats[pid][2])] = stats[pid][3]
        todo += children.get(pid, [])
    return out


class TreeCpu:
    """CPU seconds of named process trees between start() and stop() (processes alive at both ends,
    which holds for gunicorn, Celery's pool and the receiver; a pool child born inside counts whole)."""

    def __init__(self, kit: SimpleNamespace, roots: dict[str, int]):
        self.kit, self.roots = kit, roots

    def start(self) -> TreeCpu:
        self.first = {name: tree_ticks(self.kit, pid) for name, pid in self.roots.items()}
        return self

    def stop(self) -> dict[str, float]:
        out = {}
        for name, pid in self.roots.items():
            last = tree_ticks(self.kit, pid)
            ticks = sum(v - self.first[name].get(k, 0) for k, v in last.items())
            out[name] = round(ticks / self.kit.clk_tck, 2)
        return out


def start_profile(kit: SimpleNamespace, cfg, name: str, pid: int, seconds: int):
    """py-spy on the Celery worker and its pool children (BENCH_PROFILE=1): where a notification's
    time goes (matching, the door's notify, the HTTP send, the delivery bookkeeping)."""
    pyspy = kit.venv_bin / "py-spy"
    if not cfg.profile or not pyspy.exists():
        return None
    path = kit.results / f"{name}.speedscope.json"
    cmd = [str(pyspy), "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds)]
    cmd += ["--format", "speedscope", "--output", str(path), "--gil"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path


def finish_profile(kit: SimpleNamespace, started) -> dict | None:
    if not started:
        return None
    proc, path = started
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not path.exists():
        kit.log(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
        return None
    kit.log(f"profile of the Celery worker: {path.relative_to(kit.root)}")
    return kit.speedscope_hotspots(path, top=12)


# --- latency --------------------------------------------------------------------------------------


def latency_summary(writes: list[dict], receipts: list[dict], per_write: int) -> dict:
    """Pair receipts with writes by resource id; latencies from meta.lastUpdated and from the 201."""
    ok = [w for w in writes if w and w.get("status") == 201]
    by_id = {w["id"]: w for w in ok}
    seen_keys: set[str] = set()
    duplicates = 0
    commit_ms, answer_ms = [], []
    received: dict[str, int] = {}
    for r in receipts:
        w = by_id.get(r["id"])
        if w is None:
            continue  # a warm-up write's
        if r["key"] in seen_keys:
            duplicates += 1
            continue
        seen_keys.add(r["key"])
        received[r["id"]] = received.get(r["id"], 0) + 1
        if w.get("last_updated"):
            commit_ms.append((r["at"] - w["last_updated"]) * 1000)
        answer_ms.append((r["at"] - w["done"]) * 1000)
    expected = len(ok) * per_write
    delivered = sum(received.values())

    def stats(values: list[float]) -> dict:
        return {
            "p50": round(percentile(values, 0.50) or 0, 1),
            "p95": round(percentile(values, 0.95) or 0, 1),
            "p99": round(percentile(values, 0.99) or 0, 1),
            "max": round(max(values, default=0), 1),
        }

    write_ms = [(w["done"] - w["sent"]) * 1000 for w in ok]
    return {
        "writes": len(writes),
        "writes_201": len(ok),
        "write_errors": len(writes) - len(ok),
        "write_latency_ms": stats(write_ms),
        "expected_notifications": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "duplicates": duplicates,
        "latency_from_commit_ms": stats(commit_ms),
        "latency_from_201_ms": stats(answer_ms),
    }


def run_latency(kit: SimpleNamespace, cfg, name: str, all_match: bool) -> dict:
    rate = env_float("BENCH_S11A_RATE", 2) if all_match else env_float("BENCH_S11_RATE", 50)
    seconds = cfg.seconds
    with deployed_stack(kit, cfg, name) as (srv, receiver):
        patients = make_patients(srv, SUBSCRIPTIONS, f"{name}-patients")
        criteria = (
            [f"Observation?category={CATEGORY}"] * SUBSCRIPTIONS
            if all_match
            else [f"Observation?patient={p}" for p in patients]
        )
        subs = make_subscriptions(srv, receiver, criteria)
        per_write = SUBSCRIPTIONS if all_match else 1
        worker = Worker(kit, {**kit.server_env(cfg), **deployed_env()}, name)
        try:
            worker.start()
            kit.log(
                f"{name}: {len(subs)} subscriptions, celery worker pid {worker.proc.pid} -c {worker.concurrency}"
            )
            # Warm-up: the pool children import and connect; their receipts are not counted.
            warm = PacedWriter(srv.base, kit.auth(), patients, min(rate, 10), max(10, int(rate)))
            warm.run()
            wait_for(receiver, len(warm.writes) * per_write, 30, quiet=1)
            kit.wait_for_quiet(env_int("BENCH_WAIT_QUIET_SCENARIO", 30))
            writer = PacedWriter(srv.base, kit.auth(), patients, rate, int(rate * seconds))
            cpu = TreeCpu(
                kit, {"gunicorn": srv.proc.pid, "celery": worker.proc.pid, "receiver": receiver.proc.pid}
            )
            cpu.start()
            db_cpu = kit.CpuTracker(None, cfg.db_name).start()
            busy0 = kit.machine_busy()
            profiler = start_profile(kit, cfg, name, worker.proc.pid, min(10, seconds))
            elapsed = writer.run()
            expected_total = len(warm.writes) * per_write + len(writer.writes) * per_write
            end = wait_for(receiver, expected_total, env_float("BENCH_S11_DRAIN", 300), quiet=2)
            busy = kit.machine_busy() - busy0
            cpu_s = {**cpu.stop(), "postgres": round(db_cpu.stop()["db"], 2)}
            profile = finish_profile(kit, profiler)
            pending = kit.db_exec(
                cfg,
                "SELECT count(*) FROM subscriptions_event WHERE NOT dispatched",
                "SELECT state, count(*) FROM subscriptions_delivery GROUP BY state",
            )
        finally:
            worker.stop()
            delete_subscriptions(srv, subs)
        summary = latency_summary(writer.writes, receiver.receipts(), per_write)
    out = {
        "scenario": name,
        "table": False,
        "what": (
            f"{SUBSCRIPTIONS} rest-hook subscriptions "
            + (
                f"on Observation?category=vital-signs (each write matches all {SUBSCRIPTIONS})"
                if all_match
                else "on Observation?patient=Patient/<k>, k over 100 Patients (each write matches one)"
            )
            + f"; paced POST Observation at {rate:g}/s for {seconds} s"
        ),
        "rate_writes_per_s": rate,
        "seconds": round(elapsed, 2),
        "client_lag_ms": writer.lag_ms(),
        "celery": {
            "command": " ".join(worker.command()[1:]),
            "concurrency": worker.concurrency,
            "pool": "prefork",
        },
        "cpu_s": cpu_s,
        "machine_busy_cpu_s": round(busy, 2),
        "other_cpu_s": round(max(busy - sum(cpu_s.values()), 0), 2),
        "window_s": round(end - (writer.writes[0] or {}).get("sent", end), 1),
        "after_run": {
            "events_not_dispatched": pending[0][0][0],
            "deliveries_by_state": dict(pending[1]),
        },
        **summary,
        "profile": profile,
        "goal": f"p95 < {GOAL_P95_MS} ms from commit, none lost",
    }
    out["goal_met"] = out["latency_from_commit_ms"]["p95"] < GOAL_P95_MS and out["lost"] == 0
    lat = out["latency_from_commit_ms"]
    kit.log(
        f"{name}: {out['delivered']}/{out['expected_notifications']} delivered, lost {out['lost']}, "
        f"commit->receipt p50 {lat['p50']} p95 {lat['p95']} max {lat['max']} ms, CPU {cpu_s}"
    )
    return out


def scenario_latency(kit: SimpleNamespace, server, cfg) -> dict:
    with main_server_paused(server):
        return run_latency(kit, cfg, "S11", all_match=False)


def scenario_latency_all(kit: SimpleNamespace, server, cfg) -> dict:
    with main_server_paused(server):
        return run_latency(kit, cfg, "S11A", all_match=True)


# --- throughput of one worker ---------------------------------------------------------------------


def backlog(
    kit: SimpleNamespace,
    cfg,
    srv,
    receiver: Receiver,
    name: str,
    patients: list[str],
    criteria: list[str],
    writes: int,
    per_write: int,
) -> dict:
    """Write `writes` Observations (transactions of 100) with no worker running, then start one and
    time it until the receiver has every notification."""
    subs = make_subscriptions(srv, receiver, criteria)
    before = receiver.count()
    rng = random.Random(name)
    for start in range(0, writes, 100):
        n = min(100, writes - start)
        srv.transaction([fixtures.observation(rng, patients[(start + j) % len(patients)]) for j in range(n)])
    expected = writes * per_write
    worker = Worker(kit, {**kit.server_env(cfg), **deployed_env()}, "S12")
    kit.wait_for_quiet(env_int("BENCH_WAIT_QUIET_SCENARIO", 30))
    matched_at: list[float] = []
    stop = threading.Event()

    def watch_matching() -> None:  # when the outbox is empty: matching is done
        while not stop.wait(0.1):
            if (
                kit.db_exec(cfg, "SELECT count(*) FROM subscriptions_event WHERE NOT dispatched")[0][0][0]
                == 0
            ):
                matched_at.append(time.time())
                return

    spawned = time.time()
    try:
        ready = worker.start()
        watcher = threading.Thread(target=watch_matching, daemon=True)
        watcher.start()
        cpu = TreeCpu(kit, {"celery": worker.proc.pid, "receiver": receiver.proc.pid}).start()
        db_cpu = kit.CpuTracker(None, cfg.db_name).start()
        busy0 = kit.machine_busy()
        profiler = start_profile(kit, cfg, f"S12-{name}", worker.proc.pid, 10)
        deadline = time.time() + env_float("BENCH_S12_TIMEOUT", 300)
        while receiver.count() - before < expected and time.time() < deadline:
            time.sleep(0.05)
        receipts = [r for r in receiver.receipts()[before:]]
        busy = kit.machine_busy() - busy0
        cpu_s = {**cpu.stop(), "postgres": round(db_cpu.stop()["db"], 2)}
        profile = finish_profile(kit, profiler)
        stop.set()
    finally:
        worker.stop()
        delete_subscriptions(srv, subs)
    last = max((r["at"] for r in receipts), default=ready)
    first = min((r["at"] for r in receipts), default=ready)
    got = len({r["key"] for r in receipts})
    seconds = last - ready
    out = {
        "writes": writes,
        "subscriptions": len(subs),
        "notifications_expected": expected,
        "received": got,
        "lost": expected - got,
        "worker_start_s": round(ready - spawned, 2),
        "seconds_from_ready": round(seconds, 2),
        "first_receipt_after_ready_s": round(first - ready, 3),
        "matching_done_after_ready_s": round(matched_at[0] - ready, 2) if matched_at else None,
        "notifications_per_s": round(got / seconds, 1) if seconds > 0 else None,
        "cpu_s": cpu_s,
        "machine_busy_cpu_s": round(busy, 2),
        "other_cpu_s": round(max(busy - sum(cpu_s.values()), 0), 2),
        "profile": profile,
    }
    kit.log(
        f"S12 {name}: {got}/{expected} notifications in {out['seconds_from_ready']} s after ready: "
        f"{out['notifications_per_s']}/s (matching done at {out['matching_done_after_ready_s']} s), CPU {cpu_s}"
    )
    return out


def scenario_throughput(kit: SimpleNamespace, server, cfg) -> dict:
    writes = env_int("BENCH_S12_WRITES", 2000)
    with main_server_paused(server), deployed_stack(kit, cfg, "S12") as (srv, receiver):
        patients = make_patients(srv, SUBSCRIPTIONS, "S12-patients")
        one = backlog(
            kit,
            cfg,
            srv,
            receiver,
            "one-match",
            patients,
            [f"Observation?patient={p}" for p in patients],
            writes,
            1,
        )
        flush_redis()
        every = backlog(
            kit,
            cfg,
            srv,
            receiver,
            "all-match",
            patients,
            [f"Observation?category={CATEGORY}"] * SUBSCRIPTIONS,
            max(1, writes // SUBSCRIPTIONS),
            SUBSCRIPTIONS,
        )
    concurrency = Worker(kit, {}, "S12").concurrency
    return {
        "scenario": "S12",
        "table": False,
        "celery": {"concurrency": concurrency, "pool": "prefork", "beat": "embedded (-B)"},
        "what": (
            f"backlog written with no worker running, then one Celery worker (-c {concurrency}) started; "
            "timed from its 'ready' log line to the last notification received"
        ),
        "one_match": one,
        "all_match": every,
    }


# --- the outbox's cost on S1 ----------------------------------------------------------------------


# The S13 variants: what a write pays for the outbox, and for what wakes the worker after it.
OUTBOX_VARIANTS = {
    "on": ("outbox + embedded worker (the bench's server as it runs S1)", None),
    "celery": (
        "outbox + a Celery wake-up per commit (REDIS_URL, FHIR_WORKER=celery; no worker running: it "
        "would be on other machines)",
        {"REDIS_URL": REDIS_URL, "FHIR_WORKER": "celery"},
    ),
    "row": ("outbox row only (FHIR_WORKER=manual: nothing dispatches)", {"FHIR_WORKER": "manual"}),
    "off": ("no outbox (FHIR_SUBSCRIPTION_OUTBOX=false)", {"FHIR_SUBSCRIPTION_OUTBOX": "false"}),
}


def scenario_outbox_cost(kit: SimpleNamespace, server, cfg) -> dict:
    rounds = env_int("BENCH_S13_ROUNDS", 2)
    cfg = dataclasses.replace(cfg, profile=False)  # py-spy's pauses would blur a difference of a few %
    wanted = [v for v in os.environ.get("BENCH_S13_VARIANTS", "on,celery,row,off").split(",") if v]
    servers = {}
    for label in wanted:
        extra = OUTBOX_VARIANTS[label][1]
        servers[label] = (
            server
            if extra is None
            else kit.Server(cfg, extra_env=extra, log_name=f"gunicorn-S13-{label}.log")
        )
    flush_redis()
    runs: dict[str, list[dict]] = {label: [] for label in wanted}
    try:
        for srv in servers.values():
            if srv is not server:
                srv.start()
        for r in range(rounds):
            # Each round in another order, so that neither the store's growth nor a burst of other
            # load on the machine favours one variant.
            order = wanted[r % len(wanted) :] + wanted[: r % len(wanted)]
            if r % 2:
                order.reverse()
            for label in order:
                kit.wait_for_quiet(env_int("BENCH_WAIT_QUIET_SCENARIO", 30))
                res = kit.scenario_crud(servers[label], cfg)
                runs[label].append(res)
                kit.log(
                    f"S13 {label} round {r + 1}: {res['rate']} req/s, p99 {res['latency_ms']['p99']} ms, "
                    f"{res['per_cpu_s']}/CPU-s, errors {res['error_rate']:.2%}"
                    + (f" [other load {res['other_cpu_s']} CPU-s]" if res.get("contended") else "")
                )
    finally:
        for srv in servers.values():
            if srv is not server:
                srv.stop()
        flush_redis()

    def mean(label: str, key: str) -> float:
        values = [x[key] for x in runs[label] if x.get(key)]
        return sum(values) / len(values) if values else 0.0

    variants = {}
    for label in wanted:
        variants[label] = {
            "what": OUTBOX_VARIANTS[label][0],
            "rate": round(mean(label, "rate"), 1),
            "per_cpu_s": round(mean(label, "per_cpu_s"), 1),
            "runs": [
                {
                    k: x[k]
                    for k in (
                        "rate",
                        "latency_ms",
                        "per_cpu_s",
                        "error_rate",
                        "cpu_s",
                        "other_cpu_s",
                        "contended",
                    )
                }
                for x in runs[label]
            ],
        }
    base = variants.get("off")
    for label, v in variants.items():
        if base and label != "off" and base["rate"] and base["per_cpu_s"]:
            v["cost_rate"] = round(1 - v["rate"] / base["rate"], 4)
            v["cost_per_cpu_s"] = round(1 - v["per_cpu_s"] / base["per_cpu_s"], 4)
    out = {
        "scenario": "S13",
        "table": False,
        "what": "S1 (crud.lua, 32 conns) on one gunicorn per variant, the variants alternated",
        "rounds": rounds,
        "variants": variants,
        "goal": f"the outbox costs a write <= {GOAL_OUTBOX_COST:.0%} (variant 'on' against 'off')",
    }
    on = variants.get("on", {})
    out["goal_met"] = "cost_rate" in on and on["cost_rate"] <= GOAL_OUTBOX_COST
    return out


# --- WebSocket -----------------------------------------------------------------------------------


def websocket_consumer(root: Path) -> Path | None:
    path = root / "subscriptions" / "consumers.py"
    return path if path.exists() else None


class Daphne:
    """daphne serving fhirplatform.asgi (the WebSocket endpoint), with the deployed settings."""

    def __init__(self, kit: SimpleNamespace, cfg):
        self.kit = kit
        self.port = kit.free_port()
        self.env = {**kit.server_env(cfg), **deployed_env()}
        self.log_path = kit.results / "daphne-S14.log"

    def start(self) -> None:
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                str(self.kit.venv_bin / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "fhirplatform.asgi:application",
            ],
            cwd=self.kit.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/fhir/metadata")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"daphne did not answer within 60 s; see {self.log_path}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


class SocketClient:
    """bench/ws_receiver.py: one socket, every subscription bound; pings read back from its file."""

    def __init__(self, kit: SimpleNamespace, url: str, ids: list[str]):
        self.path = kit.work / "S14-pings.tsv"
        self.path.write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, str(kit.root / "bench" / "ws_receiver.py"), url, str(self.path), *ids],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "FHIR_BENCH_AUTH": kit.auth()},
        )
        first = self.proc.stdout.readline().strip()
        if first != "ready":
            raise RuntimeError(f"WebSocket client: {first or 'exited'}")

    def pings(self) -> list[tuple[float, str]]:
        out = []
        for line in self.path.read_text().splitlines():
            at, _, message = line.partition("\t")
            words = message.split()
            if len(words) >= 2 and words[0] == "ping":
                out.append((float(at), words[1]))
        return out

    def count(self) -> int:
        return len(self.pings())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pings_summary(
    writes: list[dict], pings: list[tuple[float, str]], patient_of: dict[str, str], patients: list[str]
) -> dict:
    """A ping names only its subscription: the n-th ping of subscription k is paired with the n-th
    write (in commit order) of an Observation of patient k, the only writes k matches."""
    ok = [w for w in writes if w and w.get("status") == 201]
    by_patient: dict[str, list[dict]] = {}
    for w in ok:
        by_patient.setdefault(patients[w["i"] % len(patients)], []).append(w)
    for ws in by_patient.values():
        ws.sort(key=lambda w: w.get("last_updated") or 0)
    seen: dict[str, int] = {}
    commit_ms, answer_ms, extra = [], [], 0
    for at, sid in sorted(pings):
        patient = patient_of.get(sid)
        n = seen.get(sid, 0)
        seen[sid] = n + 1
        candidates = by_patient.get(patient, [])
        if n >= len(candidates):
            extra += 1
            continue
        w = candidates[n]
        if w.get("last_updated"):
            commit_ms.append((at - w["last_updated"]) * 1000)
        answer_ms.append((at - w["done"]) * 1000)

    def stats(values: list[float]) -> dict:
        return {
            "p50": round(percentile(values, 0.50) or 0, 1),
            "p95": round(percentile(values, 0.95) or 0, 1),
            "p99": round(percentile(values, 0.99) or 0, 1),
            "max": round(max(values, default=0), 1),
        }

    delivered = len(pings) - extra
    return {
        "writes": len(writes),
        "writes_201": len(ok),
        "expected_notifications": len(ok),
        "delivered": delivered,
        "lost": len(ok) - delivered,
        "unpaired_pings": extra,
        "latency_from_commit_ms": stats(commit_ms),
        "latency_from_201_ms": stats(answer_ms),
    }


def scenario_websocket(kit: SimpleNamespace, server, cfg) -> dict:
    """WebSocket latency under daphne: ping receipt minus the write's commit time.

    Stack: gunicorn for the writes, one Celery worker (matching, then the websocket channel's
    group_send over the Redis channel layer), daphne holding the socket; 100 websocket subscriptions
    on `Observation?patient=Patient/<k>` bound on one socket by bench/ws_receiver.py."""
    if websocket_consumer(kit.root) is None:
        return {
            "scenario": "S14",
            "table": False,
            "skipped": "no WebSocket consumer in this tree (subscriptions/consumers.py): merge it, then run S14",
        }
    rate = env_float("BENCH_S14_RATE", env_float("BENCH_S11_RATE", 50))
    seconds = cfg.seconds
    with main_server_paused(server), deployed_stack(kit, cfg, "S14") as (srv, _hooks):
        daphne = Daphne(kit, cfg)
        daphne.start()
        worker = Worker(kit, {**kit.server_env(cfg), **deployed_env()}, "S14")
        subs: list[str] = []
        client = None
        try:
            patients = make_patients(srv, SUBSCRIPTIONS, "S14-patients")
            for p in patients:
                body = {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "bench",
                    "criteria": f"Observation?patient={p}",
                    "channel": {"type": "websocket"},
                }
                status, answer = srv.request("POST", "/fhir/Subscription", body)
                if status != 201 or answer.get("status") != "active":
                    raise RuntimeError(
                        f"Subscription not created active ({status}): {json.dumps(answer)[:1000]}"
                    )
                subs.append(answer["id"])
            patient_of = dict(zip(subs, patients, strict=True))
            worker.start()
            client = SocketClient(kit, f"ws://127.0.0.1:{daphne.port}/fhir/websocket", subs)
            kit.log(
                f"S14: {len(subs)} websocket subscriptions bound on one socket; celery -c {worker.concurrency}"
            )
            warm = PacedWriter(srv.base, kit.auth(), patients, min(rate, 10), max(10, int(rate)))
            warm.run()
            deadline = time.time() + 60
            while client.count() < len(warm.writes) and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(1)
            warm_pings = client.pings()
            kit.wait_for_quiet(env_int("BENCH_WAIT_QUIET_SCENARIO", 30))
            # Every warm-up ping has arrived: the measured pings are the lines after them.
            writer = PacedWriter(srv.base, kit.auth(), patients, rate, int(rate * seconds))
            cpu = TreeCpu(
                kit, {"gunicorn": srv.proc.pid, "celery": worker.proc.pid, "daphne": daphne.proc.pid}
            ).start()
            db_cpu = kit.CpuTracker(None, cfg.db_name).start()
            elapsed = writer.run()
            deadline = time.time() + env_float("BENCH_S11_DRAIN", 300)
            while client.count() < len(warm_pings) + len(writer.writes) and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(2)
            cpu_s = {**cpu.stop(), "postgres": round(db_cpu.stop()["db"], 2)}
            pings = client.pings()[len(warm_pings) :]
        finally:
            if client:
                client.stop()
            worker.stop()
            daphne.stop()
            delete_subscriptions(srv, subs)
    summary = pings_summary(writer.writes, pings, patient_of, patients)
    out = {
        "scenario": "S14",
        "table": False,
        "what": (
            f"{SUBSCRIPTIONS} websocket subscriptions on Observation?patient=Patient/<k> bound on one socket "
            f"(daphne, Redis channel layer); paced POST Observation at {rate:g}/s for {seconds} s to gunicorn"
        ),
        "seconds": round(elapsed, 2),
        "client_lag_ms": writer.lag_ms(),
        "celery": {"concurrency": worker.concurrency, "pool": "prefork"},
        "cpu_s": cpu_s,
        **summary,
        "goal": f"p95 < {GOAL_P95_MS} ms from commit, none lost",
    }
    out["goal_met"] = out["latency_from_commit_ms"]["p95"] < GOAL_P95_MS and out["lost"] == 0
    return out


# --- report ---------------------------------------------------------------------------------------


def print_profile(label: str, profile: dict | None) -> None:
    if not profile:
        return
    print(f"  py-spy {label} (Celery worker and pool, {profile['sampled_s']} s GIL-holding samples):")
    print(
        "    self:      " + "; ".join(f"{100 * x['share']:.0f}% {x['function']}" for x in profile["self"][:6])
    )
    print(
        "    inclusive: "
        + "; ".join(f"{100 * x['share']:.0f}% {x['function']}" for x in profile["inclusive"][:10])
    )


def print_details(results: dict) -> None:
    for name in SCENARIOS:
        if results.get(name, {}).get("error"):
            print(f"{name} failed:\n{results[name]['error']}")
    results = {k: v for k, v in results.items() if not v.get("error")}
    for name in ("S11", "S11A"):
        res = results.get(name)
        if not res:
            continue
        c, a, w = res["latency_from_commit_ms"], res["latency_from_201_ms"], res["write_latency_ms"]
        print(
            f"{name}: {res['what']}; celery -c {res['celery']['concurrency']} ({res['celery']['pool']}).\n"
            f"  delivered {res['delivered']}/{res['expected_notifications']} (lost {res['lost']}, duplicates "
            f"{res['duplicates']}), writes {res['writes_201']}/{res['writes']} 201 (p50 {w['p50']} ms, p95 {w['p95']} ms), "
            f"client lag {res['client_lag_ms']} ms\n"
            f"  commit->receipt p50 {c['p50']} ms, p95 {c['p95']} ms, p99 {c['p99']} ms, max {c['max']} ms; "
            f"201->receipt p50 {a['p50']} ms, p95 {a['p95']} ms, max {a['max']} ms  "
            f"goal {res['goal']}: {'MET' if res['goal_met'] else 'not met'}\n"
            f"  CPU s {res['cpu_s']} (machine busy {res['machine_busy_cpu_s']} s, others {res['other_cpu_s']} s, over {res['window_s']} s); "
            f"after the run: {res['after_run']}"
        )
        print_profile(name, res.get("profile"))
    s12 = results.get("S12")
    if s12:
        print(f"S12: {s12['what']}.")
        for label in ("one_match", "all_match"):
            x = s12[label]
            print(
                f"  {label:<9} {x['writes']} writes x {x['notifications_expected'] // max(x['writes'], 1)} = "
                f"{x['notifications_expected']} notifications: {x['received']} received in {x['seconds_from_ready']} s "
                f"-> {x['notifications_per_s']} notifications/s (first after {x['first_receipt_after_ready_s']} s, "
                f"outbox matched after {x['matching_done_after_ready_s']} s; worker start {x['worker_start_s']} s), "
                f"CPU s {x['cpu_s']}, others {x['other_cpu_s']} s"
            )
            print_profile(label, x.get("profile"))
    s13 = results.get("S13")
    if s13:
        print(
            f"S13: {s13['what']}, {s13['rounds']} rounds; goal {s13['goal']}: {'MET' if s13['goal_met'] else 'not met'}"
        )
        for label, v in s13["variants"].items():
            cost = (
                f"cost vs off: {100 * v['cost_rate']:.1f}% req/s, {100 * v['cost_per_cpu_s']:.1f}% per CPU-s"
                if "cost_rate" in v
                else "(baseline)"
            )
            runs = "; ".join(
                f"{x['rate']} req/s p99 {x['latency_ms']['p99']} ms {x['per_cpu_s']}/CPU-s"
                + (f" [other load {x['other_cpu_s']} CPU-s]" if x["contended"] else "")
                for x in v["runs"]
            )
            print(
                f"  {label:<7}{v['rate']:>7} req/s {v['per_cpu_s']:>7}/CPU-s  {cost}  ({v['what']})\n           runs: {runs}"
            )
    s14 = results.get("S14")
    if s14 and s14.get("skipped"):
        print(f"S14: skipped: {s14['skipped']}")
    elif s14:
        c, a = s14["latency_from_commit_ms"], s14["latency_from_201_ms"]
        print(
            f"S14: {s14['what']}; celery -c {s14['celery']['concurrency']}.\n"
            f"  pings {s14['delivered']}/{s14['expected_notifications']} (lost {s14['lost']}, unpaired "
            f"{s14['unpaired_pings']}), client lag {s14['client_lag_ms']} ms\n"
            f"  commit->ping p50 {c['p50']} ms, p95 {c['p95']} ms, p99 {c['p99']} ms, max {c['max']} ms; "
            f"201->ping p50 {a['p50']} ms, p95 {a['p95']} ms  goal {s14['goal']}: "
            f"{'MET' if s14['goal_met'] else 'not met'}; CPU s {s14['cpu_s']}"
        )
