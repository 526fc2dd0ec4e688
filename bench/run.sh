#!/usr/bin/env bash
# `make bench`: everything a fresh machine needs, then bench/driver.py (see bench/README.md).
# Env: BENCH_SECONDS (20), BENCH_WARMUP (3), BENCH_SCENARIOS (e.g. S1,S2), BENCH_PROFILE=1,
#      BENCH_WORKER_CLASS / BENCH_WORKERS / BENCH_THREADS (gunicorn), BENCH_DB (fhirbench).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "bench: no .venv; run 'make bench' (it installs the project first)" >&2
    exit 1
fi

# wrk, the load generator: Debian's package.
if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: installing wrk"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# py-spy only when profiling; it ships as a wheel with its binary.
if [ "${BENCH_PROFILE:-0}" != "0" ] && [ ! -x .venv/bin/py-spy ]; then
    echo "bench: installing py-spy into the venv"
    "$PY" -m pip install --quiet py-spy
fi

# PostgreSQL on 127.0.0.1:5432 (trust auth) is started by the machine; start a Debian cluster if not.
PGHOST_="${BENCH_PGHOST:-127.0.0.1}"
PGPORT_="${BENCH_PGPORT:-5432}"
if ! pg_isready -q -h "$PGHOST_" -p "$PGPORT_" 2>/dev/null; then
    if command -v pg_lsclusters >/dev/null 2>&1; then
        echo "bench: PostgreSQL not answering on $PGHOST_:$PGPORT_; starting the local cluster(s)"
        pg_lsclusters -h | while read -r ver name _; do pg_ctlcluster "$ver" "$name" start || true; done
        for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST_" -p "$PGPORT_" && break; sleep 1; done
    fi
    if ! pg_isready -q -h "$PGHOST_" -p "$PGPORT_" 2>/dev/null; then
        echo "bench: PostgreSQL is not reachable on $PGHOST_:$PGPORT_ (user postgres, trust auth)" >&2
        exit 1
    fi
fi

exec "$PY" bench/driver.py "$@"
