#!/usr/bin/env bash
# ControlNets for the shipped shapes models, with the project's own commands (docs/RESULTS.md, "ControlNet"):
#   control data (the training scenes with their scribbles) -> latent cache with control latents ->
#   the teacher's ControlNet by flow matching -> the student's ControlNet by hybrid sCM + LADD distillation from the
#   teacher and its ControlNet -> controlnet/ in both model folders.
# Every stage is seeded; a finished stage is skipped, an interrupted one resumes (--resume) when run again.
# Usage: recipes/shapes/controlnet.sh [WORK_DIR]   (default recipes/shapes/work; about 25-45 min on a 2-core CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
teacher="$root/models/sana-shapes-teacher" student="$root/models/sana-sprint-shapes"
mkdir -p "$work"
stage() { echo "== $(date +%T) $*" >&2; }
resume_flag() { [ -f "$1/training/checkpoint.safetensors" ] && echo --resume || true; }

stage "1/5 control data: the 20000 training scenes with their scribbles (1-3 px outlines)"
[ -f "$work/control-data/0019999.png" ] || "$S" shapes make-dataset -o "$work/control-data" -n 20000 --size 64 -s 1 --overwrite \
  --control

stage "2/5 latent cache with control latents"
[ -f "$work/control-cache/cache_config.json" ] || "$S" cache --data "$work/control-data" --base "$teacher" \
  -o "$work/control-cache" --max-sequence-length 32 --overwrite

stage "3/5 the teacher's ControlNet by flow matching (3 of 6 blocks)"
[ -f "$work/cn-teacher/config.json" ] || "$S" train-controlnet --objective flow --base "$teacher" \
  --cache "$work/control-cache" -o "$work/cn-teacher" --num-layers 3 --steps 1500 -b 32 --lr 5e-4 --warmup-steps 100 \
  --ema 0.999 --caption-dropout 0.1 --log-every 50 --checkpoint-every 250 --sample-every 500 -s 1 \
  $(resume_flag "$work/cn-teacher")

stage "4/5 the student's ControlNet by hybrid sCM + LADD from the teacher and its ControlNet"
[ -f "$work/cn-student/config.json" ] || "$S" train-controlnet --objective distill --base "$student" \
  --teacher "$teacher" --teacher-controlnet "$work/cn-teacher" --cache "$work/control-cache" -o "$work/cn-student" \
  --loss hybrid --steps 1000 -b 16 --lr 1e-4 --grad-clip 0.1 --tangent-warmup 300 --log-every 50 \
  --checkpoint-every 100 --sample-every 250 -s 1 $(resume_flag "$work/cn-student")

stage "5/5 shipping: controlnet/ in both model folders"
for m in cn-teacher:sana-shapes-teacher cn-student:sana-sprint-shapes; do
  src="$work/${m%%:*}" dst="$root/models/${m##*:}"
  rm -rf "$dst/controlnet.tmp" && mkdir -p "$dst/controlnet.tmp"
  cp "$src/config.json" "$src/diffusion_pytorch_model.safetensors" "$dst/controlnet.tmp/"
  rm -rf "$dst/controlnet" && mv "$dst/controlnet.tmp" "$dst/controlnet"
  grep -q '"controlnet"' "$dst/model_index.json" ||
    sed -i 's|^{$|{\n  "controlnet": [\n    "diffusers",\n    "SanaControlNetModel"\n  ],|' "$dst/model_index.json"
done
stage "done: models/*/controlnet (generate --control-image PNG uses them)"
