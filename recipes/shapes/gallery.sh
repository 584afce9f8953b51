#!/usr/bin/env bash
# The README gallery: the shipped student at 1 and 2 steps (and the 20-step teacher) on a few prompts, seed 0.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
out="$root/docs/gallery"
mkdir -p "$out"
i=0
while IFS= read -r prompt; do
  i=$((i + 1))
  "$S" generate -p "$prompt" -s 0 -o "$out/student-$i.png" 2>/dev/null
  "$S" generate -p "$prompt" -s 0 --steps 2 -o "$out/student-2steps-$i.png" 2>/dev/null
  "$S" generate -m "$root/models/sana-shapes-teacher" -p "$prompt" -s 0 -o "$out/teacher-$i.png" 2>/dev/null
  echo "$i: $prompt"
done <<'PROMPTS'
two red circles above a blue square
a large yellow star
a green triangle and a purple circle
three cyan squares
a blue circle left of a yellow triangle
a purple star below a green square
a red square and a blue star
four yellow circles
PROMPTS
