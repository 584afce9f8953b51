#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer: built with clang in build-asan/ (every
# library, tool and test instrumented, LibTorch itself not; the folder is shared with scripts/fuzz.sh, hence the
# fuzzer's coverage instrumentation too), then CTest. Extra arguments go to ctest (-R ...).
# Any report fails the test that caused it (halt_on_error). docs/RELIABILITY.md has the last clean run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++ -DSANA_FUZZ=ON -DSANA_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "${JOBS:-2}"
# alloc_dealloc_mismatch=0: libsentencepiece, deep-bound, pairs libstdc++'s operator new with the sanitizer's
# operator delete: one heap, two names (docs/RELIABILITY.md).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:alloc_dealloc_mismatch=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir build-asan --output-on-failure -j "${JOBS:-2}" "$@"
