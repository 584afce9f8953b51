#!/usr/bin/env bash
# docs/RESULTS.md's LoRA gallery: four diamond prompts of the concept prompt set (eval --shapes diamond, prompt seed
# 20260101); the shipped student at 1 step without and with its diamond LoRA, and the teacher at 20 steps with its
# LoRA; seed 0. Needs models/loras/ (recipes/shapes/lora.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
out="$root/docs/gallery"
loras="$root/models/loras"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
"$S" shapes make-dataset -o "$tmp" -n 12 --size 64 -s 20260101 --shapes diamond 2>/dev/null
k=0
for i in 0 1 2 3; do
  k=$((k + 1))
  prompt="$(cat "$tmp/$(printf %07d "$i").txt")"
  "$S" generate -p "$prompt" -s 0 -o "$out/lora-student-plain-$k.png" 2>/dev/null
  "$S" generate -p "$prompt" -s 0 --lora "$loras/sana-sprint-shapes-diamond.safetensors" -o "$out/lora-student-$k.png" 2>/dev/null
  "$S" generate -m "$root/models/sana-shapes-teacher" -p "$prompt" -s 0 \
    --lora "$loras/sana-shapes-teacher-diamond.safetensors" -o "$out/lora-teacher-$k.png" 2>/dev/null
  echo "$k: $prompt"
done
