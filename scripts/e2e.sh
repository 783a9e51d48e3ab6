#!/usr/bin/env bash
# The tests that need the running stack (run by scripts/stack.sh test): the
# Rust storage and end-to-end tests, `provider check` against the stack's own
# manifest, then the browser test. All always run; the exit status is failure
# if any failed.
set -uo pipefail
status=0
cargo test --package tests --no-fail-fast || status=1
echo "provider check --manifest $MANIFEST"
target/debug/provider check --manifest "$MANIFEST" || status=1
cargo build --quiet --package tests --bin sso_fixture || status=1
node --test tests/browser/ || status=1
exit "$status"
