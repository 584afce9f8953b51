#!/usr/bin/env bash
# The shapes models' tiny preview decoder (docs/DECODERS.md): 8000 fresh scenes -> their latents (the shipped
# student's VAE and text encoder) -> an AutoencoderTiny distilled from the DC-AE decoder -> models/*/vae_tiny/.
# Seeded; a finished stage is skipped, an interrupted training resumes when run again. About 10 min on 2 cores.
# Usage: recipes/shapes/tiny_decoder.sh [WORK_DIR]      (default recipes/shapes/work_tiny)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work_tiny}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
base="$root/models/sana-sprint-shapes"
mkdir -p "$work"
stage() { echo "== $(date +%T) $*" >&2; }

stage "1/3 dataset: 8000 scenes at 64x64 (another seed than the models' training data)"
[ -f "$work/data/0007999.png" ] || "$S" shapes make-dataset -o "$work/data" -n 8000 --size 64 -s 7 --overwrite

stage "2/3 latent cache"
[ -f "$work/cache/cache_config.json" ] || "$S" cache --data "$work/data" --base "$base" -o "$work/cache" --overwrite \
  --max-sequence-length 32

stage "3/3 tiny decoder distilled from the DC-AE decoder"
resume=$([ -f "$work/vae_tiny/training/checkpoint.safetensors" ] && echo --resume || true)
[ -f "$work/vae_tiny/config.json" ] || "$S" train-tiny-decoder --cache "$work/cache" --base "$base" \
  --config "$here/tiny_decoder_config.json" -o "$work/vae_tiny" --steps 2000 -b 32 --lr 1e-3 --warmup-steps 50 \
  --ema 0.99 --log-every 100 --checkpoint-every 250 --sample-every 500 -s 1 $resume

stage "shipping to models/*/vae_tiny"
for m in sana-sprint-shapes sana-shapes-teacher; do
  dst="$root/models/$m/vae_tiny"
  rm -rf "$dst.tmp" && mkdir -p "$dst.tmp"
  cp "$work/vae_tiny/config.json" "$work/vae_tiny/diffusion_pytorch_model.safetensors" "$dst.tmp/"
  rm -rf "$dst" && mv "$dst.tmp" "$dst"
done
stage "done"
