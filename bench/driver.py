"""`make bench`: throughput, latency and CPU cost of the FHIR server, with its ceilings, in one run.

bench/run.sh installs wrk if needed and runs this with the project's venv. Steps: create a fresh
PostgreSQL database, migrate it, start gunicorn in production mode (settings `bench.ceiling_settings`:
production plus /bench/ping), run each scenario with wrk and a Lua script (a short warm-up first, not
measured), measure server CPU from /proc, stop gunicorn, drop the database, print a table and write
bench/results/latest.json. bench/README.md describes the method.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import fixtures, notifications  # noqa: E402
from bench import search_queries as sq  # noqa: E402

BENCH = ROOT / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
WORK = RESULTS / "work"
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# Goals on this 2-core machine (server and database together) and published anchors (per core).
GOALS = {
    "S1": {"rate": 650, "p99_ms": 100, "unit": "req/s"},
    "S2": {"rate": 2500, "unit": "req/s"},
    "S5": {"rate": 800, "unit": "transactions/s"},
    "S6": {"rate": 1200, "unit": "resources/s"},
    "S3": {"rate": 250, "p99_ms": 1000, "unit": "req/s"},
    "S8": {"rate": 20000, "unit": "resources/s"},
    # S4's goal is a p50 budget per step (bench/search_queries.S4_KINDS), checked in scenario_lookup.
}
ANCHORS = {
    "S1": [("Aidbox", 326), ("HAPI", 191), ("Medplum", 89)],
    "S2": [("Blaze", 2000)],
    "S6": [("Blaze import", 590)],
    "S3": [("Medplum", 112), ("HAPI", 63)],
}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Config:
    seconds: int = env_int("BENCH_SECONDS", 20)
    warmup: int = env_int("BENCH_WARMUP", 3)
    scenarios: list[str] = field(default_factory=list)
    profile: bool = os.environ.get("BENCH_PROFILE", "0") not in ("", "0")
    worker_class: str = os.environ.get("BENCH_WORKER_CLASS", "sync")
    workers: int = env_int("BENCH_WORKERS", 4)
    threads: int = env_int("BENCH_THREADS", 4)
    db_name: str = os.environ.get("BENCH_DB", "fhirbench")
    pg_host: str = os.environ.get("BENCH_PGHOST", "127.0.0.1")
    pg_port: int = env_int("BENCH_PGPORT", 5432)
    pg_user: str = os.environ.get("BENCH_PGUSER", "postgres")
    read_patients: int = env_int("BENCH_READ_PATIENTS", 2000)
    import_bundles: int = env_int("BENCH_IMPORT_BUNDLES", 200)
    wrk_threads: int = env_int("BENCH_WRK_THREADS", 1)
    demo_patients: int = env_int("BENCH_DEMO_PATIENTS", 0)
    # Search scenarios (S3, S8, S4): shorter runs by default, so `make bench` stays under ~15 minutes
    # with the data they load (1,000 demo patients, reindex, 100,000 Patients).
    search_seconds: int = env_int("BENCH_SEARCH_SECONDS", 10)
    search_demo_patients: int = env_int("BENCH_SEARCH_DEMO_PATIENTS", 1000)
    s4_patients: int = env_int("BENCH_S4_PATIENTS", 100_000)
    s4_load_procs: int = env_int("BENCH_S4_LOAD_PROCS", 2)
    s4_threads: int = env_int("BENCH_S4_THREADS", 4)
    query_samples: int = env_int("BENCH_S3_QUERY_SAMPLES", 15)

    def dsn(self, db: str | None = None) -> str:
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{db or self.db_name}"


# The search scenarios run after S1/S2 and before S5/S6, which empty the store: S3 and S8 on the demo
# patients, then S4 once the 100,000 Patients are added (S3 would otherwise search those too).
# S9/S10 (the rule chain's cost) run on the same demo data, right after S3 and before S4 adds Patients.
# The subscription scenarios (bench/notifications.py) come last: S13 measures S1 again (outbox on and
# off), S11/S12 stop the main server and run their own with Redis and a Celery worker.
ALL_SCENARIOS = [
    "CEIL_HTTP",
    "S2",
    "S1",
    "S3",
    "S9",
    "S10",
    "S8",
    "S4",
    "S5",
    "S6",
    "CEIL_DB",
    *notifications.SCENARIOS,
]
NEEDS_CEILING = {"S1": "CEIL_HTTP", "S2": "CEIL_HTTP", "S5": "CEIL_DB", "S6": "CEIL_DB"}


def selected_scenarios() -> list[str]:
    wanted = [s.strip().upper() for s in os.environ.get("BENCH_SCENARIOS", "").split(",") if s.strip()]
    if not wanted:
        return list(ALL_SCENARIOS)
    unknown = set(wanted) - set(ALL_SCENARIOS)
    if unknown:
        sys.exit(f"unknown BENCH_SCENARIOS {sorted(unknown)}; known: {ALL_SCENARIOS}")
    if os.environ.get("BENCH_CEILINGS", "1") != "0":
        wanted += [NEEDS_CEILING[s] for s in wanted if s in NEEDS_CEILING]
    return [s for s in ALL_SCENARIOS if s in wanted]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------
# CPU accounting from /proc.
#
# A process's CPU is utime+stime of /proc/<pid>/stat (clock ticks, all its threads). The server is the
# gunicorn master and its workers; the database is every `postgres` process except client backends of
# other databases (other people's tests may use the same PostgreSQL): the postmaster, the background
# processes (checkpointer, WAL writer, ...) and the backends connected to the bench database, told
# apart by their process title ("postgres: 15/main: user db host(port) ...").
#
# A sampler thread reads /proc every 0.2 s during the window. Processes are keyed by (pid, start time).
# A process's share is its last value seen minus its value at the window's start (0 if it was born
# inside the window), so a process that exits inside the window counts up to its last sample: at most
# 0.2 s of its CPU is missed, and a process born and gone between two samples is missed entirely.
# cutime/cstime are not used: the postmaster's would include the backends of other databases.
# ---------------------------------------------------------------------------------------------------

_CLIENT_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(comm, ppid, starttime, utime+stime ticks) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    rest = data[data.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    return comm, int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12])


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _all_stats() -> dict[int, tuple[str, int, int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                out[int(entry)] = st
    return out


class CpuTracker:
    """CPU seconds of the server ("app") and the database ("db") over a window; see above."""

    def __init__(self, gunicorn_pid: int | None, db_name: str, interval: float = 0.2):
        self.gunicorn_pid = gunicorn_pid
        self.db_name = db_name
        self.interval = interval
        self.groups: dict[tuple[int, int], str | None] = {}  # key -> "app", "db" or None (not ours)
        self.first: dict[tuple[int, int], int] = {}
        self.last: dict[tuple[int, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _group(self, pid: int, comm: str, ppid: int) -> str | None:
        if self.gunicorn_pid and (pid == self.gunicorn_pid or ppid == self.gunicorn_pid):
            return "app"
        if comm == "postgres":
            client = _CLIENT_TITLE.match(_title(pid))
            return "db" if client is None or client.group(1) == self.db_name else None
        return None

    def _sample(self, initial: bool) -> None:
        for pid, (comm, ppid, start, ticks) in _all_stats().items():
            key = (pid, start)
            if key not in self.groups:
                self.groups[key] = self._group(pid, comm, ppid)
                self.first[key] = ticks if initial else 0
            if self.groups[key]:
                self.last[key] = ticks

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(initial=False)

    def start(self) -> CpuTracker:
        self._sample(initial=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample(initial=False)
        out = {"app": 0.0, "db": 0.0}
        for key, ticks in self.last.items():
            out[self.groups[key]] += (ticks - self.first[key]) / CLK_TCK
        out["total"] = out["app"] + out["db"]
        return out


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all of /proc/stat's cpu line except idle+iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


# ---------------------------------------------------------------------------------------------------
# Database and server.
# ---------------------------------------------------------------------------------------------------


def admin_exec(cfg: Config, *sql: str) -> None:
    with psycopg.connect(cfg.dsn("postgres"), autocommit=True) as conn:
        for stmt in sql:
            conn.execute(stmt)


def db_exec(cfg: Config, *sql: str) -> list:
    out = []
    with psycopg.connect(cfg.dsn(), autocommit=True) as conn:
        for stmt in sql:
            cur = conn.execute(stmt)
            out.append(cur.fetchall() if cur.description else None)
    return out


def reset_store(cfg: Config) -> None:
    """Empty the resource store (all index tables reference resources_resource) and checkpoint, so the
    next scenario starts from an empty store without a pending checkpoint from the last one."""
    db_exec(cfg, "TRUNCATE resources_resource CASCADE", "CHECKPOINT")


def pg_settings(cfg: Config) -> dict:
    names = (
        "server_version",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "max_connections",
        "wal_level",
    )
    rows = db_exec(cfg, f"SELECT name, setting, unit FROM pg_settings WHERE name IN {names!r}")[0]
    return {name: f"{setting}{' x ' + unit if unit else ''}" for name, setting, unit in rows}


# The Authorization header of every request the bench sends, set once the server is up.
AUTH: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(cfg: Config) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.ceiling_settings",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY", "bench-" + os.urandom(16).hex()),
        DATABASE_URL=cfg.dsn(),
        DEBUG="false",
        # The bench talks plain HTTP to 127.0.0.1: no HTTPS redirect, secure-only cookies or HSTS.
        FHIR_INSECURE_HTTP="true",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    # The server must not pick up a developer's REDIS_URL from .env (settings only fill variables that
    # are unset): the bench runs embedded Celery/channels like a single-node deployment.
    env["REDIS_URL"] = ""
    return env


class Server:
    """One gunicorn; `extra_env` on top of server_env (the subscription scenarios start others)."""

    def __init__(self, cfg: Config, extra_env: dict | None = None, log_name: str = "gunicorn.log"):
        self.cfg = cfg
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = RESULTS / log_name
        self.proc: subprocess.Popen | None = None
        self.started = 0

    def env(self) -> dict:
        return {**server_env(self.cfg), **self.extra_env}

    def command(self) -> list[str]:
        cfg = self.cfg
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "fhirplatform.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(cfg.workers),
            "--worker-class",
            cfg.worker_class,
            "--log-level",
            "warning",
            "--error-logfile",
            "-",
            "--timeout",
            "120",
            "--backlog",
            "2048",
        ]
        if cfg.worker_class == "gthread":
            cmd += ["--threads", str(cfg.threads)]
        return cmd

    def start(self) -> None:
        # Started again after a scenario that needed it stopped: the log goes on.
        self.log_file = open(self.log_path, "a" if self.started else "w")  # noqa: SIM115 (closed in stop())
        self.started += 1
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env(),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/fhir/metadata", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        else:
            raise RuntimeError("gunicorn did not answer /fhir/metadata within 60 s")
        # Requests are authenticated like a client's: an Admin API token from the operator's command.
        minted = subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", "issue_token", "--role", "Admin", "--label", "bench"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        AUTH["Authorization"] = f"Bearer {minted.stdout.strip()}"
        # Every worker answers a few requests so imports and lazily built tables are warm.
        for _ in range(self.cfg.workers * 8):
            self.get("/fhir/metadata")

    def workers(self) -> list[int]:
        if not self.proc:
            return []
        return sorted(pid for pid, st in _all_stats().items() if st[1] == self.proc.pid)

    def log_offset(self) -> int:
        self.log_file.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int, limit: int = 40) -> list[str]:
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        return lines[-limit:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if hasattr(self, "log_file"):
            self.log_file.close()

    # Small HTTP client for setup (not measured).
    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
        data = fixtures.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(AUTH))
        req.add_header("Accept", "application/fhir+json")
        if data is not None:
            req.add_header("Content-Type", "application/fhir+json")
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else {}

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def transaction(self, resources: list[dict]) -> list[tuple[str, str]]:
        """POST `resources` in one transaction; returns (type, id) of each created resource."""
        bundle = fixtures.transaction([fixtures.post_entry(r) for r in resources])
        status, answer = self.request("POST", "/fhir", bundle)
        if status != 200:
            raise RuntimeError(f"setup transaction failed with {status}: {json.dumps(answer)[:2000]}")
        out = []
        for entry in answer["entry"]:
            location = entry["response"]["location"]
            rtype, fhir_id = (
                location.split("/")[-4:-2] if "/_history/" in location else location.split("/")[-2:]
            )
            out.append((rtype, fhir_id))
        return out


# ---------------------------------------------------------------------------------------------------
# wrk.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    wrk: dict
    seconds: float
    cpu: dict
    machine_busy_s: float
    loadgen_cpu_s: float
    log_tail: list[str]


def run_wrk(
    server: Server,
    script: str,
    connections: int,
    seconds: int,
    args: list[str] = (),
    profile: str | None = None,
    auth: str | None = None,
) -> Run:
    """One wrk run. `auth`: the Authorization header value of its requests (a persona's token);
    default the bench's Admin token."""
    threads = min(server.cfg.wrk_threads, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        script,
        server.base,
        "--",
        *[str(a) for a in args],
        str(threads),
    ]
    out_path = WORK / "wrk.out"
    offset = server.log_offset()
    profiler = None
    busy0 = machine_busy()
    tracker = CpuTracker(server.proc.pid, server.cfg.db_name).start()
    t0 = time.monotonic()
    with open(out_path, "w") as out:
        env = {**os.environ, "FHIR_BENCH_AUTH": auth if auth is not None else AUTH.get("Authorization", "")}
        proc = subprocess.Popen(cmd, cwd=LUA, stdout=out, stderr=subprocess.STDOUT, env=env)
        if profile:
            profiler = start_profiler(server, profile, seconds)
        # wait4 gives wrk's own CPU use (the load generator shares the machine with the server).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - t0
    cpu = tracker.stop()
    busy1 = machine_busy()
    if profiler:
        finish_profiler(profiler)
    text = out_path.read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    data = json.loads(line[len("BENCHJSON ") :])
    log_tail = server.log_since(offset) if data["http_errors"] or any(data["socket_errors"].values()) else []
    return Run(
        wrk=data,
        seconds=elapsed,
        cpu=cpu,
        machine_busy_s=busy1 - busy0,
        loadgen_cpu_s=usage.ru_utime + usage.ru_stime,
        log_tail=log_tail,
    )


# ---------------------------------------------------------------------------------------------------
# py-spy (BENCH_PROFILE=1): one worker, during the measured S1 and S6 runs.
# ---------------------------------------------------------------------------------------------------


def start_profiler(server: Server, name: str, seconds: int):
    pyspy = VENV_BIN / "py-spy"
    workers = server.workers()
    if not pyspy.exists() or not workers:
        log("py-spy not available; no profile")
        return None
    duration = max(1, min(10, seconds - 2))
    procs = []
    # Two workers at once: one to speedscope with --gil (only samples holding the GIL: where the
    # worker's Python CPU goes, the hot-spot summary), one to an SVG flame graph of wall time
    # (waiting on PostgreSQL included).
    # py-spy samples at 100 Hz and pauses the worker while it reads the stack, so profiled runs are a
    # little slower; their numbers are marked in the results.
    outputs = [("speedscope", RESULTS / f"{name}.speedscope.json")]
    if len(workers) > 1:
        outputs.append(("flamegraph", RESULTS / f"{name}.svg"))
    time.sleep(1)  # let wrk reach steady state
    for (fmt, path), pid in zip(outputs, workers, strict=False):
        cmd = [str(pyspy), "record", "--pid", str(pid), "--duration", str(duration), "--format", fmt]
        cmd += ["--output", str(path)] + (["--gil"] if fmt == "speedscope" else [])
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path, pid))
    return procs


def finish_profiler(procs) -> None:
    for proc, path, pid in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            log(f"py-spy on {pid} failed: {err.decode(errors='replace').strip()[-500:]}")
        else:
            log(f"profile of worker {pid}: {path.relative_to(ROOT)}")


def _is_project_file(file: str) -> bool:
    return file.startswith(str(ROOT)) and "/.venv/" not in file and "/site-packages/" not in file


def speedscope_hotspots(path: Path, top: int = 8) -> dict:
    """Shares of sampled time per function (lines merged) from a py-spy speedscope file: `self` over
    all code (where the time is spent), `inclusive` over the project's own functions (which of its
    code paths that time belongs to)."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]

    def label(fr: dict) -> str:
        file = fr.get("file", "") or ""
        short = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        return f"{fr['name']} ({short})"

    self_time: dict[str, float] = {}
    incl_time: dict[str, float] = {}
    total = 0.0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            if not stack:
                continue
            total += weight
            leaf = label(frames[stack[-1]])
            self_time[leaf] = self_time.get(leaf, 0) + weight
            for name in {
                label(frames[i]) for i in stack if _is_project_file(frames[i].get("file", "") or "")
            }:
                incl_time[name] = incl_time.get(name, 0) + weight

    def rank(counts: dict[str, float]) -> list[dict]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [{"function": k, "share": round(v / total, 4)} for k, v in best]

    return {"sampled_s": round(total, 2), "self": rank(self_time), "inclusive": rank(incl_time)}


# ---------------------------------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------------------------------


def summarise(name: str, run: Run, rate_from: str, connections: int, extra: dict | None = None) -> dict:
    w = run.wrk
    seconds = w["duration_us"] / 1e6
    socket_errors = sum(w["socket_errors"].values())
    attempts = w["responses"] + socket_errors
    units = w["units"] if rate_from == "units" else w["responses"]
    rate = units / seconds
    cpu = run.cpu["total"]
    out = {
        "scenario": name,
        "connections": connections,
        "seconds": round(seconds, 2),
        "responses": w["responses"],
        "requests_per_s": round(w["responses"] / seconds, 1),
        "rate": round(rate, 1),
        "latency_ms": {k: round(v / 1000, 2) for k, v in w["latency_us"].items()},
        "status": w["status"],
        "http_errors": w["http_errors"],
        "socket_errors": w["socket_errors"],
        "error_rate": round((w["http_errors"] + socket_errors) / attempts, 5) if attempts else 0.0,
        "cpu_s": {k: round(v, 2) for k, v in run.cpu.items()},
        "machine_busy_cpu_s": round(run.machine_busy_s, 2),
        "loadgen_cpu_s": round(run.loadgen_cpu_s, 2),
        # CPU that neither the server, the database nor wrk used: other work on the machine. Above 10%
        # of the machine the throughput figures are understated (per CPU-second figures much less so).
        "other_cpu_s": round(max(run.machine_busy_s - run.cpu["total"] - run.loadgen_cpu_s, 0), 2),
        "per_cpu_s": round(units / cpu, 1) if cpu else None,
        "kinds": w["kinds"],
    }
    out["contended"] = out["other_cpu_s"] > 0.1 * NCPU * run.seconds
    if run.log_tail:
        out["server_log_tail"] = run.log_tail
    if extra:
        out.update(extra)
    return out


def scenario_ceiling_http(server: Server, cfg: Config) -> dict:
    script = "ping.lua"
    run_wrk(server, script, 16, cfg.warmup)
    run = run_wrk(server, script, 16, cfg.seconds)
    return summarise("CEIL_HTTP", run, "responses", 16, {"unit": "req/s", "what": "GET /bench/ping"})


def scenario_read(server: Server, cfg: Config) -> dict:
    log(f"S2 setup: creating {cfg.read_patients} Patients")
    rng = random.Random(2)
    ids: list[tuple[str, str]] = []
    batch = 250
    for start in range(0, cfg.read_patients, batch):
        n = min(batch, cfg.read_patients - start)
        ids += server.transaction([fixtures.patient(rng) for _ in range(n)])
    ids_file = WORK / "s2_ids.txt"
    ids_file.write_text("".join(f"{t} {i}\n" for t, i in ids))
    db_exec(cfg, "VACUUM ANALYZE", "CHECKPOINT")
    run_wrk(server, "read.lua", 16, cfg.warmup, [ids_file])
    run = run_wrk(server, "read.lua", 16, cfg.seconds, [ids_file])
    return summarise("S2", run, "responses", 16, {"unit": "req/s", "patients": len(ids)})


def s1_files(server: Server, cfg: Config, tag: str) -> tuple[Path, Path]:
    """Reference targets, 100 bodies per type, and a pool of 40 existing ids per type for GET/PUT/DELETE.
    A fresh pool per wrk run: the warm-up deletes some of its ids."""
    rng = random.Random(f"s1-{tag}")
    refs = server.transaction([fixtures.patient(rng) for _ in range(5)] + [fixtures.practitioner(rng)])
    patient_refs = [f"{t}/{i}" for t, i in refs if t == "Patient"]
    practitioner_ref = next(f"{t}/{i}" for t, i in refs if t == "Practitioner")
    bodies_file = WORK / f"s1_bodies_{tag}.txt"
    with open(bodies_file, "w") as f:
        for rtype in fixtures.S1_TYPES:
            for _ in range(100):
                body = fixtures.s1_body(rng, rtype, patient_refs, practitioner_ref)
                f.write(f"{rtype}\t{fixtures.dumps(body)}\n")
    seed = [
        fixtures.s1_body(rng, t, patient_refs, practitioner_ref) for t in fixtures.S1_TYPES for _ in range(40)
    ]
    ids = server.transaction(seed)
    ids_file = WORK / f"s1_ids_{tag}.txt"
    ids_file.write_text("".join(f"{t} {i}\n" for t, i in ids))
    return bodies_file, ids_file


def scenario_crud(server: Server, cfg: Config) -> dict:
    bodies, ids = s1_files(server, cfg, "warmup")
    run_wrk(server, "crud.lua", 32, cfg.warmup, [bodies, ids])
    bodies, ids = s1_files(server, cfg, "measure")
    db_exec(cfg, "CHECKPOINT")
    run = run_wrk(server, "crud.lua", 32, cfg.seconds, [bodies, ids], profile="S1" if cfg.profile else None)
    return summarise("S1", run, "responses", 32, {"unit": "req/s", "profiled": cfg.profile})


def scenario_transaction(server: Server, cfg: Config) -> dict:
    run_wrk(server, "transaction.lua", 8, cfg.warmup)
    reset_store(cfg)
    run = run_wrk(server, "transaction.lua", 8, cfg.seconds)
    out = summarise("S5", run, "responses", 8, {"unit": "transactions/s", "entries_per_bundle": 2})
    # Committed transactions only (200s), and the resources they created, for the DB-ceiling ratio.
    seconds = run.wrk["duration_us"] / 1e6
    out["rate"] = round(run.wrk["units"] / seconds, 1)
    out["resources_per_s"] = round(2 * run.wrk["units"] / seconds, 1)
    out["per_cpu_s"] = round(run.wrk["units"] / run.cpu["total"], 1) if run.cpu["total"] else None
    return out


def demo_builder():
    """The demo-data generator's builders (resources/demo, pure Python, no database), if present:
    (patient_bundle(seed, numbers) -> transaction Bundle, reference_bundle() -> Bundle of PUTs)."""
    try:
        from resources.demo import patient_bundle, reference_bundle
    except ImportError:
        return None
    return patient_bundle, reference_bundle


def import_bundles(cfg: Config) -> tuple[Path, str, float, dict | None]:
    """Pre-generate the S6 bundles (one whole patient each) to one file, one Bundle per line.
    Uses the demo-data generator when the project has it, else bench/fixtures.py. Also returns the
    reference-data Bundle (shared Organizations/Practitioners) the demo patients point at, if any."""
    path = WORK / "s6_bundles.ndjson"
    demo = demo_builder()
    seed = env_int("BENCH_IMPORT_SEED", 7)
    sizes = []
    with open(path, "w") as f:
        for i in range(cfg.import_bundles):
            if demo:
                bundle = demo[0](seed, [i + 1])
            else:
                rng = random.Random(seed * 100_000 + i)
                bundle = fixtures.patient_bundle(rng, rng.randint(100, 200))
            sizes.append(len(bundle["entry"]))
            f.write(fixtures.dumps(bundle) + "\n")
    source = f"resources.demo.patient_bundle(seed={seed})" if demo else "bench.fixtures.patient_bundle"
    return path, source, sum(sizes) / len(sizes), demo[1]() if demo else None


def scenario_import(server: Server, cfg: Config) -> dict:
    path, source, mean_entries, reference = import_bundles(cfg)
    log(f"S6: {cfg.import_bundles} bundles from {source}, {mean_entries:.0f} entries on average")
    run_wrk(server, "import.lua", 4, cfg.warmup, [path])
    reset_store(cfg)
    if reference:
        # The demo patients point at shared Organizations/Practitioners: load them first, as the
        # demo-data command does.
        status, answer = server.request("POST", "/fhir", reference)
        if status != 200:
            raise RuntimeError(f"reference bundle failed with {status}: {json.dumps(answer)[:2000]}")
        db_exec(cfg, "CHECKPOINT")
    run = run_wrk(server, "import.lua", 4, cfg.seconds, [path], profile="S6" if cfg.profile else None)
    out = summarise(
        "S6",
        run,
        "units",
        4,
        {
            "unit": "resources/s",
            "bundles_per_s": round(run.wrk["responses"] / (run.wrk["duration_us"] / 1e6), 2),
            "mean_entries_per_bundle": round(mean_entries, 1),
            "bundle_source": source,
            "profiled": cfg.profile,
        },
    )
    return out


def scenario_ceiling_db(server: Server, cfg: Config) -> dict:
    reset_store(cfg)
    busy0 = machine_busy()
    tracker = CpuTracker(server.proc.pid, cfg.db_name).start()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "db_ceiling.py"),
            "--dsn",
            cfg.dsn(),
            "--seconds",
            str(cfg.seconds),
            "--hold",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    # db_ceiling.py prints its result when the insert loops end and keeps its connections open until
    # told to go on, so the window closes before the backends exit (their CPU is all counted).
    out_bytes = proc.stdout.readline()
    cpu = tracker.stop()
    busy1 = machine_busy()
    proc.stdin.write(b"\n")
    proc.stdin.close()
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not out_bytes.strip():
        raise RuntimeError(f"db_ceiling.py failed with {proc.returncode}")
    data = json.loads(out_bytes)
    client = data["client_cpu_s"]
    return {
        "scenario": "CEIL_DB",
        "connections": data["procs"],
        "seconds": round(data["seconds"], 2),
        "rate": round(data["inserts_per_s"], 1),
        "unit": "inserts/s",
        "inserts": data["inserts"],
        "cpu_s": {"db": round(cpu["db"], 2), "client": round(client, 2), "app_idle": round(cpu["app"], 2)},
        "machine_busy_cpu_s": round(busy1 - busy0, 2),
        "other_cpu_s": round(max(busy1 - busy0 - cpu["total"] - client, 0), 2),
        "contended": busy1 - busy0 - cpu["total"] - client > 0.1 * NCPU * data["seconds"],
        # Per CPU-second of PostgreSQL plus the inserting client, the counterpart of server+DB.
        "per_cpu_s": round(data["inserts"] / (cpu["db"] + client), 1) if cpu["db"] + client else None,
        "per_db_cpu_s": round(data["inserts"] / cpu["db"], 1) if cpu["db"] else None,
        "what": "psycopg 3, 4 processes, 1 transaction per Patient: resource + version + token rows",
    }


# ---------------------------------------------------------------------------------------------------
# Search scenarios (issue 3): S3 search mix, S8 large pages, S4 patient-lookup journey.
#
# Their data is loaded once, when the first of them runs, with the server up: 1,000 demo patients by
# `manage.py generate_demo_data` (its summary line gives the write-with-indexes rate), then
# `manage.py reindex` over everything (the index-building rate on its own), then VACUUM ANALYZE so the
# planner has statistics and index-only scans have a visibility map. S4 adds 100,000 Patients
# (bench/load_patients.py, several processes) just before it runs.
# ---------------------------------------------------------------------------------------------------

INDEX_BUILD: dict = {}  # index-building figures, reported beside the scenarios
_GEN_LINE = re.compile(r"Wrote (\d+) resources .* in ([\d.]+) s: ([\d.]+) resources/s")
_REINDEX_LINE = re.compile(r"Reindexed (\d+) \S+ in ([\d.]+) s: ([\d.]+) resources/s")


def manage(cfg: Config, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server_env(cfg),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def ensure_demo_data(cfg: Config) -> None:
    if "generate_demo_data" in INDEX_BUILD:
        return
    n = cfg.search_demo_patients
    log(f"search data: generate_demo_data --patients {n} --seed 1")
    # Patients from the S1/S2 setup may be there; the command writes alongside them.
    out = manage(cfg, "generate_demo_data", "--patients", str(n), "--seed", "1")
    m = _GEN_LINE.search(out)
    INDEX_BUILD["generate_demo_data"] = {
        "patients": n,
        "resources": int(m.group(1)) if m else None,
        "seconds": float(m.group(2)) if m else None,
        "resources_per_s": float(m.group(3)) if m else None,
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
    }
    log(f"search data: {INDEX_BUILD['generate_demo_data']['summary']}")
    # BENCH_SEARCH_REINDEX=0 skips the reindex timing (a profiling run does not need it).
    if os.environ.get("BENCH_SEARCH_REINDEX", "1") != "0":
        out = manage(cfg, "reindex", "-v", "0")
        m = _REINDEX_LINE.search(out)
        INDEX_BUILD["reindex"] = {
            "resources": int(m.group(1)) if m else None,
            "seconds": float(m.group(2)) if m else None,
            "resources_per_s": float(m.group(3)) if m else None,
            "summary": out.strip().splitlines()[-1] if out.strip() else "",
        }
        log(f"search data: {INDEX_BUILD['reindex']['summary']}")
    t0 = time.monotonic()
    db_exec(cfg, "VACUUM ANALYZE", "CHECKPOINT")
    INDEX_BUILD["vacuum_analyze_s"] = round(time.monotonic() - t0, 1)


def ensure_s4_data(cfg: Config) -> None:
    if "s4_patients" in INDEX_BUILD:
        return
    total, procs = cfg.s4_patients, max(1, cfg.s4_load_procs)
    log(f"S4 data: {total} Patients with bench/load_patients.py, {procs} processes")
    share = -(-total // procs)
    t0 = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, str(BENCH / "load_patients.py"), "--start", str(start), "--count", str(count)],
            cwd=ROOT,
            env=server_env(cfg),
            stdout=subprocess.PIPE,
            text=True,
        )
        for start in range(0, total, share)
        if (count := min(share, total - start)) > 0
    ]
    for child in children:
        child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"bench/load_patients.py failed with {child.returncode}")
    seconds = time.monotonic() - t0
    t1 = time.monotonic()
    db_exec(cfg, "VACUUM ANALYZE", "CHECKPOINT")
    INDEX_BUILD["s4_patients"] = {
        "patients": total,
        "processes": procs,
        "seconds": round(seconds, 1),
        "patients_per_s": round(total / seconds, 1),
        "vacuum_analyze_s": round(time.monotonic() - t1, 1),
        "how": "resources.services.insert_many, 500 Patients per transaction (validation, versions, index rows)",
    }
    log(f"S4 data: {total} Patients in {seconds:.1f} s ({total / seconds:.0f}/s)")


def current_bodies(
    cfg: Config, resource_type: str, where: str = "", limit: int = 5000
) -> list[tuple[str, dict]]:
    """(id, parsed body) of current resources of a type, in insertion order."""
    rows = db_exec(
        cfg,
        f"SELECT fhir_id, body FROM resources_resource WHERE resource_type = '{resource_type}' "
        f"AND NOT deleted {where} ORDER BY id LIMIT {int(limit)}",
    )[0]
    return [(fhir_id, json.loads(body)) for fhir_id, body in rows]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def timed_get(base: str, path: str, auth: str | None = None) -> tuple[int, float, bytes, dict]:
    """(status, seconds, body, headers) of one GET; a fresh connection, as the sync workers close it.
    `auth`: an Authorization header value (a persona's token) instead of the bench's Admin token."""
    headers = {"Accept": "application/fhir+json", **AUTH}
    if auth is not None:
        headers["Authorization"] = auth
    req = urllib.request.Request(base + path, headers=headers)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            return r.status, time.perf_counter() - t0, body, dict(r.headers)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, time.perf_counter() - t0, body, dict(exc.headers)


def per_query_p50(
    server: Server,
    cfg: Config,
    queries: list[tuple[str, list[str]]],
    auth: str | None = None,
    samples: int | None = None,
) -> list[dict]:
    """Each S3 kind alone, sequentially from one Python client on an otherwise idle server: its
    unloaded latency (client overhead ~0.5 ms included), so the slow kinds stand out. `auth`: as
    another caller (S9's personas); `samples`: requests per kind (default BENCH_S3_QUERY_SAMPLES)."""
    out = []
    samples = samples or cfg.query_samples
    for kind, paths in queries:
        times, statuses, entries = [], Counter(), []
        for i in range(samples + 2):
            status, seconds, body, _ = timed_get(server.base, "/fhir" + paths[i % len(paths)], auth)
            if i < 2:  # the first requests of a kind warm that worker's caches
                continue
            times.append(seconds * 1000)
            statuses[status] += 1
            entries.append(body.count(b'"fullUrl"'))
        out.append(
            {
                "kind": kind,
                "example": paths[0],
                "p50_ms": round(percentile(times, 50), 2),
                "max_ms": round(max(times), 2),
                "status": dict(statuses),
                "mean_entries": round(sum(entries) / len(entries), 1),
            }
        )
    return out


def run_explain(
    cfg: Config, queries: list[tuple[str, list[str]]], personas: list[dict] | None = None, tag: str = "S3"
) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of every S3 kind's SQL (first variant), by bench/explain.py, into
    bench/results/explain-{tag}.txt. `personas` ({"persona", "role", "identity"}): each kind runs as
    each of them, narrowed by the rule chain (S9); default as Admin."""
    if personas is None:
        items = [{"name": kind, "path": paths[0]} for kind, paths in queries]
    else:
        items = [
            {"name": kind, "path": paths[0], **{k: p[k] for k in ("persona", "role", "identity") if p.get(k)}}
            for kind, paths in queries
            for p in personas
        ]
    return explain_items(cfg, items, tag)


def explain_items(cfg: Config, items: list[dict], tag: str) -> list[dict]:
    """bench/explain.py over `items` (its input format), plans into bench/results/explain-{tag}.txt."""
    queries_file = WORK / f"{tag.lower()}_explain.json"
    queries_file.write_text(json.dumps(items))
    out_path = RESULTS / f"explain-{tag}.txt"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "explain.py"), str(queries_file), str(out_path)],
        cwd=ROOT,
        env=server_env(cfg),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        log(f"explain.py failed: {proc.stderr[-3000:]}")
        return []
    if proc.stderr.strip():
        log(proc.stderr.strip()[-1000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The demo patients (identifier MRN-1-n), not the Patients left by the S1/S2 setup.
DEMO_PATIENTS = "AND body LIKE '%\"MRN-1-%'"
_S3_QUERIES: dict = {}  # built once per run: S3 and S9 send the same request list


def s3_query_set(cfg: Config) -> tuple[list[tuple[str, list[str]]], Path]:
    """The S3 query kinds and the wrk request list file (built from the demo data the first time)."""
    if not _S3_QUERIES:
        ensure_demo_data(cfg)
        queries = sq.s3_queries(
            current_bodies(cfg, "Patient", DEMO_PATIENTS, 2000),
            [b for _, b in current_bodies(cfg, "Organization", limit=200)],
            [b for _, b in current_bodies(cfg, "Observation", limit=5000)],
            [b for _, b in current_bodies(cfg, "Encounter", limit=2000)],
        )
        lines_file = WORK / "s3_queries.txt"
        lines_file.write_text("".join(f"/fhir{p}\n" for p in sq.s3_lines(queries)))
        (RESULTS / "S3-queries.txt").write_text("".join(f"{k}\t{p[0]}\n" for k, p in queries))
        _S3_QUERIES.update(queries=queries, lines_file=lines_file)
    return _S3_QUERIES["queries"], _S3_QUERIES["lines_file"]


def scenario_search_mix(server: Server, cfg: Config) -> dict:
    queries, lines_file = s3_query_set(cfg)
    log(f"S3: {len(queries)} query kinds, {sq.VARIANTS} lines each")
    run_wrk(server, "search.lua", 8, cfg.warmup, [lines_file])
    db_exec(cfg, "CHECKPOINT")
    seconds = cfg.search_seconds
    run = run_wrk(server, "search.lua", 8, seconds, [lines_file], profile="S3" if cfg.profile else None)
    out = summarise(
        "S3", run, "responses", 8, {"unit": "req/s", "query_kinds": len(queries), "profiled": cfg.profile}
    )
    log("S3: per-query latency, each kind alone")
    out["per_query"] = per_query_p50(server, cfg, queries)
    log("S3: EXPLAIN (ANALYZE, BUFFERS) of each kind")
    plans = run_explain(cfg, queries)
    out["explain"] = plans
    out["explain_file"] = str((RESULTS / "explain-S3.txt").relative_to(ROOT))
    out["queries_without_lookup_index"] = [
        p["name"] for p in plans if not p.get("error") and not p["uses_lookup_index"]
    ]
    out["queries_missing_index"] = [
        p["name"] for p in plans if p.get("error") or p["misses_index"] or not p["uses_index"]
    ]
    return out


def scenario_bulk_search(server: Server, cfg: Config) -> dict:
    ensure_demo_data(cfg)
    ids = [pid for pid, _ in current_bodies(cfg, "Patient", DEMO_PATIENTS, 2000)]
    rng = random.Random(8)
    lines_file = WORK / "s8_queries.txt"
    lines_file.write_text("".join(f"/fhir{p}\n" for p in sq.s8_queries(rng.sample(ids, min(200, len(ids))))))
    run_wrk(server, "search.lua", 4, cfg.warmup, [lines_file, "count"])
    db_exec(cfg, "CHECKPOINT")
    run = run_wrk(server, "search.lua", 4, cfg.search_seconds, [lines_file, "count"])
    out = summarise("S8", run, "units", 4, {"unit": "resources/s"})
    out["entries_per_response"] = round(run.wrk["units"] / max(run.wrk["responses"], 1), 1)
    out["mb_per_s"] = round(run.wrk["bytes"] / 1e6 / (run.wrk["duration_us"] / 1e6), 1)
    return out


# ---------------------------------------------------------------------------------------------------
# Rule-chain scenarios (S9 narrowed search mix, S10 read under PatientCompartment), on the S3 data.
#
# bench/rules.yaml is loaded with `manage.py load_rules` (admin-all Allowed, Patient PatientCompartment,
# Practitioner LegitimateInterest inherit). Personas come from the demo data: the demo Patient with
# the largest compartment, and a Practitioner with an active PractitionerRole at the Organization
# whose tree (partOf descendants, as `inherit` follows them) manages the most demo Patients. Each gets
# a token from `manage.py issue_token --role R --identity Type/id`; wrk and the Python client send it
# instead of the Admin token (run_wrk(auth=...), timed_get(auth=...)).
# ---------------------------------------------------------------------------------------------------

RULES_FILE = BENCH / "rules.yaml"
S9_GOAL_P95_RATIO = 1.3  # narrowed p95 / Admin p95
S10_GOAL_COST_RATIO = 1.2  # Admin read rate / Patient read rate
_PERSONAS: list[dict] = []
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _ref_id(reference: dict | None, rtype: str) -> str | None:
    """The id of a literal `rtype/id` reference (relative or absolute), else None."""
    value = (reference or {}).get("reference") or ""
    parts = value.split("/")
    if len(parts) >= 2 and parts[-2] == rtype:
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == rtype and parts[-2] == "_history":
        return parts[-3]
    return None


def pick_patient(cfg: Config) -> tuple[str, int]:
    """The demo Patient with the most resources in its compartment (id, count)."""
    rows = db_exec(
        cfg,
        "SELECT m.compartment_id, count(DISTINCT m.resource_id) AS n "
        "FROM resources_compartmentmembership m "
        "JOIN resources_resource r ON r.id = m.resource_id AND NOT r.deleted "
        "JOIN resources_resource p ON p.resource_type = 'Patient' AND p.fhir_id = m.compartment_id "
        f"  AND NOT p.deleted {DEMO_PATIENTS.replace('body', 'p.body')} "
        "WHERE m.compartment_type = 'Patient' "
        "GROUP BY m.compartment_id ORDER BY n DESC, m.compartment_id LIMIT 1",
    )[0]
    if not rows:
        raise RuntimeError("S9/S10: no demo Patient with compartment members found")
    return rows[0][0], int(rows[0][1])


def pick_practitioner(cfg: Config) -> dict:
    """A Practitioner with an active PractitionerRole at the Organization whose tree (itself and its
    partOf descendants: LegitimateInterest inherit) manages the most demo Patients."""
    parent = {
        oid: _ref_id(body.get("partOf"), "Organization")
        for oid, body in current_bodies(cfg, "Organization", limit=10_000)
    }
    managed = Counter(
        _ref_id(body.get("managingOrganization"), "Organization")
        for _, body in current_bodies(cfg, "Patient", DEMO_PATIENTS, 100_000)
    )

    def tree(root: str) -> list[str]:
        out = [root]
        for org in sorted(parent):
            seen, node = set(), parent[org]
            while node and node not in seen:  # walk up; a cycle stops
                if node == root:
                    out.append(org)
                    break
                seen.add(node)
                node = parent.get(node)
        return out

    candidates = []
    for _, role in current_bodies(cfg, "PractitionerRole", limit=10_000):
        if role.get("active") is False:  # an ended role grants nothing
            continue
        org = _ref_id(role.get("organization"), "Organization")
        who = _ref_id(role.get("practitioner"), "Practitioner")
        if org in parent and who:
            orgs = tree(org)
            patients = sum(managed.get(o, 0) for o in orgs)
            candidates.append({"id": who, "organization": org, "organizations": orgs, "patients": patients})
    if not candidates:
        raise RuntimeError("S9: no Practitioner with an active PractitionerRole at an Organization")
    best = min(candidates, key=lambda c: (-c["patients"], c["id"]))
    return best


def personas(server: Server, cfg: Config) -> list[dict]:
    """Admin, Patient, Practitioner: rules loaded, identities picked, tokens minted (once per run)."""
    if _PERSONAS:
        return _PERSONAS
    ensure_demo_data(cfg)
    out = manage(cfg, "load_rules", str(RULES_FILE))
    log(f"rules: {RULES_FILE.relative_to(ROOT)}: {out.strip()}")
    patient_id, members = pick_patient(cfg)
    prac = pick_practitioner(cfg)
    for value in (patient_id, prac["id"]):
        if not _FHIR_ID.match(value):
            raise RuntimeError(f"unexpected FHIR id {value!r}")

    def token(role: str, identity: str) -> str:
        secret = manage(cfg, "issue_token", "--role", role, "--identity", identity, "--label", "bench S9/S10")
        return f"Bearer {secret.strip()}"

    _PERSONAS.extend(
        [
            {"persona": "Admin", "role": "Admin", "identity": None, "auth": AUTH["Authorization"]},
            {
                "persona": "Patient",
                "role": "Patient",
                "identity": f"Patient/{patient_id}",
                "auth": token("Patient", f"Patient/{patient_id}"),
                "compartment_resources": members,
            },
            {
                "persona": "Practitioner",
                "role": "Practitioner",
                "identity": f"Practitioner/{prac['id']}",
                "auth": token("Practitioner", f"Practitioner/{prac['id']}"),
                "organizations": prac["organizations"],
                "managed_patients": prac["patients"],
            },
        ]
    )
    log(
        f"personas: Patient/{patient_id} ({members} resources in its compartment), "
        f"Practitioner/{prac['id']} (active role at Organization/{prac['organization']}; with inherit "
        f"{','.join(prac['organizations'])}: {prac['patients']} demo patients)"
    )
    # One request each, so a refusal shows up here with the server's words rather than as a mix of
    # errors in the measured run.
    for p in _PERSONAS[1:]:
        status, _, body, _ = timed_get(server.base, f"/fhir/{p['identity']}", p["auth"])
        p["probe"] = {"path": f"/fhir/{p['identity']}", "status": status}
        if status != 200:
            log(f"WARNING: {p['persona']} GET /fhir/{p['identity']} answered {status}: {body[:500]!r}")
    return _PERSONAS


def _public(persona: dict) -> dict:
    return {k: v for k, v in persona.items() if k != "auth"}


def scenario_narrowed_search(server: Server, cfg: Config) -> dict:
    """S9: the S3 request list as Admin, as a Patient (PatientCompartment) and as a Practitioner
    (LegitimateInterest inherit); narrowed p95 against Admin's; plans and SQL statement counts."""
    queries, lines_file = s3_query_set(cfg)
    people = personas(server, cfg)
    log(
        f"S9: {len(queries)} S3 query kinds x {sq.VARIANTS} lines, as {', '.join(p['persona'] for p in people)}"
    )
    db_exec(cfg, "CHECKPOINT")
    runs: dict[str, dict] = {}
    for p in people:
        name = p["persona"]
        # "count": entries of each 200 answer summed in Lua, so a reader sees the narrowed pages hold data.
        run_wrk(server, "search.lua", 8, cfg.warmup, [lines_file, "count"], auth=p["auth"])
        run = run_wrk(server, "search.lua", 8, cfg.search_seconds, [lines_file, "count"], auth=p["auth"])
        res = summarise(f"S9 {name}", run, "responses", 8, {"unit": "req/s", **_public(p)})
        res["entries_per_response"] = round(run.wrk["units"] / max(run.wrk["responses"], 1), 2)
        runs[name] = res
        log(
            f"S9 {name}: {res['rate']} req/s, p50/p95/p99 {res['latency_ms']['p50']}/{res['latency_ms']['p95']}/"
            f"{res['latency_ms']['p99']} ms, {res['entries_per_response']} entries/response, status {res['status']}"
        )
    admin_p95 = runs["Admin"]["latency_ms"]["p95"]
    for name, res in runs.items():
        if name == "Admin":
            continue
        res["p95_ratio_to_admin"] = round(res["latency_ms"]["p95"] / admin_p95, 3) if admin_p95 else None
        res["goal"] = {"p95_ratio_to_admin": S9_GOAL_P95_RATIO}
        res["goal_met"] = (
            res["p95_ratio_to_admin"] is not None
            and res["p95_ratio_to_admin"] <= S9_GOAL_P95_RATIO
            and res["error_rate"] < 0.001
        )
    samples = env_int("BENCH_S9_QUERY_SAMPLES", 5)
    log(f"S9: per-query latency and entries per persona, each kind alone ({samples} requests)")
    per_query = {p["persona"]: per_query_p50(server, cfg, queries, p["auth"], samples) for p in people}
    log("S9: EXPLAIN (ANALYZE, BUFFERS) of each kind as each persona")
    plans = run_explain(
        cfg, queries, [{k: p[k] for k in ("persona", "role", "identity")} for p in people], tag="S9"
    )
    kinds = []
    for kind, _ in queries:
        row = {"kind": kind}
        for p in people:
            name = p["persona"]
            q = next((x for x in per_query[name] if x["kind"] == kind), {})
            plan = next((x for x in plans if x["name"] == kind and x.get("persona") == name), {})
            row[name] = {
                "p50_ms": q.get("p50_ms"),
                "mean_entries": q.get("mean_entries"),
                "status": q.get("status"),
                "statements": plan.get("statement_count"),
                "lookup_statements": plan.get("lookup_statements"),
                "execution_ms": plan.get("execution_ms"),
                "narrowing_in_sql": plan.get("narrowing_in_sql"),
                "seq_scans_large": plan.get("seq_scans_large"),
                "error": plan.get("error"),
            }
        kinds.append(row)
    explain_summary = {}
    for p in people:
        name = p["persona"]
        mine = [x for x in plans if x.get("persona") == name]
        ok = [x for x in mine if not x.get("error")]
        entries = [q["mean_entries"] for q in per_query[name]]
        explain_summary[name] = {
            "kinds_explained": len(ok),
            "errors": {x["name"]: x["error"] for x in mine if x.get("error")},
            "statements_per_search": sorted({x["statement_count"] for x in ok}),
            "lookup_statements": sorted(
                {x["lookup_statements"] for x in ok if x["lookup_statements"] is not None}
            ),
            "narrowing_in_match_sql": sum(1 for x in ok if x.get("narrowing_in_sql")),
            "no_match_statement": [x["name"] for x in ok if x.get("match_statement") is None],
            "seq_scan_large": {x["name"]: x["seq_scans_large"] for x in ok if x.get("seq_scans_large")},
            "sample_mean_entries": round(sum(entries) / len(entries), 2) if entries else None,
            "sample_empty_kinds": [q["kind"] for q in per_query[name] if not q["mean_entries"]],
            "sample_status": dict(sum((Counter(q["status"]) for q in per_query[name]), Counter())),
        }
    narrowed = [r for n, r in runs.items() if n != "Admin"]
    return {
        "scenario": "S9",
        "unit": "req/s",
        "connections": 8,
        "rules_file": str(RULES_FILE.relative_to(ROOT)),
        "query_kinds": len(queries),
        "personas": runs,
        "goal": {"p95_ratio_to_admin": S9_GOAL_P95_RATIO},
        "goal_met": all(r["goal_met"] for r in narrowed),
        "contended": any(r.get("contended") for r in runs.values()),
        "per_kind": kinds,
        "explain": plans,
        "explain_summary": explain_summary,
        "explain_file": str((RESULTS / "explain-S9.txt").relative_to(ROOT)),
        "sample_requests_per_kind": samples,
    }


def _in_process_ratio(inprocess: list[dict]) -> float | None:
    p50 = {one.get("persona"): one.get("request_ms_p50") for one in inprocess}
    if p50.get("Admin") and p50.get("Patient"):
        return round(p50["Patient"] / p50["Admin"], 3)
    return None


def scenario_compartment_read(server: Server, cfg: Config) -> dict:
    """S10: reads of the Patient persona's compartment, as Admin and as that Patient (PatientCompartment):
    the cost of the per-read access decision."""
    people = personas(server, cfg)
    admin, patient = people[0], people[1]
    patient_id = patient["identity"].split("/", 1)[1]
    rows = db_exec(
        cfg,
        "SELECT r.resource_type, r.fhir_id FROM resources_compartmentmembership m "
        "JOIN resources_resource r ON r.id = m.resource_id AND NOT r.deleted "
        f"WHERE m.compartment_type = 'Patient' AND m.compartment_id = '{patient_id}' "
        "UNION SELECT 'Patient', fhir_id FROM resources_resource "
        f"WHERE resource_type = 'Patient' AND fhir_id = '{patient_id}' AND NOT deleted "
        "ORDER BY 1, 2",
    )[0]
    ids_file = WORK / "s10_ids.txt"
    ids_file.write_text("".join(f"{t} {i}\n" for t, i in rows))
    by_type = Counter(t for t, _ in rows)
    log(f"S10: {len(rows)} resources of {patient['identity']}'s compartment ({dict(by_type)})")
    db_exec(cfg, "CHECKPOINT")
    runs: dict[str, dict] = {}
    for p in (admin, patient):
        name = p["persona"]
        run_wrk(server, "read.lua", 16, cfg.warmup, [ids_file], auth=p["auth"])
        run = run_wrk(server, "read.lua", 16, cfg.seconds, [ids_file], auth=p["auth"])
        res = summarise(f"S10 {name}", run, "responses", 16, {"unit": "req/s", **_public(p)})
        # Every read is of a resource the caller may see: anything but 200 is an error here.
        non_200 = res["responses"] - res["status"].get("200", 0)
        res["non_200"] = non_200
        attempts = res["responses"] + sum(res["socket_errors"].values())
        res["error_rate"] = (
            round((non_200 + sum(res["socket_errors"].values())) / attempts, 5) if attempts else 0.0
        )
        if non_200 and not res.get("server_log_tail"):
            res["server_log_tail"] = run.log_tail or server.log_since(0)[-40:]
        runs[name] = res
        log(
            f"S10 {name}: {res['rate']} req/s, p50/p95/p99 {res['latency_ms']['p50']}/"
            f"{res['latency_ms']['p95']}/{res['latency_ms']['p99']} ms, status {res['status']}"
        )
    # Where a read's time goes, without HTTP and gunicorn: one read of the compartment's first
    # Observation (else its first resource) through Django's test client in bench/explain.py, as each
    # persona: every SQL statement with its time and plan, the in-process p50 and the Python share.
    target = next((f"{t}/{i}" for t, i in rows if t == "Observation"), f"{rows[0][0]}/{rows[0][1]}")
    repeat = env_int("BENCH_S10_INPROCESS_READS", 50)
    log(f"S10: in-process read of {target} as Admin and Patient ({repeat} times each), statements EXPLAINed")
    inprocess = explain_items(
        cfg,
        [
            {
                "name": "read",
                "persona": p["persona"],
                "get": f"/fhir/{target}",
                "auth": p["auth"],
                "repeat": repeat,
            }
            for p in (admin, patient)
        ],
        tag="S10",
    )
    a, pt = runs["Admin"], runs["Patient"]
    ratio = round(a["rate"] / pt["rate"], 3) if pt["rate"] else None
    p50_ratio = round(pt["latency_ms"]["p50"] / a["latency_ms"]["p50"], 3) if a["latency_ms"]["p50"] else None
    met = ratio is not None and ratio <= S10_GOAL_COST_RATIO and a["non_200"] == 0 and pt["non_200"] == 0
    pt["cost_ratio"] = ratio
    pt["p50_ratio_to_admin"] = p50_ratio
    pt["goal"] = {"admin_rate_over_patient_rate": S10_GOAL_COST_RATIO}
    pt["goal_met"] = met
    return {
        "scenario": "S10",
        "unit": "req/s",
        "connections": 16,
        "ids": len(rows),
        "ids_by_type": dict(by_type),
        "personas": runs,
        "cost_ratio": ratio,
        "p50_ratio": p50_ratio,
        "goal": {"admin_rate_over_patient_rate": S10_GOAL_COST_RATIO},
        "goal_met": met,
        "contended": any(r.get("contended") for r in runs.values()),
        "in_process": inprocess,
        # Patient p50 / Admin p50 of the in-process reads: the server's own cost ratio, without HTTP.
        "in_process_ratio": _in_process_ratio(inprocess),
        "explain_file": str((RESULTS / "explain-S10.txt").relative_to(ROOT)),
    }


class Journey:
    """S4: one client thread's loop of search -> read -> update with If-Match, timing every step."""

    def __init__(self, base: str, patients: list[dict], seed: int):
        self.base = base
        self.patients = patients
        self.rng = random.Random(seed)
        kinds = list(sq.S4_KINDS)
        self.kinds, self.weights = kinds, [sq.S4_KINDS[k][0] for k in kinds]
        self.times: dict[str, list[float]] = {}
        self.status: Counter = Counter()
        self.iterations = 0
        self.empty = 0

    def _record(self, step: str, status: int, seconds: float) -> None:
        self.times.setdefault(step, []).append(seconds * 1000)
        self.status[status] += 1

    def once(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        body = self.rng.choice(self.patients)
        status, seconds, raw, _ = timed_get(self.base, "/fhir" + sq.s4_search(kind, body))
        self._record(f"search:{kind}", status, seconds)
        if status != 200:
            return
        hits = [e["resource"]["id"] for e in json.loads(raw).get("entry", []) if "resource" in e]
        if not hits:
            self.empty += 1
            return
        # The patient the values came from when it is on the page, else any hit: for the sort kind
        # (same first page for every thread) a random hit keeps threads off each other's rows.
        target = body["id"] if body["id"] in hits else self.rng.choice(hits)
        status, seconds, raw, headers = timed_get(self.base, f"/fhir/Patient/{target}")
        self._record("read", status, seconds)
        if status != 200:
            return
        resource = json.loads(raw)
        resource["active"] = not resource.get("active", True)
        req = urllib.request.Request(
            f"{self.base}/fhir/Patient/{target}",
            data=fixtures.dumps(resource).encode(),
            method="PUT",
            headers={
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "If-Match": headers.get("ETag", ""),
                **AUTH,
            },
        )
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            exc.read()
            status = exc.code
        self._record("update", status, time.perf_counter() - t0)
        self.iterations += 1

    def run_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.once()


def run_journeys(base: str, patients: list[dict], threads: int, seconds: float, seed: int) -> list[Journey]:
    journeys = [Journey(base, patients, seed * 100 + i) for i in range(threads)]
    deadline = time.monotonic() + seconds
    workers = [threading.Thread(target=j.run_until, args=(deadline,)) for j in journeys]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return journeys


def scenario_lookup(server: Server, cfg: Config) -> dict:
    ensure_s4_data(cfg)
    rows = current_bodies(cfg, "Patient", f"AND body LIKE '%{sq.IDENTIFIER_SYSTEM}%'", 2000)
    patients = [body for _, body in rows]
    if not patients:
        raise RuntimeError("S4: no bench Patients found")
    threads = cfg.s4_threads
    log(f"S4: {threads} client threads (Python, urllib), {len(patients)} sample Patients")
    run_journeys(server.base, patients, threads, cfg.warmup, seed=1)
    db_exec(cfg, "CHECKPOINT")
    busy0 = machine_busy()
    self0 = os.times()
    tracker = CpuTracker(server.proc.pid, cfg.db_name).start()
    t0 = time.monotonic()
    journeys = run_journeys(server.base, patients, threads, cfg.search_seconds, seed=2)
    elapsed = time.monotonic() - t0
    cpu = tracker.stop()
    busy1 = machine_busy()
    self1 = os.times()
    client_cpu = (self1.user - self0.user) + (self1.system - self0.system)
    times: dict[str, list[float]] = {}
    status: Counter = Counter()
    for j in journeys:
        status.update(j.status)
        for step, values in j.times.items():
            times.setdefault(step, []).extend(values)
    iterations = sum(j.iterations for j in journeys)
    requests = sum(len(v) for v in times.values())
    every = [t for values in times.values() for t in values]
    # 412 answers come from two client threads updating the same Patient (the If-Match race the
    # header exists for), not from the server failing: counted apart from the errors.
    conflicts = status.get(412, 0)
    errors = sum(n for code, n in status.items() if (code < 200 or code >= 400) and code != 412)
    steps = {}
    met = True
    budgets = {f"search:{k}": b for k, (_, b) in sq.S4_KINDS.items()}
    budgets.update(read=sq.S4_READ_BUDGET_MS, update=sq.S4_UPDATE_BUDGET_MS)
    for step, budget in budgets.items():
        values = times.get(step, [])
        p50 = percentile(values, 50)
        ok = p50 is not None and p50 <= budget
        met = met and ok
        steps[step] = {
            "n": len(values),
            "p50_ms": round(p50, 2) if p50 is not None else None,
            "p95_ms": round(percentile(values, 95), 2) if values else None,
            "budget_p50_ms": budget,
            "met": ok,
        }
    error_rate = errors / requests if requests else 0.0
    total_cpu = cpu["total"]
    return {
        "scenario": "S4",
        "connections": threads,
        "seconds": round(elapsed, 2),
        "responses": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "rate": round(iterations / elapsed, 1),
        "unit": "journeys/s",
        "latency_ms": {
            "p50": round(percentile(every, 50), 2),
            "p95": round(percentile(every, 95), 2),
            "p99": round(percentile(every, 99), 2),
        },
        "status": {str(k): v for k, v in status.items()},
        "http_errors": errors,
        "conflicts_412": conflicts,
        "socket_errors": {},
        "error_rate": round(error_rate, 5),
        "empty_searches": sum(j.empty for j in journeys),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "machine_busy_cpu_s": round(busy1 - busy0, 2),
        "loadgen_cpu_s": round(client_cpu, 2),
        "other_cpu_s": round(max(busy1 - busy0 - total_cpu - client_cpu, 0), 2),
        "contended": busy1 - busy0 - total_cpu - client_cpu > 0.1 * NCPU * elapsed,
        "per_cpu_s": round(iterations / total_cpu, 1) if total_cpu else None,
        "steps": steps,
        "patients": cfg.s4_patients,
        "load_generator": f"Python urllib, {threads} threads, a new connection per request (sync workers close it)",
        "goal": {"budgets_p50_ms": budgets},
        "goal_met": met and error_rate < 0.001,
    }


# ---------------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------------


def add_ratios(results: dict) -> None:
    http = results.get("CEIL_HTTP")
    db = results.get("CEIL_DB")
    for name, res in results.items():
        if name in ("S1", "S2") and http:
            res["ceiling"] = "CEIL_HTTP"
            res["ratio_to_ceiling"] = round(res["rate"] / http["rate"], 3)
            if res.get("per_cpu_s") and http.get("per_cpu_s"):
                res["efficiency_ratio"] = round(res["per_cpu_s"] / http["per_cpu_s"], 3)
        if name in ("S5", "S6") and db:
            created = res.get("resources_per_s", res["rate"])
            res["ceiling"] = "CEIL_DB"
            res["ratio_to_ceiling"] = round(created / db["rate"], 3)
            cpu = res["cpu_s"]["total"]
            units = created * res["seconds"]
            if cpu and db.get("per_cpu_s"):
                res["efficiency_ratio"] = round(units / cpu / db["per_cpu_s"], 3)
        goal = GOALS.get(name)
        if goal:
            ok = res["rate"] >= goal["rate"] and res["error_rate"] < 0.001
            if "p99_ms" in goal:
                ok = ok and res["latency_ms"]["p99"] <= goal["p99_ms"]
            res["goal"] = goal
            res["goal_met"] = ok


def table_rows(name: str, res: dict) -> list[tuple[str, dict]]:
    """The table rows of one scenario: one, or one per persona (S9, S10); none for those that print
    their own lines (the subscription scenarios)."""
    if res.get("table") is False:
        return []
    if "personas" in res:
        return [(f"{name} {persona}", part) for persona, part in res["personas"].items()]
    return [(name, res)]


def persona_goal(name: str, persona: str, res: dict) -> str:
    if persona == "Admin":
        return "(baseline)"
    if name == "S9":
        txt = f"p95 {res.get('p95_ratio_to_admin', float('nan')):.2f}x Admin <= {S9_GOAL_P95_RATIO}"
    else:
        txt = f"Admin/Patient rate {res.get('cost_ratio') or float('nan'):.2f} <= {S10_GOAL_COST_RATIO}"
    return txt + ("  MET" if res.get("goal_met") else "  not met")


def print_table(results: dict, cfg: Config, results_commit: str) -> None:
    head = (
        f"{'scenario':<16}{'conns':>6}{'rate':>10} {'unit':<15}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'err %':>7}{'CPU app':>8}{'CPU db':>7}{'per CPU-s':>10}{'vs ceil':>8}  goal"
    )
    print()
    print(
        f"FHIR server bench ({results_commit}): {cfg.seconds} s per scenario ({cfg.search_seconds} s S3/S9/S8/S4), gunicorn {cfg.worker_class} x{cfg.workers}"
        + (f" ({cfg.threads} threads)" if cfg.worker_class == "gthread" else "")
        + f", {NCPU} CPUs"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for name in ALL_SCENARIOS:
        if results.get(name):
            for label, part in table_rows(name, results[name]):
                goal_txt = persona_goal(name, label.split(" ", 1)[1], part) if label != name else None
                rows.append((label, part, goal_txt))
    for name, res, persona_txt in rows:
        lat = res.get("latency_ms", {})
        cpu = res["cpu_s"]
        app_cpu = cpu.get("app", cpu.get("client", 0))
        goal = res.get("goal")
        goal_txt = ""
        if persona_txt is not None:  # S9/S10 rows: their goal is a ratio to the Admin row
            goal_txt = persona_txt
        elif goal and "budgets_p50_ms" in goal:
            missed = [s for s, v in res["steps"].items() if not v["met"]]
            goal_txt = "p50 budgets per step" + (
                "  MET" if res["goal_met"] else f"  not met ({len(missed)} steps)"
            )
        elif goal:
            goal_txt = f">= {goal['rate']}" + (f", p99 <= {goal['p99_ms']} ms" if "p99_ms" in goal else "")
            goal_txt += "  MET" if res["goal_met"] else "  not met"
        if res.get("contended"):
            goal_txt += f"  [other load: {res['other_cpu_s']} CPU-s]"
        ratio = res.get("ratio_to_ceiling")
        print(
            f"{name:<16}{res['connections']:>6}{res['rate']:>10.1f} {res['unit']:<15}"
            f"{lat.get('p50', float('nan')):>8.1f}{lat.get('p95', float('nan')):>8.1f}"
            f"{lat.get('p99', float('nan')):>8.1f}{100 * res.get('error_rate', 0):>7.2f}"
            f"{app_cpu:>8.1f}{cpu.get('db', 0):>7.1f}{res['per_cpu_s'] or 0:>10.1f}"
            f"{(f'{ratio:.2f}' if ratio is not None else '-'):>8}  {goal_txt}"
        )
    print()
    if any(r.get("contended") for r in results.values()):
        print("[other load]: other processes used >10% of the machine during that run; see other_cpu_s.")
    print(
        "CPU app = gunicorn master+workers (CEIL_DB: the psycopg client), CPU db = postgres (bench DB backends + background processes),"
    )
    print(
        "per CPU-s = units per (app+db) CPU-second; vs ceil: S1/S2 vs CEIL_HTTP, S5/S6 resources/s vs CEIL_DB."
    )
    if "S5" in results:
        print(f"S5 creates 2 resources per transaction: {results['S5']['resources_per_s']} resources/s.")
    if "S6" in results:
        s6 = results["S6"]
        print(
            f"S6: {s6['bundles_per_s']} bundles/s x ~{s6['mean_entries_per_bundle']} entries ({s6['bundle_source']})."
        )
    print_search_details(results)
    print()
    print("Published anchors (per core) beside ours (per core = rate / CPUs; per CPU-s = server+DB CPU):")
    for name, anchors in ANCHORS.items():
        res = results.get(name)
        ours = ""
        if res:
            ours = f"ours {res['rate'] / NCPU:.0f}/core, {res['per_cpu_s'] or 0:.0f}/CPU-s"
        anchor_txt = ", ".join(f"{who} ~{n}" for who, n in anchors)
        print(f"  {name}: {anchor_txt}  |  {ours}")
    print(
        "Goals (2 cores, server+DB): S1 >= 650 req/s with p99 <= 100 ms; S2 >= 2,500 req/s; "
        "S5 >= 800 transactions/s; S6 >= 1,200 resources/s; S3 >= 250 req/s with p99 <= 1 s; "
        "S4 every step's p50 within its budget; S8 >= 20,000 resources/s; "
        f"S9 Patient and Practitioner p95 <= {S9_GOAL_P95_RATIO}x Admin p95 (same S3 searches, narrowing in the "
        f"SQL); S10 a read under PatientCompartment costs <= {S10_GOAL_COST_RATIO}x an Admin read (Admin rate / Patient rate)."
    )
    for name, res in results.items():
        for label, part in table_rows(name, res):
            if part.get("server_log_tail"):
                print(f"\n{label}: errors {part['status']} socket {part['socket_errors']}; server log tail:")
                for line in part["server_log_tail"][-15:]:
                    print("   ", line)


def print_search_details(results: dict) -> None:
    build = INDEX_BUILD
    if build.get("generate_demo_data"):
        g, r = build["generate_demo_data"], build.get("reindex", {})
        print(
            f"Index building: generate_demo_data {g['patients']} patients, {g['resources']} resources, "
            f"{g['resources_per_s']} resources/s; reindex {r.get('resources')} resources in {r.get('seconds')} s, "
            f"{r.get('resources_per_s')} resources/s; VACUUM ANALYZE {build.get('vacuum_analyze_s')} s."
        )
    if build.get("s4_patients"):
        p = build["s4_patients"]
        print(
            f"S4 data: {p['patients']} Patients in {p['seconds']} s ({p['patients_per_s']}/s, "
            f"{p['processes']} processes, insert_many)."
        )
    s3 = results.get("S3")
    if s3:
        print(
            f"S3: {s3['query_kinds']} query kinds, uniform mix, _count=20. Per kind, alone (sequential client):"
        )
        plans = {p["name"]: p for p in s3.get("explain", []) if not p.get("error")}
        for q in s3.get("per_query", []):
            plan = plans.get(q["kind"], {})
            idx = sorted({i for st in plan.get("statements", []) for i in st["indexes"]})
            seq = sorted({t for st in plan.get("statements", []) for t in st["seq_scans_large"]})
            flag = " NO INDEX: seq scan " + ",".join(seq) if seq else ("" if idx else " (no index in plan)")
            if idx and not seq and not plan.get("uses_lookup_index"):
                flag += " [matches by pk order + per-row FK probes, no lookup index]"
            print(
                f"  {q['kind']:<40}{q['p50_ms']:>8.1f} ms p50 {q['mean_entries']:>6.1f} entries  "
                f"exec {plan.get('execution_ms', float('nan')):>7.1f} ms  {','.join(idx)[:70]}{flag}"
            )
        print(
            f"  plans: {s3.get('explain_file')}; kinds missing index use: {s3.get('queries_missing_index')}"
        )
    print_rule_chain_details(results)
    notifications.print_details(results)
    s8 = results.get("S8")
    if s8:
        print(
            f"S8: {s8['requests_per_s']} req/s x {s8['entries_per_response']} entries, {s8['mb_per_s']} MB/s."
        )
    s4 = results.get("S4")
    if s4:
        print(
            f"S4: {s4['requests_per_s']} req/s ({s4['load_generator']}); 412 conflicts {s4['conflicts_412']}, "
            f"empty searches {s4['empty_searches']}. Per step:"
        )
        for step, v in s4["steps"].items():
            p50 = v["p50_ms"]
            print(
                f"  {step:<32} n={v['n']:<6} p50 {p50 if p50 is not None else '-':>7} ms "
                f"(budget {v['budget_p50_ms']} ms) p95 {v['p95_ms']} ms  {'MET' if v['met'] else 'not met'}"
            )


def print_rule_chain_details(results: dict) -> None:
    s9 = results.get("S9")
    if s9:
        who = {n: r for n, r in s9["personas"].items()}
        pat, prac = who.get("Patient", {}), who.get("Practitioner", {})
        print(
            f"S9: the S3 request list ({s9['query_kinds']} kinds) as each persona, rules {s9['rules_file']}; "
            f"Patient = {pat.get('identity')} ({pat.get('compartment_resources')} resources in its compartment), "
            f"Practitioner = {prac.get('identity')} (organisations {','.join(prac.get('organizations', []))}: "
            f"{prac.get('managed_patients')} demo patients)."
        )
        for name, r in who.items():
            ex = s9["explain_summary"].get(name, {})
            ratio = (
                f"  p95/Admin {r['p95_ratio_to_admin']:.2f} (goal <= {S9_GOAL_P95_RATIO})"
                if "p95_ratio_to_admin" in r
                else ""
            )
            print(
                f"  {name:<13} {r['entries_per_response']:>6.2f} entries/response under load, sample "
                f"{ex.get('sample_mean_entries')} per kind ({len(ex.get('sample_empty_kinds', []))} kinds empty), "
                f"status {r['status']}{ratio}"
            )
        print(
            "  SQL statements per search (EXPLAIN run, lookups before the match statement; "
            "narrowing inside the match statement):"
        )
        for name, ex in s9["explain_summary"].items():
            seq = ex.get("seq_scan_large") or {}
            print(
                f"  {name:<13} {ex['statements_per_search']} statements, {ex['lookup_statements']} lookups, "
                f"narrowing in match SQL {ex['narrowing_in_match_sql']}/{ex['kinds_explained']}"
                + (
                    f", no match statement: {ex['no_match_statement']}"
                    if ex.get("no_match_statement")
                    else ""
                )
                + (f", errors {ex['errors']}" if ex.get("errors") else "")
                + (
                    "; seq scans of large tables: "
                    + "; ".join(f"{k} ({','.join(v)})" for k, v in seq.items())
                    if seq
                    else "; no seq scan of a large table"
                )
            )
        print("  Per kind, alone: p50 ms / mean entries / SQL statements  (Admin | Patient | Practitioner)")
        for row in s9["per_kind"]:
            cells = []
            for name in who:
                c = row.get(name, {})
                p50 = c.get("p50_ms")
                flag = " SEQ" if c.get("seq_scans_large") else ""
                flag += (
                    " ERR" if c.get("error") or any(str(k) != "200" for k in (c.get("status") or {})) else ""
                )
                cells.append(
                    f"{(f'{p50:.1f}' if p50 is not None else '-'):>6} {c.get('mean_entries', '-')!s:>5} "
                    f"{c.get('statements', '-')!s:>2}{flag}"
                )
            print(f"  {row['kind']:<40}" + " | ".join(cells))
        print(f"  plans: {s9['explain_file']}")
    s10 = results.get("S10")
    if s10:
        pt = s10["personas"].get("Patient", {})
        print(
            f"S10: reads of {pt.get('identity')}'s compartment ({s10['ids']} resources: "
            f"{', '.join(f'{t} {n}' for t, n in sorted(s10['ids_by_type'].items()))}); Admin rate / Patient rate "
            f"{s10['cost_ratio']} (goal <= {S10_GOAL_COST_RATIO}), Patient p50 / Admin p50 {s10['p50_ratio']}; "
            f"non-200: Admin {s10['personas']['Admin']['non_200']}, Patient {pt.get('non_200')}."
        )
        for one in s10.get("in_process", []):
            if one.get("error") and "statements" not in one:
                print(f"  in-process {one.get('persona')}: {one['error']}")
                continue
            slowest = max(one["statements"], key=lambda st: st["ms"], default=None)
            print(
                f"  in-process GET {one['get']} as {one['persona']:<8}: status {one['status']}, p50 "
                f"{one['request_ms_p50']:.2f} ms (min {one['request_ms_min']:.2f}), {one['statement_count']} SQL "
                f"statements {one['sql_ms']:.2f} ms, rest (Python, COMMIT) ~{one['python_ms']:.2f} ms"
                + (f"; slowest {slowest['ms']:.2f} ms: {slowest['sql'][:70]}" if slowest else "")
            )
        print(
            f"  in-process Patient p50 / Admin p50 {s10.get('in_process_ratio')}; plans and statements: "
            f"{s10.get('explain_file')}"
        )


def git_commit() -> str:
    """HEAD, with '+changes' when the work tree differs from it (the server runs what is on disk)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wait_for_quiet(limit_s: int) -> float:
    """Wait (up to limit_s) until the machine is mostly idle; returns the last busy share seen.
    The bench measures throughput on a machine it assumes it has to itself; other load is reported."""
    deadline = time.monotonic() + limit_s
    while True:
        b0 = machine_busy()
        time.sleep(2)
        share = (machine_busy() - b0) / (2 * NCPU)
        if share < 0.15 or time.monotonic() >= deadline:
            return share
        log(f"machine {share:.0%} busy with other work; waiting for it to settle")


def subscription_runners() -> dict:
    """The scenarios of bench/notifications.py, given the driver's helpers (it is run as a script, so
    the module cannot import it back)."""
    kit = SimpleNamespace(
        Server=Server,
        server_env=server_env,
        scenario_crud=scenario_crud,
        auth=lambda: AUTH["Authorization"],
        db_exec=db_exec,
        all_stats=_all_stats,
        machine_busy=machine_busy,
        wait_for_quiet=wait_for_quiet,
        free_port=free_port,
        log=log,
        root=ROOT,
        results=RESULTS,
        work=WORK,
        venv_bin=VENV_BIN,
        clk_tck=CLK_TCK,
        CpuTracker=CpuTracker,
        speedscope_hotspots=speedscope_hotspots,
    )

    def guarded(name: str, run):
        # A failure here (a worker that does not start, a receiver gone) is reported as the
        # scenario's result: the results of the scenarios before it are kept.
        def runner(server: Server, cfg: Config) -> dict:
            try:
                return run(kit, server, cfg)
            except Exception as exc:
                log(f"{name} failed: {exc!r}")
                if server.proc is None or server.proc.poll() is not None:
                    server.start()
                return {"scenario": name, "table": False, "error": traceback.format_exc()[-3000:]}

        return runner

    return {
        "S11": guarded("S11", notifications.scenario_latency),
        "S11A": guarded("S11A", notifications.scenario_latency_all),
        "S12": guarded("S12", notifications.scenario_throughput),
        "S13": guarded("S13", notifications.scenario_outbox_cost),
        "S14": guarded("S14", notifications.scenario_websocket),
    }


def main() -> None:
    cfg = Config(scenarios=selected_scenarios())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    log(f"scenarios {cfg.scenarios}, {cfg.seconds} s each (+{cfg.warmup} s warm-up), database {cfg.db_name}")
    admin_exec(
        cfg, f'DROP DATABASE IF EXISTS "{cfg.db_name}" WITH (FORCE)', f'CREATE DATABASE "{cfg.db_name}"'
    )
    commit = git_commit()  # what gunicorn will load: other people may change the tree during the run
    server = Server(cfg)
    results: dict[str, dict] = {}
    started = time.time()
    try:
        env = server_env(cfg)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        if cfg.demo_patients:
            log(f"loading {cfg.demo_patients} demo patients as background data")
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "generate_demo_data",
                    "--patients",
                    str(cfg.demo_patients),
                    "--seed",
                    "1",
                ],
                cwd=ROOT,
                env=env,
                check=True,
            )
        server.start()
        busy_share = wait_for_quiet(env_int("BENCH_WAIT_QUIET", 60))
        if busy_share >= 0.15:
            log(f"WARNING: machine {busy_share:.0%} busy with other work; throughput will be understated")
        log(f"gunicorn {' '.join(server.command()[1:])} (pid {server.proc.pid}, workers {server.workers()})")
        runners = {
            "CEIL_HTTP": scenario_ceiling_http,
            "S2": scenario_read,
            "S1": scenario_crud,
            "S5": scenario_transaction,
            "S6": scenario_import,
            "CEIL_DB": scenario_ceiling_db,
            "S3": scenario_search_mix,
            "S8": scenario_bulk_search,
            "S4": scenario_lookup,
            "S9": scenario_narrowed_search,
            "S10": scenario_compartment_read,
            **subscription_runners(),
        }
        for name in cfg.scenarios:
            # Other work on the machine (tests of other people) takes CPU from the server: give it a
            # short chance to finish before each scenario, too.
            wait_for_quiet(env_int("BENCH_WAIT_QUIET_SCENARIO", 30))
            log(f"{name} ...")
            res = runners[name](server, cfg)
            results[name] = res
            for label, part in table_rows(name, res):
                log(
                    f"{label}: {part['rate']} {part['unit']}, p99 {part.get('latency_ms', {}).get('p99', '-')} ms, "
                    f"errors {part.get('error_rate', 0):.2%}, CPU {part['cpu_s']}"
                )
        settings = pg_settings(cfg)
    except BaseException:
        # The server's side of a failure (a 500 in setup, say) is in its log: show it with the traceback.
        if server.log_path.exists():
            tail = server.log_path.read_text(errors="replace").splitlines()[-40:]
            log(f"last lines of {server.log_path.relative_to(ROOT)}:\n" + "\n".join(tail))
        raise
    finally:
        server.stop()
        try:
            admin_exec(cfg, f'DROP DATABASE IF EXISTS "{cfg.db_name}" WITH (FORCE)')
        except psycopg.Error as exc:
            log(f"could not drop {cfg.db_name}: {exc}")
    add_ratios(results)
    profiles = {}
    for name in ("S1", "S6", "S3"):
        path = RESULTS / f"{name}.speedscope.json"
        if cfg.profile and path.exists():
            profiles[name] = speedscope_hotspots(path)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "commit": commit,
        "machine": {"cpus": NCPU, "cpu_model": cpu_model(), "kernel": platform.release()},
        "postgres": settings,
        "server": {
            "command": " ".join(server.command()[1:]),
            "worker_class": cfg.worker_class,
            "workers": cfg.workers,
            "threads": cfg.threads if cfg.worker_class == "gthread" else 1,
            "settings": "bench.ceiling_settings (production + /bench/ping)",
        },
        "seconds_per_scenario": cfg.seconds,
        "warmup_seconds": cfg.warmup,
        "load_generator": f"wrk -t{cfg.wrk_threads} (Lua scripts in bench/lua)",
        "results": results,
        "goals": GOALS,
        "anchors_per_core": {k: dict(v) for k, v in ANCHORS.items()},
        "profiles": profiles,
        "index_build": INDEX_BUILD,
        "search_seconds": cfg.search_seconds,
    }
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (RESULTS / "latest.json").write_text(text)
    # Earlier runs stay beside it, so a profiled or partial run does not erase the last full one.
    (RESULTS / time.strftime("run-%Y%m%d-%H%M%S.json", time.localtime(started))).write_text(text)
    print_table(results, cfg, commit)
    for name, prof in profiles.items():
        print(f"\npy-spy {name} (one worker, {prof['sampled_s']} s of GIL-holding samples), top self time:")
        for item in prof["self"][:5]:
            print(f"  {100 * item['share']:5.1f}%  {item['function']}")
        print(f"py-spy {name}, top inclusive (project code):")
        for item in prof["inclusive"][:8]:
            print(f"  {100 * item['share']:5.1f}%  {item['function']}")
    print(f"\nWrote {(RESULTS / 'latest.json').relative_to(ROOT)} in {time.time() - started:.0f} s.")


if __name__ == "__main__":
    main()
