#!/usr/bin/env bash
# The container image, built and run as the README's "Docker" section says, under podman.
#
# .ci/run calls it after `cargo build --release --locked`; it also runs alone (it builds the
# release binary if needed): bash .ci/container.sh. Needs root (or sudo) and the Debian
# package mirror; no Docker engine and no registry of base images:
#
# - podman, runc, slirp4netns and debootstrap come from apt; .ci/containers.conf (through
#   CONTAINERS_CONF) selects runc with cgroupfs, sets the default ulimits and gives containers
#   slirp4netns networking (ports forwarded from the host, no bridge);
# - a debian:bookworm-slim stand-in is made with debootstrap (the rootfs tarball is cached in
#   $DCR_CI_CACHE, default /var/cache/dcr-ci, one per week and mirror; a machine without it
#   makes one in about a minute; the whole script takes about 20 s with it, 1 min without);
# - `docker build` builds the Dockerfile's `runtime` stage as it is, with the binary just
#   compiled supplied as its `build` stage (`--build-context`): the rust:1-bookworm stage
#   cannot be pulled here;
# - every ```sh block of the README's Docker section is then run as written, in a scratch
#   directory, with `docker` a shell function that calls podman (so that /usr/local/bin/docker,
#   a client without an engine, is never used); between the blocks this script checks what
#   they should have done: the listen address, the user (uid 10001), the volume, the health
#   check, `docker cp` of the sandbox, `docker exec … sandbox request`, stop/start/rm and a new
#   container on the same volume keeping the CA and the registered client, DCR_ISSUER with a
#   host that resolves only through `curl --resolve`, and DCR_LISTEN on another port;
# - the production recipe (config/production.toml, PKI mounted read-only) passes check-config
#   when the files are readable by uid 10001, and fails naming the key when one is not.
#
# Everything runs in a podman store of its own (removed at the end), so the machine's other
# containers and images are left alone. The host ports are the README's, 8243 and 8443;
# DCR_CI_PORT and DCR_CI_EXAMPLE_PORT change them (the README's text is adjusted to match).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

STARTED=$SECONDS
log() { printf '\n== container: %s (%d s)\n' "$*" $((SECONDS - STARTED)); }
fail() { printf 'container: FAILED: %s\n' "$*" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PORT=${DCR_CI_PORT:-8243}
EXAMPLE_PORT=${DCR_CI_EXAMPLE_PORT:-8443}
CACHE=${DCR_CI_CACHE:-/var/cache/dcr-ci}
# The number of ```sh blocks in the README's Docker section: this script runs them by
# position, with its checks in between, so a changed section must change this script too.
README_BLOCKS=8

log "tools"
missing=()
for tool in podman runc slirp4netns debootstrap jq curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman runc slirp4netns debootstrap jq curl >/dev/null
fi
PODMAN_BIN=$(command -v podman)
"$PODMAN_BIN" --version
for port in "$PORT" "$EXAMPLE_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port on 127.0.0.1 is in use (set DCR_CI_PORT / DCR_CI_EXAMPLE_PORT)"
  fi
done

export CONTAINERS_CONF="$REPO/.ci/containers.conf"
WORK=$(mktemp -d /var/tmp/dcr-ci.XXXXXX)
# A store of its own, with its own state, network and volume directories: the machine's
# default store (/var/lib/containers, /run/libpod, /etc/containers/networks) is not used, and
# the cleanup below resets only this one. (Podman's lock segment, /dev/shm/libpod_lock, is
# shared by every store on a machine: a CI VM runs no other containers.)
STORE=(--root "$WORK/storage" --runroot "$WORK/run" --tmpdir "$WORK/tmp"
  --network-config-dir "$WORK/networks" --volumepath "$WORK/volumes")
podman() { $SUDO env CONTAINERS_CONF="$CONTAINERS_CONF" "$PODMAN_BIN" "${STORE[@]}" "$@"; }

# The README's `docker`. `docker build … .` builds the runtime stage with this run's binary;
# the build's RUN steps (apt-get) use the host's network.
docker() {
  if [ "${1:-}" = build ]; then
    shift
    local args=() a
    for a in "$@"; do
      [ "$a" = . ] && a="$REPO"
      args+=("$a")
    done
    podman build --format docker --pull=never --network host \
      --build-context build="$WORK/build-stage" --target runtime "${args[@]}"
  else
    podman "$@"
  fi
}
[ "$(type -t docker)" = function ] || fail "docker is not the shell function"
# Without systemd podman cannot make the health check's timer: each run, start, stop and rm
# logs "unable to get systemd connection" at level=error, harmless here, since this script
# runs the check itself (`podman healthcheck run`).

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for name in $(podman ps -a --format '{{.Names}}' 2>/dev/null); do
      echo "--- last log lines of container $name"
      podman logs --tail 20 "$name" 2>&1
    done
  fi
  podman rm -af -t 0 >/dev/null 2>&1
  podman system reset --force >/dev/null 2>&1
  $SUDO rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# The Debian mirror apt uses on this machine (bookworm's, not the security archive's).
debian_mirror() {
  if [ -n "${DCR_CI_DEBIAN_MIRROR:-}" ]; then echo "$DCR_CI_DEBIAN_MIRROR"; return; fi
  local f line uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    while read -r line; do
      set -- $line
      if [ "${1:-}" = deb ] && [ "${3:-}" = bookworm ]; then echo "$2"; return; fi
    done <"$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=""
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        URIs:*) uri=$(echo "${line#URIs:}" | awk '{print $1}') ;;
        Suites:*) [[ " ${line#Suites:} " == *" bookworm "* && -n "$uri" ]] && { echo "$uri"; return; } ;;
        "") uri="" ;;
      esac
    done <"$f"
  done
  echo "http://deb.debian.org/debian"
}

log "debian:bookworm-slim stand-in"
MIRROR=$(debian_mirror)
KEY=$(printf '%s\n' bookworm minbase "$MIRROR" "$(date -u +%G-W%V)" | sha256sum | cut -c1-16)
TARBALL="$CACHE/bookworm-slim-$KEY.tar"
if ! $SUDO mkdir -p "$CACHE" 2>/dev/null; then
  TARBALL="$WORK/bookworm-slim.tar"
fi
if [ -s "$TARBALL" ]; then
  echo "cached: $TARBALL"
else
  echo "debootstrap from $MIRROR"
  if ! $SUDO debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -30 "$WORK/debootstrap.log"
    fail "debootstrap"
  fi
  # As the slim image: no package lists, no downloaded packages.
  $SUDO rm -rf "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/var/cache/apt/archives/*.deb
  $SUDO tar -C "$WORK/rootfs" -cf "$TARBALL.partial" .
  $SUDO mv "$TARBALL.partial" "$TARBALL"
  $SUDO find "$CACHE" -maxdepth 1 -name 'bookworm-slim-*.tar' ! -name "$(basename "$TARBALL")" -delete 2>/dev/null || true
  $SUDO rm -rf "$WORK/rootfs"
fi
podman import --change 'CMD ["bash"]' "$TARBALL" docker.io/library/debian:bookworm-slim >/dev/null

log "the release binary as the Dockerfile's build stage"
cargo build --release --locked --bin dcr-server
# The runtime stage copies /src/target/release/dcr-server from the build stage.
mkdir -p "$WORK/build-stage/src/target/release"
cp target/release/dcr-server "$WORK/build-stage/src/target/release/"

# The README's Docker section, one file per ```sh block, with the host ports of this run.
SCRATCH="$WORK/readme"
mkdir -p "$SCRATCH/certs"
awk '/^## Docker$/ {on = 1; next} /^## / {on = 0} on' README.md |
  awk -v dir="$WORK" '/^```sh$/ {n++; inside = 1; next} /^```$/ {inside = 0; next} inside {print > (dir "/block-" n ".sh")}'
found=$(ls "$WORK"/block-*.sh 2>/dev/null | wc -l)
[ "$found" -eq "$README_BLOCKS" ] ||
  fail "the README's Docker section has $found sh blocks, this script runs $README_BLOCKS: update it"
sed -i -e "s/127\.0\.0\.1:8243:/127.0.0.1:$PORT:/g" -e "s#https://localhost:8243#https://localhost:$PORT#g" \
  -e "s/127\.0\.0\.1:8443:/127.0.0.1:$EXAMPLE_PORT:/g" -e "s/dcr\.example:8443/dcr.example:$EXAMPLE_PORT/g" \
  "$WORK"/block-*.sh

# Runs README block n in this shell (its variables stay), echoing its lines.
readme() {
  log "README Docker block $1"
  sed 's/^/  $ /' "$WORK/block-$1.sh"
  cd "$SCRATCH"
  # shellcheck disable=SC1090
  source "$WORK/block-$1.sh"
  cd "$REPO"
}

# Waits for the image's HEALTHCHECK to pass in container $1.
wait_healthy() {
  for _ in $(seq 1 60); do
    podman healthcheck run "$1" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "container $1 not healthy after 60 s"
}

readme 1 # build, run
wait_healthy dcr
echo "healthy: podman healthcheck run dcr"
[ "$(podman image inspect dcr-server --format '{{.Config.User}}')" = dcr ] || fail "image user"
podman image inspect dcr-server --format '{{json .Config.Healthcheck}}' | jq -e '.Test | length > 0' >/dev/null ||
  fail "the image has no HEALTHCHECK (built without --format docker?)"
[ "$(podman exec dcr id -u)" = 10001 ] || fail "not running as uid 10001"
[ "$(podman exec dcr stat -c %u /app/data/dcr.db)" = 10001 ] || fail "the database is not owned by uid 10001"
# 8243 = 0x2033, state 0A = LISTEN, on 0.0.0.0 inside the container.
podman exec dcr cat /proc/net/tcp | awk '$2 == "00000000:2033" && $4 == "0A" {found = 1} END {exit !found}' ||
  fail "not listening on 0.0.0.0:8243 inside the container"
[ "$(podman port dcr)" = "8243/tcp -> 127.0.0.1:$PORT" ] || fail "published as: $(podman port dcr)"
# Outputs are searched whole (`grep -q <<<`): `cmd | grep -q` fails under pipefail when grep
# exits at the first match and cmd then writes to the closed pipe.
MOUNTS=$(podman inspect dcr --format '{{range .Mounts}}{{.Name}}={{.Destination}} {{end}}')
grep -qw 'dcr-data=/app/data' <<<"$MOUNTS" || fail "the data volume is not dcr-data on /app/data: $MOUNTS"
grep -q '"message":"listening on https://0.0.0.0:8243"' <<<"$(podman logs dcr 2>&1)" ||
  fail "no JSON 'listening on' line"
[ "$(podman inspect dcr --format '{{.HostConfig.NetworkMode}}')" = slirp4netns ] ||
  fail "network mode: $(podman inspect dcr --format '{{.HostConfig.NetworkMode}}') (not slirp4netns)"
echo "user dcr (uid 10001), HEALTHCHECK kept, 0.0.0.0:8243 inside, 127.0.0.1:$PORT outside, volume dcr-data"

readme 2 # docker cp, discovery, sandbox request, register, client assertion, token
[ -n "${CLIENT_ID:-}" ] && [ "$CLIENT_ID" != null ] || fail "registration: $CLIENT"
echo "$TOKEN" | jq -e '.access_token | length > 0' >/dev/null || fail "token: $TOKEN"
CA_SHA=$(sha256sum <"$SCRATCH/certs/sandbox/ca.pem")
echo "registered $CLIENT_ID and got a token"

readme 3 # stop, start
wait_healthy dcr
grep -q "$CLIENT_ID" <<<"$(podman exec dcr dcr-server clients list)" || fail "the client is gone after stop/start"

readme 4 # rm, a new container on the same volume
wait_healthy dcr
[ "$(podman exec dcr cat /app/data/sandbox/ca.pem | sha256sum)" = "$CA_SHA" ] || fail "a new CA after docker rm"

CLIENTS=$(readme 5) # the copied CA verifies the new container; the client is listed
echo "$CLIENTS"
grep -qF '{"status":"ok"}' <<<"$CLIENTS" || fail "the copied CA does not verify the new container"
grep -q "$CLIENT_ID" <<<"$CLIENTS" || fail "the client is gone after docker rm and run"
echo "same CA and client after stop/start and after rm + run on the volume"

readme 6 # DCR_ISSUER=https://dcr.example:8443, DCR_LISTEN=0.0.0.0:9443
for _ in $(seq 1 60); do
  podman exec dcr-example curl -fsk https://127.0.0.1:9443/health >/dev/null 2>&1 && break
  sleep 1
done
# As the README says: the HEALTHCHECK probes 8243, where this one does not listen.
if podman healthcheck run dcr-example >/dev/null 2>&1; then fail "dcr-example healthy on 9443"; fi
readme 7 # register the example's sandbox TPP through dcr.example
SOFTWARE_ID=$(jq -r .software_id "$SCRATCH/certs/sandbox-example/tpp/tpp.json")
grep -q "$SOFTWARE_ID" <<<"$(podman exec dcr-example dcr-server clients list)" ||
  fail "the sandbox TPP ($SOFTWARE_ID) did not register behind DCR_ISSUER/DCR_LISTEN"
echo "the sandbox TPP registered behind DCR_ISSUER=https://dcr.example:$EXAMPLE_PORT and DCR_LISTEN=0.0.0.0:9443"

log "the production recipe: config/production.toml and a PKI mounted read-only"
PKI="$WORK/pki"
./target/release/dcr-server sandbox init --dir "$WORK/pki-source" --issuer https://dcr.bank.example >/dev/null
mkdir -p "$PKI"
cp "$WORK/pki-source/server.pem" "$WORK/pki-source/server.key" "$PKI/"
cp "$WORK/pki-source/ca.pem" "$PKI/ob-issuing-ca.pem"
cp "$WORK/pki-source/ca.pem" "$PKI/ob-root-ca.pem"
production() {
  podman run --rm -v "$REPO/config/production.toml:/app/config/production.toml:ro" \
    -v "$PKI:/app/pki:ro" -e DCR_CONFIG=config/production.toml dcr-server check-config
}
$SUDO chown -R 10001 "$PKI"
$SUDO chmod -R u+rX,go= "$PKI"
production >"$WORK/check-config.out" 2>&1 || { cat "$WORK/check-config.out"; fail "check-config of the production template"; }
grep -q 'issuer = "https://dcr.bank.example"' "$WORK/check-config.out" || fail "check-config did not print the settings"
$SUDO chown 0 "$PKI/server.key"
if production >"$WORK/check-config.out" 2>&1; then fail "check-config passed with a key uid 10001 cannot read"; fi
grep -q 'server.tls.private_key' "$WORK/check-config.out" || { cat "$WORK/check-config.out"; fail "the error does not name the key"; }
echo "check-config passes with the PKI owned by uid 10001 and names server.tls.private_key when it cannot read it"

readme 8 # remove the containers and volumes
[ -z "$(podman ps -aq)" ] && [ -z "$(podman volume ls -q)" ] || fail "containers or volumes left"

log "image built and run: every command of the README's Docker section passed in $((SECONDS - STARTED)) s"
