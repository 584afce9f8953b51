#!/usr/bin/env bash
# The paper's loss ablation in the shapes world: the same teacher, data, seed and budget (iterations x batch) for
# sCM only, LADD only and the hybrid. Needs the teacher and cache of run.sh. About 20 min on a 2-core CPU.
# Usage: recipes/shapes/ablation.sh [WORK_DIR] [ITERATIONS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
iters="${2:-600}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
for loss in scm ladd hybrid; do
  out="$work/ablation-$loss"
  echo "== $(date +%T) ablation: --loss $loss, $iters iterations" >&2
  [ -f "$out/model_index.json" ] && continue
  resume=""; [ -f "$out/training/checkpoint.safetensors" ] && resume=--resume
  "$S" distill --teacher "$work/teacher" --cache "$work/cache" -o "$out" --loss "$loss" --steps "$iters" -b 16 \
    --lr 1e-4 --grad-clip 0.1 --tangent-warmup 500 --log-every 100 --checkpoint-every 100 -s 1 $resume
done
