#!/usr/bin/env bash
# Install what building and testing pocketmind needs, by package name only (Debian, PyPI), then build the
# engine (cached by content hash). Safe to rerun:
# it skips what is already there. Never downloads a browser or toolchain from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v emcc >/dev/null || apt_packages+=(emscripten)      # 3.1.6, with LLVM 14, binaryen and Node
command -v clang-19 >/dev/null || apt_packages+=(clang-19)   # the relaxed-SIMD kernels (wasm/build.py: RELAXED)
command -v node >/dev/null || apt_packages+=(nodejs)
command -v npm >/dev/null || apt_packages+=(npm)             # npm pack fetches the Pyodide runtime
command -v cmake >/dev/null || apt_packages+=(cmake)
command -v ninja >/dev/null || apt_packages+=(ninja-build)
command -v g++ >/dev/null || apt_packages+=(g++)
command -v patch >/dev/null || apt_packages+=(patch)
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)           # for the browser tests (Playwright drives it)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -e ".[test,cli]"

# llama.cpp natively and in WebAssembly (about 10 minutes the first time on 2 cores; seconds from the cache)
python3 wasm/build.py
