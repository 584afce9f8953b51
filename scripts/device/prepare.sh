#!/usr/bin/env bash
# On this machine: downloads the Debian packages that the GPU build needs beyond LibTorch (headers and the few
# libraries the project links) into .device/debs, an ignored folder small enough to travel with the working tree.
# The GPU machine has CUDA, PyTorch (with its CUDA LibTorch), CMake and ninja, and reaches no package registry;
# scripts/device/run.sh unpacks these there into a private prefix. See docs/PERFORMANCE.md, "CUDA".
#
#   scripts/device/prepare.sh            # then: run "scripts/device/run.sh $OUT" there, carrying .device
#   SANA_DIFFUSERS=DIR scripts/device/prepare.sh   # also packs DIR's src/diffusers (a checkout or a bare git
#                                                  # repository) for bench/diffusers_stages.py on that machine
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES=(
  nlohmann-json3-dev libcli11-dev                       # header-only
  libsentencepiece-dev libsentencepiece0                # the tokenizer (through the dlopen'ed shim)
  libpng-dev libpng16-16 zlib1g-dev                     # PNG
  libjpeg62-turbo-dev libjpeg62-turbo                   # JPEG
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev   # the server library
  libgtest-dev libgmock-dev                             # the tests
  pkgconf pkgconf-bin libpkgconf3 pkg-config            # CMake's pkg_check_modules
)

dir=.device/debs
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
(cd "$dir.tmp" && apt-get download "${PACKAGES[@]}" >/dev/null)
rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "prepare: $(ls "$dir" | wc -l) packages, $(du -sh "$dir" | cut -f1) in $dir (carry .device)"

# The diffusers sources (that machine has torch and transformers, not diffusers), packed: 5 MB instead of 27.
if [ -n "${SANA_DIFFUSERS:-}" ]; then
  if [ -d "$SANA_DIFFUSERS/src/diffusers" ]; then
    tar -C "$SANA_DIFFUSERS" -czf .device/diffusers.tar.gz.tmp src/diffusers
  else
    git --git-dir "$SANA_DIFFUSERS" archive --format=tar.gz -o "$PWD/.device/diffusers.tar.gz.tmp" HEAD src/diffusers
  fi
  mv .device/diffusers.tar.gz.tmp .device/diffusers.tar.gz
  echo "prepare: diffusers sources from $SANA_DIFFUSERS, $(du -sh .device/diffusers.tar.gz | cut -f1)"
fi
