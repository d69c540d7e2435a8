#!/usr/bin/env bash
# Runs every measurement of docs/performance.md and prints one JSON line per run, then the
# medians, each with its budget (held or not). Needs a release build and, for PostgreSQL, a
# database on this machine (its CPU is read from /proc).
#
#   cargo build --release && cargo build --release --features test-support --bin dcr-bench
#   bench/run.sh sqlite            > results-sqlite.jsonl
#   DCR_DATABASE_URL=postgres://postgres@127.0.0.1:5432/dcr_bench \
#     bench/run.sh postgres        > results-postgres.jsonl
#   bench/run.sh sqlite growth     > results-growth-sqlite.jsonl     # 1,000,000 clients and tokens first
#   DCR_DATABASE_URL=… bench/run.sh postgres growth > results-growth-postgres.jsonl
#   bench/run.sh sqlite rfc7591    > results-rfc7591-sqlite.jsonl    # register and get, issue 27
#
# `rfc7591` runs the server with config/bench-rfc7591.toml against `dcr-bench stub-as` (a stub
# of the bank's AS that answers at once, a process of its own: bench/stub-as.sh); each result
# then also says what the stub counted (`stub_as`). bench/ab-rfc7591.sh is its A/B against
# `embedded`.
#
# Every dcr-bench invocation measures its units first (V: one PS256 verification; P, on
# PostgreSQL: its CPU per one-row INSERT commit) and reports CPU per request in them.
# Run it on a quiet machine: the load generator shares the cores with the server.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
mode=${2:-}
runs=${RUNS:-3}
bench=./target/release/dcr-bench
server=./target/release/dcr-server
config=config/bench.toml
stub=()
# shellcheck source=bench/stub-as.sh
. bench/stub-as.sh
if [ "$mode" = rfc7591 ]; then
  config=config/bench-rfc7591.toml
  stub=(--stub-as "$stub_as_url")
fi

case "$backend" in
  sqlite) unset DCR_DATABASE_URL ;;
  postgres) : "${DCR_DATABASE_URL:?set DCR_DATABASE_URL to a PostgreSQL database on this machine}" ;;
  *) echo "usage: bench/run.sh sqlite|postgres [growth|rfc7591]" >&2; exit 2 ;;
esac

start_server() {
  "$server" --config "$config" >/tmp/dcr-bench-server.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    if grep -q listening /tmp/dcr-bench-server.log; then
      if [ "$mode" = rfc7591 ]; then wait_discovered /tmp/dcr-bench-server.log; fi
      return
    fi
    sleep 0.1
  done
  echo "the server did not start" >&2; exit 1
}
stop_server() {
  kill "$PID"; wait "$PID" 2>/dev/null || true
  if [ "$mode" = rfc7591 ]; then stop_stub_as; fi
}
# shellcheck source=bench/lib.sh
. bench/lib.sh
# The PostgreSQL budget of a scenario, in P (nothing on SQLite).
db_budget() { if [ "$backend" = postgres ]; then echo "--budget-p $1"; fi; }
measure() { # label, then dcr-bench arguments
  local label=$1; shift
  "$bench" "$@" --runs "$runs" --json --pid "$PID" "${stub[@]}" 2>/dev/null \
    | sed "s/^{/{\"label\":\"$label\",/"
}

fresh_database
if [ "$mode" = rfc7591 ]; then
  prepare_rfc7591
  start_stub_as
fi
if [ "$mode" = growth ]; then
  "$bench" seed --config "$config" --clients 1000000 --tokens 1000000 >&2
fi
start_server
idle=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
echo "{\"label\":\"idle\",\"server_rss_kib\":$idle,\"budget\":{\"server_rss_mib\":{\"limit\":50,\"held\":$([ "$idle" -le 51200 ] && echo true || echo false)}}}"
# shellcheck disable=SC2046
measure register-c64  register  -c 64 -n 20000 -d 60 --budget-v 10 $(db_budget 1.5) --budget-p99-ratio 2.5
if [ "$mode" = rfc7591 ]; then
  # The AS's tokens manage the clients here, checked by introspection (cached 30 s).
  # shellcheck disable=SC2046
  measure get-c16 get -c 16 -n 20000 -d 60 $(db_budget 0.5)
  stop_server
  exit 0
fi
# shellcheck disable=SC2046
measure token-pkj-c16 token-pkj -c 16 -n 20000 -d 60 --budget-v 6 $(db_budget 1.2)
if [ "$mode" != growth ]; then
  # shellcheck disable=SC2046
  measure token-tls-c16    token-tls -c 16 -n 20000 -d 60 --budget-v 5 $(db_budget 1.2)
  # shellcheck disable=SC2046
  measure get-c16          get       -c 16 -n 20000 -d 60 --budget-v 4 $(db_budget 0.5)
  measure mixed-c8         mixed     -c 8  -n 2000  -d 60
  measure handshake-c16    handshake -c 16 -n 5000  -d 60
  measure register-new-c16 register  -c 16 -n 5000  -d 60 --new-connection
  measure register-c256    register  -c 256 -n 20000 -d 60 --budget-rss-mib 120
fi
stop_server
