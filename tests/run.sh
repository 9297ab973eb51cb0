#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs the packages,
# builds FaHA twice with warnings as errors -- an optimised build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build -- and runs every ctest
# test (unit, integration with real processes, redis-tools) in both.
# Usage: tests/run.sh [release|asan]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh

configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(release asan)
jobs=$(nproc)
for cfg in "${configs[@]}"; do
  case "$cfg" in
    release) flags=(-DCMAKE_BUILD_TYPE=Release) ;;
    asan) flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFAHA_SANITIZE=address,undefined -DFAHA_BUILD_BENCH=OFF) ;;
    *) echo "tests/run.sh: unknown configuration '$cfg' (release or asan)" >&2; exit 2 ;;
  esac
  echo "=== $cfg: configure and build (build-$cfg) ==="
  cmake -S . -B "build-$cfg" -DFAHA_WERROR=ON "${flags[@]}" > "build-$cfg.configure.log" 2>&1 \
    || { cat "build-$cfg.configure.log"; exit 1; }
  cmake --build "build-$cfg" -j"$jobs"
  echo "=== $cfg: ctest ==="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "build-$cfg" && ctest --output-on-failure --timeout 900)
done
