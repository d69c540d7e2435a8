# Sourced by bench/run.sh and bench/ab-rfc7591.sh: the stub of the bank's AS for a server in
# `rfc7591` mode (config/bench-rfc7591.toml), as a process of its own, so that its CPU is
# neither the server's (--pid) nor dcr-bench's. Needs $bench (the release dcr-bench).
stub_as_url=https://127.0.0.1:8444
stub_as_log=/tmp/dcr-bench-stub-as.log

# The sandbox (the stub's certificate is its CA's) and the secret files the config names.
prepare_rfc7591() {
  ./target/release/dcr-server sandbox init --dir certs/sandbox --issuer https://localhost:8243 >&2
  mkdir -p data
  [ -s data/bench-as-storage.key ] || openssl rand -hex 32 >data/bench-as-storage.key
  [ -s data/bench-as-client-secret ] || openssl rand -hex 16 >data/bench-as-client-secret
}
start_stub_as() {
  "$bench" stub-as --listen 127.0.0.1:8444 --sandbox certs/sandbox >"$stub_as_log" 2>&1 &
  STUB_PID=$!
  for _ in $(seq 100); do grep -q listening "$stub_as_log" && return; sleep 0.1; done
  echo "the stub AS did not start" >&2; exit 1
}
stop_stub_as() { kill "$STUB_PID"; wait "$STUB_PID" 2>/dev/null || true; }
# Waits until the server (log $1) has read the stub's discovery: before that it answers 503.
wait_discovered() {
  for _ in $(seq 100); do grep -q "authorization server discovered" "$1" && return; sleep 0.1; done
  echo "the server did not discover the stub AS" >&2; exit 1
}
