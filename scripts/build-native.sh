#!/usr/bin/env bash
# Builds the project's native convolutions (lib/accelerator/native/onednn.cc): a Node addon over oneDNN
# (Debian: libdnnl-dev; g++ and Node's headers, /usr/include/node here). Without them it says
# so and exits 0: convolutions then run in wasm. `npm run setup` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=lib/accelerator/native
node_headers="$(npm config get nodedir 2>/dev/null || true)/include/node"
[ -f "$node_headers/node.h" ] || node_headers="$(dirname "$(dirname "$(command -v node)")")/include/node"
if ! command -v g++ >/dev/null 2>&1 || [ ! -f "$node_headers/node.h" ] || [ ! -f /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  echo "build-native: g++, Node's headers or oneDNN's (apt-get install g++ libdnnl-dev) not found; convolutions run in wasm." >&2
  rm -f "$dir/onednn.node"
  exit 0
fi
# The addon's own loops below are x86-64 code (AVX2 intrinsics): elsewhere (e.g. aarch64) the addon is not built.
if [ "$(uname -m)" != "x86_64" ]; then
  echo "build-native: the addon's loops are built for x86-64, this machine is $(uname -m); convolutions run in wasm." >&2
  rm -f "$dir/onednn.node"
  exit 0
fi
# Max pooling (pooling.cc) and a first layer's filter gradient (first_layer.cc) are plain loops on OpenMP's threads
# (the runtime oneDNN's threads come from), vectorised for AVX2: the pooling gradient's first-maximum selects were 6x
# slower in baseline x86-64 code. The addon asks the CPU before it runs them (loopsSupported), so a copy built
# elsewhere never executes AVX2 where there is none.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for loops in pooling first_layer pooled_conv; do
  g++ -O3 -mavx2 -mfma -std=c++17 -fPIC -fopenmp -Wall -c "$dir/$loops.cc" -o "$tmp/$loops.o"
done
g++ -O2 -std=c++17 -shared -fPIC -fopenmp -Wall -I"$node_headers" -DNODE_GYP_MODULE_NAME=onednn "$dir/onednn.cc" "$tmp/pooling.o" "$tmp/first_layer.o" "$tmp/pooled_conv.o" -ldnnl -o "$dir/onednn.node.tmp"
mv "$dir/onednn.node.tmp" "$dir/onednn.node"
echo "build-native: built $dir/onednn.node" >&2
