#!/usr/bin/env bash
# The ControlNet table (docs/RESULTS.md, "ControlNet"): on the fixed 300-prompt set, each scene's scribble (2-px
# outlines) as the control image; ControlEval (IoU of what the image draws with the outlined regions, colour accuracy
# inside them), ShapesEval and ms per image for
#   the student without control, with the teacher's ControlNet transferred as it is (converted, not trained), with
#   its distilled ControlNet (shipped), at 1, 2 and 4 steps; the teacher with and without its ControlNet at 20 steps.
# Usage: recipes/shapes/evaluate_controlnet.sh [WORK_DIR]   (needs recipes/shapes/controlnet.sh's work folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
S="${SANA_SPRINT:-$root/build/sana-sprint}"
E="$work/eval-controlnet"
mkdir -p "$E"
teacher="$root/models/sana-shapes-teacher" student="$root/models/sana-sprint-shapes"
ev() { local name="$1"; shift; echo "== $(date +%T) eval $name" >&2; "$S" eval -o "$E/$name" --overwrite --json "$E/$name.json" "$@" > "$E/$name.md"; }

# The baseline that needs no training: the teacher's ControlNet moved onto the student (distillation at 0 steps).
[ -f "$work/cn-transferred/config.json" ] || "$S" train-controlnet --objective distill --base "$student" \
  --teacher "$teacher" --teacher-controlnet "$work/cn-teacher" --cache "$work/control-cache" \
  -o "$work/cn-transferred" --steps 0 --sample-every -1 -s 1 --overwrite

ev vae-roundtrip -m "$teacher" --vae-roundtrip    # the ceiling: the true scenes through the VAE
ev teacher-20 -m "$teacher" --steps 20 --guidance 4.5
ev teacher-cn-20 -m "$teacher" --steps 20 --guidance 4.5 --control
for n in 1 2 4; do
  ev "student-$n" -m "$student" --steps "$n"
  ev "student-transferred-$n" -m "$student" --controlnet "$work/cn-transferred" --control --steps "$n"
  ev "student-cn-$n" -m "$student" --control --steps "$n"
done
echo "results in $E/*.json" >&2
