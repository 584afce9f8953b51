#!/usr/bin/env bash
# The miniature results table (docs/RESULTS.md): ShapesEval on a fixed prompt set (300 prompts, 50 per category,
# prompt seed 20260101, image i with seed i) for the teacher at 20 steps with CFG 4.5 and the student at 1, 2 and 4
# steps, PSNR of each student run against the teacher's image from the same initial noise, ms per image; and the
# ablation students at 1 step when recipes/shapes/ablation.sh has run.
# Usage: recipes/shapes/evaluate.sh [WORK_DIR]     (writes WORK_DIR/eval/*.json and the images)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
E="$work/eval"
mkdir -p "$E"
teacher="$root/models/sana-shapes-teacher" student="$root/models/sana-sprint-shapes"
ev() { local name="$1"; shift; echo "== $(date +%T) eval $name" >&2; "$S" eval -o "$E/$name" --overwrite --json "$E/$name.json" "$@" > "$E/$name.md"; }
ev vae-roundtrip -m "$teacher" --vae-roundtrip    # the ceiling the VAE allows
ev teacher-20 -m "$teacher" --steps 20 --guidance 4.5
for n in 1 2 4; do ev "student-$n" -m "$student" --steps "$n" --reference "$E/teacher-20"; done
for loss in scm ladd hybrid; do
  [ -f "$work/ablation-$loss/model_index.json" ] && ev "ablation-$loss-1" -m "$work/ablation-$loss" --steps 1 --reference "$E/teacher-20"
done
"$S" eval --images "$E/teacher-20" > /dev/null                           # re-scoring from disk agrees
echo "results in $E/*.json" >&2
