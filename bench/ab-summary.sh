#!/usr/bin/env bash
# Medians of an A/B file (bench/ab.sh, bench/ab-rfc7591.sh): per scenario and build, the server's
# V per request (median, and the rounds), throughput, p50/p99, and, where the stub AS counted,
# its TCP connections per run; then each build against the first one (ratio and difference).
#
#   bench/ab-summary.sh ab.jsonl
set -euo pipefail
jq -rs '
  def median: sort | if length == 0 then null else .[(length / 2 | floor)] end;
  (.[0].build) as $first
  | group_by(.scenario + "-c" + (.concurrency | tostring))
  | .[]
  | (.[0].scenario + " -c " + (.[0].concurrency | tostring)) as $name
  | (group_by(.build) | map({
      build: .[0].build,
      v: (map(.server_v_per_request) | median),
      rounds: (sort_by(.round) | map(.server_v_per_request)),
      v_us: (map(.units.v_us) | median),
      p: (map(.database_p_per_request) | map(select(. != null)) | median),
      tput: (map(.throughput_per_s) | median),
      p50: (map(.latency_ms.p50) | median),
      p99: (map(.latency_ms.p99) | median),
      failed: (map(.failed) | add),
      conns: (map(.stub_as.connections_accepted) | map(select(. != null))),
      stub_requests: (map(.stub_as.requests) | map(select(. != null)) | median)
    })) as $rows
  | ($rows | map(select(.build == $first)) | .[0].v) as $base
  | $rows[]
  | "\($name)\t\(.build)\tV \(.v) (rounds \(.rounds | map(tostring) | join(", ")))"
    + "\tV=\(.v_us) us\t\(.tput)/s\tp50 \(.p50) / p99 \(.p99) ms\tfailed \(.failed)"
    + (if .p != null then "\tP \(.p)" else "" end)
    + (if (.conns | length) > 0 then "\tstub: \(.conns | map(tostring) | join(", ")) connections, \(.stub_requests) requests" else "" end)
    + (if .build != $first and $base != null and .v != null
       then ((.v - $base) * 100 | round / 100) as $d
         | "\tvs \($first): x\((.v / $base * 100 | round) / 100), \(if $d >= 0 then "+" else "" end)\($d) V"
       else "" end)
' "$1"
