#!/usr/bin/env bash
# The shapes world, end to end, with the project's own commands: data -> tiny DC-AE -> tokenizer + tiny Gemma-2
# pretrained on the captions, then frozen -> latent cache -> flow-matching teacher -> SANA-Sprint student (hybrid
# sCM + LADD, EMA) -> models/. docs/RESULTS.md measures each choice.
# Every stage is seeded; a finished stage is skipped, an interrupted one resumes (--resume) when run again.
# The teacher and the student leave snapshots (training/snapshots/) for recipes/shapes/eval_curve.sh.
# Usage: recipes/shapes/run.sh [WORK_DIR]      (default recipes/shapes/work; about 2 h 20 min on a 2-core CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
mkdir -p "$work"
stage() { echo "== $(date +%T) $*" >&2; }
resume_flag() { [ -f "$1/training/checkpoint.safetensors" ] && echo --resume || true; }

stage "1/6 dataset: 20000 scenes at 64x64"
[ -f "$work/data/0019999.png" ] || "$S" shapes make-dataset -o "$work/data" -n 20000 --size 64 -s 1 --overwrite

stage "2/6 tiny DC-AE (factor 8, 16 latent channels)"
[ -f "$work/base/vae/config.json" ] || "$S" train-vae --data "$work/data" --config "$here/vae_config.json" \
  -o "$work/base/vae" --steps 900 -b 32 --lr 1e-3 --warmup-steps 50 --ema 0.99 --log-every 50 \
  --checkpoint-every 100 -s 1 $(resume_flag "$work/base/vae")

stage "3/6 tokenizer (SentencePiece on the captions) and Gemma-2 pretrained as a language model on them"
[ -f "$work/base/text_encoder/model.safetensors" ] || "$S" text-encoder --data "$work/data" \
  --config "$here/text_encoder_config.json" --vocab-size 384 -s 1 -o "$work/base" --overwrite --pretrain-steps 600

stage "4/6 latent cache"
[ -f "$work/cache/cache_config.json" ] || "$S" cache --data "$work/data" --base "$work/base" -o "$work/cache" --overwrite \
  --max-sequence-length 32

stage "5/6 teacher by flow matching (about 90 min: the score still climbs at 8000 steps)"
[ -f "$work/teacher/model_index.json" ] || "$S" train --cache "$work/cache" --base "$work/base" \
  --config "$here/transformer_config.json" -o "$work/teacher" --steps 12000 -b 48 --lr 5e-4 --warmup-steps 200 \
  --ema 0.999 --caption-dropout 0.1 --log-every 50 --checkpoint-every 250 --sample-every 500 --snapshot-every 1000 -s 1 \
  $(resume_flag "$work/teacher")

stage "6/6 student by hybrid sCM + LADD, with an EMA of the student and the adversarial term weighted up"
[ -f "$work/student/model_index.json" ] || "$S" distill --teacher "$work/teacher" --cache "$work/cache" \
  -o "$work/student" --loss hybrid --steps 3200 -b 16 --lr 1e-4 --grad-clip 0.1 --tangent-warmup 500 --ema 0.995 --adv-weight 1 \
  --intermediate-timesteps 1.0 --log-every 50 --checkpoint-every 100 --sample-every 800 --snapshot-every 400 -s 1 \
  $(resume_flag "$work/student")

stage "shipping to models/"
for m in teacher:sana-shapes-teacher student:sana-sprint-shapes; do
  src="$work/${m%%:*}" dst="$root/models/${m##*:}"
  rm -rf "$dst.tmp" && mkdir -p "$dst.tmp"
  for part in model_index.json generation_defaults.json scheduler tokenizer text_encoder transformer vae; do
    cp -r "$src/$part" "$dst.tmp/"
  done
  rm -f "$dst.tmp/tokenizer/spm_training_captions.txt"
  rm -rf "$dst" && mv "$dst.tmp" "$dst"
done
stage "done: $root/models/sana-sprint-shapes and $root/models/sana-shapes-teacher"
