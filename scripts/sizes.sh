#!/usr/bin/env bash
# Release-builds every function the way SAM's rust-cargolambda build does
# (cargo lambda build --release, arm64) and prints each bootstrap's size.
# Falls back to x86_64 when the arm64 standard library cannot be installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/venv/bin:$PATH"

if rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  arch_flag=--arm64
  arch=arm64
else
  echo "sizes: the arm64 target could not be installed; measuring x86_64" >&2
  arch_flag=--x86-64
  arch=x86_64
fi

functions=()
for manifest in functions/*/Cargo.toml; do
  functions+=("$(basename "$(dirname "$manifest")")")
done
bin_args=()
for function in "${functions[@]}"; do bin_args+=(--bin "$function"); done
cargo lambda build --release "$arch_flag" "${bin_args[@]}" >&2

printf '%-16s %-8s %12s\n' function arch bytes
for function in "${functions[@]}"; do
  bootstrap="target/lambda/$function/bootstrap"
  printf '%-16s %-8s %12s\n' "$function" "$arch" "$(stat -c %s "$bootstrap")"
done
