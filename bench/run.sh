#!/usr/bin/env bash
# Runs every measurement of docs/performance.md and prints one JSON line per run, then the
# medians. Needs a release build and, for the PostgreSQL rows, a database (see below).
#
#   cargo build --release
#   bench/run.sh sqlite   > results-sqlite.jsonl
#   bench/run.sh postgres > results-postgres.jsonl   # DCR_DATABASE_URL=postgres://…/dcr_bench
#   bench/run.sh growth   > results-growth.jsonl     # seeds 1,000,000 clients and tokens first
#
# Run it on a quiet machine: the load generator shares the cores with the server.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
runs=${RUNS:-3}
bench=./target/release/dcr-bench
server=./target/release/dcr-server
config=config/bench.toml

start_server() {
  "$server" --config "$config" >/tmp/dcr-bench-server.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q listening /tmp/dcr-bench-server.log && return; sleep 0.1; done
  echo "the server did not start" >&2; exit 1
}
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
fresh_database() {
  case "$backend" in
    postgres) psql "${DCR_DATABASE_URL:?set DCR_DATABASE_URL}" -q -c \
        'DROP TABLE IF EXISTS audit_log, tokens, jtis, clients, _sqlx_migrations CASCADE' ;;
    *) rm -f data/bench.db data/bench.db-wal data/bench.db-shm ;;
  esac
}
measure() { # label, then dcr-bench arguments
  local label=$1; shift
  "$bench" "$@" --runs "$runs" --json --pid "$PID" 2>/dev/null | sed "s/^{/{\"label\":\"$label\",/"
}

fresh_database
if [ "$backend" = growth ]; then
  "$bench" seed --config "$config" --clients 1000000 --tokens 1000000 >&2
fi
start_server
echo "{\"label\":\"idle\",\"server_rss_kib\":$(awk '/VmRSS/{print $2}' /proc/$PID/status)}"
measure register-c64          register  -c 64 -n 20000 -d 60
measure token-pkj-c16         token-pkj -c 16 -n 20000 -d 60
if [ "$backend" != growth ]; then
  measure token-tls-c16       token-tls -c 16 -n 20000 -d 60
  measure get-c16             get       -c 16 -n 20000 -d 60
  measure mixed-c8            mixed     -c 8  -n 2000  -d 60
  measure handshake-c16       handshake -c 16 -n 5000  -d 60
  measure register-new-c16    register  -c 16 -n 5000  -d 60 --new-connection
  measure register-c256       register  -c 256 -n 20000 -d 60
fi
stop_server
