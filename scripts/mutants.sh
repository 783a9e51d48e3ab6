#!/usr/bin/env bash
# `make mutants`: installs cargo-mutants (crates.io, pinned, into .tools/,
# no root) on first use, then mutates the modules .cargo/mutants.toml lists
# and runs the shared crate's unit tests against each mutant. Exits non-zero
# if any viable mutant is missed; the lists are in mutants.out/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=27.1.0
TOOL="$ROOT/.tools/cargo-mutants"
export PATH="$TOOL/bin:$PATH"
if [[ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $VERSION" ]]; then
  cargo install --locked --quiet --root "$TOOL" "cargo-mutants@$VERSION"
fi
exec cargo mutants --package shared --jobs "${MUTANTS_JOBS:-2}" "$@"
