#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), then configures and builds into build/ (Release).
# Extra arguments go to cmake's configure step, e.g. -DCMAKE_PREFIX_PATH=/path/to/libtorch for CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "${JOBS:-2}"
