#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), then configures and builds into build/ (Release): by default only what
# `sana-sprint` needs; SANA_BUILD_TARGETS names others ("all": the tests and benchmarks too, as scripts/test.sh does).
# Extra arguments go to cmake's configure step, e.g. -DCMAKE_PREFIX_PATH=/path/to/libtorch for CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
# shellcheck disable=SC2086  # a list of targets
cmake --build build -j "${JOBS:-2}" --target ${SANA_BUILD_TARGETS:-sana-sprint}
