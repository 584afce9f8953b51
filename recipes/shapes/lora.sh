#!/usr/bin/env bash
# A LoRA that teaches the shipped shapes models a shape they never saw, the diamond (docs/RESULTS.md, "LoRA"):
#   concept data (half the objects diamonds) -> latent cache -> the teacher's LoRA by flow matching ->
#   the student's LoRA by hybrid sCM + LADD distillation from the teacher with its LoRA -> models/loras/.
# Every stage is seeded; a finished stage is skipped, an interrupted one resumes (--resume) when run again. Each
# training stage is about 25-35 min on a 2-core CPU alone (run nothing else beside it: two LibTorch processes on two
# cores slow each other 5x).
# Usage: recipes/shapes/lora.sh [WORK_DIR]   (default recipes/shapes/work/lora)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work/lora}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
teacher="$root/models/sana-shapes-teacher" student="$root/models/sana-sprint-shapes"
lora=(--rank 16 --alpha 16 --target-modules to_q,to_k,to_v,to_out.0)
mkdir -p "$work"
stage() { echo "== $(date +%T) $*" >&2; }
resume_flag() { [ -f "$1/training/checkpoint.safetensors" ] && echo --resume || true; }

stage "1/5 concept data: 8000 scenes at 64x64, each object a diamond with probability 1/2"
[ -f "$work/ddata/0007999.png" ] || "$S" shapes make-dataset -o "$work/ddata" -n 8000 --size 64 -s 5 --overwrite \
  --shapes diamond,diamond,diamond,diamond,circle,square,triangle,star

stage "2/5 latent cache"
[ -f "$work/dcache/cache_config.json" ] || "$S" cache --data "$work/ddata" --base "$teacher" -o "$work/dcache" \
  --max-sequence-length 32 --overwrite

stage "3/5 the teacher's LoRA by flow matching (3000 steps x 32)"
[ -f "$work/teacher_lora/pytorch_lora_weights.safetensors" ] || "$S" train-lora --objective flow --base "$teacher" \
  --cache "$work/dcache" -o "$work/teacher_lora" "${lora[@]}" --steps 3000 -b 32 --lr 1e-3 --warmup-steps 100 \
  --log-every 50 --checkpoint-every 250 --snapshot-every 1000 --sample-every 1000 -s 1 $(resume_flag "$work/teacher_lora")

stage "4/5 the student's LoRA by hybrid sCM + LADD from the teacher with its LoRA"
[ -f "$work/student_lora/pytorch_lora_weights.safetensors" ] || "$S" train-lora --objective distill --base "$student" \
  --teacher "$teacher" --teacher-lora "$work/teacher_lora/pytorch_lora_weights.safetensors" --cache "$work/dcache" \
  -o "$work/student_lora" "${lora[@]}" --loss hybrid --steps 2400 -b 16 --lr 5e-4 --grad-clip 0.1 \
  --tangent-warmup 300 --adv-weight 1 --log-every 50 --checkpoint-every 100 --sample-every 800 -s 1 \
  $(resume_flag "$work/student_lora")

stage "5/5 shipping: models/loras/"
mkdir -p "$root/models/loras"
cp "$work/teacher_lora/pytorch_lora_weights.safetensors" "$root/models/loras/sana-shapes-teacher-diamond.safetensors.tmp"
cp "$work/student_lora/pytorch_lora_weights.safetensors" "$root/models/loras/sana-sprint-shapes-diamond.safetensors.tmp"
for f in sana-shapes-teacher-diamond sana-sprint-shapes-diamond; do
  mv "$root/models/loras/$f.safetensors.tmp" "$root/models/loras/$f.safetensors"
done
stage "done: models/loras/ (generate -p 'a red diamond' --lora models/loras/sana-sprint-shapes-diamond.safetensors)"
