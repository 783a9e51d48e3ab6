#!/usr/bin/env bash
# Release-builds every function the way SAM's rust-cargolambda build does
# (cargo lambda build --release, arm64) and prints, per function, the
# bootstrap's size and the size of the zip Lambda receives (deflated the way
# `sam deploy` packages a function: Python's zipfile, ZIP_DEFLATED).
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

python3 - "$arch" "${functions[@]}" <<'EOF'
import io, os, sys, zipfile

arch, functions = sys.argv[1], sys.argv[2:]
print(f"{'function':<16} {'arch':<8} {'bootstrap bytes':>16} {'zip bytes':>12}")
for function in functions:
    bootstrap = f"target/lambda/{function}/bootstrap"
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(bootstrap, "bootstrap")
    print(f"{function:<16} {arch:<8} {os.path.getsize(bootstrap):>16} {len(packed.getvalue()):>12}")
EOF
