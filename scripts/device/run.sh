#!/usr/bin/env bash
# On the GPU machine, from the repository root (the working tree sent with .device carried; scripts/device/prepare.sh
# made it): builds against the machine's PyTorch LibTorch, runs the reference-pipeline tests on the device (fp32 with
# TF32 off: 1e-4; bf16: the bounds in docs/PERFORMANCE.md), then the benchmarks. Writes OUT/report.md (one line per
# step: exit status and seconds) and its logs. A failing step is reported and the steps that do not depend on
# it still run. Without a GPU (or without PyTorch) it takes the same path on the CPU with Debian's LibTorch and
# smaller benchmarks, which is how it is tested. See docs/PERFORMANCE.md, "CUDA".
#
#   scripts/device/run.sh OUT
set -uo pipefail
OUT=${1:?usage: scripts/device/run.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUILD=${SANA_DEVICE_BUILD:-build-device}
PREFIX=${SANA_DEVICE_PREFIX:-/tmp/sana-device-prefix}
REPORT=$OUT/report.md
T0=$(date +%s)

# step NAME LOG LIMIT_SECONDS COMMAND...: runs COMMAND, appending to OUT/LOG.log (few files: the device tool brings
# back at most 8), and records its status and time; a failure's last lines go into the report.
step() {
  local name=$1 log=$OUT/$2.log limit=$3 start rc
  shift 3
  start=$(date +%s)
  echo "=== $name: $*" >>"$log"
  timeout -s KILL "$limit" "$@" >>"$log" 2>&1
  rc=$?
  echo "| $name | $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") | $(($(date +%s) - start)) s |" >>"$REPORT"
  [ $rc -eq 0 ] || { echo "--- $name, last lines:"; tail -n 15 "$log"; } >>"$OUT/failures.txt"
  return $rc
}

# 1. The machine: PyTorch's LibTorch and whether it sees a GPU.
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
DEVICE=$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)
{
  echo "# scripts/device/run.sh report"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- device: $DEVICE $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "- LibTorch: ${TORCH_PREFIX:-system (Debian)} $(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  echo "- CPU: $(nproc) cores"
  echo
  echo "| step | result | time |"
  echo "|---|---|---|"
} >"$REPORT"

# 2. The carried Debian packages, unpacked into a private prefix (never into /).
rm -rf "$PREFIX" && mkdir -p "$PREFIX"
for deb in .device/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$PREFIX
[ -x "$PREFIX/usr/bin/pkgconf" ] && ! command -v pkg-config >/dev/null && export PKG_CONFIG_EXECUTABLE=$PREFIX/usr/bin/pkgconf
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -d "$PREFIX/usr/include" ] || unset PKG_CONFIG_SYSROOT_DIR  # nothing carried: the system's packages

# 3. Configure and build what the checks need, with every core.
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
CUDA_OPTIONS=()
[ "$DEVICE" = cuda ] && CUDA_OPTIONS=(-DSANA_WITH_GLOO=OFF)
step configure build 120 cmake -S . -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=${TORCH_PREFIX:+$TORCH_PREFIX;}$PREFIX/usr" "-DCMAKE_CXX_FLAGS=-isystem $PREFIX/usr/include" \
  ${PKG_CONFIG_EXECUTABLE:+-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG_EXECUTABLE} "${CUDA_OPTIONS[@]}"
TARGETS=(test_pipeline test_reference_pipelines bench_pipeline bench_bf16_fidelity bench_distill)
step build build "${SANA_DEVICE_BUILD_LIMIT:-300}" cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"

# 4. The reference pipelines on the device: fp32 (TF32 off) within 1e-4, and bf16 within its bound.
export SANA_TEST_DEVICE=$DEVICE
step tests_sprint tests 120 "$BUILD/tests/test_pipeline" --gtest_filter='PipelineFixture.*'
step tests_teachers tests 120 "$BUILD/tests/test_reference_pipelines" --gtest_filter='ReferencePipelines.Teacher*'

# 5. Benchmarks: the real 0.6B configs with random weights. On a GPU: 1024^2 (and 512^2), per stage and end to end
#    for 1, 2 and 4 steps, bf16 and fp32; the distillation loop at 0.6B. On the CPU the same programs, smaller.
if [ "$DEVICE" = cuda ]; then
  step bench_bf16 bench 150 "$BUILD/bench_pipeline" --device cuda --dtype bf16 --sizes 512,1024 --runs 10
  step bench_bf16_heuristics bench 60 "$BUILD/bench_pipeline" --device cuda --dtype bf16 --stages transformer,vae \
    --sizes 1024 --runs 10 --cudnn-benchmark off
  step bench_fp32 bench 90 "$BUILD/bench_pipeline" --device cuda --dtype fp32 --sizes 1024 --runs 5
  step bench_distill bench 120 "$BUILD/bench_distill" --device cuda --dtype bf16 \
    --config tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json \
    --latent 32 --batch 4 --tokens 300 --iterations 6
  # The reference on the same GPU, same configs and shapes (when prepare.sh packed the diffusers sources).
  if [ -f .device/diffusers.tar.gz ]; then
    tar -C "$PREFIX" -xzf .device/diffusers.tar.gz
    step diffusers_bf16 diffusers 150 env PYTHONPATH="$PREFIX/src" python3 bench/diffusers_stages.py \
      --device cuda --dtype bf16 --sizes 512,1024 --runs 10
    step diffusers_fp32 diffusers 90 env PYTHONPATH="$PREFIX/src" python3 bench/diffusers_stages.py \
      --device cuda --dtype fp32 --sizes 1024 --runs 5
  fi
else
  step bench_bf16 bench 600 "$BUILD/bench_pipeline" --dtype bf16 --stages transformer,vae --sizes 512 --runs 1
  step bench_distill bench 300 "$BUILD/bench_distill" --iterations 4
fi
{
  echo
  echo "Total: $(($(date +%s) - T0)) s. Logs beside this file: build.log, tests.log, bench.log, diffusers.log."
  [ -f "$OUT/failures.txt" ] && { echo; echo '```'; cat "$OUT/failures.txt"; echo '```'; }
} >>"$REPORT"
rm -f "$OUT/failures.txt"
cat "$REPORT"
