#!/usr/bin/env bash
# The tests that need the running stack (run by scripts/stack.sh test): the
# Rust storage and end-to-end tests, `provider check` against the stack's own
# manifests (Clever Cloud's, Heroku's, then Scalingo's), AWS Marketplace's check, the browser test, then the recorded AWS calls against the template. All always run; the exit status is failure
# if any failed.
set -uo pipefail
status=0
cargo test --package tests --no-fail-fast || status=1
# The manifests the checks read are `make manifest`'s, through make as a vendor
# runs it (not as a sub-make), for this stack described as a deployed one on
# the local CloudFormation: stdout must be the JSON alone.
export AWS_ENDPOINT_URL_CLOUDFORMATION="$AWS_ENDPOINT_URL_SQS"
as_deployed="local-$$"
.tools/moto/bin/python scripts/as_deployed.py "$as_deployed" || status=1
made() {
  env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS make manifest STACK="$as_deployed" MARKETPLACE="$1" >"$2" || status=1
}
made clevercloud "$MANIFEST"
made heroku "$HEROKU_MANIFEST"
made scalingo "$SCALINGO_MANIFEST"
echo "provider check --manifest $MANIFEST"
# `provider check` cleans up after itself (--cleanup, the default): the table
# must be as it found it, key for key.
table_keys() { .tools/moto/bin/python scripts/table_keys.py "$TABLE_NAME"; }
keys_before="$(table_keys)" || status=1
# The OIDC checks act as the stack's test client (scripts/stack.sh).
OIDC_CHECK_CLIENT_ID="${OIDC_TEST_CLIENT_ID:-}" OIDC_CHECK_CLIENT_SECRET="${OIDC_TEST_CLIENT_SECRET:-}" \
  OIDC_CHECK_REDIRECT_URI="${OIDC_TEST_REDIRECT_URI:-}" \
  target/debug/provider check --manifest "$MANIFEST" || status=1
echo "provider check --marketplace heroku --manifest $HEROKU_MANIFEST"
target/debug/provider check --marketplace heroku --manifest "$HEROKU_MANIFEST" || status=1
echo "provider check --marketplace scalingo --manifest $SCALINGO_MANIFEST"
target/debug/provider check --marketplace scalingo --manifest "$SCALINGO_MANIFEST" || status=1
# AWS Marketplace's registration and events, against the stand-in AWS
# Marketplace the stack reaches (it has no manifest).
echo "provider check --marketplace aws"
target/debug/provider check --marketplace aws || status=1
keys_after="$(table_keys)" || status=1
if [[ "$keys_before" != "$keys_after" ]]; then
  echo "provider check left the table changed (< before, > after):"
  diff <(echo "$keys_before") <(echo "$keys_after") | head -50
  status=1
else
  echo "provider check left the table as it found it ($(echo "$keys_before" | wc -l) items)"
fi
cargo build --quiet --package tests --bin sso_fixture || status=1
node --test tests/browser/ || status=1
# Every AWS call the functions made above, against their grants in the
# template; and removing any one grant those calls needed must fail the check.
if [[ -n "${AWS_CALL_RECORDING:-}" ]]; then
  .tools/venv/bin/python scripts/check_aws_calls.py --each-grant infra/template.yaml "$AWS_CALL_RECORDING" || status=1
fi
exit "$status"
