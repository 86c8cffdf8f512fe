#!/usr/bin/env bash
# Builds and runs scripts/bench_bf16_chain.cc: oneDNN's convolutions and batch norms of a vgg-bn-style network in the
# project's bf16 steps against the same in bf16 throughout (the upper bound of what fused convolution + batch norm ops
# would save) and as two buildable designs (an op per layer, an op per block of two), which convert at their edges.
# Usage: scripts/bench-bf16-chain.sh [width (32)] [batch (128)] [repeats (15)] [warm|cold (warm): caches before each call];
# threads: OMP_NUM_THREADS (default: the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v g++ >/dev/null 2>&1 || [ ! -f /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  echo "bench-bf16-chain: needs g++ and oneDNN's headers (apt-get install g++ libdnnl-dev)." >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
g++ -O2 -std=c++17 -Wall scripts/bench_bf16_chain.cc -ldnnl -o "$tmp/bench_bf16_chain"
"$tmp/bench_bf16_chain" "$@"
