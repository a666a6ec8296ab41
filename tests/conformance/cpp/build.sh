#!/usr/bin/env bash
# Builds the C++ conformance runner with the reference Cap'n Proto library:
# `capnp compile -oc++` on schema/, then the runner against
# `pkg-config capnp-rpc`. Needs capnproto, libcapnp-dev, nlohmann-json3-dev
# and a C++17 compiler (Debian/Ubuntu:
# `apt-get install capnproto libcapnp-dev nlohmann-json3-dev g++ pkg-config`).
#
#   tests/conformance/cpp/build.sh [OUT_DIR]    # default: target/conformance-cpp
#
# Prints the path of the runner it built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$repo/target}/conformance-cpp}"
mkdir -p "$out/gen"
capnp compile -I/usr/include -oc++:"$out/gen" --src-prefix="$repo/schema" \
  "$repo/schema/actor.capnp" "$repo/schema/tensor.capnp"
${CXX:-g++} -std=c++17 -O1 -I"$out/gen" \
  "$here/runner.c++" "$out/gen/actor.capnp.c++" "$out/gen/tensor.capnp.c++" \
  $(pkg-config --cflags --libs capnp-rpc) -o "$out/conformance-runner"
echo "$out/conformance-runner"
