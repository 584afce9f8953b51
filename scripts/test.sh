#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (CTest). Fixtures are read from $SANA_FIXTURES
# (default: tests/data), so the same tests run on any fixture set with the same layout.
set -euo pipefail
cd "$(dirname "$0")/.."
SANA_BUILD_TARGETS=all ./scripts/build.sh "$@"
cd build
ctest --output-on-failure -j "${JOBS:-2}"
