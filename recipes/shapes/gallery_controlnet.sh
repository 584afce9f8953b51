#!/usr/bin/env bash
# The README's ControlNet gallery: scenes of the evaluation prompt set (seed 20260101) with their scribbles; the
# shipped student at 1 step with and without its ControlNet, and the teacher at 20 steps with its ControlNet; seed 0.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
out="$root/docs/gallery"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
"$S" shapes make-dataset -o "$tmp" -n 12 --size 64 -s 20260101 --control 2>/dev/null
k=0
for i in 0 4 7 10; do
  k=$((k + 1))
  base="$tmp/$(printf %07d "$i")"
  prompt="$(cat "$base.txt")"
  cp "$base.control.png" "$out/control-$k.png"
  "$S" generate -p "$prompt" -s 0 --control-image "$base.control.png" -o "$out/control-student-$k.png" 2>/dev/null
  "$S" generate -p "$prompt" -s 0 -o "$out/control-student-plain-$k.png" 2>/dev/null
  "$S" generate -m "$root/models/sana-shapes-teacher" -p "$prompt" -s 0 --control-image "$base.control.png" \
    -o "$out/control-teacher-$k.png" 2>/dev/null
  echo "$k: $prompt"
done
