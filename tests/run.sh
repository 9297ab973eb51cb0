#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs the packages,
# builds FaHA twice with warnings as errors -- an optimised build (gcc) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) -- and runs every
# ctest test (unit, integration with real processes, redis-tools) in both; then
# builds the libFuzzer targets with clang (ASan + UBSan) and runs the
# parser fuzzers (RESP, native frames, log recovery) at once for FUZZ_SECONDS
# (default 30), with the EVAL fuzzer (generated Lua scripts); and the RDMA + persistent-memory suite in a qemu guest with soft-RoCE and an
# emulated NVDIMM mounted -o dax (tests/guest/run-rdma-suite.sh: ctest -L rdma,
# a cluster over rxe on DAX, a power cut), on the release build; and the unit and
# integration tests again under ThreadSanitizer, built with clang (build-tsan;
# FAHA_TEST_SLOWDOWN=4 stretches the tests' latency bounds, and a race in a
# server it starts fails the test: the server exits).
# Every run first checks the format of the C++ files (clang-format --dry-run -Werror)
# and the size rules (tests/check_sizes.py).
# Usage: tests/run.sh [release|asan|tsan|rdma|fuzz]...   (default: all five)
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh

# The repository's own .clang-format holds for every C++ file.
echo "=== format: clang-format --dry-run -Werror ==="
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  git ls-files -z '*.cc' '*.h' | xargs -0 -r clang-format --dry-run -Werror
else
  find . -path './build*' -prune -o \( -name '*.cc' -o -name '*.h' \) -print0 | xargs -0 -r clang-format --dry-run -Werror
fi
echo "format: every .cc and .h file is formatted"
# clang's -Wthread-safety checks GUARDED_BY/REQUIRES in every clang build (the
# tsan and fuzz configurations, with -Werror): first prove it catches a violation.
echo "=== thread safety: the analysis rejects an unguarded read ==="
probe=(clang++ -std=c++20 -I. -Wthread-safety -Werror -fsyntax-only tests/thread_safety_probe.cc)
"${probe[@]}"
if "${probe[@]}" -DFAHA_PROBE_VIOLATION 2> /dev/null; then
  echo "tests/run.sh: -Wthread-safety accepted tests/thread_safety_probe.cc's violation" >&2
  exit 1
fi
echo "thread safety: the probe compiles, its violation does not"
# No file over 600 lines, no function over 80, beyond what tests/size_baseline.txt
# lists from before the rule (those may only shrink).
python3 tests/check_sizes.py
# Every #include runs the allowed way between rooms (net -> commands -> engine).
python3 tests/check_includes.py

# Each stage's end, in seconds from the start: CI should stay within 45 minutes.
stage_times=()
stage_done() { stage_times+=("$1: ${SECONDS} s"); echo "$1: done at ${SECONDS} s"; }
stage_done "packages and checks"

configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(release asan tsan rdma fuzz)
jobs=$(nproc)
# Sanitized builds at -O1 with line tables only: they compile in half the time
# of -O2 -g (259 s against 543 s here) and still give symbolized stack traces.
sanitized=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")
for cfg in "${configs[@]}"; do
  if [ "$cfg" = fuzz ]; then
    echo "=== fuzz: build the libFuzzer targets with clang (build-fuzz) ==="
    CXX=clang++ cmake -S . -B build-fuzz -DFAHA_WERROR=ON -DFAHA_FUZZ=ON \
      -DFAHA_SANITIZE=address,undefined -DFAHA_BUILD_BENCH=OFF "${sanitized[@]}" \
      > build-fuzz.configure.log 2>&1 || { cat build-fuzz.configure.log; exit 1; }
    cmake --build build-fuzz -j"$jobs" --target resp_fuzz native_fuzz recovery_fuzz script_fuzz
    # They run at once (each alone on a core would leave the other idle).
    fuzzers=(resp_fuzz native_fuzz recovery_fuzz script_fuzz)
    pids=()
    echo "=== fuzz: ${fuzzers[*]} at once for ${FUZZ_SECONDS:-30} s ==="
    for f in "${fuzzers[@]}"; do
      corpus="build-fuzz/corpus/$f"
      mkdir -p "$corpus"
      "./build-fuzz/$f" -max_total_time="${FUZZ_SECONDS:-30}" -print_final_stats=1 "$corpus" \
        > "build-fuzz/$f.log" 2>&1 &
      pids+=($!)
    done
    failed=0
    for i in "${!fuzzers[@]}"; do
      f=${fuzzers[$i]}
      if wait "${pids[$i]}"; then
        echo "$f: $(grep -E "^(Done|stat::number_of_executed_units)" "build-fuzz/$f.log" | tr '\n' ' ')"
      else
        tail -60 "build-fuzz/$f.log"
        echo "$f found a failure"
        failed=1
      fi
    done
    [ "$failed" = 0 ] || exit 1
    echo "fuzz: ${#fuzzers[@]} passed, 0 failed"
    stage_done fuzz
    continue
  fi
  if [ "$cfg" = rdma ]; then
    if [ ! -x build-release/faha-server ]; then
      echo "=== rdma: the guest suite needs the release build ==="
      cmake -S . -B build-release -DFAHA_WERROR=ON -DCMAKE_BUILD_TYPE=Release > build-release.configure.log 2>&1 \
        || { cat build-release.configure.log; exit 1; }
      cmake --build build-release -j"$jobs"
    fi
    echo "=== rdma: soft-RoCE + emulated NVDIMM guest (qemu, TCG) ==="
    ./tests/guest/run-rdma-suite.sh build-release
    stage_done rdma
    continue
  fi
  case "$cfg" in
    release) flags=(-DCMAKE_BUILD_TYPE=Release) ;;
    asan) flags=("${sanitized[@]}" -DFAHA_SANITIZE=address,undefined -DFAHA_BUILD_BENCH=OFF) ;;
    tsan) flags=("${sanitized[@]}" -DFAHA_SANITIZE=thread -DFAHA_BUILD_BENCH=OFF) ;;
    *) echo "tests/run.sh: unknown configuration '$cfg' (release, asan, tsan, rdma or fuzz)" >&2; exit 2 ;;
  esac
  # The sanitized builds use clang: its ASan + UBSan build took 339-346 s here
  # where gcc's took 425 s, and its -Wthread-safety runs there too. The release
  # build stays gcc, so both compilers' warnings are errors.
  compiler=()
  if [ "$cfg" != release ]; then compiler=(-DCMAKE_CXX_COMPILER=clang++); fi
  echo "=== $cfg: configure and build (build-$cfg) ==="
  cmake -S . -B "build-$cfg" -DFAHA_WERROR=ON "${compiler[@]}" "${flags[@]}" > "build-$cfg.configure.log" 2>&1 \
    || { cat "build-$cfg.configure.log"; exit 1; }
  cmake --build "build-$cfg" -j"$jobs"
  stage_done "$cfg build"
  echo "=== $cfg: ctest ==="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  slowdown=()
  if [ "$cfg" = tsan ]; then slowdown=(env FAHA_TEST_SLOWDOWN=4); fi
  # Two tests at a time, as many as there are cores: most of them wait on
  # processes, sockets and syncs rather than compute, and serially the three
  # runs took 20 of CI's 59 minutes.
  (cd "build-$cfg" && "${slowdown[@]}" ctest -j"$jobs" --output-on-failure --timeout 900)
  stage_done "$cfg"
done
echo "=== stages (seconds from the start) ==="
printf '%s\n' "${stage_times[@]}"
