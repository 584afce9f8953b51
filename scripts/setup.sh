#!/usr/bin/env bash
# Installs every Debian 12 package sana-sprint needs. Idempotent: installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config
  libtorch-dev          # tensors, autograd, forward-mode AD (LibTorch 1.13.1, CPU)
  libopenblas-dev       # fast sgemm for LibTorch (the reference BLAS is ~40x slower)
  libopenblas0-openmp   # OpenBLAS sharing LibTorch's OpenMP threads (see CMakeLists.txt)
  libgloo-dev           # c10d Gloo headers (CPU data-parallel)
  nlohmann-json3-dev    # config.json, safetensors headers
  libcli11-dev          # command line
  libsentencepiece-dev  # Gemma tokenizer
  sentencepiece         # spm_train, to train the shapes world's tokenizer
  libpng-dev            # PNG output
  libjpeg62-turbo-dev   # JPEG in and out (the server's live frames, clients' images)
  libwebp-dev           # WebP in and out (clients' images, output_format webp)
  libcpp-httplib-dev    # HTTP server (sana-sprint serve) and the server tests' client
  chromium              # the live page's test in a real (headless) browser
  python3-pil python3-numpy  # the Python package's test (python/tests) and the image fixtures' scripts
  python3-venv python3-pip python3-setuptools python3-wheel  # `pip install ./python` in the install test
  jq gnuplot-nox        # recipes/shapes/plot.sh: training curves from the JSONL logs
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # scripts/fuzz.sh (libFuzzer) and scripts/sanitize.sh (ASan + UBSan)
)
# Node.js drives the browser test (playwright-core, tests/browser/); Debian's nodejs and npm when none is installed.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# LibTorch must find OpenBLAS, not the reference BLAS, through the libblas.so.3 alternative.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) echo "setup: warning: libblas.so.3 -> $blas is not OpenBLAS; sgemm will be slow" >&2 ;;
esac

# The browser test's one npm package (playwright-core, pinned in tests/browser/package-lock.json; it drives the
# chromium above and downloads no browser of its own).
browser_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ]; then
  echo "setup: installing the browser test's npm package (playwright-core)" >&2
  (cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
