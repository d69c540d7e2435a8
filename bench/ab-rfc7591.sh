#!/usr/bin/env bash
# A/B of the two authorization_server modes of one build in one sitting (issue 27): for each
# round, the server serves on a fresh database in `embedded` mode (config/bench.toml), then in
# `rfc7591` mode (config/bench-rfc7591.toml) against `dcr-bench stub-as`, a stub of the bank's AS
# that answers at once, started fresh for the run; the same load generator runs the same
# scenarios against both. One JSON line per run, with the units measured in it, and in
# `rfc7591` runs what the stub counted (`stub_as`: TCP connections it accepted, its requests,
# its CPU). bench/ab-summary.sh prints the medians.
#
#   cargo build --release && cargo build --release --features test-support --bin dcr-bench
#   bench/ab-rfc7591.sh [rounds] > ab.jsonl                                          # SQLite
#   DCR_DATABASE_URL=postgres://…/dcr_bench bench/ab-rfc7591.sh [rounds] > ab.jsonl  # PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
scenarios=${SCENARIOS:-"register -c 64|get -c 16"}
bench=./target/release/dcr-bench
server=./target/release/dcr-server
log=/tmp/dcr-ab-server.log
# shellcheck source=bench/stub-as.sh
. bench/stub-as.sh

# shellcheck source=bench/lib.sh
. bench/lib.sh

run_mode() { # mode (embedded | rfc7591)
  local config=config/bench.toml stub=()
  fresh_database
  if [ "$1" = rfc7591 ]; then
    config=config/bench-rfc7591.toml
    stub=(--stub-as "$stub_as_url")
    start_stub_as
  fi
  "$server" --config "$config" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
  if [ "$1" = rfc7591 ]; then wait_discovered "$log"; fi
  local IFS='|'
  for scenario in $scenarios; do
    IFS=' '
    # shellcheck disable=SC2086
    "$bench" $scenario -n 20000 -d 30 --runs 1 --json --pid "$pid" "${stub[@]}" 2>/dev/null \
      | sed "s/^{/{\"build\":\"$1\",\"round\":$round,/"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$1" = rfc7591 ]; then stop_stub_as; fi
}

prepare_rfc7591
for round in $(seq "$rounds"); do
  run_mode embedded
  run_mode rfc7591
done
