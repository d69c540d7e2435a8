#!/usr/bin/env bash
# A/B of two server builds in one sitting: for each round, each build serves on a fresh
# database and the same load generator runs the same scenarios against it; the builds take
# turns (A B A B ...), so that the machine's drift hits both alike. One JSON line per run, with
# the units (V, and P on PostgreSQL) measured in it.
#
#   bench/ab.sh OLD/dcr-server NEW/dcr-server [rounds] > ab.jsonl                # SQLite
#   DCR_DATABASE_URL=postgres://…/dcr_bench bench/ab.sh OLD NEW [rounds] > ab.jsonl  # PostgreSQL
#
# The load generator is this checkout's release dcr-bench
# (cargo build --release --features test-support --bin dcr-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?first dcr-server binary}
b=${2:?second dcr-server binary}
rounds=${3:-3}
bench=./target/release/dcr-bench
config=config/bench.toml
log=/tmp/dcr-ab-server.log

# shellcheck source=bench/lib.sh
. bench/lib.sh

run_build() { # label, binary
  fresh_database
  "$2" --config "$config" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
  for scenario in "register -c 64" "token-pkj -c 16" "token-tls -c 16" "get -c 16"; do
    # shellcheck disable=SC2086
    "$bench" $scenario -n 20000 -d 30 --runs 1 --json --pid "$pid" 2>/dev/null \
      | sed "s/^{/{\"build\":\"$1\",\"round\":$round,/"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for round in $(seq "$rounds"); do
  run_build A "$a"
  run_build B "$b"
done
