#!/usr/bin/env bash
# OBIE DCR conformance suite (v3.2, v3.3, v3.4) for dcr-server (or any DCR server), in bash +
# curl + openssl + jq. Every JWT it sends is minted here with openssl, not by the server's code.
#
# Sandbox mode (no arguments): starts target/release/dcr-server (or $DCR_SERVER_BIN) on a free
# port with a fresh sandbox and a throwaway SQLite file, runs every case, stops the server.
#
#   tests/conformance/run.sh [--version 3.2|3.3|3.4] [--database-url URL] [--junit FILE]
#     [--behind-test-as]
#
# --behind-test-as (sandbox mode only) runs the server in rfc7591 mode in front of a test bank
# AS: node-oidc-provider (tests/as/server.mjs; `npm ci --prefix tests/as` first) on another
# free port, its certificate issued here from the sandbox CA, and `[authorization_server]` in
# the server's config. Management tokens come from the token endpoint discovery names (in both
# modes; behind the AS it is the AS's, called over mTLS, its tokens bound to the transport
# certificate). Four cases are added: discovery is the AS's with this server's registration
# endpoint, this server's /token and /introspect answer 404 JSON, and at the end no client of
# the suite is left at the AS.
#
# Deployment mode: runs the same cases against a running server.
#
#   tests/conformance/run.sh --url https://bank.example.com:8243 --ca ca.pem \
#     --cert transport.pem --key transport.key --ssa ssa.jwt \
#     --signing-key signing.key --kid KID [--alg PS256|ES256] [--aud AUD] \
#     [--redirect-uri URI] [--methods "tls_client_auth private_key_jwt"] [--junit FILE]
#     [--version 3.2|3.3|3.4]
#
# --version runs the cases against /open-banking/v<version>/register (without it: discovery's
# registration_endpoint, taken to be v3.2), plus that version's own cases: the CIBA grant
# refused on v3.2 and its claims on v3.3/v3.4, mobile vs native, jwt-bearer on v3.4 only, v3.4's
# CN-first subject DN, and an upgrade by PUT from the v3.2 path (when v3.2 is served).
#
# Output: one line per case, `PASS name`, `FAIL name: reason` or `SKIP name: reason`, then
# `N passed, M failed` (skipped cases are neither). The exit status is non-zero when a case failed.
set -uo pipefail

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

URL="" CA="" CERT="" KEY="" SSA_ARG="" SIGNING_KEY="" KID="" ALG="PS256" AUD="" REDIRECT=""
METHODS="tls_client_auth private_key_jwt" JUNIT="" DATABASE_URL="" VERSION="" BEHIND=""
while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL="$2"; shift 2 ;;
    --ca) CA="$2"; shift 2 ;;
    --cert) CERT="$2"; shift 2 ;;
    --key) KEY="$2"; shift 2 ;;
    --ssa) SSA_ARG="$2"; shift 2 ;;
    --signing-key) SIGNING_KEY="$2"; shift 2 ;;
    --kid) KID="$2"; shift 2 ;;
    --alg) ALG="$2"; shift 2 ;;
    --aud) AUD="$2"; shift 2 ;;
    --redirect-uri) REDIRECT="$2"; shift 2 ;;
    --methods) METHODS="$2"; shift 2 ;;
    --junit) JUNIT="$2"; shift 2 ;;
    --database-url) DATABASE_URL="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --behind-test-as) BEHIND=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

case "${VERSION:-3.2}" in 3.2|3.3|3.4) ;; *) echo "--version must be 3.2, 3.3 or 3.4" >&2; exit 2 ;; esac
for tool in curl openssl jq; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
AS_DIR="$(cd "$(dirname "$0")/../as" 2>/dev/null && pwd)"
if [ -n "$BEHIND" ]; then
  [ -z "$URL" ] || { echo "--behind-test-as is for sandbox mode (not with --url)" >&2; exit 2; }
  command -v node >/dev/null || { echo "--behind-test-as needs Node.js (node)" >&2; exit 2; }
  [ -f "$AS_DIR/node_modules/oidc-provider/package.json" ] \
    || { echo "--behind-test-as: the test AS is not installed (run npm ci --prefix tests/as)" >&2; exit 2; }
fi

WORK=$(mktemp -d)
SERVER_PID="" AS_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  if [ -n "$AS_PID" ]; then kill "$AS_PID" 2>/dev/null; wait "$AS_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- JOSE with openssl

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
b64url_decode() {
  local s; s=$(tr '_-' '/+')
  case $(( ${#s} % 4 )) in 2) s="$s==" ;; 3) s="$s=" ;; esac
  printf '%s' "$s" | openssl base64 -d -A
}
uuid4() {
  local h; h=$(openssl rand -hex 16)
  printf '%s-%s-4%s-%x%s-%s' "${h:0:8}" "${h:8:4}" "${h:13:3}" $(( (0x${h:16:1} & 3) | 8 )) "${h:17:3}" "${h:20:12}"
}
# ES256 signatures are R||S, 32 bytes each; openssl writes DER.
der_to_raw_ecdsa() {
  local ints=() hex
  while read -r hex; do
    hex=${hex#*:}; hex=${hex##0}
    while [ ${#hex} -lt 64 ]; do hex="0$hex"; done
    ints+=("${hex: -64}")
  done < <(openssl asn1parse -inform DER | grep INTEGER | sed 's/.*INTEGER *//')
  printf '%s%s' "${ints[0]}" "${ints[1]}" | sed 's/../\\x&/g' | xargs -0 printf '%b'
}
# sign_jws HEADER_JSON PAYLOAD_JSON ALG KEYFILE
sign_jws() {
  local input sig
  input="$(printf '%s' "$1" | b64url).$(printf '%s' "$2" | b64url)"
  case "$3" in
    PS256) sig=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$4" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 | b64url) ;;
    RS256) sig=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$4" | b64url) ;;
    ES256) sig=$(printf '%s' "$input" | openssl dgst -sha256 -sign "$4" | der_to_raw_ecdsa | b64url) ;;
    *) echo "cannot sign $3" >&2; return 1 ;;
  esac
  printf '%s.%s' "$input" "$sig"
}
jws_payload() { printf '%s' "$1" | cut -d. -f2 | b64url_decode; }

# ---------------------------------------------------------------- set-up

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 20000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port found" >&2; exit 2
}

# start_test_as: node-oidc-provider on a free port with a server certificate from the sandbox
# CA (for 127.0.0.1 and localhost), trusting that CA for client certificates and, through
# NODE_EXTRA_CA_CERTS, for the TPP's JWKS on this server's /sandbox/tpp.jwks; then the
# server's [authorization_server] table, appended to $WORK/deployment.toml.
# Waits up to $5 seconds for a line of log $1 that matches $2 while process $3 runs; else
# says that $4 did not start, with its log, and stops.
wait_for_log() {
  local _
  for _ in $(seq 1 $(( $5 * 10 ))); do
    grep -qs -- "$2" "$1" && return
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$4 did not start:" >&2; cat "$1" >&2; exit 2
}

start_test_as() {
  local as="$WORK/as" port
  mkdir -p "$as"
  port=$(free_port)
  while [ "$port" = "$PORT" ]; do port=$(free_port); done
  AS_ISSUER="https://127.0.0.1:$port"
  printf '%s\n' "subjectAltName = IP:127.0.0.1, DNS:localhost" "extendedKeyUsage = serverAuth" \
    "basicConstraints = critical, CA:FALSE" "keyUsage = critical, digitalSignature" > "$as/ext.cnf"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$as/as.key" -out "$as/as.csr" 2>/dev/null \
    && openssl x509 -req -in "$as/as.csr" -CA "$SB/ca.pem" -CAkey "$SB/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 2 -extfile "$as/ext.cnf" -out "$as/as.pem" 2>/dev/null \
    || { echo "cannot issue the test AS's certificate from $SB/ca.key" >&2; exit 2; }
  openssl rand -hex 16 | tr -d '\n' > "$as/initial_access_token"
  openssl rand -hex 16 | tr -d '\n' > "$as/introspection_secret"
  openssl rand 32 > "$as/storage.key"
  AS_PORT="$port" AS_ISSUER="$AS_ISSUER" AS_TLS_CERT="$as/as.pem" AS_TLS_KEY="$as/as.key" \
    AS_CLIENT_CA="$SB/ca.pem" AS_INITIAL_ACCESS_TOKEN="$(cat "$as/initial_access_token")" \
    AS_INTROSPECTION_CLIENT_ID=dcr-server-introspection \
    AS_INTROSPECTION_CLIENT_SECRET="$(cat "$as/introspection_secret")" \
    NODE_EXTRA_CA_CERTS="$SB/ca.pem" node "$AS_DIR/server.mjs" >"$WORK/as.log" 2>&1 &
  AS_PID=$!
  wait_for_log "$WORK/as.log" "^listening $AS_ISSUER\$" "$AS_PID" "the test AS" 45
  cat >> "$WORK/deployment.toml" <<EOF
[authorization_server]
mode = "rfc7591"
issuer = "$AS_ISSUER"
initial_access_token_file = "$as/initial_access_token"
client_id = "dcr-server-introspection"
client_secret_file = "$as/introspection_secret"
ca = "$SB/ca.pem"
storage_key_file = "$as/storage.key"
EOF
}
# wait_ready: until /ready is 200 (behind an AS: once its discovery document has been read).
wait_ready() {
  local status
  for _ in $(seq 1 100); do
    status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SB/ca.pem" "$URL/ready")
    [ "$status" = 200 ] && return
    sleep 0.1
  done
  echo "/ready stayed $status:" >&2; cat "$WORK/server.log" >&2; exit 2
}

if [ -z "$URL" ]; then
  BIN="${DCR_SERVER_BIN:-target/release/dcr-server}"
  [ -x "$BIN" ] || { echo "no server binary at $BIN (build it, or set DCR_SERVER_BIN)" >&2; exit 2; }
  PORT=$(free_port)
  URL="https://localhost:$PORT"
  SB="$WORK/sandbox"
  "$BIN" --config "$WORK/none.toml" sandbox init --dir "$SB" --issuer "$URL" >/dev/null || exit 2
  cat > "$WORK/deployment.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
issuer = "$URL"
[server.tls]
certificate = "$SB/server.pem"
private_key = "$SB/server.key"
client_ca = ["$SB/ca.pem"]
[database]
url = "${DATABASE_URL:-sqlite://$WORK/dcr.db}"
[[open_banking.dcr.ssa_issuer]]
name = "OpenBanking Ltd"
jwks = "$SB/directory.jwks"
[open_banking.dcr.jwks]
extra_ca = ["$SB/ca.pem"]
[sandbox]
enable = true
dir = "$SB"
EOF
  [ -z "$BEHIND" ] || start_test_as
  DCR_DATABASE_URL="" "$BIN" --config "$WORK/deployment.toml" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_log "$WORK/server.log" "listening on" "$SERVER_PID" "the server" 10
  [ -z "$BEHIND" ] || wait_ready
  CA="$SB/ca.pem" CERT="$SB/tpp/transport.pem" KEY="$SB/tpp/transport.key"
  SIGNING_KEY="$SB/tpp/signing-ps256.key" KID=$(jq -r .kid_ps256 "$SB/tpp/tpp.json") ALG=PS256
  # A fresh SSA, minted here with the sandbox directory's key.
  DIR_KID=$(jq -r '.keys[0].kid' "$SB/directory.jwks")
  SSA_CLAIMS=$(jq -c --argjson iat "$(date +%s)" '{
      iss: "OpenBanking Ltd", iat: $iat, jti: "conformance-ssa", software_environment: "sandbox",
      software_id, software_client_id: .software_id, software_client_name,
      software_redirect_uris, software_roles, software_jwks_endpoint,
      org_status: "Active", org_id, org_name }' "$SB/tpp/tpp.json")
  SSA=$(sign_jws "{\"alg\":\"PS256\",\"kid\":\"$DIR_KID\",\"typ\":\"JWT\"}" "$SSA_CLAIMS" PS256 "$SB/directory.key")
else
  for v in CA CERT KEY SSA_ARG SIGNING_KEY KID; do
    [ -n "${!v}" ] || { echo "deployment mode needs --$(echo "$v" | tr 'A-Z_' 'a-z-' | sed 's/ssa-arg/ssa/')" >&2; exit 2; }
  done
  if [ -f "$SSA_ARG" ]; then SSA=$(tr -d ' \n\r' < "$SSA_ARG"); else SSA="$SSA_ARG"; fi
fi
URL="${URL%/}"

SSA_JSON=$(jws_payload "$SSA")
SOFTWARE_ID=$(printf '%s' "$SSA_JSON" | jq -r .software_id)
[ -n "$REDIRECT" ] || REDIRECT=$(printf '%s' "$SSA_JSON" | jq -r '.software_redirect_uris[0]')
SUBJECT_DN=$(openssl x509 -in "$CERT" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
ROLES=$(printf '%s' "$SSA_JSON" | jq -r '.software_roles | join(" ")')
SCOPE="openid"
case " $ROLES " in *" AISP "*) SCOPE="$SCOPE accounts" ;; esac
case " $ROLES " in *" PISP "*) SCOPE="$SCOPE payments" ;; esac

MTLS=(--cacert "$CA" --cert "$CERT" --key "$KEY")
NOCERT=(--cacert "$CA")

# http METHOD URL [curl args...] -> STATUS, BODY, HEADERS
http() {
  local method="$1" url="$2"; shift 2
  STATUS=$(curl -s -X "$method" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@" "$url" 2>"$WORK/curl.err")
  [ -n "$STATUS" ] || STATUS=000
  BODY=$(cat "$WORK/body" 2>/dev/null)
}

# ---------------------------------------------------------------- results

PASSED=0 FAILED=0 CASES=()
pass() { PASSED=$((PASSED + 1)); CASES+=("PASS|$1|"); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); CASES+=("FAIL|$1|$2"); echo "FAIL $1: $2"; }
skip() { CASES+=("SKIP|$1|$2"); echo "SKIP $1: $2"; }
# expect NAME WANT_STATUS [JQ_CHECK]
expect() {
  local name="$1" want="$2" check="${3:-}"
  if [ "$STATUS" != "$want" ]; then fail "$name" "status $STATUS, want $want: ${BODY:0:200}"; return 1; fi
  if [ -n "$check" ] && ! printf '%s' "$BODY" | jq -e "$check" >/dev/null 2>&1; then
    fail "$name" "body fails \`$check\`: ${BODY:0:200}"; return 1
  fi
  pass "$name"
}

# ---------------------------------------------------------------- request builders

NOW() { date +%s; }
# registration_claims METHOD [jq filter applied last]
registration_claims() {
  local method="$1" patch="${2:-.}" now; now=$(NOW)
  jq -cn --arg iss "$SOFTWARE_ID" --arg aud "${AUD:-$ISSUER}" --arg jti "$(uuid4)" \
    --argjson iat "$now" --argjson exp $((now + 300)) --arg ssa "$SSA" --arg redirect "$REDIRECT" \
    --arg method "$method" --arg alg "$ALG" --arg dn "$SUBJECT_DN" --arg scope "$SCOPE" '
    { iss: $iss, iat: $iat, exp: $exp, aud: $aud, jti: $jti,
      redirect_uris: [$redirect], token_endpoint_auth_method: $method,
      grant_types: ["authorization_code", "client_credentials"], response_types: ["code id_token"],
      software_id: $iss, scope: $scope, software_statement: $ssa, application_type: "web",
      id_token_signed_response_alg: $alg, request_object_signing_alg: $alg }
    + (if $method == "tls_client_auth" then { tls_client_auth_subject_dn: $dn }
       else { token_endpoint_auth_signing_alg: $alg } end)
    | '"$patch"
}
signed_request() { sign_jws "{\"alg\":\"${3:-$ALG}\",\"kid\":\"$KID\",\"typ\":\"JWT\"}" "$(registration_claims "$1" "${2:-.}")" "${3:-$ALG}" "$SIGNING_KEY"; }
register() { http POST "$REGISTRATION" "${MTLS[@]}" -H 'Content-Type: application/jose' -H 'Accept: application/json' --data-binary "$1"; }

client_assertion() {
  local now; now=$(NOW)
  sign_jws "{\"alg\":\"$ALG\",\"kid\":\"$KID\",\"typ\":\"JWT\"}" \
    "$(jq -cn --arg id "$1" --arg aud "$TOKEN_ENDPOINT" --arg jti "$(uuid4)" --argjson iat "$now" \
       --argjson exp $((now + 300)) '{iss: $id, sub: $id, aud: $aud, jti: $jti, iat: $iat, exp: $exp}')" \
    "$ALG" "$SIGNING_KEY"
}
get_token() {
  local method="$1" id="$2"
  if [ "$method" = private_key_jwt ]; then
    http POST "$TOKEN_ENDPOINT" "${MTLS[@]}" -d grant_type=client_credentials -d scope= \
      -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
      --data-urlencode "client_assertion=$(client_assertion "$id")"
  else
    http POST "$TOKEN_ENDPOINT" "${MTLS[@]}" -d grant_type=client_credentials -d scope= -d "client_id=$id"
  fi
}

# ---------------------------------------------------------------- cases

http GET "$URL/.well-known/openid-configuration" "${NOCERT[@]}"
expect "discovery advertises the DCR endpoints, methods and algorithms" 200 '
  (.registration_endpoint | type == "string" and startswith("https://"))
  and (.token_endpoint | type == "string")
  and (.token_endpoint_auth_methods_supported | type == "array" and length > 0)
  and (.request_object_signing_alg_values_supported | type == "array" and length > 0)
  and (.token_endpoint_auth_signing_alg_values_supported | type == "array")'
DISCOVERY="$BODY"
REGISTRATION=$(printf '%s' "$BODY" | jq -r '.registration_endpoint // empty')
# Management tokens come from the token endpoint discovery names (behind an AS: the AS's), and
# over mTLS, so from its mTLS alias when it has one (RFC 8705 §5).
TOKEN_ENDPOINT=$(printf '%s' "$BODY" | jq -r '.mtls_endpoint_aliases.token_endpoint // .token_endpoint // empty')
ISSUER=$(printf '%s' "$BODY" | jq -r '.issuer // empty')
if [ -n "$BEHIND" ]; then
  STATUS=200 BODY="$DISCOVERY"
  expect "behind the AS: discovery is the AS's, with this server's registration endpoint" 200 '
    .issuer == "'"$AS_ISSUER"'"
    and (.token_endpoint | startswith("'"$AS_ISSUER"'/"))
    and ((.mtls_endpoint_aliases.token_endpoint // .token_endpoint) | startswith("'"$AS_ISSUER"'/"))
    and (.introspection_endpoint | startswith("'"$AS_ISSUER"'/"))
    and (.registration_endpoint | startswith("'"$URL"'/"))
    and ((.mtls_endpoint_aliases.registration_endpoint // .registration_endpoint) == .registration_endpoint)'
  # This server issues and introspects no tokens of its own there.
  http POST "$URL/token" "${MTLS[@]}" -d grant_type=client_credentials -d client_id=anyone
  expect "behind the AS: this server's /token → 404 JSON" 404 'type == "object"'
  http POST "$URL/introspect" "${MTLS[@]}" -d token=anything
  expect "behind the AS: this server's /introspect → 404 JSON" 404 'type == "object"'
fi
if [ -z "$REGISTRATION" ] || [ -z "$TOKEN_ENDPOINT" ]; then
  echo "cannot continue without registration_endpoint and token_endpoint" >&2
  REGISTRATION="$URL/open-banking/v3.2/register" TOKEN_ENDPOINT="$URL/token"
fi
if [ -n "$VERSION" ]; then REGISTRATION="$URL/open-banking/v$VERSION/register"; fi
VERSION="${VERSION:-3.2}"

for METHOD in $METHODS; do
  register "$(signed_request "$METHOD")"
  expect "$METHOD: register → 201 with the contract's body types" 201 '
    (.client_id | type == "string" and length > 0 and length <= 36)
    and (.client_id_issued_at | type == "number")
    and (.redirect_uris | type == "array")
    and (.grant_types | type == "array")
    and (.token_endpoint_auth_method == "'"$METHOD"'")
    and (.scope | type == "string")
    and (.software_statement | type == "string")
    and (.application_type | type == "string")
    and (.id_token_signed_response_alg | type == "string")
    and (.request_object_signing_alg | type == "string")' || continue
  CLIENT_ID=$(printf '%s' "$BODY" | jq -r .client_id)

  get_token "$METHOD" "$CLIENT_ID"
  expect "$METHOD: client-credentials token with an empty scope=" 200 '.access_token | type == "string"' || continue
  TOKEN=$(printf '%s' "$BODY" | jq -r .access_token)

  http GET "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN"
  expect "$METHOD: GET the registration → 200" 200 '.client_id == "'"$CLIENT_ID"'" and (has("client_secret") | not)'

  http GET "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer"
  expect "$METHOD: GET with a bare Authorization: Bearer → 401" 401

  http PUT "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/jose' --data-binary "$(signed_request "$METHOD")"
  expect "$METHOD: PUT with a freshly signed JWS → 200" 200 '.client_id == "'"$CLIENT_ID"'"'

  http DELETE "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN"
  expect "$METHOD: DELETE → 204" 204

  http GET "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN"
  expect "$METHOD: GET with the old token after DELETE → 401" 401

  http PUT "$REGISTRATION/$CLIENT_ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/jose' --data-binary "$(signed_request "$METHOD")"
  expect "$METHOD: PUT with the old token after DELETE → 401" 401
done

# Refusals: each request is valid but for one defect, and must get a 400 JSON error.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/unknown.key" 2>/dev/null
M=private_key_jwt
now=$(NOW)
declare -a BAD_NAMES BAD_BODIES
bad() { BAD_NAMES+=("$1"); BAD_BODIES+=("$2"); }
bad "exp in the past → 400" "$(signed_request $M ".iat = $((now - 7200)) | .exp = $((now - 3600))")"
bad "iss empty → 400" "$(signed_request $M '.iss = ""')"
bad "iss of 30 characters → 400" "$(signed_request $M '.iss = "abcdefghijabcdefghijabcdefghij"')"
bad "iss foo.is/invalid → 400" "$(signed_request $M '.iss = "foo.is/invalid"')"
bad "RS256 signature → 400" "$(signed_request $M '.id_token_signed_response_alg = "RS256" | .request_object_signing_alg = "RS256" | .token_endpoint_auth_signing_alg = "RS256"' RS256)"
bad "response_types id_token token → 400" "$(signed_request $M '.response_types = ["id_token", "token"]')"
bad "redirect URI not in the SSA → 400" "$(signed_request $M '.redirect_uris = ["https://not-in-the-ssa.example.com/cb"]')"
FOREIGN_SSA=$(sign_jws '{"alg":"PS256","kid":"conformance-unknown-key","typ":"JWT"}' "$SSA_JSON" PS256 "$WORK/unknown.key")
bad "SSA signed by an unknown key → 400" "$(signed_request $M ".software_statement = \"$FOREIGN_SSA\"")"
for i in "${!BAD_NAMES[@]}"; do
  register "${BAD_BODIES[$i]}"
  expect "${BAD_NAMES[$i]}" 400 '(.error | type == "string") and (.error | IN("invalid_redirect_uri", "invalid_client_metadata", "invalid_software_statement", "unapproved_software_statement"))'
done

http POST "$REGISTRATION" "${NOCERT[@]}" -H 'Content-Type: application/jose' --data-binary "$(signed_request $M)"
expect "no client certificate → 401" 401

# ---------------------------------------------------------------- the version's own cases

CIBA=urn:openid:params:grant-type:ciba
JWT_BEARER=urn:ietf:params:oauth:grant-type:jwt-bearer
ORIGIN=$(printf '%s' "$REDIRECT" | sed -E 's#^(https://[^/]+).*#\1#')
CIBA_PATCH='.grant_types += ["'$CIBA'"] | .backchannel_token_delivery_mode = "ping"
  | .backchannel_client_notification_endpoint = "'$ORIGIN'/ciba/notify"
  | .backchannel_authentication_request_signing_alg = "'$ALG'"
  | .backchannel_user_code_parameter_supported = false'

# registered NAME BODY CHECK: a 201 that passes CHECK; the client is deleted again (with a
# token of its own), so that the next case may register the same software.
registered() {
  local name="$1" body="$2" check="$3" id token
  register "$body"
  expect "$name" 201 "$check" || return 1
  id=$(printf '%s' "$BODY" | jq -r .client_id)
  get_token private_key_jwt "$id"; token=$(printf '%s' "$BODY" | jq -r '.access_token // empty')
  http DELETE "$REGISTRATION/$id" "${MTLS[@]}" -H "Authorization: Bearer $token"
  [ "$STATUS" = 204 ] || fail "$name: clean-up DELETE" "status $STATUS: ${BODY:0:200}"
}
refused() {
  register "$2"
  expect "$1" 400 '.error == "invalid_client_metadata" and (.error_description | type == "string")'
}

V="v$VERSION"
case "$VERSION" in
  3.2)
    refused "$V: the CIBA grant type → 400" "$(signed_request $M "$CIBA_PATCH")"
    refused "$V: application_type native → 400" "$(signed_request $M '.application_type = "native"')"
    refused "$V: the jwt-bearer grant type → 400" "$(signed_request $M '.grant_types += ["'$JWT_BEARER'"]')"
    registered "$V: application_type mobile → 201" "$(signed_request $M '.application_type = "mobile"')" \
      '.application_type == "mobile"'
    registered "$V: backchannel claims without the CIBA grant are ignored → 201" \
      "$(signed_request $M "$CIBA_PATCH | .grant_types -= [\"$CIBA\"]")" 'has("backchannel_token_delivery_mode") | not'
    ;;
  3.3|3.4)
    registered "$V: CIBA ping with every claim → 201, echoed" "$(signed_request $M "$CIBA_PATCH")" \
      '(.grant_types | index("'$CIBA'")) and .backchannel_token_delivery_mode == "ping"
       and .backchannel_user_code_parameter_supported == false
       and (.backchannel_client_notification_endpoint | startswith("https://"))'
    registered "$V: CIBA poll without a notification endpoint → 201" \
      "$(signed_request $M "$CIBA_PATCH | .backchannel_token_delivery_mode = \"poll\" | del(.backchannel_client_notification_endpoint)")" \
      '.backchannel_token_delivery_mode == "poll"'
    refused "$V: CIBA push → 400" "$(signed_request $M "$CIBA_PATCH | .backchannel_token_delivery_mode = \"push\"")"
    refused "$V: CIBA ping without a notification endpoint → 400" \
      "$(signed_request $M "$CIBA_PATCH | del(.backchannel_client_notification_endpoint)")"
    refused "$V: CIBA with user codes → 400" "$(signed_request $M "$CIBA_PATCH | .backchannel_user_code_parameter_supported = true")"
    refused "$V: backchannel claims without the CIBA grant → 400" \
      "$(signed_request $M "$CIBA_PATCH | .grant_types -= [\"$CIBA\"]")"
    ;;
esac
case "$VERSION" in
  3.3)
    refused "$V: application_type native → 400" "$(signed_request $M '.application_type = "native"')"
    refused "$V: the jwt-bearer grant type → 400" "$(signed_request $M '.grant_types += ["'$JWT_BEARER'"]')"
    ;;
  3.4)
    registered "$V: application_type native and the jwt-bearer grant → 201" \
      "$(signed_request $M '.application_type = "native" | .grant_types += ["'$JWT_BEARER'"]')" \
      '.application_type == "native" and (.grant_types | index("'$JWT_BEARER'"))'
    refused "$V: application_type mobile → 400" "$(signed_request $M '.application_type = "mobile"')"
    REVERSED_DN=$(printf '%s' "$SUBJECT_DN" | awk -F, '{ for (i = NF; i > 1; i--) printf "%s,", $i; print $1 }')
    if [ "$REVERSED_DN" != "$SUBJECT_DN" ]; then
      refused "$V: a subject DN not starting with CN= → 400" \
        "$(signed_request tls_client_auth ".tls_client_auth_subject_dn = \"$REVERSED_DN\"")"
    fi
    ;;
esac

# An upgrade: registered on the v3.2 path, moved by PUT on this version's path, read back on
# the v3.2 path with this version's values.
V32="$URL/open-banking/v3.2/register"
if [ "$VERSION" != 3.2 ]; then
  register_v32() { http POST "$V32" "${MTLS[@]}" -H 'Content-Type: application/jose' --data-binary "$1"; }
  register_v32 "$(signed_request $M '.application_type = "mobile"')"
  if [ "$STATUS" = 404 ]; then
    skip "$V: upgrade from v3.2" "v3.2 is not served"
  elif expect "$V: register on the v3.2 path → 201" 201 '.application_type == "mobile"'; then
    ID=$(printf '%s' "$BODY" | jq -r .client_id)
    get_token private_key_jwt "$ID"; TOKEN=$(printf '%s' "$BODY" | jq -r '.access_token // empty')
    if [ "$VERSION" = 3.4 ]; then
      http PUT "$REGISTRATION/$ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/jose' --data-binary "$(signed_request $M '.application_type = "mobile"')"
      expect "$V: PUT keeping mobile on the v3.4 path → 400" 400 '.error == "invalid_client_metadata"'
      UPGRADE='.application_type = "native"' WANT='.application_type == "native"'
    else
      UPGRADE="$CIBA_PATCH" WANT='.backchannel_token_delivery_mode == "ping"'
    fi
    http PUT "$REGISTRATION/$ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/jose' --data-binary "$(signed_request $M "$UPGRADE")"
    expect "$V: upgrade by PUT on the $V path → 200, same client_id" 200 ".client_id == \"$ID\" and ($WANT)"
    http GET "$V32/$ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN"
    expect "$V: GET on the v3.2 path answers as registered under $V, with the same token" 200 "$WANT"
    http DELETE "$REGISTRATION/$ID" "${MTLS[@]}" -H "Authorization: Bearer $TOKEN"
    expect "$V: DELETE → 204" 204
  fi
fi

# No orphans: every client the cases registered was deleted at the AS too, and no refusal
# was created there.
if [ -n "$BEHIND" ]; then
  http GET "$AS_ISSUER/test/live-clients" "${NOCERT[@]}"
  expect "behind the AS: no client of the suite is left at the AS" 200 '. == []'
fi

# ---------------------------------------------------------------- report

if [ -n "$JUNIT" ]; then
  xml() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }
  {
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo "<testsuite name=\"dcr-conformance\" tests=\"${#CASES[@]}\" failures=\"$FAILED\" skipped=\"$(( ${#CASES[@]} - PASSED - FAILED ))\">"
    for c in "${CASES[@]}"; do
      IFS='|' read -r result name reason <<<"$c"
      printf '  <testcase classname="dcr" name="%s">' "$(printf '%s' "$name" | xml)"
      [ "$result" = FAIL ] && printf '<failure message="%s"/>' "$(printf '%s' "$reason" | xml)"
      [ "$result" = SKIP ] && printf '<skipped message="%s"/>' "$(printf '%s' "$reason" | xml)"
      echo '</testcase>'
    done
    echo '</testsuite>'
  } > "$JUNIT"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
