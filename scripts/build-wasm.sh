#!/usr/bin/env bash
# Builds the project's wasm SIMD kernels (lib/accelerator/wasm/simd/kernels.c) with clang and wasm-ld
# (Debian: clang lld), once for TF.js's single-threaded wasm build (plain memory) and once
# for its threaded build (shared memory). Without the tools it says so and exits 0: the
# project then runs on its generic paths (slower batch norm and max-pool gradients). `npm run setup` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=lib/accelerator/wasm/simd
if ! command -v clang >/dev/null 2>&1 || ! command -v wasm-ld >/dev/null 2>&1; then
  echo "build-wasm: clang or wasm-ld not found (apt-get install clang lld); the SIMD kernels are not built and the generic paths are used." >&2
  exit 0
fi
common=(--target=wasm32 -O3 -msimd128 -mbulk-memory -nostdlib -Wl,--no-entry -Wl,--import-memory -Wl,--strip-all)
clang "${common[@]}" -o "$dir/kernels-plain.wasm" "$dir/kernels.c"
clang "${common[@]}" -matomics -Wl,--shared-memory -Wl,--max-memory=4294967296 -o "$dir/kernels-shared.wasm" "$dir/kernels.c"
# The kernels share TF.js's memory: a stack or static data would write over its tensors.
for file in "$dir"/kernels-*.wasm; do
  if command -v llvm-objdump >/dev/null 2>&1 && llvm-objdump -d "$file" | grep -q "global\.\(get\|set\)"; then
    echo "build-wasm: $file uses a global (a stack pointer?); the kernels must not use a stack." >&2
    rm -f "$dir"/kernels-*.wasm
    exit 1
  fi
done
echo "build-wasm: built $dir/kernels-plain.wasm and $dir/kernels-shared.wasm" >&2
