#!/usr/bin/env bash
# Set-up on a fresh machine: Debian packages the project uses (where apt-get exists), then
# `npm ci`. Safe to run again: installed packages are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Data, Jupyter for the notebooks and reports, Chromium to check that reports render, a font for image captions,
# clang and lld to build the project's wasm SIMD kernels, g++ and oneDNN for its native convolutions.
# PostgreSQL for the tests of the study store that workers on many machines share (each test starts its own server).
packages=(dataset-fashion-mnist jupyter-nbconvert python3-notebook jupyter-client chromium fonts-dejavu-core clang lld g++ libdnnl-dev postgresql)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null ||
      { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "setup: no apt-get here; skipping ${missing[*]}. Fashion-MNIST will be looked for in" \
      "\$FASHION_MNIST_DIR or data/fashion-mnist/, else downloaded on first use." >&2
  fi
fi

# tfjs-node (optional) is attempted here; where libtensorflow cannot be downloaded it is
# skipped and the project runs on the wasm backend.
npm ci --no-audit --no-fund

# The project's wasm SIMD kernels and native convolutions (each skipped with a message where
# its compiler or library is missing).
scripts/build-wasm.sh
scripts/build-native.sh
